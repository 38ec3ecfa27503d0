//! anypop under a service manager, without systemd: the test creates the
//! `NOTIFY_SOCKET` datagram socket itself and reads what anypop sends.
//! READY=1 comes once the API answers (its listener is bound) with a
//! STATUS= summary; WATCHDOG=1 keeps coming at half of `WATCHDOG_USEC`;
//! STATUS= follows PoP and BGP changes; a reload is wrapped in RELOADING=1
//! and READY=1 (also a rejected one, which says so, and /metrics counts
//! it); SIGTERM sends STOPPING=1.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anypop_integration::demo::{Demo, Options, WAIT};
use anypop_integration::{http, wait_for, wait_until};

/// Every datagram received so far, in order.
struct Listener {
    messages: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    path: String,
}

impl Listener {
    fn new() -> Listener {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test drops the Arc's other owner.
            while Arc::strong_count(&m) > 1 {
                if let Ok(n) = sock.recv(&mut buf) {
                    if let Ok(mut v) = m.lock() {
                        v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                }
            }
        });
        Listener {
            messages,
            path: path.to_str().expect("utf8").to_string(),
            _dir: dir,
        }
    }

    fn all(&self) -> Vec<String> {
        self.messages.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits for a message (after the first `skip`) that satisfies `f`;
    /// returns its index.
    fn wait(&self, what: &str, skip: usize, f: impl Fn(&str) -> bool) -> usize {
        wait_for(WAIT, || {
            self.all()
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, m)| f(m))
                .map(|(i, _)| i)
        })
        .unwrap_or_else(|| panic!("no {what} notification; got {:#?}", self.all()))
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn ready_status_watchdog_reload_and_stop_are_notified() {
    let listener = Listener::new();
    let mut demo = Demo::start(Options {
        env: vec![
            ("NOTIFY_SOCKET".into(), listener.path.clone()),
            ("WATCHDOG_USEC".into(), "2000000".into()),
        ],
        ..Options::default()
    });

    // READY=1 with a summary; by then the API listener is bound.
    let ready = listener.wait("READY=1", 0, |m| m.starts_with("READY=1\nSTATUS=PoPs: "));
    let (status, _) = http(&demo.api, "GET", "/healthz", None).expect("API bound at READY");
    assert_eq!(status, 200);
    assert!(
        !listener.all()[..ready]
            .iter()
            .any(|m| m.contains("READY=1")),
        "READY=1 sent twice: {:#?}",
        listener.all()
    );

    // The watchdog is fed every second (half of WATCHDOG_USEC).
    let ok = wait_until(WAIT, || {
        listener.all().iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
    });
    assert!(ok, "watchdog pings: {:#?}", listener.all());

    // STATUS= follows the PoPs and the BGP session.
    demo.wait_settled();
    listener.wait("settled STATUS", 0, |m| {
        m.starts_with("STATUS=PoPs: 3 up;") && m.contains("BGP 1/1 established")
    });
    demo.set_maintenance("lon", true);
    listener.wait("lon down in STATUS", 0, |m| {
        m.starts_with("STATUS=PoPs: 2 up, 1 down;")
    });

    // A good reload: RELOADING=1, then READY=1.
    let before = listener.all().len();
    demo.node.signal(libc::SIGHUP);
    let r = listener.wait("RELOADING=1", before, |m| {
        m.starts_with("RELOADING=1\nMONOTONIC_USEC=")
    });
    let done = listener.wait("READY=1 after the reload", r, |m| {
        m.starts_with("READY=1\n")
    });
    assert!(
        !listener.all()[done].contains("rejected"),
        "{:#?}",
        listener.all()
    );
    let m = demo.metrics();
    assert_eq!(
        metric(&m, "anypop_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "anypop_config_last_reload_successful"),
        Some(1.0)
    );

    // A broken file: still RELOADING=1 then READY=1, saying it was rejected.
    let good = std::fs::read_to_string(demo.config()).expect("config");
    std::fs::write(demo.config(), "node: [not, a, node]\n").expect("break config");
    let before = listener.all().len();
    demo.node.signal(libc::SIGHUP);
    let r = listener.wait("RELOADING=1", before, |m| m.starts_with("RELOADING=1\n"));
    let done = listener.wait("READY=1 after the rejected reload", r, |m| {
        m.starts_with("READY=1\n")
    });
    let msg = &listener.all()[done];
    assert!(
        msg.contains("STATUS=reload rejected (")
            && msg.contains("errors), previous configuration kept; PoPs: 2 up, 1 down;"),
        "{msg}"
    );
    let m = demo.metrics();
    assert_eq!(
        metric(&m, "anypop_config_reloads_total{result=\"error\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "anypop_config_last_reload_successful"),
        Some(0.0)
    );
    std::fs::write(demo.config(), good).expect("restore config");

    // SIGTERM: STOPPING=1, then a clean exit.
    let before = listener.all().len();
    demo.node.signal(libc::SIGTERM);
    listener.wait("STOPPING=1", before, |m| m.starts_with("STOPPING=1"));
    assert_eq!(demo.node.wait_exit(WAIT), Some(0), "{}", demo.node.log());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_nothing_breaks() {
    // WATCHDOG_USEC alone (no socket): anypop runs as usual.
    let demo = Demo::start(Options {
        env: vec![("WATCHDOG_USEC".into(), "2000000".into())],
        ..Options::default()
    });
    demo.wait_settled();
    assert!(
        !demo.node.log().contains("watchdog on"),
        "{}",
        demo.node.log()
    );
}
