//! The `run` command: loads the config, starts the core, the health checks,
//! the DNS server, the BGP speaker and the API, and handles signals
//! (SIGHUP reloads, SIGINT/SIGTERM shut down cleanly).
//!
//! Reloading is one code path, [`reload`], shared by SIGHUP and the API
//! (both through [`Reloads`], which also tells systemd and counts the
//! outcome): the file is loaded and validated off the async threads, an
//! invalid one is rejected with every error logged and the running config
//! is kept, a valid one goes to the core, which publishes it in the
//! snapshot. Everything else follows `snapshot.config` on its own — the
//! health checks, the BGP peers, the DNS zones — so nothing here holds a
//! lock or a handle to reconfigure.
//!
//! Under systemd (`Type=notify`) it reports through [`crate::systemd`]:
//! READY=1 once the DNS and API listeners are bound, the BGP speaker and
//! the checks are started and the core has published its first snapshot;
//! a STATUS= line whenever the summary changes; RELOADING=1 / READY=1
//! around every reload; STOPPING=1 on shutdown. The core pings the
//! watchdog itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{self, AppState, Auth};
use crate::bgp::{self, StatusMap};
use crate::config::{self, ConfigErrors};
use crate::core::persist::{self, PersistError};
use crate::core::{Core, CoreHandle, SystemClock, Watchdog};
use crate::dns::{self, DnsStats};
use crate::health;
use crate::systemd::{self, Notifier};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration")]
    Config(ConfigErrors),
    #[error("cannot load admin state (fix or remove the file to start): {0}")]
    State(#[from] PersistError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Dns(#[from] dns::DnsError),
    #[error("{0}")]
    Api(#[from] api::ServeError),
    #[error("api.token_file: {0}")]
    Auth(#[from] api::auth::AuthError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Reloads the config file at `path` and hands it to the core, or says why
/// not: the new snapshot version, or the list of errors (each also logged).
/// The one reload path: SIGHUP and `POST /v1/reload` both call this.
pub async fn reload(path: Option<&Path>, core: &CoreHandle) -> Result<u64, Vec<String>> {
    let Some(path) = path else {
        let msg = "running the built-in default config: there is no file to reload".to_string();
        warn!("reload rejected: {msg}");
        return Err(vec![msg]);
    };
    let file = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || config::load(&file)).await;
    let config = match loaded {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(errors)) => {
            let list: Vec<String> = errors.to_string().lines().map(str::to_string).collect();
            for e in &list {
                error!("reload: {e}");
            }
            error!(
                "reload of {} rejected ({} errors): keeping the running config",
                path.display(),
                list.len()
            );
            return Err(list);
        }
        Err(e) => {
            let msg = format!("the config loader failed: {e}");
            error!("reload of {} rejected: {msg}", path.display());
            return Err(vec![msg]);
        }
    };
    let version = core.reload(config).await.map_err(|e| vec![e.to_string()])?;
    info!(
        "configuration {} reloaded (snapshot {version})",
        path.display()
    );
    Ok(version)
}

/// The reloads of a running process: [`reload`] of its config file,
/// bracketed by systemd's RELOADING=1 and READY=1 (with a STATUS= line
/// that says when the file was rejected) and counted in `/metrics`.
/// SIGHUP calls [`Reloads::run`], `POST /v1/reload` its [`Reloads::hook`].
#[derive(Clone)]
pub struct Reloads {
    path: Option<PathBuf>,
    core: CoreHandle,
    /// Told a reload is under way, and when it is done.
    notify: Arc<Notifier>,
    /// Where the outcome of each reload is counted.
    metrics: Arc<api::Metrics>,
    /// The BGP sessions, for the STATUS= line.
    peers: watch::Receiver<StatusMap>,
}

impl Reloads {
    /// Reloads of `path` into `core`, reported nowhere else (no systemd,
    /// metrics of their own): what tests of the reload path need.
    pub fn new(path: Option<PathBuf>, core: CoreHandle) -> Reloads {
        Reloads {
            path,
            core,
            notify: Arc::new(Notifier::disabled()),
            metrics: Arc::new(api::Metrics::new()),
            peers: watch::channel(StatusMap::new()).1,
        }
    }

    /// Also tells `notify` about every reload, counts them in `metrics`
    /// and names the sessions of `peers` in the status line.
    pub fn reporting(
        self,
        notify: Arc<Notifier>,
        metrics: Arc<api::Metrics>,
        peers: watch::Receiver<StatusMap>,
    ) -> Reloads {
        Reloads {
            notify,
            metrics,
            peers,
            ..self
        }
    }

    /// Reloads once: the new snapshot version or the list of errors.
    pub async fn run(&self) -> Result<u64, Vec<String>> {
        self.notify.reloading();
        let result = reload(self.path.as_deref(), &self.core).await;
        self.metrics.record_reload(result.is_ok());
        let summary = self.status_line();
        match &result {
            Ok(_) => self.notify.ready(&summary),
            Err(errors) => self.notify.ready(&format!(
                "reload rejected ({} errors), previous configuration kept; {summary}",
                errors.len()
            )),
        }
        result
    }

    /// The API's reload hook: [`Reloads::run`].
    pub fn hook(&self) -> api::ReloadFn {
        let reloads = self.clone();
        Arc::new(move || {
            let reloads = reloads.clone();
            Box::pin(async move { reloads.run().await })
        })
    }

    /// The one-line summary for systemd's STATUS=.
    fn status_line(&self) -> String {
        let snap = self.core.snapshots.borrow().clone();
        let peers = self.peers.borrow().clone();
        systemd::status_line(&snap, &peers)
    }
}

/// Loads persisted admin overrides. A corrupt file stops the start unless
/// `node.on_corrupt_state: start_empty`: then it is moved aside (kept for
/// inspection, never overwritten) and anypop starts with no overrides.
fn load_admin_state(
    dir: &std::path::Path,
    start_on_corrupt: bool,
) -> Result<BTreeMap<crate::model::PopName, crate::core::admin::Override>, RunError> {
    match persist::remove_stale_temp_files(dir) {
        Ok(removed) => {
            for p in removed {
                warn!(
                    "removed {}, left by a save that was interrupted",
                    p.display()
                );
            }
        }
        Err(e) => warn!("cannot clear stale temp files in {}: {e}", dir.display()),
    }
    match persist::load(dir) {
        Err(e @ PersistError::Corrupt { .. }) if start_on_corrupt => {
            let path = persist::state_path(dir);
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = path.with_extension(format!("json.corrupt-{stamp}"));
            std::fs::rename(&path, &aside)?;
            error!(
                "{e}; on_corrupt_state is start_empty: moved it to {} and starting with NO admin overrides (drains and disables are lost)",
                aside.display()
            );
            Ok(BTreeMap::new())
        }
        other => Ok(other?),
    }
}

/// Sends systemd a STATUS= line whenever the summary changes (PoP states,
/// prefixes announced, BGP sessions), at most once a second.
async fn report_status(reloads: Reloads) {
    let mut snaps = reloads.core.snapshots.clone();
    let mut peers = reloads.peers.clone();
    let mut last = String::new();
    loop {
        let line = reloads.status_line();
        if line != last {
            reloads.notify.status(&line);
            last = line;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        tokio::select! {
            r = snaps.changed() => if r.is_err() { return },
            r = peers.changed() => if r.is_err() { return },
        }
    }
}

/// Runs the controller until SIGINT or SIGTERM.
pub async fn run(path: Option<PathBuf>) -> Result<(), RunError> {
    let config = match &path {
        Some(p) => config::load(p).map_err(RunError::Config)?,
        None => config::default_config(),
    };
    let config = Arc::new(config);
    match &path {
        Some(p) => info!("anypop {} starting with {}", env!("CARGO_PKG_VERSION"), p.display()),
        None => info!(
            "anypop {} starting with the built-in default config (see `anypop print-default-config`)",
            env!("CARGO_PKG_VERSION")
        ),
    }
    let overrides = match &config.node.state_dir {
        Some(dir) => load_admin_state(dir, config.node.start_on_corrupt_state)?,
        None => BTreeMap::new(),
    };
    // Signals first, so a SIGHUP or SIGTERM during start-up is not fatal.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let auth = Auth::from_config(&config.api)?;
    let notify = Arc::new(Notifier::from_env());
    let watchdog = notify.watchdog_interval().map(|every| {
        let n = notify.clone();
        info!("systemd watchdog on: the core pings every {every:?}");
        Watchdog::new(every, move || n.watchdog())
    });
    let (handle, core_task) = Core::spawn_watched(config.clone(), overrides, SystemClock, watchdog);

    // DNS first: a port that is taken fails the start with a clear error.
    let dns_stats = DnsStats::new();
    let dns_server = if config.dns.listen.is_empty() {
        None
    } else {
        Some(dns::serve(config.clone(), handle.snapshots.clone(), dns_stats.clone()).await?)
    };
    let api_listener = match config.api.listen {
        Some(addr) => Some(api::bind(addr).await?),
        None => None,
    };
    let speaker = bgp::spawn(handle.snapshots.clone());
    let bgp_status = speaker.status();
    let mut checks = health::supervise(handle.clone());
    let metrics = Arc::new(api::Metrics::new());
    let reloads = Reloads::new(path, handle.clone()).reporting(
        notify.clone(),
        metrics.clone(),
        bgp_status.clone(),
    );
    let fleet_clients = crate::fleet::Clients::default();
    let pullers = crate::fleet::supervise(handle.clone(), fleet_clients.clone());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api_task = api_listener.map(|listener| {
        let state = AppState::new(handle.clone(), auth)
            .with_metrics(metrics.clone())
            .with_api_config(&config.api)
            .with_dns_stats(dns_stats.clone())
            .with_bgp(bgp_status)
            .with_fleet_clients(fleet_clients.clone())
            .with_reload(reloads.hook());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = api::serve_on(listener, state, shutdown).await {
                error!("{e}");
            }
        })
    });

    info!(
        node = %config.node.name,
        pops = config.pops.len(),
        "anypop running: SIGHUP reloads, SIGTERM/SIGINT stop"
    );
    notify.ready(&reloads.status_line());
    let status_task = notify
        .enabled()
        .then(|| tokio::spawn(report_status(reloads.clone())));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading configuration");
                let _ = reloads.run().await;
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    notify.stopping();
    if let Some(t) = status_task {
        t.abort();
    }
    checks.stop();
    drop(pullers);
    speaker.shutdown().await;
    let _ = stop_tx.send(true);
    if let Some(t) = api_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    if let Some(d) = dns_server {
        d.shutdown();
    }
    core_task.abort();
    info!("anypop stopped");
    Ok(())
}
