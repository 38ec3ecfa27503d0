//! A one-screen human summary of a validated config, printed by
//! `anypop check-config`.

use std::fmt::Write;

use super::duration::format_duration;
use crate::model::*;

/// Node, peers, PoPs with prefixes and checks, zones with record counts, API.
pub fn summary(c: &Config) -> String {
    let mut s = String::new();
    let n = &c.node;
    let _ = write!(s, "node {}", n.name);
    match &n.pop {
        Some(p) => {
            let _ = write!(s, " in PoP {p}");
        }
        None => s.push_str(" (no PoP: DNS only)"),
    }
    if n.asn != 0 {
        let _ = write!(s, ", router-id {}, AS{}", n.router_id, n.asn);
    }
    s.push('\n');
    if let Some(d) = &n.state_dir {
        let _ = writeln!(s, "  state dir {}", d.display());
    }

    let b = &c.bgp;
    let _ = write!(s, "bgp: {} peer(s)", b.peers.len());
    match b.listen {
        Some(l) => {
            let _ = write!(s, ", listening on {l}");
        }
        None => s.push_str(", no listener"),
    }
    let _ = write!(
        s,
        ", shutdown {}",
        match b.shutdown {
            ShutdownMode::Withdraw => "withdraw".to_string(),
            ShutdownMode::GracefulRestart => "graceful_restart".to_string(),
        }
    );
    if let Some(gr) = b.graceful_restart {
        let _ = write!(s, ", graceful restart {}", format_duration(gr));
    }
    s.push('\n');
    for p in &b.peers {
        let mut fams = Vec::new();
        if p.ipv4_unicast {
            fams.push("ipv4");
        }
        if p.ipv6_unicast {
            fams.push("ipv6");
        }
        let _ = writeln!(
            s,
            "  peer {} {} AS{} ({}, {}{}) hold {}",
            p.name,
            sock(p.address, p.port),
            p.remote_asn,
            if p.is_ibgp() { "iBGP" } else { "eBGP" },
            fams.join("+"),
            if p.passive { ", passive" } else { "" },
            format_duration(p.hold_time),
        );
    }

    let _ = writeln!(s, "pops: {}", c.pops.len());
    for p in c.pops.values() {
        let local = n.pop.as_ref() == Some(&p.name);
        let _ = writeln!(
            s,
            "  {}{}: prefixes [{}] addresses [{}]",
            p.name,
            if local { " (this node)" } else { "" },
            join(p.prefixes.iter()),
            join(p.addresses.iter()),
        );
        let combine = match p.combine {
            Combine::All => "all".to_string(),
            Combine::Any => "any".to_string(),
            Combine::AtLeast(k) => format!("at least {k}"),
        };
        if p.checks.is_empty() {
            let _ = writeln!(s, "    no checks (always healthy)");
        } else {
            let _ = writeln!(
                s,
                "    healthy when {combine} of {} check(s):",
                p.checks.len()
            );
        }
        for ch in &p.checks {
            let here = if c.runs_here(&p.name, ch) {
                ""
            } else {
                " [runs on the owner only]"
            };
            let _ = writeln!(
                s,
                "      {} {} every {} (timeout {}, rise {}, fall {}){here}",
                ch.name,
                probe(&ch.probe),
                format_duration(ch.interval),
                format_duration(ch.timeout),
                ch.rise,
                ch.fall
            );
        }
        if local {
            let _ = writeln!(
                s,
                "    when down: {}; after drain: {}",
                action(p.announce.on_down),
                action(p.announce.on_drain)
            );
        }
    }

    if let Some(f) = &c.fleet {
        let _ = writeln!(
            s,
            "fleet: node {}, {} peer(s), pull every {}{}, stale after {}, quorum {}",
            f.me,
            f.peers.len(),
            format_duration(f.pull_interval),
            if f.stream { " (long-poll)" } else { "" },
            format_duration(f.stale_after),
            f.unreachable_quorum
        );
        for p in f.peers.values() {
            let pop = p
                .pop
                .as_ref()
                .map_or("no PoP".to_string(), |x| format!("PoP {x}"));
            let _ = writeln!(s, "  peer {} ({pop}) {}", p.name, p.url);
        }
        for (pop, owners) in &f.owners {
            let _ = writeln!(s, "  PoP {pop} owned by {}", join(owners.iter()));
        }
    }

    let d = &c.dns;
    if d.listen.is_empty() {
        s.push_str("dns: no listener");
    } else {
        let _ = write!(s, "dns: listening on {}", join(d.listen.iter()));
        match d.udp_workers {
            Some(n) => {
                let _ = write!(s, " ({n} UDP worker(s) each)");
            }
            None => s.push_str(" (one UDP worker per core each)"),
        }
    }
    let _ = writeln!(s, ", {} zone(s)", d.zones.len());
    if let Some(g) = &d.geoip {
        let _ = writeln!(
            s,
            "  geoip {} ({})",
            g.database.display(),
            g.db.database_type()
        );
    }
    match &d.rate_limit {
        Some(r) => {
            let _ = writeln!(
                s,
                "  rate limit {}/s per /24 and /56, slip {}, window {}",
                r.responses_per_second,
                r.slip,
                format_duration(r.window)
            );
        }
        None if d.listen.iter().any(|a| !a.ip().is_loopback()) => {
            let _ = writeln!(s, "  rate limit off");
        }
        None => {}
    }
    for z in &d.zones {
        let steered = z
            .records
            .iter()
            .filter(|r| matches!(r.data, RecordData::Steered(_)))
            .count();
        let _ = writeln!(
            s,
            "  zone {}: {} record(s) ({} static, {} steered), ns [{}]",
            z.origin,
            z.records.len(),
            z.records.len() - steered,
            steered,
            z.ns.join(", ")
        );
        for r in &z.records {
            if let RecordData::Steered(st) = &r.data {
                let pops: Vec<&str> = st.policy.pops().iter().map(|p| p.as_str()).collect();
                let _ = writeln!(
                    s,
                    "    {} steered {} over [{}] ttl {}",
                    r.name,
                    st.policy.name(),
                    pops.join(", "),
                    r.ttl
                );
            }
        }
    }

    let a = &c.api;
    match a.listen {
        Some(l) => {
            let _ = write!(s, "api: listening on {l}");
        }
        None => s.push_str("api: off"),
    }
    match &a.token_file {
        Some(t) => {
            let _ = write!(
                s,
                ", token from {}{}",
                t.display(),
                if a.protect_reads {
                    " (also for reads)"
                } else {
                    ""
                }
            );
        }
        None => s.push_str(", no token"),
    }
    s.push('\n');
    s
}

fn sock(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

fn join<T: std::fmt::Display>(it: impl Iterator<Item = T>) -> String {
    it.map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn probe(p: &Probe) -> String {
    match p {
        Probe::Tcp { target } => format!("tcp {target}"),
        Probe::Http {
            tls, target, path, ..
        } => format!("{}://{target}{path}", if *tls { "https" } else { "http" }),
        Probe::Dns {
            server,
            qname,
            qtype,
            ..
        } => format!("dns {qname} {} @{server}", rtype(*qtype)),
        Probe::Exec { command, .. } => format!("exec {}", command.join(" ")),
        Probe::Process {
            source: PidSource::PidFile(path),
        } => format!("process from {}", path.display()),
        Probe::Process {
            source: PidSource::Unit(unit),
        } => format!("process: main PID of {unit}"),
        Probe::Systemd { unit } => format!("systemd {unit}"),
        Probe::Interface { name } => format!("interface {name}"),
        Probe::Address {
            addr,
            interface: Some(i),
        } => format!("address {addr} on {i}"),
        Probe::Address {
            addr,
            interface: None,
        } => format!("address {addr}"),
        Probe::File {
            path,
            healthy_if_present,
        } => format!(
            "file {} (healthy when {})",
            path.display(),
            if *healthy_if_present {
                "present"
            } else {
                "absent"
            }
        ),
    }
}

fn action(a: FailAction) -> &'static str {
    match a {
        FailAction::Withdraw => "withdraw",
        FailAction::Degrade => "degrade",
        FailAction::GracefulShutdown => "graceful_shutdown",
    }
}

fn rtype(t: DnsType) -> &'static str {
    match t {
        DnsType::A => "A",
        DnsType::Aaaa => "AAAA",
        DnsType::Cname => "CNAME",
        DnsType::Txt => "TXT",
        DnsType::Mx => "MX",
        DnsType::Srv => "SRV",
        DnsType::Caa => "CAA",
        DnsType::Ns => "NS",
        DnsType::Soa => "SOA",
    }
}
