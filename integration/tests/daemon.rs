//! The `anypop run` process: default config, health-driven state changes in
//! the log, SIGHUP reload (a broken file keeps the running config), clean
//! shutdown on SIGTERM.

use std::time::Duration;

use anypop_integration::{free_port, write_file, Anypop};

const T: Duration = Duration::from_secs(20);

fn config(api_port: u16, maint: &std::path::Path, extra_pop: &str) -> String {
    format!(
        r#"
node:
  name: test-node
  pop: fra1
  router_id: 192.0.2.1
  asn: 65001
api:
  listen: 127.0.0.1:{api_port}
pops:
  - name: fra1
    prefixes: [203.0.113.0/24]
    checks:
      - name: maintenance
        type: file
        path: {maint}
        healthy_when: absent
        rise: 1
        fall: 1
{extra_pop}
"#,
        maint = maint.display()
    )
}

#[test]
fn sighup_with_broken_file_keeps_running_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maint = dir.path().join("maintenance");
    let path = write_file(dir.path(), "anypop.yaml", &config(free_port(), &maint, ""));
    let mut p = Anypop::start(&["run", "--config", path.to_str().expect("utf8")]);
    p.wait_for_log("pop fra1 up", T);

    // A broken file: rejected, every error logged, old config kept.
    std::fs::write(&path, "node: [this is not\npops: 7\n").expect("write");
    p.signal(libc::SIGHUP);
    p.wait_for_log("keeping the running config", T);
    assert!(
        p.wait_exit(Duration::from_millis(200)).is_none(),
        "still running"
    );

    // The running config still works: its file check still reacts.
    std::fs::write(&maint, "").expect("create maintenance file");
    p.wait_for_log("pop fra1 down", T);
    std::fs::remove_file(&maint).expect("remove maintenance file");
    let ups = || p.log().matches("pop fra1 up").count();
    assert!(
        anypop_integration::wait_until(T, || ups() >= 2),
        "fra1 did not come back:\n{}",
        p.log()
    );

    // A valid file with a new PoP is taken.
    let extra = r#"  - name: ams1
    checks:
      - name: always
        type: exec
        command: ["true"]
        rise: 1
"#;
    let api = free_port();
    std::fs::write(&path, config(api, &maint, extra)).expect("write");
    p.signal(libc::SIGHUP);
    p.wait_for_log("reloaded", T);
    p.wait_for_log("pop ams1 up", T);

    p.signal(libc::SIGTERM);
    assert_eq!(
        p.wait_exit(T),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        p.log()
    );
}

#[test]
fn invalid_config_refuses_to_start_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(
        dir.path(),
        "bad.yaml",
        "node:\n  name: x\npops:\n  - name: a\n    prefixes: [203.0.113.0/33]\n",
    );
    let mut p = Anypop::start(&["run", "--config", path.to_str().expect("utf8")]);
    assert_eq!(p.wait_exit(T), Some(2), "{}", p.log());
    assert!(p.log().contains("pops[0].prefixes[0]"), "{}", p.log());
}

/// The quick start: `anypop run` on the built-in config (fixed ports
/// 127.0.0.1:5353 and :8080). One example PoP is healthy and one is not,
/// by design.
#[test]
fn default_config_shows_health_evolve() {
    let mut p = Anypop::start(&["run"]);
    p.wait_for_log("built-in default config", T);
    p.wait_for_log("pop local up", T);
    p.wait_for_log("pop standby up", T);
    p.wait_for_log("pop offline down", T);
    assert!(
        p.log().contains("check offline/discard-port down"),
        "{}",
        p.log()
    );
    p.signal(libc::SIGINT);
    assert_eq!(p.wait_exit(T), Some(0), "{}", p.log());
}
