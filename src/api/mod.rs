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
//! from the DTOs and the routes ([`openapi`]).

pub mod auth;
pub mod dto;
pub mod error;
pub mod fleet;
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
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use auth::Auth;
pub use error::ApiError;
pub use metrics::Metrics;

use crate::core::{CoreHandle, Input, Snapshot};

/// Largest accepted request body (admin bodies are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Default limit of concurrent `/v1/events` streams.
pub const MAX_EVENT_STREAMS: usize = 64;

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
    /// Permits for concurrent event streams.
    streams: Arc<tokio::sync::Semaphore>,
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
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
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

    /// Limits concurrent `/v1/events` streams (default [`MAX_EVENT_STREAMS`]).
    pub fn with_max_event_streams(mut self, n: usize) -> AppState {
        self.streams = Arc::new(tokio::sync::Semaphore::new(n));
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
    let writes = writes
        .route_layer(middleware::from_fn_with_state(state.clone(), require_write))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let (routes, _) = reads.merge(writes).merge(open).split_for_parts();
    routes
        .merge(ui::router())
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
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

/// Counts every request by method, route template and status.
async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let start = tokio::time::Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    s.metrics
        .record_api(&method, &route, resp.status().as_u16(), start.elapsed());
    resp
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
/// streams and waits for in-flight requests. Also counts core events into
/// the metrics while it runs.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().ok();
    let counter = tokio::spawn(count_events(state.clone()));
    let observer = tokio::spawn(observe_checks(state.clone()));
    state.readiness.set("api", true);
    info!(listen = ?addr, "API listening");
    let stopper = state.clone();
    let app = router(state.clone());
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopper.stop_streams();
        })
        .await
        .map_err(ServeError::Serve);
    state.readiness.set("api", false);
    counter.abort();
    observer.abort();
    result
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
