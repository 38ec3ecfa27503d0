//! `exec` probe: runs a command (argv, no shell) and succeeds on exit
//! status 0.
//!
//! The command runs in its own process group with stdin and stdout
//! discarded, stderr captured (the first line goes into the detail) and an
//! environment of its own: `PATH` and what the check's `pass_env` and `env`
//! name, nothing else of the daemon's. When the command exits, whatever it
//! left running in its group is killed (SIGKILL) before it is reaped: the
//! exit is seen through a pidfd, so the group id cannot have been reused.
//! If the probe is dropped before the command exits — the check's timeout,
//! or the scheduler stopping — the whole group is killed too, so a hung
//! script and whatever it started are gone. This module must not run a
//! shell or pass the daemon's environment on.

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::process::{exit_of, pidfd_open};
use super::Probed;
use crate::model::ExecEnv;

/// `PATH` for a command when the daemon itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much stderr is kept.
const STDERR_LIMIT: usize = 4096;

/// A prepared exec check.
#[derive(Debug)]
pub struct ExecTarget {
    argv: Vec<String>,
    env: Vec<(OsString, OsString)>,
}

impl ExecTarget {
    /// The environment is resolved here, once: the daemon's own does not
    /// change while it runs.
    pub fn new(argv: &[String], env: &ExecEnv) -> ExecTarget {
        ExecTarget {
            argv: argv.to_vec(),
            env: environment(env, |name| std::env::var_os(name)),
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
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {prog:?}: {e}"))?;
        // A pidfd tells when the command has exited without reaping it:
        // its pid, and so its process group's id, stays taken until the
        // leftovers in the group are killed. Without pidfds (Linux < 5.3)
        // the exit is only seen by reaping, and leftovers are not killed
        // after a successful exit.
        let pidfd = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .and_then(|pid| pidfd_open(pid).ok());
        let mut exited = pidfd.as_ref().and_then(|fd| exit_of(fd).ok()).map(Box::pin);
        let mut child = GroupGuard::new(child);
        let mut stderr = child.child.stderr.take();

        let mut err_buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 1024];
        let reaped = loop {
            tokio::select! {
                () = async {
                    match exited.as_mut() {
                        Some(exit) => exit.await,
                        None => std::future::pending().await,
                    }
                } => break None,
                st = child.child.wait(), if exited.is_none() => break Some(st),
                n = read_some(&mut stderr, &mut chunk) => match n {
                    Some(n) => keep(&mut err_buf, &chunk[..n]),
                    None => stderr = None,
                },
            }
        };
        let status = match reaped {
            Some(status) => status,
            None => {
                // Exited, not reaped: the group is still ours.
                child.kill_group();
                child.child.wait().await
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

/// The command's environment: `PATH` (the daemon's, or [`DEFAULT_PATH`]),
/// the daemon's variables named in `pass` (those it has), then `set`.
/// Later entries replace earlier ones of the same name.
fn environment(
    env: &ExecEnv,
    daemon: impl Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    let mut put = |k: &str, v: OsString| {
        out.retain(|(name, _)| name != k);
        out.push((k.into(), v));
    };
    put(
        "PATH",
        daemon("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
    );
    for name in &env.pass {
        if let Some(v) = daemon(name) {
            put(name, v);
        }
    }
    for (name, value) in &env.set {
        put(name, value.into());
    }
    out
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

impl GroupGuard {
    /// SIGKILL to the child's whole process group. Only while the child is
    /// not reaped: until then its pid, which is the group's id, cannot
    /// have been reused.
    fn kill_group(&self) {
        if self.reaped {
            return;
        }
        if let Some(pgid) = self.child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals the process
            // group we created for this child (process_group(0) makes its
            // pgid equal to its pid); the child is not reaped yet, so the
            // id cannot have been reused.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_group();
        // kill_on_drop(true) on the Child then lets tokio reap it.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Target;
    use crate::model::{ExecEnv, Probe};

    fn exec(argv: &[&str]) -> Target {
        exec_with(argv, ExecEnv::default())
    }

    fn exec_with(argv: &[&str], env: ExecEnv) -> Target {
        Target::new(&Probe::Exec {
            command: argv.iter().map(|s| s.to_string()).collect(),
            env,
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

    /// Waits until every pid is dead; false after 5 s.
    async fn all_dead(pids: &[i32]) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !pids.iter().all(|&p| dead(p)) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn read_pids(path: &std::path::Path) -> Vec<i32> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn background_children_are_killed_when_the_command_exits() {
        for (status, detail) in [(0, "exit 0: started"), (2, "exit 2: started")] {
            let dir = tempfile::tempdir().unwrap();
            let pidfile = dir.path().join("pid");
            // The background sleep also holds stderr open: the probe must
            // not wait for its EOF either.
            let script = format!(
                "sleep 30 & echo $! > {}; echo started >&2; exit {status}",
                pidfile.display()
            );
            let out = exec(&["sh", "-c", &script]).run(T).await;
            assert_eq!((out.ok, out.detail.as_str()), (status == 0, detail));
            let pids = read_pids(&pidfile);
            let gone = all_dead(&pids).await;
            if !gone {
                // Leave no sleeper behind from this test.
                unsafe { libc::kill(pids[0], libc::SIGKILL) };
            }
            assert!(gone, "exit {status}: background child {pids:?} still runs");
        }
    }

    #[tokio::test]
    async fn the_daemon_environment_is_not_inherited() {
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into());
        // Checks PATH, then prints the names of its whole environment (but
        // what the shell sets itself) to stderr.
        let script = format!(
            "[ \"$PATH\" = '{path}' ] || {{ echo \"PATH=$PATH\" >&2; exit 3; }}; \
             env | cut -d= -f1 | grep -vx -e PWD -e SHLVL -e _ | sort | tr '\\n' ' ' >&2; exit 1"
        );
        let argv = ["sh", "-c", script.as_str()];
        let out = exec(&argv).run(T).await;
        assert_eq!(out.detail, "exit 1: PATH");

        let env = ExecEnv {
            pass: vec!["ANYPOP_SURELY_UNSET_VARIABLE".into()],
            set: vec![("CHECK_TARGET".into(), "db1".into())],
        };
        let out = exec_with(&argv, env).run(T).await;
        assert_eq!(out.detail, "exit 1: CHECK_TARGET PATH");
    }

    #[test]
    fn environment_is_path_then_passed_then_set() {
        let daemon = |name: &str| match name {
            "PATH" => Some(OsString::from("/opt/bin:/usr/bin")),
            "HOME" => Some(OsString::from("/root")),
            "LANG" => Some(OsString::from("C.UTF-8")),
            _ => None,
        };
        let pairs = |v: Vec<(OsString, OsString)>| -> Vec<(String, String)> {
            v.into_iter()
                .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
                .collect()
        };
        let own = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            pairs(environment(&ExecEnv::default(), daemon)),
            [own("PATH", "/opt/bin:/usr/bin")]
        );
        let env = ExecEnv {
            pass: vec!["LANG".into(), "MISSING".into()],
            set: vec![own("LANG", "C"), own("TARGET", "db1")],
        };
        assert_eq!(
            pairs(environment(&env, daemon)),
            [
                own("PATH", "/opt/bin:/usr/bin"),
                own("LANG", "C"),
                own("TARGET", "db1")
            ]
        );
        // No PATH in the daemon: the standard one; `env` may set its own.
        assert_eq!(
            pairs(environment(&ExecEnv::default(), |_| None)),
            [own("PATH", DEFAULT_PATH)]
        );
        let env = ExecEnv {
            pass: vec![],
            set: vec![own("PATH", "/bin")],
        };
        assert_eq!(pairs(environment(&env, |_| None)), [own("PATH", "/bin")]);
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

        let pids = read_pids(&pidfile);
        assert_eq!(pids.len(), 2, "shell and sleep pids: {pids:?}");
        assert!(
            all_dead(&pids).await,
            "processes still running after timeout: {pids:?}"
        );
    }
}
