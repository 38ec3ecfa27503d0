//! The steering DNS server end to end: the anypop binary with a config of
//! three PoPs (tcp checks against listeners this test opens and closes) and
//! two UDP workers, queried with real `dig` over UDP and TCP on loopback.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anypop_integration::{dns, free_port, have, http, metric, wait_until, write_file, Anypop};

/// A TCP service a PoP's check probes: accepts and closes connections
/// until stopped. Stopping closes the listening socket (probes get RST).
struct Service {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    fn start(port: u16) -> Service {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind service port");
        let port = l.local_addr().expect("local addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Service {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Check timing used by the test config.
const INTERVAL: Duration = Duration::from_millis(200);
const RISE: u32 = 2;
const FALL: u32 = 2;

struct Lab {
    anypop: Anypop,
    dns: u16,
    api: String,
    config: std::path::PathBuf,
    services: Vec<Service>,
    _dir: tempfile::TempDir,
}

/// UDP workers of the test server: every answer below comes from one of
/// them, whichever `dig`'s source port hashes to.
const UDP_WORKERS: usize = 2;

fn config(dns: u16, api: &str, ports: &[u16], extra_records: &str) -> String {
    let big: Vec<String> = (0..6)
        .map(|i| format!("\"{i}{}\"", "x".repeat(150)))
        .collect();
    let check = |port: u16| {
        format!(
            "    checks:\n      - name: svc\n        type: tcp\n        target: 127.0.0.1:{port}\n        interval: 200ms\n        fast_interval: 100ms\n        timeout: 150ms\n        jitter: 0ms\n        rise: {RISE}\n        fall: {FALL}\n"
        )
    };
    format!(
        r#"node:
  name: itest
  pop: ams
pops:
  - name: ams
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.1, "2001:db8::1"]
{ca}  - name: fra
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.2, "2001:db8::2"]
{cf}  - name: lon
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.3]
{cl}dns:
  listen: ["127.0.0.1:{dns}"]
  udp_workers: {UDP_WORKERS}
  nsid: itest-ams
  chaos: itest-ams
  zones:
    - origin: example.net.
      ns: [ns1.example.net.]
      soa:
        rname: hostmaster.example.net.
        serial: 7
        minimum: 60
      ttl: 300
      records:
        - {{name: ns1, type: A, values: [192.0.2.53]}}
        - {{name: mail, type: A, values: [192.0.2.25]}}
        - {{name: "@", type: MX, values: ["10 mail"]}}
        - {{name: "@", type: TXT, values: ["hello world"]}}
        - {{name: big, type: TXT, values: [{big}]}}
        - {{name: alias, type: CNAME, values: [www]}}
        - name: www
          ttl: 30
          steer: {{policy: failover, pops: [ams, fra, lon], short_ttl: 5, settle: 3s}}
        - name: w
          steer: {{policy: weighted, weights: {{ams: 1, fra: 1, lon: 0}}}}
        - name: geo
          steer:
            policy: geo
            map: [{{subnet: 198.51.100.0/24, pops: [lon]}}]
            default: [ams]
        - name: all
          steer: {{policy: all_healthy, pops: [ams, fra, lon], max: 4}}
{extra_records}api:
  listen: "{api}"
"#,
        ca = check(ports[0]),
        cf = check(ports[1]),
        cl = check(ports[2]),
        big = big.join(", "),
    )
}

impl Lab {
    fn start() -> Option<Lab> {
        if !have("dig") {
            eprintln!("skipping: dig (dnsutils) is not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let services: Vec<Service> = (0..3).map(|_| Service::start(0)).collect();
        let ports: Vec<u16> = services.iter().map(|s| s.port).collect();
        let dns = free_port();
        let api = format!("127.0.0.1:{}", free_port());
        let cfg = write_file(dir.path(), "anypop.yaml", &config(dns, &api, &ports, ""));
        let anypop = Anypop::start(&["run", "--config", cfg.to_str().expect("utf-8 path")]);
        let lab = Lab {
            anypop,
            dns,
            api,
            config: cfg,
            services,
            _dir: dir,
        };
        // All three PoPs up: the failover record answers with the first.
        let ok = wait_until(Duration::from_secs(20), || {
            lab.short("www.example.net", "A") == vec!["192.0.2.1"]
                && lab.short("all.example.net", "A").len() == 3
        });
        assert!(ok, "PoPs never came up; log:\n{}", lab.anypop.log());
        Some(lab)
    }

    fn dig(&self, args: &[&str]) -> String {
        dns::dig(self.dns, args)
    }

    /// Datagrams each UDP worker has received so far (from `/metrics`).
    fn worker_queries(&self) -> Vec<f64> {
        let (status, body) = http(&self.api, "GET", "/metrics", None).expect("scrape /metrics");
        assert_eq!(status, 200, "{body}");
        let listener = format!("127.0.0.1:{}", self.dns);
        (0..UDP_WORKERS)
            .map(|w| {
                let series = format!(
                    "anypop_dns_udp_worker_queries_total{{listener=\"{listener}\",worker=\"{w}\"}}"
                );
                metric(&body, &series).unwrap_or_else(|| panic!("no {series} in:\n{body}"))
            })
            .collect()
    }

    /// Asks `n` times with a fresh `dig` (a new source port each, so the
    /// kernel spreads them over the workers): every answer must be `want`,
    /// and every worker must have answered some of them.
    fn every_worker_answers(&self, n: usize, name: &str, want: &[&str]) {
        let before = self.worker_queries();
        for i in 0..n {
            let got = self.short(name, "A");
            assert_eq!(got, want, "query {i} for {name}");
        }
        let after = self.worker_queries();
        for (w, (b, a)) in before.iter().zip(&after).enumerate() {
            assert!(
                a > b,
                "worker {w} got none of {n} queries: {before:?} -> {after:?}"
            );
        }
    }

    /// `dig +short` answers, sorted.
    fn short(&self, name: &str, qtype: &str) -> Vec<String> {
        self.short_with(name, qtype, &[])
    }

    fn short_with(&self, name: &str, qtype: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["+short", name, qtype];
        args.extend_from_slice(extra);
        let mut v = dns::short_lines(&self.dig(&args));
        v.sort();
        v
    }
}

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
}

fn flags(out: &str) -> String {
    out.split("flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_string()
}

/// The AUTHORITY section of a dig answer.
fn authority(out: &str) -> String {
    out.split(";; AUTHORITY SECTION:")
        .nth(1)
        .map(|s| s.split("\n\n").next().unwrap_or(""))
        .unwrap_or("")
        .to_string()
}

#[test]
fn static_records_and_negative_answers_over_udp_and_tcp() {
    let Some(lab) = Lab::start() else { return };
    for transport in ["+notcp", "+tcp"] {
        let out = lab.dig(&[transport, "mail.example.net", "A"]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert!(flags(&out).contains("aa"), "{out}");
        assert!(out.contains("192.0.2.25"), "{out}");

        assert_eq!(
            lab.short_with("example.net", "MX", &[transport]),
            vec!["10 mail.example.net."]
        );
        assert_eq!(
            lab.short_with("example.net", "TXT", &[transport]),
            vec!["\"hello world\""]
        );

        let out = lab.dig(&[transport, "nope.example.net", "A"]);
        assert_eq!(status(&out), "NXDOMAIN", "{out}");
        assert!(flags(&out).contains("aa"), "{out}");
        assert!(authority(&out).contains("SOA"), "{out}");

        // NODATA: the name exists, not with this type.
        let out = lab.dig(&[transport, "mail.example.net", "TXT"]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert!(out.contains("ANSWER: 0"), "{out}");
        assert!(authority(&out).contains("SOA"), "{out}");

        let out = lab.dig(&[transport, "www.example.org", "A"]);
        assert_eq!(status(&out), "REFUSED", "{out}");

        // Case-insensitive, and the question's case comes back.
        let out = lab.dig(&[transport, "MaIl.ExAmPlE.NeT", "A"]);
        assert!(out.contains(";MaIl.ExAmPlE.NeT."), "{out}");
        assert!(out.contains("192.0.2.25"), "{out}");

        // CNAME chain into a steered record.
        let out = lab.short_with("alias.example.net", "A", &[transport]);
        assert_eq!(out, vec!["192.0.2.1", "www.example.net."]);
    }
}

#[test]
fn steering_policies_and_ecs() {
    let Some(lab) = Lab::start() else { return };
    // failover: first healthy PoP; the answer does not depend on the client.
    assert_eq!(lab.short("www.example.net", "A"), vec!["192.0.2.1"]);
    assert_eq!(lab.short("www.example.net", "AAAA"), vec!["2001:db8::1"]);
    let out = lab.dig(&["+subnet=198.51.100.0/24", "www.example.net", "A"]);
    assert!(out.contains("CLIENT-SUBNET: 198.51.100.0/24/0"), "{out}");

    // weighted: one PoP per client subnet, stable, lon (weight 0) never.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let subnet = format!("+subnet=10.{i}.{}.0/24", i * 7 % 256);
        let a = lab.short_with("w.example.net", "A", &[&subnet]);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_ne!(a[0], "192.0.2.3", "zero-weight PoP answered");
        assert_eq!(
            lab.short_with("w.example.net", "A", &[&subnet]),
            a,
            "not stable for {subnet}"
        );
        seen.insert(a[0].clone());
    }
    assert_eq!(seen.len(), 2, "both weighted PoPs get clients: {seen:?}");
    let out = lab.dig(&["+subnet=198.51.100.0/24", "w.example.net", "A"]);
    assert!(out.contains("CLIENT-SUBNET: 198.51.100.0/24/24"), "{out}");

    // geo: the mapped subnet goes to lon, others to the default ams.
    assert_eq!(
        lab.short_with("geo.example.net", "A", &["+subnet=198.51.100.0/24"]),
        vec!["192.0.2.3"]
    );
    assert_eq!(
        lab.short_with("geo.example.net", "A", &["+subnet=203.0.113.0/24"]),
        vec!["192.0.2.1"]
    );
    let out = lab.dig(&["+subnet=198.51.100.0/24", "geo.example.net", "A"]);
    assert!(out.contains("CLIENT-SUBNET: 198.51.100.0/24/24"), "{out}");

    // all_healthy: every healthy PoP with an address of the family.
    assert_eq!(
        lab.short("all.example.net", "A"),
        vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    );
    assert_eq!(
        lab.short("all.example.net", "AAAA"),
        vec!["2001:db8::1", "2001:db8::2"]
    );
}

#[test]
fn identity_and_truncation() {
    let Some(lab) = Lab::start() else { return };
    let out = lab.dig(&["+nsid", "www.example.net", "A"]);
    assert!(out.contains("NSID:") && out.contains("itest-ams"), "{out}");
    let out = lab.dig(&["+short", "-c", "CH", "-t", "TXT", "id.server"]);
    assert!(out.contains("\"itest-ams\""), "{out}");
    let out = lab.dig(&["+short", "-c", "CH", "-t", "TXT", "hostname.bind"]);
    assert!(out.contains("\"itest-ams\""), "{out}");

    // 6 × 150-byte TXT records do not fit in 512 bytes: TC over UDP...
    let out = lab.dig(&["+ignore", "+bufsize=512", "big.example.net", "TXT"]);
    assert!(flags(&out).contains("tc"), "{out}");
    let out = lab.dig(&["+ignore", "+noedns", "big.example.net", "TXT"]);
    assert!(flags(&out).contains("tc"), "{out}");
    // ... and the full answer over TCP.
    let out = lab.dig(&["+tcp", "big.example.net", "TXT"]);
    assert!(!flags(&out).contains("tc"), "{out}");
    assert!(out.contains("ANSWER: 6"), "{out}");
}

#[test]
fn failed_pop_leaves_answers_and_comes_back_and_fail_open() {
    let Some(mut lab) = Lab::start() else { return };
    let port_ams = lab.services[0].port;
    // ams's service goes away: after `fall` failed probes ams is down and
    // within one check interval after that dig no longer returns it.
    lab.services[0].stop();
    let t0 = Instant::now();
    let gone = wait_until(Duration::from_secs(10), || {
        lab.short("www.example.net", "A") == vec!["192.0.2.2"]
            && !lab
                .short("all.example.net", "A")
                .contains(&"192.0.2.1".to_string())
    });
    assert!(gone, "ams still answered; log:\n{}", lab.anypop.log());
    let took = t0.elapsed();
    // fall probes at the fast interval after the first failure, plus one
    // interval, plus generous slack for a loaded machine.
    assert!(
        took < INTERVAL * (FALL + 1) + Duration::from_secs(3),
        "took {took:?}"
    );
    // While ams settles, the TTL is the short one.
    let out = lab.dig(&["www.example.net", "A"]);
    assert!(out.contains("\t5\tIN\tA"), "short TTL expected: {out}");

    // Back after `rise` good probes.
    lab.services[0] = Service::start(port_ams);
    let back = wait_until(Duration::from_secs(10), || {
        lab.short("www.example.net", "A") == vec!["192.0.2.1"]
    });
    assert!(back, "ams never came back; log:\n{}", lab.anypop.log());
    // Once the 3 s settle period is over, the normal TTL (30) is back.
    let normal = wait_until(Duration::from_secs(10), || {
        lab.dig(&["www.example.net", "A"]).contains("\t30\tIN\tA")
    });
    assert!(
        normal,
        "TTL never went back to 30:\n{}",
        lab.dig(&["www.example.net", "A"])
    );

    // Everything down: fail-open answers with all PoPs, and says so.
    for s in &mut lab.services {
        s.stop();
    }
    let open = wait_until(Duration::from_secs(10), || {
        lab.short("www.example.net", "A") == vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    });
    assert!(open, "no fail-open answer; log:\n{}", lab.anypop.log());
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .anypop
            .log()
            .contains("fails open")),
        "fail-open not logged:\n{}",
        lab.anypop.log()
    );
}

#[test]
fn every_udp_worker_answers_and_follows_pop_changes_and_reloads() {
    let Some(mut lab) = Lab::start() else { return };
    // 40 dig runs: the chance that one worker gets none is 2 × 2^-40.
    lab.every_worker_answers(40, "www.example.net", &["192.0.2.1"]);

    // A snapshot change (ams down) reaches every worker.
    lab.services[0].stop();
    let moved = wait_until(Duration::from_secs(10), || {
        lab.short("www.example.net", "A") == vec!["192.0.2.2"]
    });
    assert!(moved, "ams still answered; log:\n{}", lab.anypop.log());
    lab.every_worker_answers(40, "www.example.net", &["192.0.2.2"]);

    // A reload (SIGHUP) with a new record reaches every worker.
    let ports: Vec<u16> = lab.services.iter().map(|s| s.port).collect();
    let extra = "        - {name: new, type: A, values: [192.0.2.99]}\n";
    std::fs::write(&lab.config, config(lab.dns, &lab.api, &ports, extra)).expect("rewrite config");
    lab.anypop.signal(libc::SIGHUP);
    let reloaded = wait_until(Duration::from_secs(10), || {
        lab.short("new.example.net", "A") == vec!["192.0.2.99"]
    });
    assert!(
        reloaded,
        "new record never answered; log:\n{}",
        lab.anypop.log()
    );
    lab.every_worker_answers(40, "new.example.net", &["192.0.2.99"]);
}
