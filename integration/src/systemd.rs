//! A real systemd for tests on machines where PID 1 is not systemd: the
//! Debian `systemd` binary started as a user manager (`systemd --user`)
//! with its own runtime and config directories, and the D-Bus bus that
//! manager activates (`dbus.socket`/`dbus.service` from
//! `dbus-user-session`). It speaks the same `org.freedesktop.systemd1`
//! D-Bus API as the system manager, so anypop's `systemd` and `process`
//! (unit) checks talk to it through `DBUS_SYSTEM_BUS_ADDRESS`.
//!
//! systemd refuses to run unless `/run/systemd/system` exists (the sign
//! that the machine booted with systemd). The manager is therefore started
//! in a private mount namespace (`unshare --mount --propagation private`)
//! with a tmpfs over `/run` that has that directory: nothing of the host
//! changes. The manager is stopped by pid (SIGTERM: it stops its units and
//! its bus) when the handle is dropped, also while a test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::lab::{kill_pid, pid_alive, sh};
use crate::wait_until;

/// The systemd binary.
pub const SYSTEMD: &str = "/lib/systemd/systemd";

/// A running user manager. Dropping it stops the manager and its units.
pub struct UserManager {
    child: Child,
    dir: tempfile::TempDir,
}

impl UserManager {
    /// Starts a manager and waits until it answers `systemctl --user`.
    pub fn start() -> Result<UserManager, String> {
        let dir = tempfile::Builder::new()
            .prefix("anypop-systemd-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let runtime = dir.path().join("run");
        let units = dir.path().join("config/systemd/user");
        std::fs::create_dir_all(&units).map_err(|e| format!("mkdir: {e}"))?;
        std::fs::create_dir_all(&runtime).map_err(|e| format!("mkdir: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700));
        let log = std::fs::File::create(dir.path().join("systemd.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        // unshare and sh exec: the child's pid is systemd's.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/systemd/system && exec {SYSTEMD} --user --log-level=notice"
            ))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("SYSTEMD_LOG_TARGET", "console")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn unshare {SYSTEMD} --user: {e}"))?;
        let mgr = UserManager { child, dir };
        // Not `is-system-running`: it answers `offline` wherever the
        // caller's /run lacks /run/systemd/system.
        let state = || mgr.systemctl(&["show", "-p", "SystemState", "--value"]);
        let up = wait_until(Duration::from_secs(30), || {
            state().is_ok_and(|s| matches!(s.trim(), "running" | "degraded"))
        });
        if !up {
            return Err(format!(
                "systemd --user did not come up: {}; log:\n{}",
                state().unwrap_or_else(|e| e),
                std::fs::read_to_string(mgr.dir.path().join("systemd.log")).unwrap_or_default()
            ));
        }
        Ok(mgr)
    }

    /// systemd's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The D-Bus address of the manager's bus (socket-activated on first
    /// use): give it to anypop as `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.runtime_dir().join("bus").display())
    }

    /// A command with this manager's environment (for `systemctl --user`).
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        c
    }

    /// `systemctl --user ARGS`: stdout, or an error with stderr.
    pub fn systemctl(&self, args: &[&str]) -> Result<String, String> {
        sh(self.command("systemctl").arg("--user").args(args))
    }

    /// Writes a unit file and reloads the manager.
    pub fn add_unit(&self, name: &str, content: &str) -> Result<(), String> {
        let path = self.unit_dir().join(name);
        std::fs::write(&path, content).map_err(|e| format!("write {}: {e}", path.display()))?;
        self.systemctl(&["daemon-reload"]).map(|_| ())
    }

    fn unit_dir(&self) -> PathBuf {
        self.dir.path().join("config/systemd/user")
    }

    /// The `MainPID` of a unit (0 when it has none).
    pub fn main_pid(&self, unit: &str) -> Result<i32, String> {
        let out = self.systemctl(&["show", "-p", "MainPID", "--value", unit])?;
        out.trim()
            .parse()
            .map_err(|e| format!("MainPID {out:?}: {e}"))
    }

    /// The `ActiveState` of a unit.
    pub fn active_state(&self, unit: &str) -> Result<String, String> {
        self.systemctl(&["show", "-p", "ActiveState", "--value", unit])
            .map(|s| s.trim().to_string())
    }

    /// The manager's log (what systemd printed).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("systemd.log")).unwrap_or_default()
    }

    /// The directory units and runtime files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let pid = self.pid();
        if std::thread::panicking() {
            eprintln!("---- systemd --user log ----\n{}", self.log());
        }
        // SIGTERM: the manager stops its units (and the bus), then exits.
        kill_pid(pid, libc::SIGTERM);
        if !wait_until(Duration::from_secs(15), || {
            matches!(self.child.try_wait(), Ok(Some(_))) || !pid_alive(pid)
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
