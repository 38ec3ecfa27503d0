//! `exec` probe: runs a command (argv, no shell) and succeeds on exit
//! status 0.
//!
//! The command runs in its own process group with stdin and stdout
//! discarded and stderr captured (the first line goes into the detail). If
//! the probe is dropped before the command exits — the check's timeout, or
//! the scheduler stopping — the whole process group is killed with SIGKILL,
//! so a hung script and whatever it started are gone.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::Probed;

/// How much stderr is kept.
const STDERR_LIMIT: usize = 4096;

/// A prepared exec check.
#[derive(Debug)]
pub struct ExecTarget {
    argv: Vec<String>,
}

impl ExecTarget {
    pub fn new(argv: &[String]) -> ExecTarget {
        ExecTarget {
            argv: argv.to_vec(),
        }
    }

    /// Runs the command to completion. Details: `exit 0`,
    /// `exit 1: <first stderr line>`, `killed by signal 9`.
    pub async fn probe(&self) -> Probed {
        let Some((prog, args)) = self.argv.split_first() else {
            return Err("empty command".into());
        };
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {prog:?}: {e}"))?;
        let mut child = GroupGuard::new(child);
        let mut stderr = child.child.stderr.take();

        let mut err_buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 1024];
        let status = loop {
            tokio::select! {
                st = child.child.wait() => break st,
                n = read_some(&mut stderr, &mut chunk) => {
                    match n {
                        Some(n) => keep(&mut err_buf, &chunk[..n]),
                        None => stderr = None,
                    }
                }
            }
        };
        child.reaped = true;
        let status = status.map_err(|e| format!("waiting for {prog:?}: {e}"))?;
        // Collect what the command wrote before exiting without waiting for
        // EOF: a background child may hold the pipe open.
        while stderr.is_some() {
            match tokio::time::timeout(
                Duration::from_millis(20),
                read_some(&mut stderr, &mut chunk),
            )
            .await
            {
                Ok(Some(n)) => keep(&mut err_buf, &chunk[..n]),
                Ok(None) | Err(_) => break,
            }
        }
        describe(status, &err_buf)
    }
}

/// Reads once from stderr; `None` at EOF, on error or without a pipe (then
/// it never completes, so a `select!` waits for the exit instead).
async fn read_some(
    stderr: &mut Option<tokio::process::ChildStderr>,
    buf: &mut [u8],
) -> Option<usize> {
    match stderr {
        Some(s) => match s.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = STDERR_LIMIT.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

fn describe(status: ExitStatus, stderr: &[u8]) -> Probed {
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(stderr);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let head = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => format!("{status}"),
    };
    let detail = match first {
        Some(line) => format!("{head}: {}", truncate(line, 200)),
        None => head,
    };
    if status.success() {
        Ok(detail)
    } else {
        Err(detail)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Kills the child's whole process group when dropped before the child
/// was reaped (the probe timed out or was cancelled).
struct GroupGuard {
    child: Child,
    reaped: bool,
}

impl GroupGuard {
    fn new(child: Child) -> Self {
        GroupGuard {
            child,
            reaped: false,
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if let Some(pid) = self.child.id() {
            if let Ok(pgid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) with a negative pid signals the process
                // group we created for this child (process_group(0) makes
                // its pgid equal to its pid); the child is not reaped yet,
                // so the id cannot have been reused.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
        // kill_on_drop(true) on the Child then lets tokio reap it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Target;
    use crate::model::Probe;

    fn exec(argv: &[&str]) -> Target {
        Target::new(&Probe::Exec {
            command: argv.iter().map(|s| s.to_string()).collect(),
        })
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn true_and_false() {
        let out = exec(&["true"]).run(T).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "exit 0");
        let out = exec(&["false"]).run(T).await;
        assert!(!out.ok);
        assert_eq!(out.detail, "exit 1");
    }

    #[tokio::test]
    async fn exit_code_and_first_stderr_line() {
        let out = exec(&[
            "sh",
            "-c",
            "echo; echo 'backend gone' >&2; echo more >&2; exit 3",
        ])
        .run(T)
        .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "exit 3: backend gone");
    }

    #[tokio::test]
    async fn missing_program() {
        let out = exec(&["/nonexistent/anypop-check"]).run(T).await;
        assert!(!out.ok);
        assert!(out.detail.starts_with("cannot run"), "{}", out.detail);
    }

    #[tokio::test]
    async fn background_child_holding_stderr_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; exit 0", pidfile.display());
        let out = exec(&["sh", "-c", &script]).run(T).await;
        assert!(out.ok, "{out:?}");
        // Leave no sleeper behind from this test.
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// True once `pid` no longer runs (gone, or a zombie waiting for init).
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        // The shell and a grandchild `sleep`, both in the probe's group.
        let script = format!(
            "echo $$ > {p}; sleep 10 & echo $! >> {p}; wait",
            p = pidfile.display()
        );
        let started = std::time::Instant::now();
        let out = exec(&["sh", "-c", &script])
            .run(Duration::from_millis(500))
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "timeout after 500ms");
        assert!(started.elapsed() < Duration::from_secs(5));

        let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "shell and sleep pids: {pids:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !pids.iter().all(|&p| dead(p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "processes still running after timeout: {pids:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
