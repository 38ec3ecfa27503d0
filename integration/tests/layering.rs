//! The module layering of the anypop crate, checked on its source text:
//! the validated config (`config`, `model`) never names the DNS server, the
//! BGP speaker, BFD, the API, the core, the daemon or systemd; the leaf
//! helpers (`geoip`, `manual`, `unix_time`) name no other module; the core
//! never names `dns`, `health` or `systemd` (its watchdog pings through a
//! closure the daemon hands in); `health` and `dns` never name each other,
//! the API, BGP, BFD, `ctl`, the daemon or systemd. So a config type can
//! never pull a server type in, `dns` and `health` (which read the core's
//! snapshots and send it inputs) cannot form a cycle with the core, and the
//! health checks share no code with the DNS server (config types convert
//! into the DNS library's, e.g. `RecordType::from(DnsType)`); `fleet` (the
//! pullers and the peer client) never names the API, BGP, BFD, DNS, `ctl`,
//! the daemon or systemd. Unit tests may
//! use any module and are not checked. Reads files only: no root, no
//! network.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules.
const MODULES: [&str; 17] = [
    "api",
    "bfd",
    "bgp",
    "config",
    "core",
    "ctl",
    "daemon",
    "dns",
    "fleet",
    "geoip",
    "health",
    "manual",
    "model",
    "systemd",
    "telemetry",
    "testutil",
    "unix_time",
];

/// (module, modules it must not name).
const RULES: &[(&str, &[&str])] = &[
    (
        "config",
        &[
            "api", "bfd", "bgp", "core", "ctl", "daemon", "dns", "health", "systemd",
        ],
    ),
    (
        "model",
        &[
            "api", "bfd", "bgp", "core", "ctl", "daemon", "dns", "health", "systemd",
        ],
    ),
    ("geoip", &MODULES),
    ("manual", &MODULES),
    ("unix_time", &MODULES),
    (
        "core",
        &[
            "api", "bfd", "bgp", "ctl", "daemon", "dns", "health", "systemd",
        ],
    ),
    (
        "health",
        &["api", "bfd", "bgp", "ctl", "daemon", "dns", "systemd"],
    ),
    (
        "dns",
        &["api", "bfd", "bgp", "ctl", "daemon", "health", "systemd"],
    ),
    (
        "fleet",
        &["api", "bfd", "bgp", "ctl", "daemon", "dns", "systemd"],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("src")
}

/// Every `.rs` file of a top-level module (`src/m.rs` and `src/m/**`).
fn module_files(module: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its unit tests: `tests.rs` files are all
/// tests; elsewhere the inline `#[cfg(test)] mod tests {` (by convention
/// the end of the file) and what follows it is left out.
fn non_test_code(file: &Path, code: &str) -> String {
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let lines: Vec<&str> = code.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| {
            w[0].trim() == "#[cfg(test)]"
                && w[1]
                    .trim_start_matches("pub(crate) ")
                    .starts_with("mod tests {")
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// The top-level modules a piece of code names as `crate::m` (also inside
/// `crate::{a, b::c}`), ignoring `//` comments.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .collect(),
                None => vec![rest],
            };
            for name in names {
                let ident: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if MODULES.contains(&ident.as_str()) {
                    out.insert(ident);
                }
            }
        }
    }
    out
}

#[test]
fn unit_tests_are_left_out() {
    let code = "use crate::model;\n#[cfg(test)]\nmod tests {\n    use crate::dns;\n}\n";
    let got: Vec<String> = named_modules(&non_test_code(Path::new("a.rs"), code))
        .into_iter()
        .collect();
    assert_eq!(got, ["model"]);
    assert!(non_test_code(Path::new("src/x/tests.rs"), code).is_empty());
}

#[test]
fn named_modules_reads_paths_and_groups() {
    let code = "use crate::dns::zone;\n// crate::api in a comment\nuse crate::{core::Snapshot, model};\nlet x = crate::geoip::Code::parse(v);";
    let got: Vec<String> = named_modules(code).into_iter().collect();
    assert_eq!(got, ["core", "dns", "geoip", "model"]);
}

#[test]
fn modules_do_not_name_what_their_layer_forbids() {
    let mut problems = Vec::new();
    for (module, forbidden) in RULES {
        let files = module_files(module);
        assert!(!files.is_empty(), "no source files for module {module}");
        for file in files {
            let code = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for named in named_modules(&non_test_code(&file, &code)) {
                if named != *module && forbidden.contains(&named.as_str()) {
                    problems.push(format!(
                        "{} (module {module}) names crate::{named}",
                        file.strip_prefix(src()).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `MODULES` is the crate's module list, so a new module is not missed.
#[test]
fn module_list_matches_lib_rs() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    let listed: BTreeSet<&str> = MODULES.into_iter().collect();
    assert_eq!(
        declared, listed,
        "src/lib.rs declares other modules than MODULES lists: add a new module \
         to MODULES (and to the RULES of the layers that must not name it)"
    );
}
