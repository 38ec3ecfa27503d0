//! The systemd unit and the Debian package in `packaging/`:
//! `systemd-analyze verify` accepts the unit without a warning (its
//! ExecStart pointed at the built binary, its man page found through
//! MANPATH) and rates its sandbox OK; `packaging/build-deb.sh` builds the
//! package, which holds the binary, the unit, a commented config (a
//! conffile that passes `check-config`), man pages, completions and
//! maintainer scripts that create the user, and on which `lintian` reports
//! no error. The unit's capabilities are enough: anypop as an unprivileged
//! user with only the unit's `AmbientCapabilities` binds DNS on port 53 and
//! BGP on port 179 and sets TCP MD5 and GTSM on its sessions (in a network
//! namespace of its own), and without them it cannot bind port 53.

use std::path::{Path, PathBuf};
use std::process::Command;

use anypop_integration::lab::{lab_available, repo_root};
use anypop_integration::{anypop_bin, have, run, tools_available, wait_for, Anypop};

fn unit_text() -> String {
    let p = repo_root().join("packaging/anypop.service");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The values of `key=` lines in a unit file, in order.
fn directive(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .collect()
}

/// Writes the man pages of the binary under test into `dir`.
fn man_pages(dir: &Path) {
    let (code, out, err) = run(Command::new(anypop_bin()).arg("man-pages").arg(dir));
    assert_eq!(code, 0, "anypop man-pages: {out}{err}");
}

#[test]
fn unit_file_passes_systemd_analyze() {
    let test = "unit_file_passes_systemd_analyze";
    if !tools_available(
        test,
        &["systemd-analyze", "man"],
        "apt-get install systemd man-db",
    ) {
        return;
    }
    let unit = unit_text();
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("User", "anypop"),
        ("StateDirectory", "anypop"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("WatchdogSec", "30s"),
    ] {
        assert_eq!(directive(&unit, key), [want], "{key}= in anypop.service");
    }

    // The unit as installed, but starting the binary under test, so verify
    // checks that ExecStart is executable; its man page comes from MANPATH.
    let dir = tempfile::tempdir().expect("tempdir");
    let man = dir.path().join("man");
    man_pages(&man.join("man1"));
    let bin = anypop_bin();
    let local = unit.replace("/usr/bin/anypop", &bin.display().to_string());
    let path = dir.path().join("anypop.service");
    std::fs::write(&path, local).expect("write unit");
    let (code, out, err) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=yes"])
        .arg(&path)
        .env("MANPATH", &man));
    assert_eq!(code, 0, "systemd-analyze verify:\n{out}{err}");
    assert!(
        out.trim().is_empty() && err.trim().is_empty(),
        "systemd-analyze verify warns:\n{out}{err}"
    );

    let (code, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path));
    assert_eq!(code, 0, "systemd-analyze security:\n{out}{err}");
    let verdict = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    eprintln!("{verdict}");
    assert!(verdict.contains(" OK"), "sandbox weaker than OK: {verdict}");
}

#[test]
fn unit_file_rejects_a_broken_copy() {
    // The verify test above would be worthless if verify accepted anything.
    if !tools_available(
        "unit_file_rejects_a_broken_copy",
        &["systemd-analyze"],
        "apt-get install systemd",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = anypop_bin();
    let broken = unit_text()
        .replace("/usr/bin/anypop", &bin.display().to_string())
        .replace("ProtectSystem=strict", "ProtectSystem=strickt");
    let path = dir.path().join("anypop.service");
    std::fs::write(&path, broken).expect("write unit");
    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path));
    assert!(
        format!("{out}{err}").contains("strickt"),
        "verify did not notice a bad value:\n{out}{err}"
    );
}

/// `cargo-deb` from PATH or from `target/tools/bin` (where
/// `integration/run-tests.sh` installs it).
fn cargo_deb_path() -> Option<PathBuf> {
    let local = repo_root().join("target/tools/bin");
    if local.join("cargo-deb").exists() {
        return Some(local);
    }
    have("cargo-deb").then(PathBuf::new)
}

fn deb_listing(deb: &Path) -> Vec<(String, String)> {
    let (code, out, err) = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    assert_eq!(code, 0, "dpkg-deb -c: {err}");
    // drwxr-xr-x 0/0 0 2026-01-01 00:00 ./usr/bin/anypop
    out.lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?.to_string();
            let path = l.split_whitespace().last()?.trim_start_matches("./");
            Some((path.to_string(), mode))
        })
        .collect()
}

#[test]
fn deb_package_builds_with_its_contents_and_passes_lintian() {
    let test = "deb_package_builds_with_its_contents_and_passes_lintian";
    let Some(tools) = cargo_deb_path() else {
        tools_available(
            test,
            &["cargo-deb"],
            "cargo install cargo-deb --version 3.8.0 --locked; run-tests.sh does it",
        );
        return;
    };
    if !tools_available(
        test,
        &["dpkg-deb", "lintian"],
        "apt-get install dpkg lintian",
    ) {
        return;
    }
    let root = repo_root();
    let path = std::env::var("PATH").unwrap_or_default();
    // The package of the binary the other tests run (built by the test
    // command already: no second, release, build here), with fast
    // compression; release packages are built by build-deb.sh alone.
    let (code, out, err) = run(Command::new(root.join("packaging/build-deb.sh"))
        .arg("--binary")
        .arg(anypop_bin())
        .arg("--fast")
        .env("PATH", format!("{}:{path}", tools.display()))
        .current_dir(&root));
    assert_eq!(code, 0, "build-deb.sh failed:\n{out}\n{err}");
    let (_, v, _) = run(Command::new(anypop_bin()).arg("--version"));
    let version = v
        .trim()
        .strip_prefix("anypop ")
        .unwrap_or_else(|| panic!("anypop --version: {v}"))
        .to_string();
    let deb = root.join(format!("target/debian/anypop_{version}-1_amd64.deb"));
    assert!(
        out.contains(&deb.display().to_string()),
        "build-deb.sh did not report {}:\n{out}",
        deb.display()
    );

    // Control fields.
    let field = |name: &str| {
        let (code, out, err) = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
        assert_eq!(code, 0, "dpkg-deb -f {name}: {err}");
        out.trim().to_string()
    };
    assert_eq!(field("Package"), "anypop");
    assert_eq!(field("Version"), format!("{version}-1"));
    let depends = field("Depends");
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "{depends}"
    );

    // Files, with their modes.
    let listing = deb_listing(&deb);
    let mode_of = |p: &str| {
        listing
            .iter()
            .find(|(path, _)| path == p)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("{p} not in the package: {listing:#?}"))
    };
    assert_eq!(mode_of("usr/bin/anypop"), "-rwxr-xr-x");
    for f in [
        "usr/lib/systemd/system/anypop.service",
        "etc/anypop/anypop.yaml",
        "usr/share/man/man1/anypop.1.gz",
        "usr/share/man/man1/anypop-run.1.gz",
        "usr/share/man/man1/anypop-ctl.1.gz",
        "usr/share/man/man1/anypop-ctl-drain.1.gz",
        "usr/share/bash-completion/completions/anypop",
        "usr/share/zsh/vendor-completions/_anypop",
        "usr/share/fish/vendor_completions.d/anypop.fish",
        "usr/share/doc/anypop/copyright",
        "usr/share/doc/anypop/changelog.Debian.gz",
        "usr/share/anypop/prometheus/anypop-rules.yml",
        "usr/share/anypop/grafana/anypop.json",
    ] {
        assert_eq!(mode_of(f), "-rw-r--r--", "{f}");
    }

    // Unpacked: the unit and the rules are the repository's; the binary
    // runs and accepts the shipped config; the man page has its sections.
    let dir = tempfile::tempdir().expect("tempdir");
    let x = dir.path();
    let (code, _, err) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x));
    assert_eq!(code, 0, "dpkg-deb -x: {err}");
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        read(&x.join("usr/lib/systemd/system/anypop.service")),
        read(&root.join("packaging/anypop.service"))
    );
    let bin = x.join("usr/bin/anypop");
    let (code, out, _) = run(Command::new(&bin).arg("--version"));
    assert_eq!(
        (code, out.trim()),
        (0, format!("anypop {version}").as_str())
    );
    let (code, out, err) = run(Command::new(&bin)
        .arg("check-config")
        .arg(x.join("etc/anypop/anypop.yaml")));
    assert_eq!(code, 0, "packaged config: {out}{err}");
    assert!(out.contains("state dir /var/lib/anypop"), "{out}");
    let (code, page, err) = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {}",
        x.join("usr/share/man/man1/anypop.1.gz").display()
    )));
    assert_eq!(code, 0, "{err}");
    for section in [".SH SYNOPSIS", ".SH FILES", ".SH SIGNALS", ".SH SYSTEMD"] {
        assert!(page.contains(section), "anypop.1 lacks {section}");
    }
    let completion = String::from_utf8_lossy(&read(
        &x.join("usr/share/bash-completion/completions/anypop"),
    ))
    .into_owned();
    assert!(completion.contains("drain") && completion.contains("check-config"));

    // Maintainer scripts: the user and the token are made in postinst, the
    // systemd snippets are filled in, and the scripts parse.
    let ctrl = dir.path().join("DEBIAN");
    let (code, _, err) = run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
    assert_eq!(code, 0, "dpkg-deb -e: {err}");
    let postinst = String::from_utf8_lossy(&read(&ctrl.join("postinst"))).into_owned();
    for needle in [
        "adduser --system --group",
        "install -d -o anypop -g anypop -m 0750 /var/lib/anypop",
        "/etc/anypop/token",
        "deb-systemd-helper enable anypop.service",
        "deb-systemd-invoke $_dh_action anypop.service",
    ] {
        assert!(
            postinst.contains(needle),
            "postinst lacks {needle:?}:\n{postinst}"
        );
    }
    assert!(!postinst.contains("#DEBHELPER#"), "token not replaced");
    for script in ["postinst", "prerm", "postrm"] {
        let (code, _, err) = run(Command::new("sh").arg("-n").arg(ctrl.join(script)));
        assert_eq!(code, 0, "{script} does not parse: {err}");
    }
    let conffiles = String::from_utf8_lossy(&read(&ctrl.join("conffiles"))).into_owned();
    assert!(
        conffiles.lines().any(|l| l == "/etc/anypop/anypop.yaml"),
        "{conffiles}"
    );

    // lintian: no error (warnings are printed for people to read).
    let (code, out, err) = run(Command::new("lintian").arg(&deb));
    eprintln!("lintian {}:\n{out}{err}", deb.display());
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    assert_eq!(code, 0, "lintian failed:\n{out}{err}");
}

/// A network namespace for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("ap{}{tag}", std::process::id());
        let (code, _, err) = run(Command::new("ip").args(["netns", "add", &name]));
        assert_eq!(code, 0, "ip netns add {name}: {err}");
        let ns = Netns(name);
        let (code, _, err) = run(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]));
        assert_eq!(code, 0, "lo up: {err}");
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.0]));
    }
}

/// `anypop run` in `ns` as nobody, with exactly `caps` (setpriv syntax,
/// e.g. `+net_bind_service`) as ambient, inheritable and bounding set.
fn run_as_nobody(ns: &Netns, caps: &str, config: &Path) -> Anypop {
    let set = format!("-all{caps}");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns.0,
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
    ])
    .arg("--clear-groups")
    .arg(format!("--inh-caps={set}"))
    .arg(format!("--ambient-caps={set}"))
    .arg(format!("--bounding-set={set}"))
    .arg(anypop_bin())
    .arg("run")
    .arg("--config")
    .arg(config);
    Anypop::start_cmd(&mut cmd)
}

#[test]
fn unit_capabilities_suffice_for_ports_53_179_md5_and_gtsm() {
    let test = "unit_capabilities_suffice_for_ports_53_179_md5_and_gtsm";
    if !lab_available(test, &["ip", "setpriv"]) {
        return;
    }
    let caps: Vec<String> = directive(&unit_text(), "AmbientCapabilities")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|c| {
            let c = c.strip_prefix("CAP_").unwrap_or(&c).to_ascii_lowercase();
            format!(",+{c}")
        })
        .collect();
    assert!(!caps.is_empty(), "the unit grants no capability");
    let caps = caps.concat();

    // nobody must be able to read the config and the MD5 password file.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::write(d.join("md5"), "s3cret\n").expect("md5 file");
    let config = d.join("anypop.yaml");
    std::fs::write(
        &config,
        format!(
            r#"node: {{name: cap, pop: p, router_id: 192.0.2.1, asn: 64512}}
bgp:
  listen: 127.0.0.1:179
  peers:
    - {{name: r1, address: 127.0.0.2, remote_asn: 64500, md5_password_file: {md5}, ttl_security: true, connect_retry: 1s}}
    - {{name: r2, address: 127.0.0.3, remote_asn: 64500, md5_password_file: {md5}, passive: true}}
pops:
  - {{name: p, prefixes: [203.0.113.0/24], addresses: [192.0.2.10], checks: [{{name: m, type: file, path: {d}/maint, healthy_when: absent}}]}}
dns: {{listen: ["127.0.0.1:53"], zones: []}}
api: {{listen: "127.0.0.1:8080"}}
"#,
            md5 = d.join("md5").display(),
            d = d.display(),
        ),
    )
    .expect("config");
    for f in ["md5", "anypop.yaml"] {
        std::fs::set_permissions(
            d.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .expect("chmod");
    }

    let ns = Netns::new("cap");
    let node = run_as_nobody(&ns, &caps, &config);
    node.wait_for_log("API listening", std::time::Duration::from_secs(30));
    let log = node.log();
    assert!(
        log.contains("dns listening (udp, tcp) udp_addr=127.0.0.1:53"),
        "{log}"
    );
    assert!(log.contains("BGP listener up addr=127.0.0.1:179"), "{log}");
    // The active session got as far as connecting, MD5 and GTSM set.
    let ctl = || {
        let (_, out, _) = run(Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(anypop_bin())
            .args(["ctl", "--api", "127.0.0.1:8080", "peers", "--json"]));
        serde_json::from_str::<serde_json::Value>(&out).ok()
    };
    let peers = wait_for(std::time::Duration::from_secs(30), || {
        ctl().filter(|v| v["peers"]["r1"]["last_error"].is_string())
    })
    .unwrap_or_else(|| panic!("r1 never tried to connect:\n{}", node.log()));
    let err = peers["peers"]["r1"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("connect"), "{err}");
    let log = node.log();
    for bad in [
        "not permitted",
        "Permission denied",
        "cannot install MD5",
        "cannot listen",
    ] {
        assert!(
            !log.contains(bad) && !err.contains(bad),
            "{bad}:\n{err}\n{log}"
        );
    }
    drop(node);

    // Without the capability the same start fails on port 53.
    let mut bare = run_as_nobody(&ns, "", &config);
    assert_eq!(bare.wait_exit(std::time::Duration::from_secs(30)), Some(1));
    assert!(
        bare.log().contains("127.0.0.1:53: Permission denied"),
        "{}",
        bare.log()
    );
}
