//! The API's wire format, byte for byte: responses of a real core in a
//! known state are compared with the files in `src/api/testdata/wire/`.
//! Only wall-clock times (`"since":T`) and snapshot versions (`"version":N`,
//! which count internal steps) are masked; key order, field names, number
//! and string formats are all compared.
//!
//! A deliberate change of the format is recorded with
//! `ANYPOP_UPDATE_WIRE=1 cargo test -p anypop --lib api::tests::wire`; the
//! diff of the files then shows exactly what changed on the wire.

use std::path::PathBuf;

use super::*;

/// Fields whose numbers are masked, with their placeholder: wall-clock
/// times (Unix seconds) and snapshot versions.
const MASKED: [(&str, char); 7] = [
    ("published", 'T'),
    ("since", 'T'),
    ("at", 'T'),
    ("next_at", 'T'),
    ("until", 'T'),
    ("version", 'N'),
    ("snapshot_version", 'N'),
];

/// Replaces the number after every masked `"<field>":` with its
/// placeholder (a `null` stays `null`, so optional times are still checked
/// for presence).
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for (f, placeholder) in MASKED {
            let key = format!("\"{f}\":");
            if let Some(after) = rest.strip_prefix(key.as_str()) {
                out.push_str(&key);
                let n = after
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
                    .unwrap_or(after.len());
                if n > 0 {
                    out.push(placeholder);
                }
                rest = &after[n..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn check(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/api/testdata/wire")
        .join(format!("{name}.json"));
    let got = format!("{}\n", mask(got));
    if std::env::var_os("ANYPOP_UPDATE_WIRE").is_some() {
        std::fs::write(&path, &got).expect("write expected file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (ANYPOP_UPDATE_WIRE=1 records it)", path.display()));
    assert!(
        got == want,
        "{name}: the wire format changed\n--- want ({})\n{want}--- got\n{got}",
        path.display()
    );
}

async fn body(app: &Router, method: &str, uri: &str, body: Option<&str>) -> String {
    let (st, _, bytes) = call_raw(app, method, uri, None, body).await;
    assert!(st.is_success() || st.is_client_error(), "{uri}: {st}");
    String::from_utf8(bytes).expect("utf8")
}

#[test]
fn masking_keeps_everything_but_times_and_versions() {
    assert_eq!(
        mask(r#"{"at":1763890000.123,"until":null,"sat":5,"since":17}"#),
        r#"{"at":T,"until":null,"sat":5,"since":T}"#
    );
}

/// Every response shape that carries core state: state, PoPs, one PoP,
/// checks, an admin result with a timed drain, a refusal, and the events.
#[tokio::test]
async fn responses_match_the_recorded_wire_format() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let drained = body(
        &app,
        "POST",
        "/v1/pops/fra/drain",
        Some(r#"{"reason": "fibre cut", "who": "alice", "duration": "1h", "mode": "immediate"}"#),
    )
    .await;
    check("drain_result", &drained);
    let refused = body(&app, "POST", "/v1/pops/ams/disable", None).await;
    check("last_pop_refused", &refused);
    check("state", &body(&app, "GET", "/v1/state", None).await);
    check("pops", &body(&app, "GET", "/v1/pops", None).await);
    check("pop_fra", &body(&app, "GET", "/v1/pops/fra", None).await);
    check("checks", &body(&app, "GET", "/v1/checks", None).await);

    // The replayed events as the SSE stream sends them.
    let mut events = open_events(&app, "/v1/events", None).await;
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains("drained by alice"))
    {
        let frame = tokio::time::timeout_at(deadline, events.body.frame())
            .await
            .expect("events in time")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            for m in events.parser.push(&data) {
                lines.push(format!(
                    "id:{} event:{} data:{}",
                    m.id.unwrap_or_default(),
                    m.event.unwrap_or_default(),
                    m.data
                ));
            }
        }
    }
    check("events", &lines.join("\n"));
}

/// A peer with every optional part present (BFD included), at fixed times:
/// the peer DTO's wire format (alphabetical keys, `uptime_secs` added).
#[test]
fn peer_matches_the_recorded_wire_format() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_890_000);
    let now = t0 + Duration::from_secs(90);
    let mut p = test_peer();
    p.established_since = Some(t0);
    p.families = vec![crate::bgp::Family::Ipv4, crate::bgp::Family::Ipv6];
    p.last_error = Some("hold timer expired".into());
    p.last_error_at = Some(t0 - Duration::from_millis(1500));
    p.bfd = Some(crate::bfd::SessionStatus {
        state: crate::bfd::State::AdminDown,
        remote_state: crate::bfd::State::Init,
        local_diag: crate::bfd::packet::Diag::PathDown,
        remote_diag: crate::bfd::packet::Diag::Reserved(9),
        local_discriminator: 7,
        remote_discriminator: 9,
        holds_bgp_down: false,
        failures: 1,
        flaps: 3,
        held_until: None,
        since: Some(t0),
        tx_interval_ms: Some(300),
        detection_time_ms: None,
        remote_control_plane_independent: true,
        discarded: 4,
        ttl_dropped: 5,
        error: Some("bind failed".into()),
    });
    let got = serde_json::to_string(&dto::peers::Peer::new(&p, now)).expect("dto");
    check("peer", &got);
    let back: dto::peers::Peer = serde_json::from_str(&got).expect("decodes");
    assert_eq!(serde_json::to_string(&back).expect("dto"), got);
}

/// `GET /v1/explain` for a steered name over ECS, a direct query for a
/// zone without an AAAA answer, a name that does not exist and a
/// nameserver's address. How long ago a PoP changed state (in the TTL's
/// reason) is wall-clock time and masked like the times.
#[tokio::test]
async fn explanations_match_the_recorded_wire_format() {
    let (app, _) = app(&["ams"], Auth::open()).await;
    for (file, query) in [
        (
            "explain_steered",
            "name=www.example.test&type=A&client=198.51.100.7/24",
        ),
        (
            "explain_aaaa",
            "name=www.example.test&type=AAAA&client=192.0.2.1",
        ),
        (
            "explain_nxdomain",
            "name=nx.example.test&type=A&client=0.0.0.0/0",
        ),
        (
            "explain_ns",
            "name=ns1.example.test&type=A&client=192.0.2.1",
        ),
    ] {
        let got = body(&app, "GET", &format!("/v1/explain?{query}"), None).await;
        check(file, &mask_ago(&got));
        let back: dto::Explanation = serde_json::from_str(&got).expect("decodes");
        assert_eq!(serde_json::to_string(&back).expect("dto"), got);
    }
}

/// Replaces the duration in every `changed state <duration> ago` with `D`.
fn mask_ago(text: &str) -> String {
    const KEY: &str = "changed state ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        rest = &rest[i + KEY.len()..];
        match rest.find(" ago") {
            Some(j) if !rest[..j].contains('"') => {
                out.push('D');
                rest = &rest[j..];
            }
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn masking_the_age_of_a_state_change() {
    assert_eq!(
        mask_ago(r#"{"r":"PoP ams changed state 25.3ms ago (settle 60s)","x":"changed state"}"#),
        r#"{"r":"PoP ams changed state D ago (settle 60s)","x":"changed state"}"#
    );
}
