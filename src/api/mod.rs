//! The operator interface: REST API, Server-Sent Events, Prometheus metrics.
//!
//! The API reads the latest [`Snapshot`](crate::core::Snapshot) for every
//! GET and sends admin actions to the core as [`Input`](crate::core::Input)
//! messages; it owns no business state. [`router`] builds the axum router
//! from an [`AppState`] (tests call it with `tower::ServiceExt::oneshot`);
//! [`bind`] and [`serve_on`] run it on a socket until shutdown.
//!
//! Subsystems that are not the core plug in through optional hooks on
//! [`AppState`]: the BGP speaker's status ([`AppState::with_bgp`], or any
//! source of [`dto::Peer`]s with [`AppState::with_peers`]), config reload
//! ([`AppState::with_reload`]), DNS counters ([`AppState::with_dns_stats`])
//! and other metric families ([`metrics::Metrics::add_source`]). DNS explain
//! calls [`crate::dns::explain`] on the current snapshot. Probe results and
//! core events are counted for `/metrics` by tasks [`serve_on`] starts. The
//! web view ([`ui`], `/ui/`) is static files that use the API like any
//! other client.
//!
//! The wire format belongs to [`dto`]; the OpenAPI document is generated
//! from the DTOs and the routes ([`openapi`]). Before authentication,
//! [`guard`] checks `Host`, `Origin` and a POST's `Content-Type`;
//! [`serve_on`] bounds connections and how long a client may take to send
//! a request's headers.

pub mod auth;
pub mod dto;
pub mod error;
pub mod fleet;
pub mod guard;
mod handlers;
pub mod metrics;
pub mod openapi;
mod sse;
#[cfg(test)]
mod tests;
pub mod ui;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use auth::Auth;
pub use error::ApiError;
pub use metrics::Metrics;

use crate::core::{CoreHandle, Input, Snapshot};

/// Largest accepted request body (admin bodies are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Default limit of concurrent `/v1/events` streams.
pub const MAX_EVENT_STREAMS: usize = 64;

/// Concurrent `/v1/events` streams one client address may hold, so one
/// client cannot take every slot.
pub const MAX_EVENT_STREAMS_PER_CLIENT: usize = 16;

/// How long a handler waits for the core to answer.
pub const CORE_TIMEOUT: Duration = Duration::from_secs(10);

/// A boxed future, for the async hooks.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Reloads the config file: the new snapshot version, or the list of errors.
/// A process passes [`crate::daemon::Reloads::hook`], the path SIGHUP takes.
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<Result<u64, Vec<String>>> + Send + Sync>;

/// BGP peer status, by peer name.
pub type PeersFn = Arc<dyn Fn() -> BTreeMap<String, dto::Peer> + Send + Sync>;

/// Readiness of the process for `/readyz`: a set of named parts (config,
/// api, dns, bgp, ...) that each report ready.
#[derive(Default)]
pub struct Readiness {
    parts: Mutex<BTreeMap<String, bool>>,
}

impl Readiness {
    /// A readiness set whose `parts` all start not ready.
    pub fn new(parts: &[&str]) -> Readiness {
        Readiness {
            parts: Mutex::new(parts.iter().map(|p| (p.to_string(), false)).collect()),
        }
    }

    /// Marks `part` ready or not (adding it if unknown).
    pub fn set(&self, part: &str, ready: bool) {
        if let Ok(mut p) = self.parts.lock() {
            p.insert(part.to_string(), ready);
        }
    }

    /// The parts that are not ready (empty: ready).
    pub fn waiting(&self) -> Vec<String> {
        self.parts
            .lock()
            .map(|p| {
                p.iter()
                    .filter(|(_, r)| !**r)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_else(|_| vec!["readiness state poisoned".into()])
    }
}

/// The address of the client a request came from (set by [`serve_on`];
/// absent in tests that call the router directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Connection limits of the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A client must send a request's headers (and a POST body) within this
    /// time, or the connection is closed.
    pub header_read_timeout: Duration,
    /// Open connections at most; more are closed as soon as accepted.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: crate::model::DEFAULT_API_HEADER_READ_TIMEOUT,
            max_connections: crate::model::DEFAULT_API_MAX_CONNECTIONS,
        }
    }
}

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub core: CoreHandle,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub reload: Option<ReloadFn>,
    pub peers: Option<PeersFn>,
    /// Clients of the fleet's peers (forwarded admin calls), shared with
    /// the pullers.
    pub fleet_clients: crate::fleet::Clients,
    /// Slots for concurrent event streams.
    streams: Arc<sse::Slots>,
    /// Which `Host` values name this API.
    pub hosts: Arc<guard::HostPolicy>,
    pub limits: ServerLimits,
    /// How long `POST /v1/reload` waits for the reload to finish.
    pub reload_timeout: Duration,
    /// Flips to true when the server shuts down; ends event streams.
    stop: watch::Receiver<bool>,
    stop_tx: Arc<watch::Sender<bool>>,
}

impl AppState {
    /// State with no optional hooks, fresh metrics and readiness `api`
    /// (set by [`serve_on`]) and `config` (set here: a core exists, so a
    /// config was loaded).
    pub fn new(core: CoreHandle, auth: Auth) -> AppState {
        let (stop_tx, stop) = watch::channel(false);
        let readiness = Readiness::new(&["api"]);
        readiness.set("config", true);
        AppState {
            core,
            auth: Arc::new(auth),
            metrics: Arc::new(Metrics::new()),
            readiness: Arc::new(readiness),
            reload: None,
            peers: None,
            fleet_clients: Default::default(),
            streams: Arc::new(sse::Slots::new(
                MAX_EVENT_STREAMS,
                MAX_EVENT_STREAMS_PER_CLIENT,
            )),
            hosts: Arc::new(guard::HostPolicy::default()),
            limits: ServerLimits::default(),
            reload_timeout: CORE_TIMEOUT,
            stop,
            stop_tx: Arc::new(stop_tx),
        }
    }

    pub fn with_metrics(mut self, m: Arc<Metrics>) -> AppState {
        self.metrics = m;
        self
    }

    pub fn with_readiness(mut self, r: Arc<Readiness>) -> AppState {
        self.readiness = r;
        self
    }

    /// Limits concurrent `/v1/events` streams (default [`MAX_EVENT_STREAMS`]
    /// in all, [`MAX_EVENT_STREAMS_PER_CLIENT`] per client address).
    pub fn with_max_event_streams(mut self, total: usize, per_client: usize) -> AppState {
        self.streams = Arc::new(sse::Slots::new(total, per_client));
        self
    }

    /// Takes the names clients may address the API by and the connection
    /// limits from the `api` config section.
    pub fn with_api_config(mut self, api: &crate::model::ApiConfig) -> AppState {
        self.hosts = Arc::new(guard::HostPolicy::new(&api.allowed_hosts));
        self.limits = ServerLimits {
            header_read_timeout: api.header_read_timeout,
            max_connections: api.max_connections,
        };
        self
    }

    /// How long `POST /v1/reload` waits before answering 504 (the reload
    /// itself always runs to completion); default [`CORE_TIMEOUT`].
    pub fn with_reload_timeout(mut self, t: Duration) -> AppState {
        self.reload_timeout = t;
        self
    }

    pub fn with_reload(mut self, f: ReloadFn) -> AppState {
        self.reload = Some(f);
        self
    }

    /// Shares the fleet's peer clients (with the pullers).
    pub fn with_fleet_clients(mut self, c: crate::fleet::Clients) -> AppState {
        self.fleet_clients = c;
        self
    }

    pub fn with_peers(mut self, f: PeersFn) -> AppState {
        self.peers = Some(f);
        self
    }

    /// Exports the DNS server's counters at `/metrics`.
    pub fn with_dns_stats(self, stats: Arc<crate::dns::DnsStats>) -> AppState {
        self.metrics.add_source(metrics::dns_source(stats));
        self
    }

    /// Serves BGP peer status at `/v1/peers` and `/v1/state` (with an
    /// `uptime_secs` per established session) and exports it at `/metrics`.
    pub fn with_bgp(self, status: watch::Receiver<crate::bgp::StatusMap>) -> AppState {
        self.metrics.add_source(metrics::bgp_source(status.clone()));
        self.with_peers(Arc::new(move || {
            dto::peers::peers(&status.borrow(), std::time::SystemTime::now())
        }))
    }

    /// Ends open event streams (called by [`serve_on`] on shutdown).
    pub fn stop_streams(&self) {
        let _ = self.stop_tx.send(true);
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.core.snapshots.borrow().clone()
    }

    fn peers(&self) -> BTreeMap<String, dto::Peer> {
        match &self.peers {
            Some(f) => f(),
            None => BTreeMap::new(),
        }
    }
}

/// The whole API: the documented routes of [`openapi::routes`] with their
/// authorization layers.
pub fn router(state: AppState) -> Router {
    let openapi::Routes {
        reads,
        writes,
        open,
    } = openapi::routes();
    let reads = reads.route_layer(middleware::from_fn_with_state(state.clone(), require_read));
    // Layers run last-added first: the content type, then the token.
    let writes = writes
        .route_layer(middleware::from_fn_with_state(state.clone(), require_write))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_json,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let (routes, _) = reads.merge(writes).merge(open).split_for_parts();
    routes
        .merge(ui::router())
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_origin,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

async fn require_read(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match s.auth.check(req.headers(), false) {
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn require_write(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match s.auth.check(req.headers(), true) {
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// Counts every request by method, route template and status. Every label
/// comes from a fixed set (methods outside it count as `OTHER`, paths that
/// match no route as `unmatched`), so requests cannot add series.
async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let start = tokio::time::Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    s.metrics
        .record_api(method, &route, resp.status().as_u16(), start.elapsed());
    resp
}

/// The `method` label of a request: a standard method, or `OTHER`.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The API listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} for the API: {source}{hint}")]
    Bind {
        addr: SocketAddr,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("API server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Opens the API listener, with a clear error if the port is taken.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(listen).await.map_err(|source| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process, maybe another anypop, is using this port; change api.listen)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            std::io::ErrorKind::AddrNotAvailable => " (no local interface has this address)",
            _ => "",
        };
        ServeError::Bind {
            addr: listen,
            hint,
            source,
        }
    })
}

/// Serves the API on `listener` until `shutdown` completes, then ends event
/// streams and waits (up to [`CORE_TIMEOUT`]) for in-flight requests. Also
/// counts core events into the metrics while it runs.
///
/// At most `state.limits.max_connections` connections are open at once (a
/// connection over the cap is closed as soon as it is accepted, and
/// counted); a client that does not send a request's headers within
/// `state.limits.header_read_timeout` of the connection (or of its previous
/// request) is closed.
pub async fn serve_on(
    listener: TcpListener,
    mut state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    state.hosts = Arc::new(state.hosts.as_ref().clone().with_listen(addr));
    let counter = tokio::spawn(count_events(state.clone()));
    let observer = tokio::spawn(observe_checks(state.clone()));
    state.readiness.set("api", true);
    info!(listen = %addr, "API listening");
    let app = router(state.clone());
    let limits = state.limits;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = watch::channel(false);
    // Every connection task holds a sender; all are gone when all ended.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: back off.
                    warn!("API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.record_api_connection_refused();
            debug!(%remote, "API connection cap reached: connection closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            remote,
            app.clone(),
            limits,
            close_rx.clone(),
            (permit, done_tx.clone()),
        ));
    }
    drop(listener);
    state.stop_streams();
    let _ = close_tx.send(true);
    drop(done_tx);
    if tokio::time::timeout(CORE_TIMEOUT, done_rx.recv())
        .await
        .is_err()
    {
        warn!("API connections still open after {CORE_TIMEOUT:?}: not waiting for them any longer");
    }
    state.readiness.set("api", false);
    counter.abort();
    observer.abort();
    Ok(())
}

/// One HTTP/1 connection until it ends, or until `close` asks for a
/// graceful end (finish the request in flight, then close). `_held` is
/// released when the connection ends.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: ServerLimits,
    mut close: watch::Receiver<bool>,
    _held: (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::mpsc::Sender<()>,
    ),
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ClientAddr(remote));
            app.clone().oneshot(req)
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%remote, "API connection ended: {e}");
                }
                return;
            }
            _ = close.wait_for(|c| *c), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// [`bind`] then [`serve_on`].
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = bind(listen).await?;
    serve_on(listener, state, shutdown).await
}

/// Records every probe result into the metrics, as it appears in the
/// published snapshots (the core publishes one per result; if two land
/// between wake-ups only the latest is seen, so the counters are a close
/// lower bound under extreme check rates).
async fn observe_checks(state: AppState) {
    let mut snaps = state.core.snapshots.clone();
    let mut seen: BTreeMap<(String, String), std::time::SystemTime> = BTreeMap::new();
    loop {
        {
            let snap = snaps.borrow_and_update().clone();
            for (pop, p) in &snap.pops {
                for (check, c) in &p.checks {
                    let Some(last) = &c.last else { continue };
                    let key = (pop.to_string(), check.to_string());
                    if seen.get(&key).is_some_and(|at| *at >= last.at) {
                        continue;
                    }
                    state
                        .metrics
                        .record_check(pop.as_str(), check.as_str(), last.ok, last.took);
                    seen.insert(key, last.at);
                }
            }
        }
        if snaps.changed().await.is_err() {
            return;
        }
    }
}

/// Subscribes to core events and counts them by kind.
async fn count_events(state: AppState) {
    let (reply, rx) = tokio::sync::oneshot::channel();
    if state
        .core
        .inputs
        .send(Input::Subscribe { reply })
        .await
        .is_err()
    {
        return;
    }
    let Ok((_replay, mut live)) = rx.await else {
        return;
    };
    loop {
        match live.recv().await {
            Ok(ev) => state.metrics.record_event(ev.kind.as_str()),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "metrics event counter lagged behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
