//! The Prometheus rules and the Grafana dashboard in `packaging/`: promtool
//! checks the rules and runs their unit tests; every alert is unit-tested
//! and has a severity and a runbook line; the dashboard, the rules and the
//! rule tests name only metrics that a running anypop exports (read from
//! the real `/metrics` of a node with BGP, DNS and checks, not from a list
//! kept by hand); every dashboard query parses as PromQL.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anypop_integration::demo::{Demo, Options};
use anypop_integration::lab::repo_root;
use anypop_integration::{run, tools_available};
use serde_json::Value;

const PROMTOOL_HINT: &str = "apt-get install prometheus";

fn prometheus_dir() -> PathBuf {
    repo_root().join("packaging/prometheus")
}

fn read(rel: &str) -> String {
    let p = repo_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("packaging/grafana/anypop.json"))
        .unwrap_or_else(|e| panic!("packaging/grafana/anypop.json is not valid JSON: {e}"))
}

/// Every `anypop_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(off) = expr[i..].find("anypop_") {
        let start = i + off;
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        if start == 0 || !ident(b[start - 1]) {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

/// The series names a `/metrics` text makes queryable: every family from
/// its `# TYPE` lines, with `_bucket`, `_sum` and `_count` for histograms.
fn exported_names(metrics: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            panic!("bad TYPE line: {line}");
        };
        out.insert(name.to_string());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("dashboard has panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (where, expression) of every query in the dashboard, template
/// variables included.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?}: empty query");
            out.push((format!("panel {title:?}"), expr.to_string()));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str().or(v["definition"].as_str()) {
            if v["type"] == "query" {
                out.push((format!("variable {}", v["name"]), q.to_string()));
            }
        }
    }
    out
}

/// (where, expression) of every rule in the rules file.
fn rule_exprs() -> Vec<(String, String)> {
    let rules = yaml("packaging/prometheus/anypop-rules.yml");
    let mut out = Vec::new();
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            let expr = r["expr"].as_str().expect("rule has an expr");
            out.push((format!("rule {name}"), expr.to_string()));
        }
    }
    out
}

#[test]
fn alerting_rules_pass_promtool_check_and_unit_tests() {
    let test = "alerting_rules_pass_promtool_check_and_unit_tests";
    if !tools_available(test, &["promtool"], PROMTOOL_HINT) {
        return;
    }
    let (code, out, err) = run(Command::new("promtool")
        .args(["check", "rules", "anypop-rules.yml"])
        .current_dir(prometheus_dir()));
    assert_eq!(code, 0, "promtool check rules:\n{out}{err}");
    let alerts = rule_exprs().len();
    assert!(
        out.contains(&format!("SUCCESS: {alerts} rules found")),
        "{out}"
    );

    let (code, out, err) = run(Command::new("promtool")
        .args(["test", "rules", "anypop-rules.test.yml"])
        .current_dir(prometheus_dir()));
    assert_eq!(code, 0, "promtool test rules:\n{out}{err}");
    assert!(out.contains("SUCCESS"), "{out}{err}");

    // Every alert is tested firing, and carries what on-call needs.
    let rules = yaml("packaging/prometheus/anypop-rules.yml");
    let tests = yaml("packaging/prometheus/anypop-rules.test.yml");
    let fired: BTreeSet<&str> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .filter(|a| a["exp_alerts"].as_sequence().is_some_and(|e| !e.is_empty()))
        .filter_map(|a| a["alertname"].as_str())
        .collect();
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().expect("alerting rules only");
            assert!(
                fired.contains(name),
                "alert {name} is never tested firing in anypop-rules.test.yml"
            );
            for key in ["summary", "description", "runbook"] {
                assert!(
                    r["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "alert {name} has no {key} annotation"
                );
            }
            assert!(
                r["labels"]["severity"].as_str().is_some(),
                "alert {name} has no severity"
            );
        }
    }
}

#[test]
fn dashboard_and_rules_use_only_exported_metrics() {
    let demo = Demo::start(Options::default());
    demo.wait_settled();
    let exported = exported_names(&demo.metrics());
    // The scrape is complete: PoPs, BGP, DNS and API families are there.
    for family in [
        "anypop_pop_state",
        "anypop_bgp_session_up",
        "anypop_dns_responses_total",
        "anypop_check_duration_seconds_bucket",
        "anypop_api_requests_total",
    ] {
        assert!(exported.contains(family), "{family} not in {exported:?}");
    }

    let d = dashboard();
    let mut sources = dashboard_queries(&d);
    sources.extend(rule_exprs());
    let tests = yaml("packaging/prometheus/anypop-rules.test.yml");
    for t in tests["tests"].as_sequence().expect("tests") {
        for s in t["input_series"].as_sequence().expect("input_series") {
            let series = s["series"].as_str().expect("series").to_string();
            sources.push(("rule test series".into(), series));
        }
    }
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &sources {
        let names = metric_names(expr);
        if !place.starts_with("variable") && !place.starts_with("rule test") {
            assert!(
                !names.is_empty(),
                "{place} queries no anypop metric: {expr}"
            );
        }
        for n in names {
            if !exported.contains(&n) {
                unknown.push(format!("{place}: {n}"));
            }
            used.insert(n);
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics anypop does not export:\n{}\nexported: {exported:?}",
        unknown.join("\n")
    );
    // The dashboard covers what an operator looks at first.
    let dash_names: BTreeSet<String> = dashboard_queries(&d)
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    for needed in [
        "anypop_pop_state",
        "anypop_prefixes_announced",
        "anypop_bgp_session_up",
        "anypop_dns_responses_total",
        "anypop_dns_steered_answers_total",
        "anypop_check_duration_seconds_bucket",
    ] {
        assert!(
            dash_names.contains(needed),
            "dashboard never shows {needed}"
        );
    }
    eprintln!(
        "dashboard and rules use {} of the {} exported series names",
        used.len(),
        exported.len()
    );
}

#[test]
fn dashboard_queries_parse_as_promql() {
    let test = "dashboard_queries_parse_as_promql";
    if !tools_available(test, &["promtool"], PROMTOOL_HINT) {
        return;
    }
    // Each query becomes a recording rule, which `promtool check rules`
    // parses; Grafana's variables are replaced by values first.
    let d = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for (place, expr) in dashboard_queries(&d) {
        if place.starts_with("variable") {
            continue; // label_values() is Grafana syntax, not PromQL
        }
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        assert!(!expr.contains('$'), "{place}: unknown variable in {expr}");
        n += 1;
        rules.push_str(&format!(
            "      - record: dashboard:query{n}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("json string")
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).expect("write rules");
    let (code, out, err) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file));
    assert_eq!(
        code, 0,
        "a dashboard query is not valid PromQL:\n{out}{err}\n{rules}"
    );
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

#[test]
fn metric_name_scanner() {
    let names = metric_names(
        "sum by (le) (rate(anypop_check_duration_seconds_bucket{x=\"anypop_no\"}[5m])) / my_anypop_x + anypop_up",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "anypop_check_duration_seconds_bucket",
            "anypop_no",
            "anypop_up"
        ]
    );
    let exported = exported_names("# HELP h x\n# TYPE h histogram\n# TYPE c counter\nc 1\n");
    let exported: Vec<&str> = exported.iter().map(String::as_str).collect();
    assert_eq!(exported, ["c", "h", "h_bucket", "h_count", "h_sum"]);
}
