//! `fleet` and `pops[].owners`: the other nodes of the fleet, who owns
//! which PoP, the pull timings and the merge rules.
//!
//! Ownership: a PoP is owned by the nodes whose `pop` (`node.pop` for this
//! node, `fleet.peers[].pop` for the others) names it. A PoP may have
//! several owners only if its `owners` lists them; a listed owner must be
//! a fleet node whose `pop` is that PoP.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::checks::parse_url;
use super::common::*;
use crate::config::duration::format_duration;
use crate::config::raw::*;
use crate::model::*;

/// Longest `pull_interval`.
const MAX_PULL_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest `stale_after`.
const MAX_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Shortest `pull_interval` and `timeout`.
const MIN_FLEET_DURATION: Duration = Duration::from_millis(100);
/// Longest `timeout`.
const MAX_FLEET_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `drain_ack_timeout`.
const MAX_DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest `fail_static.window`.
const MAX_FAIL_STATIC_WINDOW: Duration = Duration::from_secs(60);
/// Largest `ca_file` (the system CA bundle is about 200 KiB).
const MAX_CA_FILE: u64 = 16 << 20;
/// Largest `unreachable_quorum` and `fail_static.min_pops`.
const MAX_QUORUM: u64 = 100;
const MAX_MIN_POPS: u64 = 1000;

/// Validates `fleet` (and every `pops[].owners`). `None` without a fleet.
pub(super) fn fleet(
    cx: &mut Ctx,
    raw: &RawConfig,
    my_pop: Option<&PopName>,
    pop_index: &BTreeMap<&str, usize>,
) -> Option<FleetConfig> {
    let Some(rf) = &raw.fleet else {
        for (i, p) in raw.pops.iter().enumerate() {
            if p.owners.is_some() {
                cx.err(
                    format!("pops[{i}].owners"),
                    "only used with a fleet: add a `fleet` section listing the other nodes",
                );
            }
        }
        return None;
    };
    let mut ok = true;
    let me = match Name::parse(raw.node.name.trim()) {
        Ok(n) => Some(n),
        Err(e) => {
            cx.err("node.name", format!("{e} (a fleet node's name)"));
            ok = false;
            None
        }
    };
    let mut peers: BTreeMap<NodeName, FleetPeer> = BTreeMap::new();
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    // Which node claims which PoP, with the path that says so.
    let mut claims: Vec<(String, NodeName, PopName)> = Vec::new();
    if let (Some(me), Some(p)) = (&me, my_pop) {
        claims.push(("node.pop".to_string(), me.clone(), p.clone()));
    }
    for (i, rp) in rf.peers.iter().enumerate() {
        let path = format!("fleet.peers[{i}]");
        let name: Option<NodeName> = cx.name(&format!("{path}.name"), &rp.name);
        if let Some(n) = &name {
            if me.as_ref() == Some(n) {
                cx.err(
                    format!("{path}.name"),
                    format!(
                        "{:?} is this node's own name (node.name); list only the other nodes",
                        rp.name
                    ),
                );
                ok = false;
            } else if let Some(j) = first.get(n.as_str()) {
                cx.err(
                    format!("{path}.name"),
                    format!(
                        "duplicate node {:?} (first defined at fleet.peers[{j}])",
                        rp.name
                    ),
                );
                ok = false;
            } else {
                first.insert(n.to_string(), i);
            }
        }
        let pop = rp.pop.as_deref().and_then(|p| {
            let n: PopName = cx.name(&format!("{path}.pop"), p)?;
            if !pop_index.contains_key(p) {
                cx.err(format!("{path}.pop"), unknown_pop(p, pop_index));
                return None;
            }
            Some(n)
        });
        if rp.pop.is_some() && pop.is_none() {
            ok = false;
        }
        let url = cx.ok(&format!("{path}.url"), peer_url(&rp.url));
        let token_file = rp.token_file.clone();
        if token_file
            .as_ref()
            .is_some_and(|t| t.as_os_str().is_empty())
        {
            cx.err(format!("{path}.token_file"), "expected a file path");
        }
        let mut ca = None;
        if let (Some(file), Some(u)) = (&rp.ca_file, &url) {
            let key = format!("{path}.ca_file");
            if !u.tls {
                cx.err(
                    key,
                    format!(
                        "{:?} is not used: the url is http://, not https://",
                        file.display().to_string()
                    ),
                );
            } else if file.as_os_str().is_empty() {
                cx.err(key, "expected a file path");
            } else {
                ca = cx.ok(&key, read_ca_file(file));
            }
        }
        let (Some(name), Some(url)) = (name, url) else {
            ok = false;
            continue;
        };
        if let Some(p) = &pop {
            claims.push((format!("{path}.pop"), name.clone(), p.clone()));
        }
        if !peers.contains_key(&name) && me.as_ref() != Some(&name) {
            peers.insert(
                name.clone(),
                FleetPeer {
                    name,
                    pop,
                    url,
                    token_file,
                    ca_file: ca,
                },
            );
        }
    }
    let owners = owners(cx, raw, me.as_ref(), &peers, &claims);
    let timing = |cx: &mut Ctx, key: &str, raw: Option<&RawDuration>, default: Duration| {
        cx.duration(&format!("fleet.{key}"), raw)
            .map(|d| d.unwrap_or(default))
    };
    let pull_interval = timing(
        cx,
        "pull_interval",
        rf.pull_interval.as_ref(),
        DEFAULT_PULL_INTERVAL,
    );
    let stale_after = timing(
        cx,
        "stale_after",
        rf.stale_after.as_ref(),
        DEFAULT_STALE_AFTER,
    );
    let timeout = timing(cx, "timeout", rf.timeout.as_ref(), DEFAULT_FLEET_TIMEOUT);
    let ack = timing(
        cx,
        "drain_ack_timeout",
        rf.drain_ack_timeout.as_ref(),
        DEFAULT_DRAIN_ACK_TIMEOUT,
    );
    let range = |cx: &mut Ctx, key: &str, d: Option<Duration>, min: Duration, max: Duration| {
        let d = d?;
        if d < min || d > max {
            cx.err(
                format!("fleet.{key}"),
                format!(
                    "{} is out of range: expected {} to {}",
                    format_duration(d),
                    format_duration(min),
                    format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    };
    let pull_interval = range(
        cx,
        "pull_interval",
        pull_interval,
        MIN_FLEET_DURATION,
        MAX_PULL_INTERVAL,
    );
    let stale_after = range(
        cx,
        "stale_after",
        stale_after,
        MIN_FLEET_DURATION,
        MAX_STALE_AFTER,
    );
    let timeout = range(
        cx,
        "timeout",
        timeout,
        MIN_FLEET_DURATION,
        MAX_FLEET_TIMEOUT,
    );
    let ack = range(
        cx,
        "drain_ack_timeout",
        ack,
        Duration::ZERO,
        MAX_DRAIN_ACK_TIMEOUT,
    );
    if let (Some(p), Some(s)) = (pull_interval, stale_after) {
        if s < 2 * p {
            cx.err(
                "fleet.stale_after",
                format!(
                    "{} must be at least twice pull_interval ({}): a live peer's report would go stale between two pulls",
                    format_duration(s),
                    format_duration(p)
                ),
            );
        }
    }
    if let (Some(t), Some(s)) = (timeout, stale_after) {
        if t >= s {
            cx.err(
                "fleet.timeout",
                format!(
                    "{} must be shorter than stale_after ({})",
                    format_duration(t),
                    format_duration(s)
                ),
            );
        }
    }
    let quorum = match rf.unreachable_quorum {
        None => Some(DEFAULT_UNREACHABLE_QUORUM),
        Some(q) if (2..=MAX_QUORUM).contains(&q) => Some(q as u32),
        Some(q) => {
            cx.err(
                "fleet.unreachable_quorum",
                format!(
                    "{q} is out of range: expected 2 to {MAX_QUORUM} (one vantage point must never steer a PoP out)"
                ),
            );
            None
        }
    };
    let fail_static = fail_static(cx, rf.fail_static.as_ref());
    if !ok {
        return None;
    }
    Some(FleetConfig {
        me: me?,
        peers,
        owners: owners?,
        pull_interval: pull_interval?,
        stale_after: stale_after?,
        timeout: timeout?,
        stream: rf.stream.unwrap_or(true),
        unreachable_quorum: quorum?,
        forward_admin: rf.forward_admin.unwrap_or(true),
        drain_ack_timeout: ack?,
        fail_static: fail_static?,
    })
}

/// The owners of each PoP, from the nodes' claims and `pops[].owners`.
fn owners(
    cx: &mut Ctx,
    raw: &RawConfig,
    me: Option<&NodeName>,
    peers: &BTreeMap<NodeName, FleetPeer>,
    claims: &[(String, NodeName, PopName)],
) -> Option<BTreeMap<PopName, Vec<NodeName>>> {
    let errors = cx.errors.len();
    let mut nodes: Vec<&str> = peers.keys().map(|n| n.as_str()).collect();
    if let Some(me) = me {
        nodes.push(me.as_str());
    }
    nodes.sort();
    let mut out: BTreeMap<PopName, Vec<NodeName>> = BTreeMap::new();
    // Explicit lists first.
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, rp) in raw.pops.iter().enumerate() {
        let Some(list) = &rp.owners else { continue };
        let Ok(pop) = PopName::parse(&rp.name) else {
            continue;
        };
        if list.is_empty() {
            cx.err(
                format!("pops[{i}].owners"),
                "expected at least one node name",
            );
            continue;
        }
        let mut owners: Vec<NodeName> = Vec::new();
        for (k, o) in list.iter().enumerate() {
            let path = format!("pops[{i}].owners[{k}]");
            let Some(n) = cx.name::<kind::Node>(&path, o) else {
                continue;
            };
            if !nodes.contains(&n.as_str()) {
                cx.err(
                    &path,
                    format!("unknown node {o:?} (fleet nodes: {})", nodes.join(", ")),
                );
            } else if !claims.iter().any(|(_, c, p)| c == &n && p == &pop) {
                let says = match claims.iter().find(|(_, c, _)| c == &n) {
                    Some((at, _, p)) => format!("its pop is {:?} ({at})", p.as_str()),
                    None => "it has no pop".to_string(),
                };
                cx.err(
                    &path,
                    format!("node {o:?} does not own PoP {:?}: {says}", rp.name),
                );
            } else if owners.contains(&n) {
                cx.err(&path, format!("node {o:?} is listed twice"));
            } else {
                owners.push(n);
            }
        }
        listed.insert(rp.name.as_str(), i);
        owners.sort();
        out.insert(pop, owners);
    }
    // Claims: a node's `pop` must be listed when the PoP lists owners, and
    // two nodes may claim one PoP only if it lists them.
    let mut claimed: BTreeMap<PopName, (String, NodeName)> = BTreeMap::new();
    for (path, node, pop) in claims {
        if let Some(i) = listed.get(pop.as_str()) {
            if !out.get(pop).is_some_and(|o| o.contains(node)) {
                cx.err(
                    path,
                    format!(
                        "node {node:?} claims PoP {pop:?}, but pops[{i}].owners does not list it"
                    ),
                );
            }
            continue;
        }
        match claimed.get(pop) {
            Some((first_path, first)) => cx.err(
                path,
                format!(
                    "PoP {pop:?} is already owned by node {first:?} ({first_path}); list both in pops[{}].owners if both nodes own it",
                    raw.pops
                        .iter()
                        .position(|p| p.name == pop.as_str())
                        .unwrap_or(0)
                ),
            ),
            None => {
                claimed.insert(pop.clone(), (path.clone(), node.clone()));
            }
        }
    }
    for (pop, (_, node)) in claimed {
        out.entry(pop).or_default().push(node);
    }
    (cx.errors.len() == errors).then_some(out)
}

fn fail_static(cx: &mut Ctx, raw: Option<&RawFailStatic>) -> Option<Option<FailStatic>> {
    let rule = match raw {
        None => return Some(Some(DEFAULT_FAIL_STATIC)),
        Some(RawFailStatic::Off) => return Some(None),
        Some(RawFailStatic::On(r)) => r,
    };
    let mut ok = true;
    let fraction = rule.fraction.unwrap_or(DEFAULT_FAIL_STATIC.fraction);
    if !(fraction > 0.0 && fraction <= 1.0) {
        cx.err(
            "fleet.fail_static.fraction",
            format!("{fraction} is out of range: expected more than 0 and at most 1"),
        );
        ok = false;
    }
    let min_pops = match rule.min_pops {
        None => DEFAULT_FAIL_STATIC.min_pops,
        Some(n) if (2..=MAX_MIN_POPS).contains(&n) => n as u32,
        Some(n) => {
            cx.err(
                "fleet.fail_static.min_pops",
                format!("{n} is out of range: expected 2 to {MAX_MIN_POPS} (one PoP's own failure is never held)"),
            );
            ok = false;
            0
        }
    };
    let window = match cx.duration("fleet.fail_static.window", rule.window.as_ref()) {
        None => {
            ok = false;
            Duration::ZERO
        }
        Some(None) => DEFAULT_FAIL_STATIC.window,
        Some(Some(w)) if w > MAX_FAIL_STATIC_WINDOW => {
            cx.err(
                "fleet.fail_static.window",
                format!(
                    "{} is out of range: expected 0s to {}",
                    format_duration(w),
                    format_duration(MAX_FAIL_STATIC_WINDOW)
                ),
            );
            ok = false;
            w
        }
        Some(Some(w)) => w,
    };
    ok.then_some(Some(FailStatic {
        fraction,
        min_pops,
        window,
    }))
}

/// A peer's API base URL: `http(s)://host[:port][/prefix]`.
/// Reads a PEM file of CA certificates: the certificates in it that can
/// be trust anchors, or why there are none (cannot read it, malformed
/// PEM, no certificate, none usable).
pub(super) fn read_ca_file(path: &Path) -> Result<CaFile, String> {
    use std::io::Read;
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read {shown}: {e}");
    // A regular file of bounded size: never a device, a FIFO or a
    // directory (reading one could block or not end).
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > MAX_CA_FILE {
        return Err(format!(
            "{shown} is larger than {} MiB: not a file of CA certificates",
            MAX_CA_FILE >> 20
        ));
    }
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE).read_to_end(&mut pem))
        .map_err(cannot)?;
    let mut certs = Vec::new();
    let mut store = rustls::RootCertStore::empty();
    let mut found = 0usize;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{shown} is not a valid PEM file: {e}"))?;
        found += 1;
        if store.add(cert.clone()).is_ok() {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(if found == 0 {
            format!("no certificate in {shown} (expected PEM \"BEGIN CERTIFICATE\" blocks)")
        } else {
            format!("none of the {found} certificate(s) in {shown} can be a trusted CA (not valid X.509)")
        });
    }
    Ok(CaFile {
        path: path.to_path_buf(),
        certs: certs.into(),
    })
}

fn peer_url(s: &str) -> Result<PeerUrl, String> {
    let t = s.trim();
    if t.contains(['?', '#']) {
        return Err(format!(
            "{s:?}: expected a base URL without query or fragment, e.g. http://192.0.2.2:8080"
        ));
    }
    let (tls, target, path) = parse_url(t).map_err(|e| {
        if t.contains("://") && !t.starts_with("http") {
            format!("{s:?} is not an http:// or https:// URL")
        } else {
            e
        }
    })?;
    Ok(PeerUrl {
        tls,
        host: target.host,
        port: target.port,
        base_path: path.trim_end_matches('/').to_string(),
    })
}
