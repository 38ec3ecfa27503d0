//! `GET /v1/events`: Server-Sent Events of every state change.
//!
//! On connect the client gets the core's replay of recent events (all of
//! them, the last `?replay=N`, or those after the `Last-Event-ID` header a
//! reconnecting browser sends), then the live stream. Each SSE message has
//! `id:` = event sequence number, `event:` = event kind and the event as
//! JSON in `data:`. A client too slow to keep up gets an `event: lagged`
//! message saying how many events it missed. The stream ends when the
//! server shuts down. At most [`super::MAX_EVENT_STREAMS`] streams are open
//! at once (then 503), so forgotten `curl -N` sessions cannot pile up.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::{broadcast, oneshot, watch, OwnedSemaphorePermit};

use super::dto::EventsQuery;
use super::error::ApiError;
use super::{AppState, CORE_TIMEOUT};
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
        (status = 503, description = "Too many open event streams, or the controller is shutting down.", body = super::dto::ErrorBody),
    ))]
pub async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()).field("replay"))?;
    let after: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let permit = s
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many open event streams; try again later"))?;
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
    _permit: OwnedSemaphorePermit,
}

fn event_stream(
    replay: Vec<Event>,
    live: broadcast::Receiver<Event>,
    stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
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
