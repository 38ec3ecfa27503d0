//! Process-level test harness: finds the anypop binary, starts it as a child
//! process with a temporary config, and kills it (by pid) when dropped, so
//! nothing outlives a test, also on failure. Lab helpers for network
//! namespaces and real routers live in submodules.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the `anypop` binary the tests run: `$ANYPOP_BIN` if set,
/// otherwise `target/<profile>/anypop`, which is (re)built once per test
/// process with `cargo build --bin anypop` so a test never runs a stale or
/// missing binary (`cargo test` only builds a package's binaries for that
/// package's own tests).
pub fn anypop_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ANYPOP_BIN") {
        return PathBuf::from(p);
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test-binary> -> target/<profile>/anypop;
            // a tool of this crate (target/<profile>/<bin>) likewise.
            let exe = std::env::current_exe().expect("current_exe");
            let parent = exe.parent().expect("binary lives in target/<profile>");
            let dir = if parent.file_name().is_some_and(|n| n == "deps") {
                parent.parent().expect("deps lives in target/<profile>")
            } else {
                parent
            };
            let release = dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "anypop", "--bin", "anypop"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            // Without the variables `cargo test` sets for this process:
            // build scripts track some of them (ring's: CARGO_PKG_NAME,
            // CARGO_MANIFEST_DIR, OUT_DIR, ...), so seeing them would
            // rebuild ring, rustls and anypop here, while other tests run
            // and link against those files, and again on the next plain
            // `cargo build`.
            for (key, _) in std::env::vars_os() {
                if set_by_cargo_test(&key.to_string_lossy()) {
                    cmd.env_remove(&key);
                }
            }
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build for the anypop binary");
            assert!(status.success(), "cargo build --bin anypop failed");
            let bin = dir.join("anypop");
            assert!(
                bin.exists(),
                "{} not found after cargo build",
                bin.display()
            );
            bin
        })
        .clone()
}

/// Whether cargo sets `key` for the test processes it runs (the package's
/// metadata, paths and build outputs; `CARGO` itself is kept).
fn set_by_cargo_test(key: &str) -> bool {
    matches!(
        key,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_MANIFEST_LINKS"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
            | "OUT_DIR"
    ) || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_EXE_")
}

/// A free TCP port on 127.0.0.1 (also free for UDP at the time of asking).
/// Never returns the same port twice in one test process, so two ports
/// asked for one config (API and DNS, say) always differ.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..1000 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free port found");
}

/// A running anypop child process. Output is collected for assertions and
/// printed if the test fails; the process is killed on drop.
pub struct Anypop {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Anypop {
    /// Starts `anypop <args>` with its stdout and stderr captured.
    pub fn start(args: &[&str]) -> Anypop {
        Self::start_cmd(Command::new(anypop_bin()).args(args))
    }

    /// Starts `anypop run --config <config>`.
    pub fn run_config(config: &Path) -> Anypop {
        Self::start_cmd(
            Command::new(anypop_bin())
                .arg("run")
                .arg("--config")
                .arg(config),
        )
    }

    /// [`Anypop::run_config`], then waits until `GET probe` (`/healthz`,
    /// `/readyz`) on the API at `api` answers 200; panics with the log
    /// after `timeout`.
    pub fn start_ready(config: &Path, api: &str, probe: &str, timeout: Duration) -> Anypop {
        let p = Self::run_config(config);
        p.wait_http_ok(api, probe, timeout);
        p
    }

    /// Waits until `GET path` on the API at `api` answers 200; panics with
    /// the log after `timeout`.
    pub fn wait_http_ok(&self, api: &str, path: &str, timeout: Duration) {
        let ok = wait_until(timeout, || {
            http(api, "GET", path, None).is_ok_and(|(s, _)| s == 200)
        });
        assert!(
            ok,
            "GET {path} on {api} never answered 200:\n{}",
            self.log()
        );
    }

    /// Starts a prepared command (for `ip netns exec ... anypop`).
    pub fn start_cmd(cmd: &mut Command) -> Anypop {
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn anypop");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        Anypop { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let ok = wait_until(timeout, || self.log().contains(needle));
        assert!(
            ok,
            "timed out waiting for {needle:?} in anypop log:\n{}",
            self.log()
        );
    }

    /// Sends a signal (libc constant) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Anypop {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- anypop log ----\n{}\n--------------------", self.log());
        }
    }
}

/// A child process whose stdout lines are collected as they arrive (for
/// streams such as `anypop ctl events --json`). Killed on drop.
pub struct JsonLines {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl JsonLines {
    /// Spawns `cmd` with stdout piped (stderr discarded).
    pub fn spawn(cmd: &mut Command) -> JsonLines {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(mut v) = l.lock() {
                        v.push(line);
                    }
                }
            });
        }
        JsonLines { child, lines }
    }

    /// Every line received so far that parses as JSON, oldest first.
    pub fn values(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .map(|l| {
                l.iter()
                    .filter_map(|s| serde_json::from_str(s).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    wait_until_every(timeout, Duration::from_millis(20), f)
}

/// [`wait_until`] with `every` between polls, for checks that cost the
/// machine something (listing 100,000 routes).
pub fn wait_until_every(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Polls `f` like [`wait_until`] until it returns `Some`: that value, or
/// `None` when `timeout` passes first.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut found = None;
    wait_until(timeout, || {
        found = f();
        found.is_some()
    });
    found
}

/// Writes `contents` to `name` inside `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write file");
    p
}

/// A config for health-check tests: node `node` in PoP `fra1`
/// (203.0.113.0/24, no BGP peers, no DNS), the API on a free loopback
/// port, and `checks` (YAML list items indented six spaces) as fra1's
/// checks.
pub fn checks_config(node: &str, checks: &str) -> String {
    let api = free_port();
    format!(
        r#"
node:
  name: {node}
  pop: fra1
  router_id: 192.0.2.1
  asn: 65001
api:
  listen: 127.0.0.1:{api}
dns:
  listen: []
pops:
  - name: fra1
    prefixes: [203.0.113.0/24]
    checks:
{checks}
"#
    )
}

/// The `dns` section of the process-test configs: the server on `listen`
/// (`ip:port`) and zone `example.test.` with its NS host `ns1`
/// (192.0.2.53), then `records` (YAML list items indented eight spaces,
/// each line ending in a newline).
pub fn test_zone(listen: &str, records: &str) -> String {
    format!(
        r#"dns:
  listen: ["{listen}"]
  zones:
    - origin: example.test.
      ns: [ns1.example.test.]
      soa: {{rname: hostmaster@example.test, serial: 1}}
      records:
        - {{name: ns1, type: A, values: [192.0.2.53]}}
{records}"#
    )
}

/// Runs `anypop ctl --api <api> --token-file <token_file> <args>` with no
/// `ANYPOP_API`/`ANYPOP_TOKEN` from the environment; (exit code, stdout,
/// stderr).
pub fn ctl(api: &str, token_file: &Path, args: &[&str]) -> (i32, String, String) {
    run(Command::new(anypop_bin())
        .args(["ctl", "--api", api, "--token-file"])
        .arg(token_file)
        .args(args)
        .env_remove("ANYPOP_TOKEN")
        .env_remove("ANYPOP_API"))
}

/// Runs a command to completion and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// True if `name` is found on PATH.
pub fn have(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Returns false (after printing why) when a program a test needs is
/// missing, so the test can return early; with `ANYPOP_LAB_REQUIRED=1` (set
/// by `integration/run-tests.sh` as root) a missing program fails the test
/// instead. `install` says how to get them.
pub fn tools_available(test: &str, programs: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !have(p) && !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIPPED {test}: needs {} ({install})", missing.join(", "));
    if std::env::var("ANYPOP_LAB_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{msg}, and ANYPOP_LAB_REQUIRED=1");
    }
    eprintln!("{msg}");
    false
}

pub mod demo;
pub mod dns;
pub mod http_client;
pub mod lab;
pub mod systemd;
pub mod tls;
pub mod webdriver;

/// One HTTP/1.1 request without a body, with an optional bearer token
/// (through [`http_client::request`]): (status, body as text).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    // The API refuses a POST that does not say JSON (even without a body).
    if method == "POST" {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http_client::request(addr, method, path, &headers, b"")?;
    Ok((r.status, r.text()))
}

/// Like [`http`], with an optional JSON body and `timeout` bounding the
/// connect and each read ([`http_client::request_within`]).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.unwrap_or("").as_bytes();
    let r = http_client::request_within(addr, method, path, &headers, body, timeout)?;
    Ok((r.status, r.text()))
}

/// A metric value from an exposition (exact series match).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
