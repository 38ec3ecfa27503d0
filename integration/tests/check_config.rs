//! `anypop check-config` and `anypop print-default-config` as a user runs
//! them: broken files from tests/configs/ print every error as
//! `path: message` on stderr and exit 2; valid files print the summary and
//! exit 0.

use std::path::PathBuf;
use std::process::Command;

use anypop_integration::{anypop_bin, run};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

fn check_config(path: &std::path::Path) -> (i32, String, String) {
    run(Command::new(anypop_bin()).arg("check-config").arg(path))
}

/// Runs check-config on a broken fixture and asserts exit 2 and that every
/// `(path, fragment)` appears as an error line `path: ...fragment...`.
#[track_caller]
fn assert_rejected(name: &str, expected: &[(&str, &str)]) -> Vec<String> {
    let (code, stdout, stderr) = check_config(&fixture(name));
    assert_eq!(
        code, 2,
        "{name}: exit code\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<String> = stderr.lines().map(str::to_string).collect();
    for (path, fragment) in expected {
        let prefix = format!("{path}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&prefix) && l.contains(fragment)),
            "{name}: no error line `{path}: ...{fragment}...` in stderr:\n{stderr}"
        );
    }
    lines
}

#[test]
fn valid_config_prints_summary_and_exits_0() {
    let (code, stdout, stderr) = check_config(&fixture("valid.yaml"));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("node edge-1 in PoP fra"), "{stdout}");
    assert!(
        stdout.contains("peer r1 192.0.2.254:179 AS64500"),
        "{stdout}"
    );
    assert!(stdout.contains("zone example.net."), "{stdout}");
    assert!(
        stdout.contains("api: listening on 127.0.0.1:8081"),
        "{stdout}"
    );
}

#[test]
fn wrong_type_is_reported_with_path() {
    assert_rejected(
        "wrong-type.yaml",
        &[("pops[0].checks[0].rise", "invalid type")],
    );
}

#[test]
fn unknown_key_is_reported_with_path() {
    assert_rejected(
        "unknown-key.yaml",
        &[("pops[0].checks[0].intervall", "unknown field `intervall`")],
    );
}

#[test]
fn bad_prefixes_are_all_reported() {
    assert_rejected(
        "bad-prefixes.yaml",
        &[
            (
                "pops[1].prefixes[0]",
                "\"203.0.113.0/33\" is not a valid prefix",
            ),
            (
                "pops[1].prefixes[1]",
                "has host bits set; did you mean 203.0.113.0/24?",
            ),
            ("pops[1].prefixes[2]", "did you mean 198.51.100.7/32?"),
        ],
    );
}

#[test]
fn dangling_references_are_reported() {
    assert_rejected(
        "dangling.yaml",
        &[
            ("node.pop", "unknown PoP \"lon\""),
            (
                "dns.zones[0].records[0].steer.pops[1]",
                "unknown PoP \"par\"",
            ),
            (
                "dns.zones[0].records[1].steer.weights.ams",
                "unknown PoP \"ams\"",
            ),
        ],
    );
}

#[test]
fn rise_zero_and_timeout_are_reported() {
    assert_rejected(
        "rise-zero.yaml",
        &[
            ("pops[0].checks[0].rise", "expected 1 to 1000"),
            ("pops[0].checks[0].fall", "expected 1 to 1000"),
            ("pops[0].checks[0].timeout", "shorter than the interval"),
        ],
    );
}

#[test]
fn all_errors_of_a_file_are_reported_one_per_line() {
    let expected = [
        ("pops[0].prefixes[0]", "is not a valid prefix"),
        ("pops[0].checks[0].rise", "out of range"),
        ("pops[0].checks[1].name", "duplicate check name \"web\""),
        ("pops[0].checks[2].command", "the command is empty"),
        ("pops[1].name", "duplicate PoP name \"fra\""),
        (
            "dns.zones[0].records[0].values[0]",
            "is not an IPv4 address",
        ),
        (
            "dns.zones[0].records[1].name",
            "outside the zone example.net.",
        ),
        (
            "dns.zones[0].records[2].steer.pops[1]",
            "unknown PoP \"nowhere\"",
        ),
    ];
    let lines = assert_rejected("many-errors.yaml", &expected);
    // One error per line: each expected error is on a line of its own.
    let mut at: Vec<usize> = expected
        .iter()
        .filter_map(|(path, _)| lines.iter().position(|l| l.contains(&format!("{path}: "))))
        .collect();
    at.sort_unstable();
    at.dedup();
    assert_eq!(at.len(), expected.len(), "stderr:\n{}", lines.join("\n"));
}

#[test]
fn unreadable_file_exits_2() {
    let missing = fixture("does-not-exist.yaml");
    let (code, _, stderr) = check_config(&missing);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does-not-exist.yaml"), "{stderr}");
}

#[test]
fn printed_default_config_is_the_builtin_one_and_valid() {
    let (code, stdout, stderr) = run(Command::new(anypop_bin()).arg("print-default-config"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim_end(),
        include_str!("../../src/config/default.yaml").trim_end()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anypop.yaml");
    std::fs::write(&path, &stdout).expect("write config");
    let (code, summary, stderr) = check_config(&path);
    assert_eq!(code, 0, "stdout:\n{summary}\nstderr:\n{stderr}");
    assert!(
        summary.contains("node anypop-demo in PoP local"),
        "{summary}"
    );
}
