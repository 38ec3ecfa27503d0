//! `pops[].checks[]`: the probe kind and its own keys, and the timing
//! (interval, fast interval, timeout, rise, fall, jitter; `fall` defaults
//! to 1 for the event-driven kinds), and the syntax of what probes name:
//! tcp and http(s) targets, systemd unit names, interface names, service
//! addresses.

use std::net::Ipv6Addr;
use std::time::Duration;

use super::common::*;
use crate::config::duration::format_duration;
use crate::config::raw::*;
use crate::model::*;

const TYPE_KEYS: [&str; 20] = [
    "target",
    "url",
    "host_header",
    "expect_status",
    "body_contains",
    "tls_insecure",
    "server",
    "qname",
    "qtype",
    "expect_rcode",
    "expect_answer",
    "command",
    "env",
    "pass_env",
    "path",
    "healthy_when",
    "pid_file",
    "unit",
    "interface",
    "address",
];

fn allowed_keys(kind: RawCheckType) -> &'static [&'static str] {
    match kind {
        RawCheckType::Tcp => &["target"],
        RawCheckType::Http => &["url", "host_header", "expect_status", "body_contains"],
        RawCheckType::Https => &[
            "url",
            "host_header",
            "expect_status",
            "body_contains",
            "tls_insecure",
        ],
        RawCheckType::Dns => &["server", "qname", "qtype", "expect_rcode", "expect_answer"],
        RawCheckType::Exec => &["command", "env", "pass_env"],
        RawCheckType::File => &["path", "healthy_when"],
        RawCheckType::Process => &["pid_file", "unit"],
        RawCheckType::Systemd => &["unit"],
        RawCheckType::Interface => &["interface"],
        RawCheckType::Address => &["address", "interface"],
    }
}

pub(super) fn check(cx: &mut Ctx, path: &str, raw: &RawCheck) -> Option<Check> {
    let name = cx.name(&format!("{path}.name"), &raw.name);
    let kind = raw.kind.as_str();
    let a = if kind.starts_with(['a', 'e', 'i']) {
        "an"
    } else {
        "a"
    };
    let present = [
        raw.target.is_some(),
        raw.url.is_some(),
        raw.host_header.is_some(),
        raw.expect_status.is_some(),
        raw.body_contains.is_some(),
        raw.tls_insecure.is_some(),
        raw.server.is_some(),
        raw.qname.is_some(),
        raw.qtype.is_some(),
        raw.expect_rcode.is_some(),
        raw.expect_answer.is_some(),
        raw.command.is_some(),
        raw.env.is_some(),
        raw.pass_env.is_some(),
        raw.path.is_some(),
        raw.healthy_when.is_some(),
        raw.pid_file.is_some(),
        raw.unit.is_some(),
        raw.interface.is_some(),
        raw.address.is_some(),
    ];
    let allowed = allowed_keys(raw.kind);
    for (key, present) in TYPE_KEYS.iter().zip(present) {
        if present && !allowed.contains(key) {
            cx.err(
                format!("{path}.{key}"),
                format!(
                    "not used by {a} {kind} check ({a} {kind} check takes: {})",
                    allowed.join(", ")
                ),
            );
        }
    }
    let required = |cx: &mut Ctx, key: &str, example: &str| {
        cx.err(
            format!("{path}.{key}"),
            format!("required for {a} {kind} check ({example})"),
        );
    };
    let probe = match raw.kind {
        RawCheckType::Tcp => match &raw.target {
            None => {
                required(cx, "target", "host:port, e.g. \"127.0.0.1:80\"");
                None
            }
            Some(t) => cx
                .ok(&format!("{path}.target"), parse_host_port(t))
                .map(|target| Probe::Tcp { target }),
        },
        RawCheckType::Http | RawCheckType::Https => {
            let want_tls = raw.kind == RawCheckType::Https;
            let url = match &raw.url {
                None => {
                    required(
                        cx,
                        "url",
                        &format!("e.g. \"{kind}://127.0.0.1:8080/healthz\""),
                    );
                    None
                }
                Some(u) => {
                    let p = format!("{path}.url");
                    match cx.ok(&p, parse_url(u)) {
                        Some((tls, _, _)) if tls != want_tls => {
                            cx.err(
                                p,
                                format!(
                                    "{u:?}: a {kind} check needs a {kind}:// URL (or set type: {})",
                                    if tls { "https" } else { "http" }
                                ),
                            );
                            None
                        }
                        other => other,
                    }
                }
            };
            let mut expect_status = Vec::new();
            match &raw.expect_status {
                None => expect_status.push(200),
                Some(list) if list.is_empty() => cx.err(
                    format!("{path}.expect_status"),
                    "expected at least one status code",
                ),
                Some(list) => {
                    for (k, &s) in list.iter().enumerate() {
                        if (100..=599).contains(&s) {
                            expect_status.push(s as u16);
                        } else {
                            cx.err(
                                format!("{path}.expect_status[{k}]"),
                                format!("{s} is not an HTTP status code: expected 100 to 599"),
                            );
                        }
                    }
                }
            }
            if let Some(h) = &raw.host_header {
                if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    cx.err(
                        format!("{path}.host_header"),
                        format!("{h:?} is not a valid Host header"),
                    );
                }
            }
            url.map(|(tls, target, url_path)| Probe::Http {
                tls,
                target,
                path: url_path,
                host_header: raw.host_header.clone(),
                expect_status,
                body_contains: raw.body_contains.clone(),
                tls_insecure: raw.tls_insecure.unwrap_or(false),
            })
        }
        RawCheckType::Dns => {
            let server = match &raw.server {
                None => {
                    required(
                        cx,
                        "server",
                        "address of the DNS server, e.g. \"127.0.0.1:53\"",
                    );
                    None
                }
                Some(s) => cx.ok(&format!("{path}.server"), parse_socket_addr(s, 53)),
            };
            let qname = match &raw.qname {
                None => {
                    required(cx, "qname", "the name to query, e.g. \"example.net.\"");
                    None
                }
                Some(q) => cx.ok(&format!("{path}.qname"), parse_domain(q, None)),
            };
            let qtype = match &raw.qtype {
                None => Some(DnsType::A),
                Some(t) => cx.ok(
                    &format!("{path}.qtype"),
                    DnsType::parse(t).ok_or_else(|| {
                        format!("{t:?} is not a supported type: expected one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS, SOA")
                    }),
                ),
            };
            let expect_rcode = match &raw.expect_rcode {
                None => Some(DnsRcode::NoError),
                Some(r) => cx.ok(&format!("{path}.expect_rcode"), parse_rcode(r)),
            };
            match (server, qname, qtype, expect_rcode) {
                (Some(server), Some(qname), Some(qtype), Some(expect_rcode)) => Some(Probe::Dns {
                    server,
                    qname,
                    qtype,
                    expect_rcode,
                    expect_answer: raw.expect_answer.as_ref().map(|t| t.0.clone()),
                }),
                _ => None,
            }
        }
        RawCheckType::Exec => match &raw.command {
            None => {
                required(
                    cx,
                    "command",
                    "the argv list, e.g. [\"/usr/bin/curl\", \"-f\", \"http://127.0.0.1/\"]",
                );
                None
            }
            Some(cmd) if cmd.first().is_none_or(|c| c.0.trim().is_empty()) => {
                cx.err(
                    format!("{path}.command"),
                    "the command is empty: expected a program and its arguments, e.g. [\"/bin/true\"]",
                );
                None
            }
            Some(cmd) => {
                let env = exec_env(cx, path, raw);
                Some(Probe::Exec {
                    command: cmd.iter().map(|t| t.0.clone()).collect(),
                    env: env?,
                })
            }
        },
        RawCheckType::File => match &raw.path {
            None => {
                required(cx, "path", "e.g. \"/etc/anypop/maintenance\"");
                None
            }
            Some(p) if !p.is_absolute() => {
                cx.err(
                    format!("{path}.path"),
                    format!("{:?} is not an absolute path", p.display().to_string()),
                );
                None
            }
            Some(p) => Some(Probe::File {
                path: p.clone(),
                healthy_if_present: raw.healthy_when == Some(RawHealthyWhen::Present),
            }),
        },
        RawCheckType::Process => match (&raw.pid_file, &raw.unit) {
            (None, None) => {
                cx.err(
                    path.to_string(),
                    "a process check needs pid_file (e.g. \"/run/nginx.pid\") or unit (e.g. \"nginx.service\")",
                );
                None
            }
            (Some(_), Some(_)) => {
                cx.err(
                    format!("{path}.unit"),
                    "give either pid_file or unit, not both",
                );
                None
            }
            (Some(p), None) if !p.is_absolute() => {
                cx.err(
                    format!("{path}.pid_file"),
                    format!("{:?} is not an absolute path", p.display().to_string()),
                );
                None
            }
            (Some(p), None) => Some(Probe::Process {
                source: PidSource::PidFile(p.clone()),
            }),
            (None, Some(u)) => cx
                .ok(&format!("{path}.unit"), parse_unit_name(u, true))
                .map(|u| Probe::Process {
                    source: PidSource::Unit(u),
                }),
        },
        RawCheckType::Systemd => match &raw.unit {
            None => {
                required(cx, "unit", "the unit name, e.g. \"nginx.service\"");
                None
            }
            Some(u) => cx
                .ok(&format!("{path}.unit"), parse_unit_name(u, false))
                .map(|unit| Probe::Systemd { unit }),
        },
        RawCheckType::Interface => match &raw.interface {
            None => {
                required(cx, "interface", "the interface name, e.g. \"eth0\"");
                None
            }
            Some(i) => cx
                .ok(&format!("{path}.interface"), parse_ifname(i))
                .map(|name| Probe::Interface { name }),
        },
        RawCheckType::Address => {
            let interface = match &raw.interface {
                None => Some(None),
                Some(i) => cx
                    .ok(&format!("{path}.interface"), parse_ifname(i))
                    .map(Some),
            };
            let addr = match &raw.address {
                None => {
                    required(cx, "address", "the service address, e.g. \"203.0.113.10\"");
                    None
                }
                Some(a) => cx.ok(&format!("{path}.address"), parse_service_addr(a)),
            };
            match (addr, interface) {
                (Some(addr), Some(interface)) => Some(Probe::Address { addr, interface }),
                _ => None,
            }
        }
    };
    let default_fall = if probe.as_ref().is_some_and(Probe::is_event_driven) {
        DEFAULT_EVENT_FALL
    } else {
        DEFAULT_FALL
    };
    let timing = timing(cx, path, raw, default_fall);
    let (interval, fast_interval, timeout, rise, fall, jitter) = timing?;
    let probe = probe?;
    let vantage = vantage(cx, path, raw.vantage, &probe);
    Some(Check {
        name: name?,
        probe,
        interval,
        fast_interval,
        timeout,
        rise,
        fall,
        jitter,
        vantage,
    })
}

/// Where the check runs in a fleet: `inside` for probes of the host
/// itself and for targets on loopback (other nodes would probe
/// themselves), else `both` unless the config says otherwise.
fn vantage(cx: &mut Ctx, path: &str, raw: Option<RawVantage>, probe: &Probe) -> Vantage {
    let on_self = self_target(probe);
    let refuse = |cx: &mut Ctx, why: String| {
        cx.err(format!("{path}.vantage"), format!("{why}; expected inside"));
        Vantage::Inside
    };
    match raw {
        None if probe.outside_capable() && on_self.is_none() => Vantage::Both,
        None | Some(RawVantage::Inside) => Vantage::Inside,
        Some(_) if !probe.outside_capable() => refuse(
            cx,
            format!("a {} check runs on the PoP's own host only", probe.kind()),
        ),
        Some(_) if on_self.is_some() => refuse(
            cx,
            format!(
                "target {} is a loopback address: other nodes would probe themselves",
                on_self.unwrap_or_default()
            ),
        ),
        Some(RawVantage::Outside) => Vantage::Outside,
        Some(RawVantage::Both) => Vantage::Both,
    }
}

/// The probe's target if it is this host (loopback, unspecified or
/// `localhost`), as written.
fn self_target(probe: &Probe) -> Option<String> {
    let local_host = |h: &str| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        h == "localhost"
            || h.ends_with(".localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback() || a.is_unspecified())
    };
    match probe {
        Probe::Tcp { target } | Probe::Http { target, .. } if local_host(&target.host) => {
            Some(target.to_string())
        }
        Probe::Dns { server, .. } if server.ip().is_loopback() || server.ip().is_unspecified() => {
            Some(server.to_string())
        }
        _ => None,
    }
}

type Timing = (Duration, Duration, Duration, u32, u32, Duration);

fn timing(cx: &mut Ctx, path: &str, raw: &RawCheck, default_fall: u32) -> Option<Timing> {
    let p = |key: &str| format!("{path}.{key}");
    let mut ok = true;
    let mut positive =
        |cx: &mut Ctx, key: &str, raw: Option<&RawDuration>| match cx.duration(&p(key), raw) {
            None => {
                ok = false;
                None
            }
            Some(Some(d)) if d.is_zero() => {
                cx.err(p(key), "must be longer than 0");
                ok = false;
                None
            }
            Some(d) => d,
        };
    let interval = positive(cx, "interval", raw.interval.as_ref());
    let fast = positive(cx, "fast_interval", raw.fast_interval.as_ref());
    let timeout = positive(cx, "timeout", raw.timeout.as_ref());
    let jitter = match cx.duration(&p("jitter"), raw.jitter.as_ref()) {
        None => {
            ok = false;
            None
        }
        Some(d) => d,
    };
    let interval_v = interval.unwrap_or(DEFAULT_INTERVAL);
    let fast_v = fast.unwrap_or(DEFAULT_FAST_INTERVAL.min(interval_v));
    let timeout_v = timeout.unwrap_or(if DEFAULT_TIMEOUT < interval_v {
        DEFAULT_TIMEOUT
    } else {
        interval_v / 2
    });
    let jitter_v = jitter.unwrap_or(DEFAULT_JITTER.min(fast_v / 2));
    let mut count = |key: &str, v: Option<u64>, default: u32| -> u32 {
        match v {
            None => default,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                cx.err(p(key), format!("{n} is out of range: expected 1 to 1000"));
                default
            }
        }
    };
    let rise = count("rise", raw.rise, DEFAULT_RISE);
    let fall = count("fall", raw.fall, default_fall);
    if ok {
        if timeout_v >= interval_v {
            cx.err(
                p("timeout"),
                format!(
                    "{} must be shorter than the interval ({})",
                    format_duration(timeout_v),
                    format_duration(interval_v)
                ),
            );
        }
        if fast_v > interval_v {
            cx.err(
                p("fast_interval"),
                format!(
                    "{} must not be longer than the interval ({})",
                    format_duration(fast_v),
                    format_duration(interval_v)
                ),
            );
        }
        if jitter_v >= fast_v {
            cx.err(
                p("jitter"),
                format!(
                    "{} must be shorter than the fast_interval ({})",
                    format_duration(jitter_v),
                    format_duration(fast_v)
                ),
            );
        }
    }
    ok.then_some((interval_v, fast_v, timeout_v, rise, fall, jitter_v))
}

/// Unit types systemd knows.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// A unit name as systemd accepts it, with its type suffix; a `process`
/// check (`service_only`) needs a service (only services have a main PID).
fn parse_unit_name(s: &str, service_only: bool) -> Result<UnitName, String> {
    let bad_char = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(*c)));
    if let Some(c) = bad_char {
        return Err(format!(
            "{s:?} is not a unit name: {c:?} is not allowed (letters, digits and :-_.\\@ only)"
        ));
    }
    if s.len() > 255 {
        return Err(format!("{s:?} is not a unit name: longer than 255 bytes"));
    }
    let Some((stem, suffix)) = s.rsplit_once('.') else {
        return Err(format!(
            "{s:?} has no unit type: write the full name, e.g. \"{s}.service\""
        ));
    };
    if !UNIT_TYPES.contains(&suffix) {
        return Err(format!(
            "{s:?}: .{suffix} is not a unit type (expected one of .{})",
            UNIT_TYPES.join(", .")
        ));
    }
    if stem.is_empty() || stem.starts_with('@') {
        return Err(format!(
            "{s:?} is not a unit name: the name before .{suffix} is empty"
        ));
    }
    if stem.ends_with('@') {
        return Err(format!(
            "{s:?} is a template: name an instance, e.g. \"{stem}1.{suffix}\""
        ));
    }
    if service_only && suffix != "service" {
        return Err(format!(
            "{s:?}: only a .service has a main process; use a systemd check for a .{suffix}"
        ));
    }
    Ok(UnitName(s.to_string()))
}

/// A network interface name the kernel accepts.
fn parse_ifname(s: &str) -> Result<IfName, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "{s:?} is not an interface name: expected 1 to 15 bytes"
        ));
    }
    if s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?} is not an interface name: no /, : or spaces allowed"
        ));
    }
    Ok(IfName(s.to_string()))
}

/// A single unicast address (no prefix length).
fn parse_service_addr(s: &str) -> Result<std::net::IpAddr, String> {
    if s.contains('/') {
        return Err(format!(
            "{s:?}: write the address without a prefix length, e.g. \"203.0.113.10\""
        ));
    }
    let a: std::net::IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))?;
    if a.is_unspecified() || a.is_multicast() {
        return Err(format!("{s:?}: expected a unicast address"));
    }
    Ok(a)
}

fn parse_rcode(s: &str) -> Result<DnsRcode, String> {
    Ok(match s.trim().to_ascii_uppercase().as_str() {
        "NOERROR" => DnsRcode::NoError,
        "NXDOMAIN" => DnsRcode::NxDomain,
        "SERVFAIL" => DnsRcode::ServFail,
        "REFUSED" => DnsRcode::Refused,
        _ => {
            return Err(format!(
                "{s:?} is not a supported rcode: expected NOERROR, NXDOMAIN, SERVFAIL or REFUSED"
            ))
        }
    })
}

/// `host:port` or `[v6]:port` where host may be a name.
fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let t = s.trim();
    let bad = || {
        format!("{s:?} is not HOST:PORT: expected e.g. \"127.0.0.1:80\", \"[::1]:80\" or \"localhost:80\"")
    };
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        h.parse::<Ipv6Addr>().map_err(|_| bad())?;
        (h, p)
    } else {
        let (h, p) = t.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(format!(
                "{s:?}: write an IPv6 address in brackets, e.g. \"[::1]:80\""
            ));
        }
        (h, p)
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("{s:?}: port 0 is not valid"));
    }
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(bad());
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// `http[s]://host[:port][/path]` → (tls, target, path with query).
pub(super) fn parse_url(s: &str) -> Result<(bool, HostPort, String), String> {
    let t = s.trim();
    let bad = |why: &str| format!("{s:?} is not a valid URL: {why}");
    let (tls, rest) = if let Some(r) = t.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = t.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad(
            "expected http:// or https://, e.g. \"http://127.0.0.1:8080/healthz\"",
        ));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("user information in URLs is not supported"));
    }
    if authority.is_empty() {
        return Err(bad("the host is missing"));
    }
    if path.contains(char::is_whitespace) || path.contains('#') {
        return Err(bad("the path contains spaces or a fragment"));
    }
    let default_port = if tls { 443 } else { 80 };
    let hp = if authority.ends_with(']') || !authority.contains(':') {
        let host = authority.trim_start_matches('[').trim_end_matches(']');
        if authority.starts_with('[') && host.parse::<Ipv6Addr>().is_err() {
            return Err(bad("the bracketed host is not an IPv6 address"));
        }
        HostPort {
            host: host.to_string(),
            port: default_port,
        }
    } else {
        parse_host_port(authority).map_err(|_| bad("expected host[:port] after the scheme"))?
    };
    if hp.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the host contains spaces"));
    }
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok((tls, hp, path))
}

/// The environment of an `exec` check: `PATH` (passed through, or the
/// standard search path when the daemon has none), the variables named in
/// `pass_env` that the daemon has, then `env` (which may override both).
fn exec_env(cx: &mut Ctx, path: &str, raw: &RawCheck) -> Option<ExecEnv> {
    let mut ok = true;
    let mut pass = Vec::new();
    for (i, name) in raw.pass_env.iter().flatten().enumerate() {
        match env_name(name) {
            Ok(()) if pass.contains(name) => {
                cx.err(
                    format!("{path}.pass_env[{i}]"),
                    format!("{name:?} is listed twice"),
                );
                ok = false;
            }
            Ok(()) => pass.push(name.clone()),
            Err(e) => {
                cx.err(format!("{path}.pass_env[{i}]"), e);
                ok = false;
            }
        }
    }
    let mut set = Vec::new();
    for (name, value) in raw.env.iter().flatten() {
        if let Err(e) = env_name(name) {
            cx.err(format!("{path}.env.{name}"), e);
            ok = false;
        } else if value.0.contains('\0') {
            cx.err(
                format!("{path}.env.{name}"),
                "the value contains a NUL byte",
            );
            ok = false;
        } else {
            set.push((name.clone(), value.0.clone()));
        }
    }
    ok.then_some(ExecEnv { pass, set })
}

/// An environment variable name: letters, digits and `_`, not starting
/// with a digit (what a shell can export).
fn env_name(name: &str) -> Result<(), String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}
