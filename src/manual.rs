//! Man pages and shell completion scripts, generated from the command-line
//! definition (clap_mangen, clap_complete) so they never disagree with
//! `--help`. The binary hands its `clap::Command` in; this module owns the
//! extra man page sections (files, signals, exit status, see also) and
//! must not parse arguments itself.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// Sections appended to `anypop(1)`, in roff.
const ROOT_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/anypop/anypop.yaml\fR
The configuration (\fBanypop print-default-config\fR prints a commented
example; \fBanypop check-config\fR validates one).
.TP
\fI/etc/anypop/token\fR
The API bearer token, when \fBapi.token_file\fR names it.
.TP
\fI/var/lib/anypop/admin-state.json\fR
Drains and disables, kept across restarts when \fBnode.state_dir\fR is
\fI/var/lib/anypop\fR.
.TP
\fI/run/anypop/\fR
A place for the maintenance files of file checks.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration file; an invalid file is rejected and the running
configuration stays.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Shut down: withdraw the announcements (or keep them for graceful restart,
see \fBbgp.shutdown\fR) and close the BGP sessions.
.SH "EXIT STATUS"
\fB0\fR stopped cleanly, \fB1\fR a runtime error (a port that cannot be
bound, an unreadable state file), \fB2\fR an invalid configuration.
\fBanypop ctl\fR: \fB0\fR done, \fB1\fR refused by the API, \fB2\fR the API
could not be reached. A command whose reader closes its stdout early ends
silently by SIGPIPE, as \fBcat\fR(1) does.
.SH SYSTEMD
Under systemd (\fBType=notify\fR), anypop sends READY=1 once its listeners
are bound and its first state is published, STATUS= with a one-line summary,
RELOADING=1 and READY=1 around a reload, STOPPING=1 on shutdown, and
WATCHDOG=1 from its controller loop when \fBWatchdogSec=\fR is set.
.SH "SEE ALSO"
\fBanypop-run\fR(1), \fBanypop-ctl\fR(1), \fBanypop-check-config\fR(1),
\fBsystemctl\fR(1), \fBvtysh\fR(1)
"#;

/// Writes `anypop.1` and one page per visible subcommand
/// (`anypop-ctl.1`, `anypop-ctl-drain.1`, ...) into `dir`; returns the
/// files written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_page(&cmd, dir, true, &mut written)?;
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    dir: &Path,
    root: bool,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("anypop manual")
        .date(page_date());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    if root {
        page.extend_from_slice(ROOT_EXTRA.as_bytes());
    }
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir, false, written)?;
    }
    Ok(())
}

/// The date on the pages: `SOURCE_DATE_EPOCH` (reproducible builds) or
/// today, as `YYYY-MM-DD`.
fn page_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let (y, m, d) = civil_from_days(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut cmd, "anypop", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("anypop")
            .version("1.0")
            .about("test")
            .subcommand(
                clap::Command::new("ctl")
                    .about("talk")
                    .subcommand(clap::Command::new("drain").about("drain a PoP")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn man_pages_cover_visible_subcommands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_man_pages(cli(), dir.path()).expect("write");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(names, ["anypop.1", "anypop-ctl.1", "anypop-ctl-drain.1"]);
        let root = std::fs::read_to_string(dir.path().join("anypop.1")).expect("read");
        assert!(root.starts_with(".ie"), "roff: {root}");
        assert!(root.contains(".SH FILES") && root.contains(".SH SIGNALS"));
        let drain = std::fs::read_to_string(dir.path().join("anypop-ctl-drain.1")).expect("read");
        assert!(drain.contains("drain a PoP") && !drain.contains(".SH SIGNALS"));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
    }

    #[test]
    fn completions_name_the_binary_and_subcommands() {
        let mut out = Vec::new();
        write_completions(cli(), Shell::Bash, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains("_anypop()") && text.contains("drain"),
            "{text}"
        );
    }
}
