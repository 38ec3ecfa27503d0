//! `process` probe: is the service's process alive. The process is named
//! by a pid file or by the main PID of a systemd service.
//!
//! Each probe reads the pid afresh (so a restarted process, with a new pid
//! in the file or a new `MainPID`, is picked up by the next probe) and
//! opens a pidfd on it: a pid that does not exist, or whose process has
//! exited (a zombie not yet reaped), fails. The pidfd of a live process is
//! handed to [`ProcessTarget::watch`], which waits on it: the moment the
//! process exits, the check is woken and probes at once. For a unit, the
//! unit's `PropertiesChanged` signals wake the check too (a new main PID);
//! for a pid file, the scheduler's inotify watch does (a rewritten file).
//!
//! anypop must see the service's pid namespace (no `PrivatePIDs`, same
//! container). On kernels without `pidfd_open` (before 5.3) the probe
//! falls back to `/proc/<pid>/stat` and the check works on its interval.
//! Deciding a verdict is the core's; this module reports one probe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};
use tokio::sync::{watch, Notify};

use super::systemd::UnitClient;
use super::Probed;

/// Where the pid comes from.
pub enum PidSource {
    File(PathBuf),
    Unit(UnitClient),
}

/// The process the watcher waits on: its pid and a pidfd.
type Tracked = Option<(i32, Arc<OwnedFd>)>;

/// A prepared process check.
pub struct ProcessTarget {
    source: PidSource,
    tracked: watch::Sender<Tracked>,
}

/// Pid files longer than this are not pid files.
const PID_FILE_LIMIT: u64 = 128;

impl ProcessTarget {
    pub fn new(source: PidSource) -> ProcessTarget {
        ProcessTarget {
            source,
            tracked: watch::Sender::new(None),
        }
    }

    /// The pid file, for the inotify watch.
    pub fn pid_file(&self) -> Option<&Path> {
        match &self.source {
            PidSource::File(p) => Some(p),
            PidSource::Unit(_) => None,
        }
    }

    /// Details: `pid 4242 running (/run/nginx.pid)`,
    /// `pid 4242 exited (main PID of nginx.service)`,
    /// `cannot read /run/nginx.pid: No such file or directory`,
    /// `nginx.service has no main process`.
    pub async fn probe(&self) -> Probed {
        let (pid, origin) = match &self.source {
            PidSource::File(path) => (read_pid_file(path).await?, path.display().to_string()),
            PidSource::Unit(unit) => {
                let pid = unit.main_pid().await?;
                let pid = i32::try_from(pid)
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("{} has no main process", unit.unit))?;
                (pid, format!("main PID of {}", unit.unit))
            }
        };
        match pidfd_open(pid) {
            Ok(fd) => {
                if has_exited(&fd) {
                    return Err(format!("pid {pid} exited ({origin})"));
                }
                let fd = Arc::new(fd);
                self.tracked.send_if_modified(|t| {
                    if t.as_ref().is_some_and(|(p, _)| *p == pid) {
                        false
                    } else {
                        *t = Some((pid, fd));
                        true
                    }
                });
                Ok(format!("pid {pid} running ({origin})"))
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(format!("pid {pid} not running ({origin})"))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => match proc_state(pid) {
                Some(s) if s != 'Z' && s != 'X' => Ok(format!("pid {pid} running ({origin})")),
                Some(_) => Err(format!("pid {pid} exited ({origin})")),
                None => Err(format!("pid {pid} not running ({origin})")),
            },
            Err(e) => Err(format!("pidfd_open({pid}): {e}")),
        }
    }

    /// Waits on the pidfd of the last process a probe found alive and
    /// calls `wake.notify_one()` when it exits; for a unit, also follows
    /// the unit's signals (a new main PID, the unit stopping). Runs until
    /// cancelled.
    pub async fn watch(&self, wake: Arc<Notify>, retry: Duration) {
        let exits = wait_for_exits(self.tracked.subscribe(), wake.clone());
        match &self.source {
            PidSource::File(_) => exits.await,
            PidSource::Unit(unit) => {
                tokio::join!(exits, unit.watch(wake, retry));
            }
        }
    }
}

async fn wait_for_exits(mut rx: watch::Receiver<Tracked>, wake: Arc<Notify>) {
    loop {
        let tracked = rx.borrow_and_update().clone();
        if let Some((pid, fd)) = tracked {
            match exit_of(&fd) {
                Ok(exit) => {
                    tokio::select! {
                        _ = exit => {
                            tracing::debug!(pid, "process exited");
                            wake.notify_one();
                        }
                        _ = rx.changed() => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(pid, error = %e, "cannot wait on the process's pidfd; the check falls back to its interval")
                }
            }
        }
        // Wait for the next process a probe finds.
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A future that completes when the process of `fd` exits.
pub(super) fn exit_of(fd: &OwnedFd) -> io::Result<impl std::future::Future<Output = ()>> {
    // SAFETY: the AsyncFd owns this duplicate descriptor and nothing
    // else closes or replaces it while registered.
    let afd = unsafe { AsyncFd::register_with_interest(fd.try_clone()?, Interest::READABLE)? };
    Ok(async move {
        let _ = afd.readable().await;
    })
}

/// Parses the content of a pid file: the first line, a positive number.
pub fn parse_pid(path: &Path, content: &[u8]) -> Result<i32, String> {
    let text = String::from_utf8_lossy(content);
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(format!("no pid in {}", path.display()));
    }
    match first.parse::<i32>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "{}: {:?} is not a pid",
            path.display(),
            first.chars().take(32).collect::<String>()
        )),
    }
}

async fn read_pid_file(path: &Path) -> Result<i32, String> {
    let read = async {
        let f = tokio::fs::File::open(path).await?;
        let mut buf = Vec::new();
        f.take(PID_FILE_LIMIT).read_to_end(&mut buf).await?;
        Ok::<_, io::Error>(buf)
    };
    let content = read
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_pid(path, &content)
}

pub(super) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new
    // descriptor or -1; nothing else is touched.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// True if the process of `fd` has exited (the pidfd is readable).
fn has_exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`...), if any.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn pid_files_hold_one_positive_number() {
        let p = Path::new("/run/x.pid");
        assert_eq!(parse_pid(p, b"4242\n"), Ok(4242));
        assert_eq!(parse_pid(p, b"  17  \nsecond line\n"), Ok(17));
        assert_eq!(parse_pid(p, b""), Err("no pid in /run/x.pid".into()));
        assert_eq!(parse_pid(p, b"\n12\n"), Err("no pid in /run/x.pid".into()));
        assert_eq!(
            parse_pid(p, b"abc"),
            Err("/run/x.pid: \"abc\" is not a pid".into())
        );
        assert!(parse_pid(p, b"0").is_err());
        assert!(parse_pid(p, b"-5").is_err());
        assert!(parse_pid(p, b"99999999999").is_err());
        assert!(parse_pid(p, &[0xff, 0xfe]).is_err());
    }

    const T: Duration = Duration::from_secs(5);

    /// A real process: alive, then killed; the watcher wakes on its exit
    /// without any probe running, and the next probe fails.
    #[tokio::test]
    async fn pidfd_notices_the_exit_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("svc.pid");
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();

        let target = Arc::new(ProcessTarget::new(PidSource::File(pid_file.clone())));
        let wake = Arc::new(Notify::new());
        let watcher = crate::health::AbortOnDrop(tokio::spawn({
            let (t, w) = (target.clone(), wake.clone());
            async move { t.watch(w, T).await }
        }));
        let out = target.probe().await;
        assert_eq!(
            out,
            Ok(format!("pid {pid} running ({})", pid_file.display()))
        );
        tokio::task::yield_now().await;

        child.start_kill().unwrap();
        tokio::time::timeout(T, wake.notified())
            .await
            .expect("woken by the exit");
        // Not reaped yet: a zombie counts as exited.
        let out = target.probe().await;
        assert_eq!(
            out,
            Err(format!("pid {pid} exited ({})", pid_file.display()))
        );
        child.wait().await.unwrap();
        let out = target.probe().await.unwrap_err();
        assert!(out.starts_with(&format!("pid {pid} ")), "{out}");

        // A restarted process (new pid in the file) is picked up and
        // watched in turn.
        let mut again = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid2 = again.id().unwrap();
        std::fs::write(&pid_file, format!("{pid2}\n")).unwrap();
        assert!(target.probe().await.is_ok());
        tokio::task::yield_now().await;
        again.start_kill().unwrap();
        tokio::time::timeout(T, wake.notified())
            .await
            .expect("woken by the second exit");
        again.wait().await.unwrap();
        drop(watcher);
    }

    #[tokio::test]
    async fn missing_and_bad_pid_files_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.pid");
        let t = ProcessTarget::new(PidSource::File(path.clone()));
        let err = t.probe().await.unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
        std::fs::write(&path, "garbage").unwrap();
        let err = t.probe().await.unwrap_err();
        assert!(err.ends_with("\"garbage\" is not a pid"), "{err}");
        // A pid that does not exist (above the kernel's pid_max).
        std::fs::write(&path, "2147483000").unwrap();
        let err = t.probe().await.unwrap_err();
        assert!(err.starts_with("pid 2147483000 not running"), "{err}");
    }
}
