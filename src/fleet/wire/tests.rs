//! The report's wire format: byte for byte against `testdata/report.json`
//! (recorded with `ANYPOP_UPDATE_WIRE=1 cargo test -p anypop --lib
//! fleet::wire`), the reports an earlier build wrote (frozen files, never
//! re-recorded: a fleet upgrades one node at a time), the example in
//! docs/fleet.md, and what a peer may send that is not quite right.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn n<K>(s: &str) -> Name<K> {
    Name::parse(s).expect("name")
}

fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/fleet/wire/testdata")
        .join(file)
}

fn read(file: &str) -> String {
    let path = testdata(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Node a's report: its own PoP a drained (in the DNS step, with a next
/// step), b seen down and c unknown from outside, two peers applied.
fn report_a() -> Report {
    let owner = PopReport {
        role: ReportRole::Owner,
        verdict: Verdict::Up,
        decided_at: 1_763_890_000.5,
        reason: "check web passed 3/3; check maintenance passed 3/3".into(),
        checks: [(n("maintenance"), Verdict::Up), (n("web"), Verdict::Up)]
            .into_iter()
            .collect(),
        admin: Some(ReportAdmin {
            kind: AdminKind::Drain,
            step: Phase::DnsRemoved,
            reason: "fibre \"cut\" ü".into(),
            who: "alice via b".into(),
            since: 1_763_890_100.0,
            next_at: Some(1_763_890_140.25),
            until: None,
            force: false,
            held: None,
        }),
    };
    let vantage = |verdict, decided_at, reason: &str| PopReport {
        role: ReportRole::Vantage,
        verdict,
        decided_at,
        reason: reason.into(),
        checks: [(n("web"), verdict)].into_iter().collect(),
        admin: None,
    };
    let applied = |instance: &str, admin_revision| Applied {
        instance: instance.into(),
        admin_revision,
    };
    Report {
        node: n("a"),
        pop: Some(n("a")),
        instance: "9f2c6a1e0b7d4c33".into(),
        revision: 42,
        admin_revision: 3,
        generated_at: 1_763_890_200.001,
        pops: [
            (n("a"), owner),
            (
                n("b"),
                vantage(
                    Verdict::Down,
                    1_763_890_001.125,
                    "check web failed 2/2: connect refused",
                ),
            ),
            (n("c"), vantage(Verdict::Unknown, 0.0, "")),
        ]
        .into_iter()
        .collect(),
        applied: [
            (n("b"), applied("5e0d3b8f7a6c2e10", 7)),
            (n("c"), applied("c41a9e27d05b8f36", 2)),
        ]
        .into_iter()
        .collect(),
    }
}

/// A node without a PoP of its own (`pop: null`) that reports a disabled
/// PoP e with an auto-undrain time, and applies no peer.
fn report_d() -> Report {
    let mut r = report_a();
    r.node = n("d");
    r.pop = None;
    r.applied = BTreeMap::new();
    let mut e = r.pops.remove("a").expect("a");
    e.admin = Some(ReportAdmin {
        kind: AdminKind::Disable,
        step: Phase::Disabled,
        reason: "x".into(),
        who: "api".into(),
        since: 5.0,
        next_at: None,
        until: Some(3600.0),
        force: false,
        held: None,
    });
    r.pops.insert(n("e"), e);
    r
}

fn json(r: &Report) -> String {
    serde_json::to_string(&ReportV1::from(r)).expect("serialize")
}

#[test]
fn the_report_matches_the_recorded_wire_format() {
    let got = format!("{}\n", json(&report_a()));
    let path = testdata("report.json");
    if std::env::var_os("ANYPOP_UPDATE_WIRE").is_some() {
        std::fs::write(&path, &got).expect("write expected file");
        return;
    }
    let want = read("report.json");
    assert!(
        got == want,
        "the report's wire format changed\n--- want ({})\n{want}--- got\n{got}",
        path.display()
    );
    assert_eq!(parse(got.as_bytes()), Ok(report_a()), "round trip");
}

/// Reports as the build before these wire types wrote them (commit
/// 20fc533, serde on the core's types): parsed into the same values, and
/// written back byte for byte (so that build reads this one's reports).
#[test]
fn reports_of_the_earlier_build_parse_identically() {
    for (file, want) in [
        ("main-20fc533-a.json", report_a()),
        ("main-20fc533-d.json", report_d()),
    ] {
        let text = read(file);
        assert_eq!(parse(text.as_bytes()), Ok(want.clone()), "{file}");
        assert_eq!(format!("{}\n", json(&want)), text, "{file}");
    }
}

/// PoP a's admin state in `r` (a [`report_a`]).
fn admin_a(r: &mut Report) -> &mut ReportAdmin {
    r.pops
        .get_mut("a")
        .and_then(|p| p.admin.as_mut())
        .expect("admin")
}

/// Every step and kind an earlier build writes reads back as the same.
#[test]
fn every_admin_step_round_trips() {
    for (kind, step) in [
        (AdminKind::Drain, Phase::DnsRemoved),
        (AdminKind::Drain, Phase::Shutdown),
        (AdminKind::Drain, Phase::Drained),
        (AdminKind::Drain, Phase::Restoring),
        (AdminKind::Disable, Phase::Disabled),
    ] {
        let mut r = report_a();
        let a = admin_a(&mut r);
        (a.kind, a.step) = (kind, step);
        let text = json(&r);
        assert!(text.contains(&format!("\"step\":\"{}\"", step.as_str())));
        assert_eq!(parse(text.as_bytes()), Ok(r));
    }
}

/// A drain forced past the last-PoP guard and one held at the end of its
/// DNS step carry `force` and `held`; without them (as every earlier
/// build writes) neither field is written.
#[test]
fn force_and_held_are_written_only_when_set() {
    let mut r = report_a();
    let a = admin_a(&mut r);
    a.force = true;
    a.held = Some("last PoP in service for 203.0.113.0/24 (b down)".into());
    let text = json(&r);
    assert!(text.contains("\"force\":true"), "{text}");
    assert!(
        text.contains("\"held\":\"last PoP in service for 203.0.113.0/24 (b down)\""),
        "{text}"
    );
    assert_eq!(parse(text.as_bytes()), Ok(r));
    let plain = json(&report_a());
    assert!(
        !plain.contains("\"force\"") && !plain.contains("\"held\""),
        "{plain}"
    );
}

#[test]
fn the_documented_example_parses() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/fleet.md"))
            .expect("docs/fleet.md");
    let section = doc
        .split("### `GET /v1/fleet/report`")
        .nth(1)
        .expect("the report's section");
    let example = section
        .split("```json\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a json example");
    let r = parse(example.as_bytes()).expect("the example is a valid report");
    assert_eq!(r.node.as_str(), "c");
    let c = &r.pops[&n("c")];
    assert_eq!(
        c.admin.as_ref().map(|a| (a.kind, a.step)),
        Some((AdminKind::Drain, Phase::DnsRemoved))
    );
    assert_eq!(r.pops[&n("b")].verdict, Verdict::Down);
}

/// Fields this build does not know are ignored at every level, and a
/// verdict it does not know reads as unknown: a newer node within format
/// 1 stays readable.
#[test]
fn unknown_fields_are_ignored_and_unknown_verdicts_are_unknown() {
    let mut v: serde_json::Value = serde_json::from_str(&json(&report_a())).expect("json");
    v["future"] = serde_json::json!({"x": [1, 2]});
    v["pops"]["a"]["future"] = serde_json::json!(true);
    v["pops"]["a"]["admin"]["future"] = serde_json::json!("x");
    v["applied"]["b"]["future"] = serde_json::json!(null);
    assert_eq!(parse(v.to_string().as_bytes()), Ok(report_a()));

    v["pops"]["b"]["verdict"] = serde_json::json!("degraded");
    v["pops"]["b"]["checks"]["web"] = serde_json::json!("flapping");
    let r = parse(v.to_string().as_bytes()).expect("parses");
    assert_eq!(r.pops[&n("b")].verdict, Verdict::Unknown);
    assert_eq!(r.pops[&n("b")].checks[&n("web")], Verdict::Unknown);
}

#[test]
fn optional_fields_may_be_missing() {
    let text = r#"{"format":1,"node":"b","instance":"i","revision":1,"admin_revision":1,
        "generated_at":1.5,"pops":{"b":{"role":"owner","verdict":"up","decided_at":2}}}"#;
    let r = parse(text.as_bytes()).expect("parses");
    assert_eq!(r.pop, None);
    assert!(r.applied.is_empty());
    let b = &r.pops[&n("b")];
    assert!(b.reason.is_empty() && b.checks.is_empty() && b.admin.is_none());
    assert_eq!(b.decided_at, 2.0);
}

/// What a broken or hostile peer may send: a clear error naming what is
/// wrong, never a panic.
#[test]
fn bad_reports_are_clear_errors() {
    let base = json(&report_a());
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&base).expect("json");
        f(&mut v);
        parse(v.to_string().as_bytes())
            .expect_err("rejected")
            .to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            parse(b"<html>").expect_err("html").to_string(),
            "the answer is not a fleet report",
        ),
        (
            parse(b"[1]").expect_err("array").to_string(),
            "not a JSON object",
        ),
        (
            parse(b"{}").expect_err("empty").to_string(),
            "no format field",
        ),
        (
            with(&|v| v["format"] = 2.into()),
            "report format 2 is not supported (this node reads format 1)",
        ),
        (
            with(&|v| v["format"] = "1".into()),
            "report format \"1\" is not supported",
        ),
        (
            with(&|v| v["node"] = "a b".into()),
            "invalid fleet report: node: \"a b\" is not a valid name",
        ),
        (
            with(&|v| v["pop"] = "".into()),
            "invalid fleet report: pop:",
        ),
        (
            with(&|v| {
                let p = v["pops"].as_object_mut().and_then(|o| o.remove("b"));
                v["pops"]["b/c"] = p.expect("b");
            }),
            "invalid fleet report: pops: \"b/c\" is not a valid name",
        ),
        (
            with(&|v| v["pops"]["a"]["checks"]["we b"] = "up".into()),
            "invalid fleet report: pops.a.checks:",
        ),
        (
            with(&|v| {
                v["applied"]["a b"] = serde_json::json!({"instance": "i", "admin_revision": 1})
            }),
            "invalid fleet report: applied:",
        ),
        (
            with(&|v| v["pops"]["b"]["role"] = "transit".into()),
            "invalid fleet report: pops.b.role: unknown variant `transit`",
        ),
        (
            with(&|v| v["pops"]["a"]["admin"]["step"] = "paused".into()),
            "invalid fleet report: pops.a.admin.step: unknown variant `paused`",
        ),
        (
            with(&|v| v["pops"]["a"]["admin"]["kind"] = 1.into()),
            "invalid fleet report: pops.a.admin.kind:",
        ),
        (
            with(&|v| v["revision"] = (-1).into()),
            "invalid fleet report: revision:",
        ),
        (
            with(&|v| v["pops"]["b"]["verdict"] = 3.into()),
            "invalid fleet report: pops.b.verdict:",
        ),
        (
            with(&|v| v["pops"]["a"]["decided_at"] = "now".into()),
            "invalid fleet report: pops.a.decided_at:",
        ),
        (
            with(&|v| {
                v.as_object_mut().map(|o| o.remove("instance"));
            }),
            "missing field `instance`",
        ),
    ];
    for (got, want) in cases {
        assert!(got.contains(want), "{got:?} does not say {want:?}");
    }
}

/// Times from a peer are numbers it states; nonsense ones (negative, far
/// future) are kept as numbers and clamp when the core shows them.
#[test]
fn odd_times_parse_and_clamp() {
    let mut v: serde_json::Value = serde_json::from_str(&json(&report_a())).expect("json");
    v["pops"]["a"]["admin"]["since"] = (-5.0).into();
    v["pops"]["a"]["admin"]["until"] = 1e300.into();
    let r = parse(v.to_string().as_bytes()).expect("parses");
    let status = r.pops[&n("a")].admin.as_ref().expect("admin").status();
    assert_eq!(status.since, std::time::UNIX_EPOCH);
    assert_eq!(status.until, Some(std::time::UNIX_EPOCH));
}
