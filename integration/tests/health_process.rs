//! Health checks through the real `anypop run` process: a maintenance file
//! acts through inotify long before the check's interval, and a TCP service
//! that dies is noticed within the default timings. Times are printed, and
//! only generous bounds are asserted.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anypop_integration::{checks_config, wait_until, write_file, Anypop};

const T: Duration = Duration::from_secs(20);

fn start(dir: &std::path::Path, checks: &str) -> Anypop {
    let cfg = checks_config("health-test", checks);
    let path = write_file(dir, "anypop.yaml", &cfg);
    Anypop::start(&["run", "--config", path.to_str().expect("utf8 path")])
}

#[test]
fn maintenance_file_acts_through_inotify_not_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maint = dir.path().join("maintenance");
    // A 60 s interval: only inotify can explain a reaction within seconds.
    let checks = format!(
        "      - {{name: maintenance, type: file, path: {}, healthy_when: absent, interval: 60s, rise: 1, fall: 1}}",
        maint.display()
    );
    let p = start(dir.path(), &checks);
    p.wait_for_log("pop fra1 up", T);

    let touched = Instant::now();
    std::fs::write(&maint, "").expect("create maintenance file");
    p.wait_for_log("pop fra1 down", T);
    println!("maintenance file → pop down in {:?}", touched.elapsed());
    assert!(
        touched.elapsed() < Duration::from_secs(30),
        "reaction came from the interval"
    );

    let removed = Instant::now();
    std::fs::remove_file(&maint).expect("remove maintenance file");
    let ups = || p.log().matches("pop fra1 up").count();
    assert!(
        wait_until(T, || ups() >= 2),
        "fra1 did not come back:\n{}",
        p.log()
    );
    println!(
        "maintenance file removed → pop up in {:?}",
        removed.elapsed()
    );
    assert!(removed.elapsed() < Duration::from_secs(30));
}

#[test]
fn dead_tcp_service_is_noticed_with_default_timings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = TcpListener::bind("127.0.0.1:0").expect("bind service");
    let port = service.local_addr().expect("addr").port();
    let checks = format!("      - {{name: svc, type: tcp, target: \"127.0.0.1:{port}\"}}");
    let p = start(dir.path(), &checks);
    p.wait_for_log("pop fra1 up", T);

    let died = Instant::now();
    drop(service);
    p.wait_for_log("pop fra1 down", T);
    // The service dies right after the probe that made the PoP up, the
    // worst phase: a full interval to the next probe plus one fast
    // re-probe (~1.1 s; over random instants the median is ~0.6 s, see
    // the paused-time test in src/health/scheduler.rs).
    println!(
        "tcp service closed → pop down in {:?} (default timings, worst phase)",
        died.elapsed()
    );
    assert!(
        p.log().contains("connect refused"),
        "reason in the log:\n{}",
        p.log()
    );
}
