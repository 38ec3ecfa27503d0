//! `dig` against an anypop DNS listener on 127.0.0.1.

use std::process::Command;

/// Runs `dig @127.0.0.1 -p port +norecurse +time=2 +tries=1 args…` and
/// returns its stdout.
pub fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+norecurse",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The answer lines of `dig +short` output: trimmed, without blank lines and
/// `;` comments (e.g. `;; connection timed out`), in dig's order.
pub fn short_lines(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(String::from)
        .collect()
}
