//! `GET /v1/events`: Server-Sent Events of every state change.
//!
//! On connect the client gets the core's replay of recent events (all of
//! them, the last `?replay=N`, or those after the `Last-Event-ID` header a
//! reconnecting browser sends), then the live stream. Each SSE message has
//! `id:` = event sequence number, `event:` = event kind and the event as
//! JSON in `data:`. A client too slow to keep up gets an `event: lagged`
//! message saying how many events it missed. The stream ends when the
//! server shuts down. At most [`super::MAX_EVENT_STREAMS`] streams are open
//! at once, and at most [`super::MAX_EVENT_STREAMS_PER_CLIENT`] from one
//! client address (then 503), so forgotten `curl -N` sessions cannot pile
//! up and one client cannot take every slot. With `api.protect_reads` the
//! token is checked before a slot is taken.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::{broadcast, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::dto::EventsQuery;
use super::error::ApiError;
use super::{AppState, ClientAddr, CORE_TIMEOUT};
use crate::core::{Event, Input};

#[utoipa::path(get, path = "/v1/events", tag = "read",
    summary = "Server-Sent Events: replay of recent events, then every state change live.",
    security((), ("bearer" = [])),
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Replay only events after this sequence number (sent by reconnecting browsers)."),
    ),
    responses(
        (status = 200, description = "An event stream; each message has id = seq, event = kind, data = an Event as JSON. A client too slow to keep up gets `event: lagged` with `{\"missed\": n}`.",
            body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad query parameter.", body = super::dto::ErrorBody),
        (status = 401, description = "Reads are protected (api.protect_reads) and the token is missing or invalid.", body = super::dto::ErrorBody),
        (status = 503, description = "Too many open event streams (in all, or from this client), or the controller is shutting down.", body = super::dto::ErrorBody),
    ))]
pub async fn events(
    State(s): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()).field("replay"))?;
    let after: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let permit = Slots::acquire(&s.streams, client.map(|Extension(c)| c.0.ip()))
        .map_err(ApiError::unavailable)?;
    let (reply, rx) = oneshot::channel();
    s.core
        .inputs
        .send_timeout(Input::Subscribe { reply }, CORE_TIMEOUT)
        .await
        .map_err(|_| ApiError::unavailable("the controller is shutting down"))?;
    let (mut replay, live) = tokio::time::timeout(CORE_TIMEOUT, rx)
        .await
        .map_err(|_| ApiError::unavailable("the controller did not answer in time"))?
        .map_err(|_| ApiError::unavailable("the controller is shutting down"))?;
    if let Some(after) = after {
        replay.retain(|e| e.seq > after);
    }
    if let Some(n) = q.replay {
        let skip = replay.len().saturating_sub(n);
        replay.drain(..skip);
    }
    let stream = event_stream(replay, live, s.stop.clone(), permit);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn to_sse(e: &Event) -> SseEvent {
    let data = serde_json::to_string(&super::dto::Event::from(e)).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.as_str())
        .data(data)
}

struct StreamState {
    replay: std::vec::IntoIter<Event>,
    live: broadcast::Receiver<Event>,
    stop: watch::Receiver<bool>,
    /// Highest sequence number sent (live events already replayed are skipped).
    last: Option<u64>,
    /// Held while the stream lives.
    _permit: Slot,
}

fn event_stream(
    replay: Vec<Event>,
    live: broadcast::Receiver<Event>,
    stop: watch::Receiver<bool>,
    permit: Slot,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let st = StreamState {
        replay: replay.into_iter(),
        live,
        stop,
        last: None,
        _permit: permit,
    };
    stream::unfold(st, |mut st| async move {
        if let Some(e) = st.replay.next() {
            st.last = Some(e.seq);
            return Some((Ok(to_sse(&e)), st));
        }
        loop {
            if *st.stop.borrow() {
                return None;
            }
            let next = tokio::select! {
                r = st.live.recv() => r,
                _ = st.stop.changed() => return None,
            };
            match next {
                Ok(e) if st.last.is_some_and(|l| e.seq <= l) => continue,
                Ok(e) => {
                    st.last = Some(e.seq);
                    return Some((Ok(to_sse(&e)), st));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let data = serde_json::to_string(&super::dto::view::Lagged { missed: n })
                        .unwrap_or_else(|_| "{}".into());
                    let ev = SseEvent::default().event("lagged").data(data);
                    return Some((Ok(ev), st));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Event stream slots: a total, and a share per client address.
pub struct Slots {
    total: Arc<Semaphore>,
    per_client: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One taken slot, given back on drop.
pub struct Slot {
    _total: OwnedSemaphorePermit,
    client: Option<(Arc<Slots>, IpAddr)>,
}

impl Slots {
    pub fn new(total: usize, per_client: usize) -> Slots {
        Slots {
            total: Arc::new(Semaphore::new(total)),
            per_client,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for `client` (`None`: an unknown address, which only
    /// counts against the total).
    pub fn acquire(slots: &Arc<Slots>, client: Option<IpAddr>) -> Result<Slot, &'static str> {
        let total = slots
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too many open event streams; try again later")?;
        let Some(ip) = client else {
            return Ok(Slot {
                _total: total,
                client: None,
            });
        };
        let mut held = slots
            .held
            .lock()
            .map_err(|_| "event stream slots unavailable")?;
        let n = held.entry(ip).or_default();
        if *n >= slots.per_client {
            return Err("too many open event streams from this client; close some first");
        }
        *n += 1;
        Ok(Slot {
            _total: total,
            client: Some((slots.clone(), ip)),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((slots, ip)) = &self.client else {
            return;
        };
        if let Ok(mut held) = slots.held.lock() {
            if let Some(n) = held.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    held.remove(ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_cannot_take_every_slot() {
        let slots = Arc::new(Slots::new(4, 2));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let a1 = Slots::acquire(&slots, Some(a)).expect("a 1");
        let _a2 = Slots::acquire(&slots, Some(a)).expect("a 2");
        assert!(
            Slots::acquire(&slots, Some(a)).is_err(),
            "a's share is used"
        );
        let _b1 = Slots::acquire(&slots, Some(b)).expect("b still gets one");
        drop(a1);
        let _a3 = Slots::acquire(&slots, Some(a)).expect("a's slot came back");
        let _u = Slots::acquire(&slots, None).expect("the total has one left");
        assert!(Slots::acquire(&slots, Some(b)).is_err(), "total used up");
        assert_eq!(slots.held.lock().expect("lock").get(&a), Some(&2));
    }
}
