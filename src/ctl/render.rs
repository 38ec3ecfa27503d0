//! Text output of `anypop ctl`: tables and sentences from the API's DTOs.
//! Pure functions of the decoded answer and the current time; no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use hyper::StatusCode;

use crate::api::dto::explain::Explanation;
use crate::api::dto::fleet::FleetDto;
use crate::api::dto::view::{Announcement, Lagged};
use crate::api::dto::{
    AdminResult, AdminStatus, Check, Event, Peer, Pop, Pops, ReloadResult, State,
};

/// A decoded answer, by the command that asked for it.
#[derive(Debug)]
pub enum Answer {
    State(Box<State>),
    Pops(Pops),
    Pop(Pop),
    Checks(Vec<Check>),
    Peers(BTreeMap<String, Peer>),
    Admin(AdminResult),
    Reload(ReloadResult),
    Explain(Box<Explanation>),
    Fleet(Box<FleetDto>),
}

/// Now as Unix seconds.
pub fn now_secs() -> f64 {
    crate::unix_time::secs(SystemTime::now())
}

/// `HH:MM:SS` UTC of a Unix time.
pub fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, (s % 3600) / 60, s % 60)
}

/// `12s`, `5m`, `3h`, `2d` (rounded down).
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A number as JSON writes it (`2.0`, `1763890000.123`).
fn num(x: f64) -> String {
    serde_json::to_string(&x).unwrap_or_else(|_| x.to_string())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A left-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// An override in a few words: step, who, when the next step and the
/// expiry come.
pub fn admin_text(a: Option<&AdminStatus>, now: f64) -> String {
    let Some(a) = a else {
        return "-".into();
    };
    let mut t = format!("{} ({})", a.step.as_str(), a.who);
    if let Some(next) = a.next_at {
        let _ = write!(t, ", next in {}", span((next - now).ceil()));
    }
    if let Some(until) = a.until {
        let _ = write!(t, ", expires in {}", span((until - now).ceil()));
    }
    t
}

fn pops_table<'a>(pops: impl Iterator<Item = &'a Pop>, now: f64) -> String {
    let rows: Vec<Vec<String>> = pops
        .map(|p| {
            vec![
                p.name.clone(),
                p.state.as_str().to_string(),
                match p.healthy {
                    Some(true) => "healthy".into(),
                    Some(false) => "unhealthy".into(),
                    None => "unknown".into(),
                },
                yes_no(p.serves_dns).to_string(),
                span(now - p.since),
                admin_text(p.admin.as_ref(), now),
                p.reason.clone(),
            ]
        })
        .collect();
    table(
        &["POP", "STATE", "HEALTH", "DNS", "FOR", "ADMIN", "REASON"],
        &rows,
    )
}

fn announcements_table(a: &BTreeMap<ipnet::IpNet, Announcement>) -> String {
    // Listed by the prefix as text, as always.
    let mut rows: Vec<Vec<String>> = a
        .iter()
        .map(|(pfx, v)| {
            let attrs = &v.attrs;
            let mut at = Vec::new();
            if attrs.prepend > 0 {
                at.push(format!("prepend {}", attrs.prepend));
            }
            if let Some(med) = attrs.med {
                at.push(format!("med {med}"));
            }
            if let Some(lp) = attrs.local_pref {
                at.push(format!("local-pref {lp}"));
            }
            for (a, b) in &attrs.communities {
                at.push(format!("{a}:{b}"));
            }
            for (a, b, c) in &attrs.large_communities {
                at.push(format!("{a}:{b}:{c}"));
            }
            vec![
                pfx.to_string(),
                v.pop.clone(),
                v.mode.as_str().to_string(),
                at.join(" "),
            ]
        })
        .collect();
    rows.sort_by(|a, b| a[0].cmp(&b[0]));
    table(&["PREFIX", "POP", "MODE", "ATTRIBUTES"], &rows)
}

/// A peer's details as `key=value` words, keys in alphabetical order.
fn peer_details(p: &Peer) -> String {
    let opt_num = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
    let bfd = match &p.bfd {
        None => "-".to_string(),
        Some(b) => format!(
            "{}{}",
            b.state,
            if b.holds_bgp_down {
                " (holds BGP down)"
            } else {
                ""
            }
        ),
    };
    [
        ("address", p.address.to_string()),
        ("bfd", bfd),
        ("end_of_rib_sent", yes_no(p.end_of_rib_sent).to_string()),
        ("established_since", opt_num(p.established_since)),
        ("flaps", p.flaps.to_string()),
        ("last_error", or_dash(p.last_error.as_ref())),
        ("last_error_at", opt_num(p.last_error_at)),
        ("local_asn", p.local_asn.to_string()),
        ("prefixes_advertised", p.prefixes_advertised.to_string()),
        ("prefixes_received", p.prefixes_received.to_string()),
        ("remote_asn", p.remote_asn.to_string()),
        ("updates_received", p.updates_received.to_string()),
        ("updates_sent", p.updates_sent.to_string()),
        ("uptime_secs", or_dash(p.uptime_secs)),
        ("withdrawals_received", p.withdrawals_received.to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join(" ")
}

fn peers_table(peers: &BTreeMap<String, Peer>) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|(name, p)| vec![name.clone(), p.state.clone(), peer_details(p)])
        .collect();
    table(&["PEER", "STATE", "DETAILS"], &rows)
}

fn checks_table(checks: &[Check], now: f64) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            let st = &c.status;
            let last_txt = match &st.last {
                None => "-".into(),
                Some(last) => format!(
                    "{} {:.1}ms {} ago: {}",
                    if last.ok { "ok" } else { "FAIL" },
                    last.took,
                    span(now - last.at),
                    last.detail,
                ),
            };
            vec![
                c.pop.clone(),
                c.check.clone(),
                st.verdict.as_str().to_string(),
                format!("{}/{}", st.successes, st.rise),
                format!("{}/{}", st.failures, st.fall),
                last_txt,
            ]
        })
        .collect();
    table(
        &["POP", "CHECK", "VERDICT", "OK/RISE", "FAIL/FALL", "LAST"],
        &rows,
    )
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(T::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The explain answer in words.
pub fn explain_text(v: &Explanation) -> String {
    let c = &v.client;
    let client = if c.prefix == 0 {
        "no client information".to_string()
    } else if c.from_ecs {
        format!("client subnet {}/{}", c.addr, c.prefix)
    } else {
        format!("client {}", c.addr)
    };
    let mut out = format!(
        "{} {} ({client}): {}{}, state version {}\n",
        v.name,
        v.qtype,
        v.rcode,
        if v.authoritative {
            " authoritative"
        } else {
            ""
        },
        v.snapshot_version,
    );
    if let Some(z) = &v.zone {
        let _ = writeln!(out, "zone {z}");
    }
    for (title, records) in [("answer", &v.answers), ("authority", &v.authority)] {
        for r in records {
            let _ = writeln!(out, "  {title:<9} {r}");
        }
    }
    if let Some(st) = &v.steering {
        let _ = writeln!(
            out,
            "steered by record {} (policy {}, {})",
            st.record, st.policy, st.family
        );
        let _ = writeln!(
            out,
            "  chosen    {} -> {}",
            list(&st.chosen),
            list(&st.addresses)
        );
        if !st.decision.is_empty() {
            let _ = writeln!(out, "  decision  {}", st.decision);
        }
        let _ = writeln!(out, "  eligible  {}", list(&st.eligible));
        for e in &st.excluded {
            let _ = writeln!(out, "  excluded  {}: {}", e.pop, e.reason);
        }
        if st.fail_open {
            let _ = writeln!(out, "  FAIL-OPEN {}", or_dash(st.fail_open_reason.as_ref()));
        }
        let _ = writeln!(
            out,
            "  ttl       {} ({}){}",
            st.ttl,
            st.ttl_reason,
            if st.client_dependent {
                format!(", depends on the client (ECS scope /{})", v.ecs_scope)
            } else {
                String::new()
            }
        );
    }
    out
}

/// The answer to an admin action in one line.
fn admin_result(v: &AdminResult, now: f64) -> String {
    let mut out = format!("pop {}: {}", v.pop, v.state.as_str());
    if v.admin.is_some() {
        let _ = write!(out, ", {}", admin_text(v.admin.as_ref(), now));
    }
    let _ = writeln!(
        out,
        " (dns {}, state version {})",
        if v.serves_dns { "on" } else { "off" },
        v.version
    );
    out
}

/// An age in seconds as `0.2s` (one decimal below a minute), with `!`
/// when the report it belongs to is stale.
fn age_text(age: Option<f64>, fresh: bool) -> String {
    let mut t = match age {
        Some(a) if a < 60.0 => format!("{a:.1}s"),
        Some(a) => span(a),
        None => return "-".into(),
    };
    if !fresh {
        t.push('!');
    }
    t
}

/// A setting in seconds as a duration (`1s`, `500ms`).
fn secs_text(x: f64) -> String {
    if x.is_finite() && x >= 0.0 {
        crate::config::format_duration(std::time::Duration::from_secs_f64(x))
    } else {
        num(x)
    }
}

/// `GET /v1/fleet` as tables: the peers, then one row per PoP with one
/// column per fleet node as a vantage point (`-` where it owns the PoP).
pub fn fleet_text(v: &FleetDto) -> String {
    let me = &v.node;
    let Some(st) = v.settings.as_ref().filter(|_| v.enabled) else {
        return format!("node {me}: no fleet (the config has no fleet: section)\n");
    };
    let mut out = format!(
        "node {me} (pop {}): {} peers, pull {}, stale after {}, quorum {}, {}\n\n",
        or_dash(v.pop.as_ref()),
        v.peers.len(),
        secs_text(st.pull_interval),
        secs_text(st.stale_after),
        st.unreachable_quorum,
        if st.stream { "streaming" } else { "polling" }
    );
    let rows: Vec<Vec<String>> = v
        .peers
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                or_dash(p.pop.as_ref()),
                p.status.clone(),
                age_text(p.age, true),
                p.errors.to_string(),
                or_dash(p.last_error.as_ref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["PEER", "POP", "REPORT", "AGE", "ERRORS", "LAST ERROR"],
        &rows,
    ));
    out.push('\n');
    let mut nodes: Vec<String> = v.peers.keys().cloned().collect();
    nodes.push(me.clone());
    nodes.sort();
    let rows: Vec<Vec<String>> = v
        .pops
        .iter()
        .map(|(name, p)| {
            let o = &p.owner;
            let mut owner = format!("{} ({})", o.verdict, p.owners.join(", "));
            if !p.owners.contains(me) && !p.owners.is_empty() {
                let _ = write!(owner, " {}", age_text(o.age, o.fresh));
            }
            let mut row = vec![name.clone(), owner];
            for n in &nodes {
                row.push(match p.vantage.get(n) {
                    Some(_) if p.owners.contains(n) => "-".into(),
                    None => "-".into(),
                    Some(x) if n == me => x.verdict.clone(),
                    Some(x) => format!("{} {}", x.verdict, age_text(x.age, x.fresh)),
                });
            }
            row.push(or_dash(p.admin.as_ref().map(|a| &a.step)));
            row.push(p.verdict.clone());
            row.push(p.why.clone());
            row
        })
        .collect();
    let mut header: Vec<&str> = vec!["POP", "OWNER"];
    header.extend(nodes.iter().map(String::as_str));
    header.extend(["ADMIN", "FLEET", "WHY"]);
    out.push_str(&table(&header, &rows));
    out
}

/// Human rendering of a successful answer.
pub fn human(answer: &Answer, now: f64) -> String {
    match answer {
        Answer::State(v) => {
            let n = &v.node;
            let mut out = format!(
                "node {} (pop {}, AS{}, router-id {}), state version {}\n\n",
                n.name,
                or_dash(n.pop.as_ref()),
                n.asn,
                n.router_id,
                v.version
            );
            out.push_str(&pops_table(v.pops.values(), now));
            out.push('\n');
            if v.announcements.is_empty() {
                out.push_str("no prefixes announced\n");
            } else {
                out.push_str(&announcements_table(&v.announcements));
            }
            if !v.peers.is_empty() {
                out.push('\n');
                out.push_str(&peers_table(&v.peers));
            }
            out
        }
        Answer::Pops(v) => pops_table(v.pops.values(), now),
        Answer::Pop(v) => {
            let mut out = pops_table(std::iter::once(v), now);
            let checks: Vec<Check> = v
                .checks
                .iter()
                .map(|(name, c)| Check::new(&v.name, name, c.clone()))
                .collect();
            out.push('\n');
            out.push_str(&checks_table(&checks, now));
            let rows: Vec<Vec<String>> = v
                .prefixes
                .iter()
                .map(|p| {
                    vec![
                        p.prefix.to_string(),
                        if p.announced {
                            or_dash(p.mode.map(|m| m.as_str()))
                        } else {
                            "not announced".into()
                        },
                    ]
                })
                .collect();
            if !rows.is_empty() {
                out.push('\n');
                out.push_str(&table(&["PREFIX", "ANNOUNCED"], &rows));
            }
            out
        }
        Answer::Checks(v) => checks_table(v, now),
        Answer::Peers(v) => {
            if v.is_empty() {
                "no BGP peers\n".into()
            } else {
                peers_table(v)
            }
        }
        Answer::Admin(v) => admin_result(v, now),
        Answer::Reload(v) => format!("config reloaded (state version {})\n", v.version),
        Answer::Fleet(v) => fleet_text(v),
        Answer::Explain(v) => explain_text(v),
    }
}

/// A refusal in words: status, message, field, every listed error.
pub fn refused_text(
    status: StatusCode,
    error: Option<&crate::api::dto::ErrorBody>,
    raw: &[u8],
) -> String {
    let mut s = format!("error: {status}");
    match error {
        Some(e) => {
            let _ = write!(s, ": {}", e.error);
            match e.field.as_deref() {
                Some("force") if status == StatusCode::CONFLICT => {
                    s.push_str(" (add --force to do it anyway)");
                }
                Some(f) => {
                    let _ = write!(s, " (field {f})");
                }
                None => {}
            }
            for e in &e.errors {
                let _ = write!(s, "\n  {e}");
            }
        }
        None => {
            let t = String::from_utf8_lossy(raw);
            if !t.is_empty() {
                let _ = write!(s, ": {t}");
            }
        }
    }
    s
}

/// One event stream message as a line.
pub fn event_line(id: Option<&str>, kind: Option<&str>, data: &str) -> String {
    let kind = kind.unwrap_or("message");
    if kind == "lagged" {
        let missed = serde_json::from_str::<Lagged>(data)
            .map(|l| l.missed.to_string())
            .unwrap_or_else(|_| "null".into());
        return format!("(missed {missed} events: client too slow)");
    }
    let ev = serde_json::from_str::<Event>(data).ok();
    let at = ev
        .as_ref()
        .map(|e| clock(e.at))
        .unwrap_or_else(|| "--:--:--".into());
    let msg = ev.as_ref().map(|e| e.message.as_str()).unwrap_or(data);
    format!("{at} #{:<5} {kind:<10} {msg}", id.unwrap_or("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dto::peers::Bfd;
    use crate::api::dto::view::{AdminKind, PopState, Step};
    use crate::api::dto::ErrorBody;

    fn admin(step: Step, next_at: Option<f64>, until: Option<f64>) -> AdminStatus {
        AdminStatus {
            kind: AdminKind::Drain,
            reason: "x".into(),
            who: "me".into(),
            step,
            next_at,
            until,
            held: None,
        }
    }

    #[test]
    fn time_helpers() {
        assert_eq!(clock(3661.0), "01:01:01Z");
        assert_eq!(span(59.9), "59s");
        assert_eq!(span(600.0), "10m");
        assert_eq!(span(-3.0), "0s");
        assert_eq!(num(2.0), "2.0");
        assert_eq!(num(1_763_890_000.123), "1763890000.123");
    }

    #[test]
    fn human_tables_show_the_essentials() {
        let v = AdminResult {
            version: 7,
            pop: "ams".into(),
            state: PopState::Draining,
            serves_dns: false,
            admin: Some(admin(Step::DnsRemoved, Some(130.0), None)),
        };
        assert_eq!(
            human(&Answer::Admin(v), 100.0),
            "pop ams: draining, dns_removed (me), next in 30s (dns off, state version 7)\n"
        );
        let timed = admin(Step::Drained, Some(160.0), Some(160.0));
        assert_eq!(
            admin_text(Some(&timed), 100.0),
            "drained (me), next in 60s, expires in 60s"
        );
        let pop = Pop {
            name: "ams".into(),
            local: true,
            location: None,
            state: PopState::Up,
            healthy: Some(true),
            serves_dns: true,
            reason: "all checks up".into(),
            since: 40.0,
            checks: BTreeMap::new(),
            admin: None,
            admin_unsaved: None,
            fail_static: None,
            prefixes: Vec::new(),
        };
        let pops = Pops {
            version: 1,
            pops: BTreeMap::from([("ams".to_string(), pop)]),
        };
        let out = human(&Answer::Pops(pops), 100.0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("POP"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&cells[..6], &["ams", "up", "healthy", "yes", "60s", "-"]);
        let peer = Peer {
            address: "192.0.2.254".parse().expect("ip"),
            bfd: Some(Bfd {
                detection_time_ms: None,
                discarded: 0,
                error: None,
                failures: 2,
                flaps: 2,
                held_until: None,
                holds_bgp_down: true,
                local_diag: "control detection time expired".into(),
                local_discriminator: 1,
                remote_control_plane_independent: false,
                remote_diag: "no diagnostic".into(),
                remote_discriminator: 0,
                remote_state: "down".into(),
                since: None,
                state: "down".into(),
                ttl_dropped: 0,
                tx_interval_ms: None,
            }),
            end_of_rib_sent: false,
            established_since: None,
            families: Vec::new(),
            flaps: 2,
            last_error: None,
            last_error_at: Some(1_763_890_000.0),
            local_asn: 64512,
            prefixes_advertised: 0,
            prefixes_received: 0,
            remote_asn: 64500,
            state: "idle".into(),
            updates_received: 0,
            updates_sent: 0,
            uptime_secs: None,
            withdrawals_received: 0,
        };
        let out = human(
            &Answer::Peers(BTreeMap::from([("r1".to_string(), peer)])),
            100.0,
        );
        assert!(
            out.contains("address=192.0.2.254 bfd=down (holds BGP down) end_of_rib_sent=no established_since=- flaps=2 last_error=- last_error_at=1763890000.0 local_asn=64512"),
            "{out}"
        );
        assert!(
            out.starts_with("PEER  STATE  DETAILS\nr1    idle   "),
            "{out}"
        );
    }

    #[test]
    fn fleet_matrix_shows_owners_vantage_points_and_staleness() {
        let v: FleetDto = serde_json::from_value(serde_json::json!({"enabled": true, "node": "a", "pop": "a",
            "settings": {"pull_interval": 1.0, "stale_after": 5.0, "timeout": 2.0, "stream": true,
                "unreachable_quorum": 2, "forward_admin": true, "drain_ack_timeout": 30.0, "fail_static": null},
            "peers": {
                "b": {"pop": "b", "url": "http://192.0.2.2:8080", "status": "fresh", "age": 0.21, "errors": 0,
                      "last_error": null, "pulls": 3, "pull_errors": 0},
                "c": {"pop": "c", "url": "http://192.0.2.3:8080", "status": "stale", "age": 7.4, "errors": 4,
                      "last_error": "connect refused", "pulls": 3, "pull_errors": 4}},
            "pops": {
                "c": {"owners": ["c"], "owner": {"verdict": "unknown", "reported": "up", "age": 7.4, "fresh": false, "reason": ""},
                      "admin": null,
                      "vantage": {"a": {"verdict": "up", "age": 0.0, "fresh": true},
                                  "b": {"verdict": "up", "age": 0.21, "fresh": true}},
                      "reachability": "reachable", "reachable": 2, "unreachable": 0, "fail_static": null,
                      "verdict": "up", "serves_dns": true,
                      "why": "owner unknown; reachable from 2 of 2 vantage points"}}}))
        .unwrap();
        let out = fleet_text(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "node a (pop a): 2 peers, pull 1s, stale after 5s, quorum 2, streaming"
        );
        assert!(
            lines[4].starts_with("c     c    stale   7.4s  4       connect refused"),
            "{out}"
        );
        assert!(lines[6].starts_with("POP  OWNER"), "{out}");
        let cells: Vec<&str> = lines[7].split_whitespace().collect();
        assert_eq!(
            &cells[..9],
            &["c", "unknown", "(c)", "7.4s!", "up", "up", "0.2s", "-", "-"],
            "{out}"
        );
        assert!(
            lines[7].ends_with("up     owner unknown; reachable from 2 of 2 vantage points"),
            "{out}"
        );
        let off: FleetDto = serde_json::from_value(
            serde_json::json!({"enabled": false, "node": "a", "pop": null, "peers": {}, "pops": {}}),
        )
        .unwrap();
        assert_eq!(
            fleet_text(&off),
            "node a: no fleet (the config has no fleet: section)\n"
        );
    }

    #[test]
    fn refusals_are_explained() {
        let e = ErrorBody {
            error: "bad".into(),
            field: Some("duration".into()),
            errors: vec!["a: b".into()],
        };
        assert_eq!(
            refused_text(StatusCode::UNPROCESSABLE_ENTITY, Some(&e), b""),
            "error: 422 Unprocessable Entity: bad (field duration)\n  a: b"
        );
        let e = ErrorBody {
            error: "PoP ams is the last PoP serving traffic".into(),
            field: Some("force".into()),
            errors: Vec::new(),
        };
        assert!(refused_text(StatusCode::CONFLICT, Some(&e), b"")
            .ends_with("(add --force to do it anyway)"));
        assert_eq!(
            refused_text(StatusCode::BAD_GATEWAY, None, b"upstream down"),
            "error: 502 Bad Gateway: upstream down"
        );
    }

    #[test]
    fn events_as_lines() {
        let data = r#"{"seq":7,"at":3661.0,"kind":"admin","pop":"fra","check":null,"message":"pop fra drained"}"#;
        assert_eq!(
            event_line(Some("7"), Some("admin"), data),
            "01:01:01Z #7     admin      pop fra drained"
        );
        assert_eq!(
            event_line(None, Some("lagged"), r#"{"missed":3}"#),
            "(missed 3 events: client too slow)"
        );
        assert_eq!(
            event_line(None, None, "not json"),
            "--:--:-- #-     message    not json"
        );
    }

    #[test]
    fn explain_in_words() {
        let v: Explanation = serde_json::from_value(serde_json::json!({"name": "www.example.test.", "qtype": "A", "rcode": "NOERROR", "authoritative": true,
            "snapshot_version": 9, "zone": "example.test.", "client": {"addr": "198.51.100.0", "prefix": 24, "from_ecs": true},
            "answers": ["www.example.test. 5 IN A 192.0.2.10"], "authority": [], "ecs_scope": 24,
            "steering": {"record": "www.example.test.", "policy": "failover", "family": "A", "chosen": ["ams"],
                "addresses": ["192.0.2.10"], "eligible": ["ams"], "excluded": [{"pop": "fra", "reason": "draining"}],
                "fail_open": false, "fail_open_reason": null, "client_dependent": true, "ttl": 5, "ttl_reason": "a PoP changed recently",
                "rule": {"rule": "fixed"}, "geo": null, "distances": [],
                "decision": "first healthy PoP in failover order: ams"}}))
        .expect("an explanation");
        let out = explain_text(&v);
        assert!(
            out.starts_with(
                "www.example.test. A (client subnet 198.51.100.0/24): NOERROR authoritative"
            ),
            "{out}"
        );
        assert!(
            out.contains("  answer    www.example.test. 5 IN A 192.0.2.10\n"),
            "{out}"
        );
        assert!(out.contains("  chosen    ams -> 192.0.2.10\n"), "{out}");
        assert!(
            out.contains("  decision  first healthy PoP in failover order: ams\n"),
            "{out}"
        );
        assert!(out.contains("  excluded  fra: draining\n"), "{out}");
        assert!(
            out.contains(
                "  ttl       5 (a PoP changed recently), depends on the client (ECS scope /24)"
            ),
            "{out}"
        );
        assert!(!out.contains("FAIL-OPEN"));
    }
}
