//! Captures the golden wire fixtures of `src/bgp/testdata/`: the bytes FRR,
//! BIRD 2 and GoBGP send to anypop (OPEN, KEEPALIVE, UPDATEs for IPv4 and
//! IPv6 with and without GRACEFUL_SHUTDOWN, withdrawals, End-of-RIB,
//! NOTIFICATION), taken off the wire with tcpdump in a lab of two network
//! namespaces: router "r" (192.0.2.1, 2001:db8:0:1::1, AS 65000) and anypop
//! "pop1" (.2, AS 65001), one IPv4 and one IPv6 session.
//!
//! Per router: tcpdump starts on pop1's interface, the router starts with
//! `src/bgp/testdata/<router>/` config (passive, so each session is one
//! connection), anypop starts with `src/bgp/testdata/anypop.yaml` and
//! dials; once the router's routes and End-of-RIB are on the wire its plain
//! routes are withdrawn, then it shuts the IPv4 session down with a
//! shutdown communication. The capture is reassembled per TCP stream, cut
//! into messages, and the first message of each kind from the router is
//! written as `<router>/<kind>.hex` with a comment saying what it is.
//!
//! Not a test: it rewrites the fixtures, which the unit tests in
//! `src/bgp/codec/fixtures.rs` then decode. Run as root (namespaces):
//! `cargo run -p anypop-integration --bin capture_fixtures -- [--out DIR]
//! [frr|bird|gobgp]...` (default: all three into src/bgp/testdata).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anypop::bgp::codec::{decode, Family, Received};
use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::bird::Bird;
use anypop_integration::lab::frr::Frr;
use anypop_integration::lab::gobgp::Gobgp;
use anypop_integration::lab::{self, pcap, repo_root, Lab};
use anypop_integration::wait_until;

const R4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const R6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const POP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const POP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);
/// The shutdown communication the routers send at the end.
const MESSAGE: &str = "fixture capture";
/// Each step of a capture waits this long at most.
const STEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Router {
    Frr,
    Bird,
    Gobgp,
}

impl Router {
    fn name(self) -> &'static str {
        match self {
            Router::Frr => "frr",
            Router::Bird => "bird",
            Router::Gobgp => "gobgp",
        }
    }

    fn config_file(self) -> &'static str {
        match self {
            Router::Frr => "frr.conf",
            Router::Bird => "bird.conf",
            Router::Gobgp => "gobgpd.toml",
        }
    }

    /// The router's name and version, as its binary prints it.
    fn version(self) -> String {
        let (prog, arg) = match self {
            Router::Frr => ("/usr/lib/frr/bgpd", "--version"),
            Router::Bird => ("bird", "--version"),
            Router::Gobgp => ("gobgpd", "--version"),
        };
        match Command::new(prog).arg(arg).output() {
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or("").trim().to_string()
            }
            Err(e) => format!("{prog}: {e}"),
        }
    }
}

/// A router of either kind, kept alive for the capture.
enum Running {
    Frr(Frr),
    Bird(Bird),
    Gobgp(Gobgp),
}

impl Running {
    fn start(router: Router, lab: &Lab, conf: &str) -> Running {
        match router {
            Router::Frr => Running::Frr(Frr::start(lab, "r", conf)),
            Router::Bird => Running::Bird(Bird::start(lab, "r", conf)),
            Router::Gobgp => Running::Gobgp(Gobgp::start(lab, "r", conf)),
        }
    }

    /// Originates the routes the config does not (GoBGP has no static
    /// routes in its config file).
    fn originate(&self) -> Result<(), String> {
        if let Running::Gobgp(g) = self {
            for (prefix, family, gshut) in [
                ("198.51.100.128/25", "ipv4", false),
                ("198.51.100.64/26", "ipv4", true),
                ("2001:db8:ff00::/40", "ipv6", false),
                ("2001:db8:fe00::/40", "ipv6", true),
            ] {
                let mut args = vec!["global", "rib", "add", prefix];
                if gshut {
                    args.extend(["community", "65535:0"]);
                }
                args.extend(["-a", family]);
                g.cli(&args)?;
            }
        }
        Ok(())
    }

    /// Withdraws the plain route of each family.
    fn withdraw(&self) -> Result<(), String> {
        match self {
            Running::Frr(f) => f
                .vtysh_lines(&[
                    "configure terminal",
                    "router bgp 65000",
                    "address-family ipv4 unicast",
                    "no network 198.51.100.128/25",
                    "exit-address-family",
                    "address-family ipv6 unicast",
                    "no network 2001:db8:ff00::/40",
                ])
                .map(drop),
            Running::Bird(b) => {
                b.birdc("disable plain4")?;
                b.birdc("disable plain6").map(drop)
            }
            Running::Gobgp(g) => {
                g.cli(&["global", "rib", "del", "198.51.100.128/25", "-a", "ipv4"])?;
                g.cli(&["global", "rib", "del", "2001:db8:ff00::/40", "-a", "ipv6"])
                    .map(drop)
            }
        }
    }

    /// Shuts the IPv4 session down with a shutdown communication.
    fn shut_down_v4(&self) -> Result<(), String> {
        match self {
            Running::Frr(f) => f
                .vtysh_lines(&[
                    "configure terminal",
                    "router bgp 65000",
                    &format!("neighbor {POP4} shutdown message {MESSAGE}"),
                ])
                .map(drop),
            Running::Bird(b) => b.birdc(&format!("disable pop1_v4 \"{MESSAGE}\"")).map(drop),
            Running::Gobgp(g) => g
                .cli(&[
                    "neighbor",
                    &POP4.to_string(),
                    "shutdown",
                    "--reason",
                    MESSAGE,
                ])
                .map(drop),
        }
    }
}

/// One message from the router, classified.
#[derive(Debug, Clone)]
struct Captured {
    kind: String,
    what: String,
    bytes: Vec<u8>,
}

/// The path attribute `code` of an UPDATE, if present.
fn attribute(msg: &[u8], code: u8) -> Option<&[u8]> {
    let body = msg.get(19..)?;
    let wlen = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let rest = body.get(2 + wlen..)?;
    let alen = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let mut a = rest.get(2..2 + alen)?;
    while a.len() >= 3 {
        let (len, hdr) = if a[0] & 0x10 != 0 {
            (usize::from(u16::from_be_bytes([a[2], *a.get(3)?])), 4)
        } else {
            (usize::from(a[2]), 3)
        };
        let value = a.get(hdr..hdr + len)?;
        if a[1] == code {
            return Some(value);
        }
        a = &a[hdr + len..];
    }
    None
}

fn has_gshut(msg: &[u8]) -> bool {
    attribute(msg, 8).is_some_and(|c| c.chunks(4).any(|x| x == [0xff, 0xff, 0, 0]))
}

/// Classifies one message from the router on the session of `family`.
fn classify(msg: &[u8], family: Family) -> Result<(String, String), String> {
    let fam = match family {
        Family::Ipv4 => "v4",
        Family::Ipv6 => "v6",
    };
    let m = decode(msg).map_err(|n| format!("undecodable: {n}"))?;
    Ok(match m {
        Received::Open(o) => (
            format!("open-{fam}"),
            format!(
                "OPEN on the IP{fam} session (AS {}, hold time {}, identifier {})",
                o.asn(),
                o.hold_time,
                o.bgp_id
            ),
        ),
        Received::Keepalive => (format!("keepalive-{fam}"), "KEEPALIVE".into()),
        Received::Notification(n) => (format!("notification-{fam}"), format!("NOTIFICATION {n}")),
        Received::RouteRefresh { .. } => (format!("route-refresh-{fam}"), "ROUTE-REFRESH".into()),
        Received::Update(u) => {
            let carrier = if attribute(msg, 14).is_some() || attribute(msg, 15).is_some() {
                "MP_REACH/MP_UNREACH"
            } else {
                "classic NLRI"
            };
            if let Some(f) = u.end_of_rib {
                (format!("eor-{fam}"), format!("UPDATE: End-of-RIB for {f}"))
            } else if u.announced > 0 && has_gshut(msg) {
                (
                    format!("update-{fam}-gshut"),
                    format!(
                        "UPDATE announcing {} prefix(es) with GRACEFUL_SHUTDOWN 65535:0 ({carrier})",
                        u.announced
                    ),
                )
            } else if u.announced > 0 {
                (
                    format!("update-{fam}"),
                    format!("UPDATE announcing {} prefix(es) ({carrier})", u.announced),
                )
            } else {
                (
                    format!("withdraw-{fam}"),
                    format!("UPDATE withdrawing {} prefix(es) ({carrier})", u.withdrawn),
                )
            }
        }
    })
}

/// The messages the router sent on each session so far, classified, first
/// of each kind.
fn captured(pcap_file: &Path) -> Result<BTreeMap<String, Captured>, String> {
    let data = std::fs::read(pcap_file).map_err(|e| format!("read pcap: {e}"))?;
    let segments = pcap::read_tcp(&data)?;
    let mut out = BTreeMap::new();
    for (flow, stream) in pcap::tcp_streams(&segments)? {
        let family = match (flow.src, flow.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) if s == R4 && d == POP4 => Family::Ipv4,
            (IpAddr::V6(s), IpAddr::V6(d)) if s == R6 && d == POP6 => Family::Ipv6,
            _ => continue,
        };
        for msg in pcap::bgp_messages(&stream)? {
            let (kind, what) = classify(&msg, family)?;
            out.entry(kind.clone()).or_insert(Captured {
                kind,
                what,
                bytes: msg,
            });
        }
    }
    Ok(out)
}

/// Waits until the capture holds every kind in `kinds`.
fn wait_for_kinds(pcap_file: &Path, kinds: &[&str]) -> Result<(), String> {
    let mut last = Err("nothing captured".to_string());
    let ok = wait_until(STEP, || {
        last = captured(pcap_file)
            .map(|c| {
                kinds
                    .iter()
                    .filter(|k| !c.contains_key(**k))
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
            })
            .and_then(|missing| {
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("missing {}", missing.join(", ")))
                }
            });
        last.is_ok()
    });
    if ok {
        Ok(())
    } else {
        last
    }
}

fn hex_file(c: &Captured, router: &str, version: &str, date: &str) -> String {
    let mut s = format!(
        "# {version} ({router}) to anypop: {}\n# {} bytes, captured {date} by integration/src/bin/capture_fixtures.rs (see ../README.md)\n",
        c.what,
        c.bytes.len()
    );
    for line in c.bytes.chunks(16) {
        let words: Vec<String> = line
            .chunks(4)
            .map(|w| w.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        s.push_str(&words.join(" "));
        s.push('\n');
    }
    s
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn capture(router: Router, out: &Path) -> Result<Vec<String>, String> {
    let testdata = repo_root().join("src/bgp/testdata");
    let conf = std::fs::read_to_string(testdata.join(router.name()).join(router.config_file()))
        .map_err(|e| format!("router config: {e}"))?;
    let pop_yaml = std::fs::read_to_string(testdata.join("anypop.yaml"))
        .map_err(|e| format!("anypop config: {e}"))?;

    let lab = Lab::new(&["r", "pop1"]);
    lab.link("r", "eth1", "pop1", "eth1");
    lab.addr("r", "eth1", &["192.0.2.1/30", "2001:db8:0:1::1/64"]);
    lab.addr("pop1", "eth1", &["192.0.2.2/30", "2001:db8:0:1::2/64"]);
    let cap = lab.dir().join(format!("{}.pcap", router.name()));
    let mut tcpdump = pcap::Tcpdump::start(&lab, "pop1", "eth1", &cap, 0)?;
    let result = (|| -> Result<(), String> {
        let running = Running::start(router, &lab, &conf);
        let pop1 = PopNode::start(&lab, "pop1", &pop_yaml);
        running.originate()?;
        let up = [
            "open-v4",
            "keepalive-v4",
            "update-v4",
            "update-v4-gshut",
            "open-v6",
            "keepalive-v6",
            "update-v6",
            "update-v6-gshut",
        ];
        wait_for_kinds(&cap, &up).map_err(|e| format!("{e}; anypop log:\n{}", pop1.proc.log()))?;
        // End-of-RIB follows the initial updates where the router sends it.
        std::thread::sleep(Duration::from_secs(3));
        running.withdraw()?;
        wait_for_kinds(&cap, &["withdraw-v4", "withdraw-v6"])?;
        running.shut_down_v4()?;
        wait_for_kinds(&cap, &["notification-v4"])?;
        Ok(())
    })();
    tcpdump.stop();
    result?;
    let version = router.version();
    let date = today();
    let dir = out.join(router.name());
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for c in captured(&cap)?.values() {
        let path = dir.join(format!("{}.hex", c.kind));
        std::fs::write(&path, hex_file(c, router.name(), &version, &date))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        written.push(format!("{}: {}", path.display(), c.what));
    }
    Ok(written)
}

fn main() {
    let mut out: PathBuf = repo_root().join("src/bgp/testdata");
    let mut routers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => match args.next() {
                Some(d) => out = PathBuf::from(d),
                None => {
                    eprintln!("--out needs a directory");
                    std::process::exit(2);
                }
            },
            "frr" => routers.push(Router::Frr),
            "bird" => routers.push(Router::Bird),
            "gobgp" => routers.push(Router::Gobgp),
            "-h" | "--help" => {
                println!("capture_fixtures [--out DIR] [frr|bird|gobgp]...");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    if routers.is_empty() {
        routers = vec![Router::Frr, Router::Bird, Router::Gobgp];
    }
    if !lab::is_root() {
        eprintln!("capture_fixtures needs root (network namespaces)");
        std::process::exit(2);
    }
    let mut failed = false;
    for r in routers {
        match capture(r, &out) {
            Ok(files) => {
                println!("{} ({}):", r.name(), r.version());
                for f in files {
                    println!("  {f}");
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", r.name());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
