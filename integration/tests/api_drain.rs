//! The operator path end to end with the real binary: `anypop ctl` drains a
//! PoP while `anypop ctl events` shows each choreography step in order, the
//! drain survives `kill -9` and a restart (admin state file), undrain brings
//! the PoP back; auth and metrics over real HTTP; and a bounded load test of
//! `GET /v1/state` while a check flaps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anypop_integration::{
    anypop_bin, ctl, free_port, http, metric, run, test_zone, wait_until, write_file, Anypop,
    JsonLines,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
const TOKEN: &str = "integration-token-5f2c";

struct Lab {
    dir: tempfile::TempDir,
    config: PathBuf,
    api: String,
    dns: u16,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_port = free_port();
        let dns = free_port();
        let token = write_file(dir.path(), "token", &format!("{TOKEN}\n"));
        let state = dir.path().join("state");
        let cfg = format!(
            r#"
node:
  name: api-test
  pop: ams
  router_id: 192.0.2.1
  asn: 64512
  state_dir: {state}
api:
  listen: 127.0.0.1:{api_port}
  token_file: {token}
pops:
  - name: ams
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.10]
    checks:
      - {{name: maint, type: file, path: {ams_maint}, healthy_when: absent, rise: 1, fall: 1}}
    drain: {{dns_wait: 1s, settle: 1s}}
  - name: fra
    prefixes: [203.0.113.0/24]
    addresses: [198.51.100.10]
    checks:
      - {{name: maint, type: file, path: {fra_maint}, healthy_when: absent, rise: 1, fall: 1}}
{zone}"#,
            zone = test_zone(
                &format!("127.0.0.1:{dns}"),
                "        - name: www\n          ttl: 30\n          steer: {policy: failover, pops: [ams, fra]}\n",
            ),
            state = state.display(),
            token = token.display(),
            ams_maint = dir.path().join("ams-maint").display(),
            fra_maint = dir.path().join("fra-maint").display(),
        );
        let config = write_file(dir.path(), "anypop.yaml", &cfg);
        Lab {
            dir,
            config,
            api: format!("127.0.0.1:{api_port}"),
            dns,
        }
    }

    fn start(&self) -> Anypop {
        Anypop::start_ready(&self.config, &self.api, "/readyz", T)
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn maint(&self, pop: &str) -> PathBuf {
        self.dir.path().join(format!("{pop}-maint"))
    }

    /// Runs `anypop ctl --api ... <args>`; (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        ctl(&self.api, &self.token_file(), args)
    }

    fn pop(&self, name: &str) -> Value {
        let (code, out, err) = self.ctl(&["pop", name, "--json"]);
        assert_eq!(code, 0, "ctl pop {name}: {err}");
        serde_json::from_str(&out).expect("ctl --json prints JSON")
    }

    fn wait_pop(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(T, || {
            last = self.pop(name);
            f(&last)
        });
        assert!(ok, "pop {name} never became {what}: {last:#}");
        last
    }
}

/// `anypop ctl events` as a child process, its stdout lines collected.
struct EventWatcher(JsonLines);

impl EventWatcher {
    fn start(lab: &Lab, extra: &[&str]) -> EventWatcher {
        EventWatcher(JsonLines::spawn(
            Command::new(anypop_bin())
                .args(["ctl", "--api", &lab.api, "events", "--json"])
                .args(extra),
        ))
    }

    /// Waits until the replay has arrived: the subscription is live, so
    /// nothing that happens from now on is missed.
    fn wait_live(&self) {
        let ok = wait_until(T, || !self.messages().is_empty());
        assert!(ok, "ctl events printed nothing");
    }

    fn messages(&self) -> Vec<Value> {
        self.0.values()
    }

    fn wait_for(&self, needle: &str) -> Vec<Value> {
        let ok = wait_until(T, || {
            self.messages()
                .iter()
                .any(|m| m["message"].as_str().is_some_and(|s| s.contains(needle)))
        });
        assert!(ok, "no event {needle:?}; got {:#?}", self.messages());
        self.messages()
    }
}

/// Index of the first event whose message contains `needle`.
fn pos(events: &[Value], needle: &str) -> usize {
    events
        .iter()
        .position(|e| e["message"].as_str().is_some_and(|m| m.contains(needle)))
        .unwrap_or_else(|| panic!("no event {needle:?} in {events:#?}"))
}

/// A DNS query for `name` A, by hand (no dig needed).
fn dns_query(port: u16, name: &str) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let q = anypop_integration::dns::query_a(0x1234, name);
    sock.send_to(&q, ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

#[test]
fn drain_is_choreographed_persisted_and_undone() {
    let lab = Lab::new();
    let mut p = lab.start();
    lab.wait_pop("ams", "up", |v| v["state"] == "up");
    lab.wait_pop("fra", "up", |v| v["state"] == "up");

    // No token: refused with exit code 1 and the API's reason.
    let (code, _, err) = run(Command::new(anypop_bin())
        .args(["ctl", "--api", &lab.api, "drain", "ams"])
        .env_remove("ANYPOP_TOKEN")
        .env_remove("ANYPOP_TOKEN_FILE"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    // Unknown PoP: 404.
    let (code, _, err) = lab.ctl(&["drain", "nowhere"]);
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("nowhere"), "{err}");

    let events = EventWatcher::start(&lab, &[]);
    events.wait_live();
    let (code, out, err) = lab.ctl(&["drain", "ams", "--reason", "integration test"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("draining") && out.contains("dns_removed"),
        "{out}"
    );

    let got = events.wait_for("shutdown -> drained");
    let admin = pos(&got, "dns_removed by");
    let to_shutdown = pos(&got, "dns_removed -> shutdown");
    let to_drained = pos(&got, "shutdown -> drained");
    assert!(admin < to_shutdown && to_shutdown < to_drained, "{got:#?}");
    let v = lab.pop("ams");
    assert_eq!(v["state"], "draining");
    assert_eq!(v["admin"]["step"], "drained");
    assert_eq!(v["admin"]["reason"], "integration test");
    assert_eq!(
        v["prefixes"][0]["announced"], false,
        "withdrawn once drained: {v:#}"
    );
    drop(events);

    // kill -9 and restart: still drained, from the admin state file. The
    // file is saved after the step is published: wait until it says
    // drained, or the kill can land while the save is still on its way.
    let file = lab.dir.path().join("state/admin-state.json");
    let saved_phase = || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| v["overrides"]["ams"]["phase"].clone())
    };
    assert!(
        wait_until(T, || saved_phase().is_some_and(|ph| ph == "drained")),
        "admin state file never said drained: {:?}",
        saved_phase()
    );
    p.kill();
    drop(p);
    let p = lab.start();
    let v = lab.pop("ams");
    assert_eq!(v["state"], "draining", "{v:#}\n{}", p.log());
    assert_eq!(v["admin"]["step"], "drained");
    assert_eq!(v["admin"]["reason"], "integration test");
    assert_eq!(v["serves_dns"], false);

    // Undrain ramps back to service.
    let events = EventWatcher::start(&lab, &[]);
    events.wait_live();
    let (code, out, err) = lab.ctl(&["undrain", "ams"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("restoring"), "{out}");
    events.wait_for("restoring -> in_service");
    let v = lab.wait_pop("ams", "up again", |v| v["state"] == "up");
    assert!(v["admin"].is_null(), "{v:#}");
    assert_eq!(v["prefixes"][0]["announced"], true);

    // Human output of status lists both PoPs.
    let (code, out, _) = lab.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ams") && out.contains("fra") && out.contains("203.0.113.0/24"),
        "{out}"
    );
}

#[test]
fn metrics_count_dns_queries_and_api_requests() {
    let lab = Lab::new();
    let _p = lab.start();
    lab.wait_pop("ams", "up", |v| v["state"] == "up");
    let scrape = || {
        let (status, body) = http(&lab.api, "GET", "/metrics", None).expect("scrape");
        assert_eq!(status, 200);
        body
    };
    let before = scrape();
    let udp = "anypop_dns_queries_total{transport=\"udp\"}";
    let q0 = metric(&before, udp).unwrap_or(0.0);
    for _ in 0..5 {
        let answer = dns_query(lab.dns, "www.example.test").expect("DNS answer");
        assert!(answer.len() > 12 && answer[0..2] == [0x12, 0x34]);
    }
    let after = scrape();
    let q1 = metric(&after, udp).expect("udp query counter");
    assert!(q1 >= q0 + 5.0, "queries {q0} -> {q1}");
    assert_eq!(
        metric(&after, "anypop_pop_state{pop=\"ams\",state=\"up\"}"),
        Some(1.0)
    );
    let reqs = "anypop_api_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}";
    assert!(metric(&after, reqs).is_some_and(|n| n >= 1.0), "{after}");
    // Every sample line is `name{labels} value` or `name value`.
    for l in after
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = l.rsplit_once(' ').map(|(_, v)| v).unwrap_or("");
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad line {l:?}"
        );
    }
}

/// Keep-alive GETs of `/v1/state` on one connection; returns non-200 count.
fn hammer(addr: &str, n: usize) -> usize {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return n;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_nodelay(true);
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return n,
    });
    let mut errors = 0;
    for _ in 0..n {
        if write!(s, "GET /v1/state HTTP/1.1\r\nHost: {addr}\r\n\r\n").is_err() {
            return errors + n;
        }
        let mut status = 0;
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return n; // connection closed
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status == 0 {
                status = l
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return n;
        }
        let ok = status == 200
            && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["pops"]["ams"].is_object());
        if !ok {
            errors += 1;
        }
    }
    errors
}

#[test]
fn state_under_load_while_checks_flap() {
    let lab = Lab::new();
    let p = lab.start();
    lab.wait_pop("fra", "up", |v| v["state"] == "up");
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let stop = stop.clone();
        let maint = lab.maint("fra");
        std::thread::spawn(move || {
            let mut flaps = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::write(&maint, "");
                std::thread::sleep(Duration::from_millis(20));
                let _ = std::fs::remove_file(&maint);
                std::thread::sleep(Duration::from_millis(20));
                flaps += 1;
            }
            flaps
        })
    };
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 2500;
    let start = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let api = lab.api.clone();
            std::thread::spawn(move || hammer(&api, PER_CLIENT))
        })
        .collect();
    let errors: usize = workers
        .into_iter()
        .map(|w| w.join().unwrap_or(PER_CLIENT))
        .sum();
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let flaps = flapper.join().unwrap_or(0);
    let total = CLIENTS * PER_CLIENT;
    println!(
        "GET /v1/state: {total} requests over {CLIENTS} keep-alive connections in {:.2}s = {:.0} requests/s, {errors} errors, {flaps} check flaps meanwhile",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    assert_eq!(errors, 0, "{}", p.log());
    let _ = std::fs::remove_file(lab.maint("fra"));
    // The flapping was seen by the core (state changed while we read).
    let (_, body) = http(&lab.api, "GET", "/metrics", None).expect("metrics");
    let changes = metric(&body, "anypop_events_total{kind=\"pop_state\"}").unwrap_or(0.0);
    assert!(changes >= 2.0, "fra flapped: {changes} pop_state events");
}

#[test]
fn corrupt_state_file_stops_the_start_with_a_clear_error() {
    let lab = Lab::new();
    let state = lab.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::write(
        state.join("admin-state.json"),
        "{\"version\": 1, \"overrides\": {\"ams\": ",
    )
    .expect("write");
    let mut p = Anypop::start(&["run", "--config", lab.config.to_str().expect("utf8")]);
    let code = p.wait_exit(T);
    assert!(
        code.is_some_and(|c| c != 0),
        "must refuse to start: {code:?}\n{}",
        p.log()
    );
    let log = p.log();
    assert!(
        log.contains("admin-state.json") && log.contains("corrupt"),
        "{log}"
    );
}

#[test]
fn corrupt_state_file_with_start_empty_is_moved_aside() {
    let lab = Lab::new();
    let state = lab.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let garbage = "{\"version\": 1, \"overrides\": {\"ams\": ";
    std::fs::write(state.join("admin-state.json"), garbage).expect("write");
    let cfg = std::fs::read_to_string(&lab.config).expect("read config");
    let cfg = cfg.replace(
        "  state_dir:",
        "  on_corrupt_state: start_empty\n  state_dir:",
    );
    std::fs::write(&lab.config, cfg).expect("write config");
    let p = lab.start();
    lab.wait_pop("ams", "up", |v| v["state"] == "up" && v["admin"].is_null());
    assert!(
        p.log().contains("starting with NO admin overrides"),
        "{}",
        p.log()
    );
    // The corrupt file is kept for inspection, byte for byte.
    let aside: Vec<_> = std::fs::read_dir(&state)
        .expect("read state dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "one file moved aside");
    assert_eq!(
        std::fs::read_to_string(aside[0].path()).expect("read aside"),
        garbage
    );
    // A new drain is persisted to a fresh, valid file.
    let (code, out, err) = lab.ctl(&["drain", "ams", "--mode", "immediate", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let saved = std::fs::read_to_string(state.join("admin-state.json")).expect("state file");
    assert!(saved.contains("\"ams\""), "{saved}");
}

#[test]
fn ctl_takes_address_and_token_from_the_config() {
    let lab = Lab::new();
    let _p = lab.start();
    lab.wait_pop("fra", "up", |v| v["state"] == "up");
    let ctl = |args: &[&str]| {
        run(Command::new(anypop_bin())
            .arg("ctl")
            .arg("--config")
            .arg(&lab.config)
            .args(args)
            .env_remove("ANYPOP_API")
            .env_remove("ANYPOP_TOKEN")
            .env_remove("ANYPOP_TOKEN_FILE"))
    };
    let (code, out, err) = ctl(&["disable", "fra", "--reason", "via config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("disabled"), "{out}");
    let (code, out, _) = ctl(&["pops", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pops"]["fra"]["state"], "disabled");
    assert_eq!(v["pops"]["fra"]["admin"]["reason"], "via config");
    let (code, _, err) = ctl(&["enable", "fra"]);
    assert_eq!(code, 0, "{err}");
    // Rotating the token file takes effect without a restart.
    std::fs::write(lab.token_file(), "rotated-token-77\n").expect("rotate");
    let (code, _, err) = ctl(&["--token", TOKEN, "disable", "fra"]);
    assert_eq!(code, 1, "old token refused: {err}");
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = ctl(&["--token", "rotated-token-77", "disable", "fra"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&["enable", "fra"]);
    assert_eq!(
        code, 0,
        "new token read from the config's token_file: {err}"
    );
    // A refused reload lists the config errors and keeps the running config.
    let good = std::fs::read_to_string(&lab.config).expect("read");
    std::fs::write(
        &lab.config,
        good.replace("prefixes: [203.0.113.0/24]", "prefixes: [203.0.113.0/33]"),
    )
    .expect("write");
    let (code, _, err) = lab.ctl(&["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("422") && err.contains("prefixes"), "{err}");
    std::fs::write(&lab.config, good).expect("write");
    let (code, out, err) = lab.ctl(&["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reloaded"), "{out}");
}

/// Runs `cmd` with its stdout a pipe whose reader has already gone (what
/// `| head` leaves after its last line); its exit status and stderr.
///
/// The read end is closed before the child starts: closing it after
/// `spawn` let a short output (the default config) fit into the pipe
/// buffer first when the test thread was descheduled under load, and the
/// child exited 0 instead of meeting SIGPIPE.
fn into_closed_pipe(cmd: &mut Command) -> (std::process::ExitStatus, String) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`; checked below.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran {T:?} after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// `anypop ctl ... | head` (seen with 100,000 prefixes): every output path
/// of ctl, tables and `--json`, and `events` following the stream, into a
/// pipe its reader has closed ends the way `cat` ends there (SIGPIPE,
/// nothing on stderr), never with a panic or by hanging on; so do the
/// other printing commands.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let lab = Lab::new();
    let _p = lab.start();
    lab.wait_pop("ams", "up", |v| v["state"] == "up");
    let ctl_cmds: [&[&str]; 9] = [
        &["status"],
        &["pops"],
        &["pop", "ams"],
        &["checks"],
        &["peers"],
        &["fleet"],
        &["explain", "www.example.test"],
        &["events", "--replay", "5"],
        &["events", "--replay", "5", "--count", "3"],
    ];
    let mut cases: Vec<Vec<String>> = Vec::new();
    for args in ctl_cmds {
        for json in [false, true] {
            let mut c: Vec<String> = ["ctl", "--api", &lab.api, "--token-file"]
                .map(String::from)
                .into();
            c.push(lab.token_file().display().to_string());
            c.extend(args.iter().map(|a| a.to_string()));
            if json {
                c.push("--json".into());
            }
            cases.push(c);
        }
    }
    for other in [
        vec!["print-default-config".to_string()],
        vec!["completions".into(), "bash".into()],
        vec!["check-config".into(), lab.config.display().to_string()],
    ] {
        cases.push(other);
    }
    for args in cases {
        let (status, err) = into_closed_pipe(
            Command::new(anypop_bin())
                .args(&args)
                .env_remove("ANYPOP_TOKEN")
                .env_remove("ANYPOP_API"),
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "anypop {args:?}: {status:?}, stderr: {err}"
        );
        assert_eq!(err, "", "anypop {args:?}");
    }
}
