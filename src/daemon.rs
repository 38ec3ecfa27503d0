//! The `run` command: loads the config, starts the core, the health checks,
//! the DNS server, the BGP speaker and the API, and handles signals
//! (SIGHUP reloads, SIGINT/SIGTERM shut down cleanly).
//!
//! Reloading is one code path, [`reload`], shared by SIGHUP and the API
//! ([`reload_hook`]): the file is loaded and validated off the async
//! threads, an invalid one is rejected with every error logged and the
//! running config is kept, a valid one goes to the core, which publishes
//! it in the snapshot. Everything else follows `snapshot.config` on its
//! own — the health checks, the BGP peers, the DNS zones — so nothing here
//! holds a lock or a handle to reconfigure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::api::{self, AppState, Auth};
use crate::bgp;
use crate::config::{self, ConfigErrors};
use crate::core::persist::{self, PersistError};
use crate::core::{Core, CoreHandle, SystemClock};
use crate::dns::{self, DnsStats};
use crate::health;

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

/// The API's reload hook: [`reload`] of `path`.
pub fn reload_hook(path: Option<PathBuf>, core: CoreHandle) -> api::ReloadFn {
    Arc::new(move || {
        let path = path.clone();
        let core = core.clone();
        Box::pin(async move { reload(path.as_deref(), &core).await })
    })
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
    let (handle, core_task) = Core::spawn(config.clone(), overrides, SystemClock);

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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api_task = api_listener.map(|listener| {
        let state = AppState::new(handle.clone(), auth)
            .with_dns_stats(dns_stats.clone())
            .with_bgp(bgp_status)
            .with_reload(reload_hook(path.clone(), handle.clone()));
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
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading configuration");
                let _ = reload(path.as_deref(), &handle).await;
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    checks.stop();
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
