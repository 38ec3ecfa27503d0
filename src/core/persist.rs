//! The admin state file: operator overrides (drains, disables) that must
//! survive a crash or restart.
//!
//! The file is `<state_dir>/admin-state.json`, a small versioned JSON
//! document whose shape this module owns (`FileFormat`, `FileOverride`,
//! converted to and from the core's [`Override`], which has no serde). [`save`] replaces it atomically: the new content goes to a temp
//! file in the same directory, is flushed to disk (`fsync`), renamed over the
//! old file, and the directory itself is flushed so the rename is durable.
//! A reader therefore sees either the old or the new file, never a torn one.
//! The temp file ([`temp_path`]) is always created afresh (`O_CREAT|O_EXCL`
//! with `O_NOFOLLOW`, mode 0600): whatever is already at that path — a file
//! a crash left behind, or a symlink placed there — is unlinked (the link
//! itself, never what it points to), never opened or followed.
//! [`remove_stale_temp_files`] clears what a crash left at start.
//! [`load`] treats a missing file as "no overrides" and a file it cannot
//! understand as an error naming the file and what is wrong; what to do then
//! (refuse to start, or start clean) is the caller's decision.
//!
//! This module does no policy: it does not check that the PoPs still exist
//! in the config, and it does not touch monotonic deadlines (see
//! [`super::admin::resume`]). The core never calls [`save`] itself: it
//! emits [`super::effect::Effect::SaveAdminState`] and the effect runner
//! calls [`save`] on a blocking thread and reports the result back.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::admin::{Override, Phase};
use crate::model::{Name, PopName};

/// Name of the state file inside the configured state directory.
pub const STATE_FILE: &str = "admin-state.json";

/// Version of the file format written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Why the admin state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The new file is in place but the directory could not be flushed:
    /// a crash may still bring back the previous file.
    #[error("cannot fsync directory {dir} after replacing {path}: {source}")]
    NotDurable {
        dir: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("admin state file {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

impl PersistError {
    /// True if the file was replaced by the new content (but not durably):
    /// what is on disk is then neither reliably old nor reliably new.
    pub fn replaced(&self) -> bool {
        matches!(self, PersistError::NotDurable { .. })
    }
}

/// Why a save failed, as reported back to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveFailure {
    /// The error, naming the file and the step that failed.
    pub error: String,
    /// The file was replaced before the failure ([`PersistError::replaced`]).
    pub replaced: bool,
}

impl From<&PersistError> for SaveFailure {
    fn from(e: &PersistError) -> Self {
        SaveFailure {
            error: e.to_string(),
            replaced: e.replaced(),
        }
    }
}

/// On-disk shape. PoP names are plain strings here and validated on load.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat<K: Ord> {
    version: u32,
    overrides: BTreeMap<K, FileOverride>,
}

/// One override on disk. Fields it does not know are ignored; the
/// monotonic end of the current phase is never written (it is recomputed
/// by [`super::admin::resume`]).
#[derive(Serialize, Deserialize)]
struct FileOverride {
    phase: FilePhase,
    reason: String,
    who: String,
    /// serde's form of a wall-clock time:
    /// `{"secs_since_epoch": S, "nanos_since_epoch": N}`.
    since: SystemTime,
    until: Option<SystemTime>,
    /// Forced past the last-PoP guard; absent (as in files of earlier
    /// builds) when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    force: bool,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FilePhase {
    DnsRemoved,
    Shutdown,
    Drained,
    Restoring,
    Disabled,
}

impl From<&Override> for FileOverride {
    fn from(o: &Override) -> FileOverride {
        FileOverride {
            phase: match o.phase {
                Phase::DnsRemoved => FilePhase::DnsRemoved,
                Phase::Shutdown => FilePhase::Shutdown,
                Phase::Drained => FilePhase::Drained,
                Phase::Restoring => FilePhase::Restoring,
                Phase::Disabled => FilePhase::Disabled,
            },
            reason: o.reason.clone(),
            who: o.who.clone(),
            since: o.since,
            until: o.until,
            force: o.force,
        }
    }
}

impl From<FileOverride> for Override {
    fn from(o: FileOverride) -> Override {
        Override {
            phase: match o.phase {
                FilePhase::DnsRemoved => Phase::DnsRemoved,
                FilePhase::Shutdown => Phase::Shutdown,
                FilePhase::Drained => Phase::Drained,
                FilePhase::Restoring => Phase::Restoring,
                FilePhase::Disabled => Phase::Disabled,
            },
            reason: o.reason,
            who: o.who,
            since: o.since,
            until: o.until,
            phase_ends: None,
            force: o.force,
        }
    }
}

/// Path of the state file in `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Atomically replaces the state file in `dir` (created if missing) with
/// `overrides`.
pub fn save(dir: &Path, overrides: &BTreeMap<PopName, Override>) -> Result<(), PersistError> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io_err("cannot create state directory", dir))?;
    let body = FileFormat {
        version: FORMAT_VERSION,
        overrides: overrides
            .iter()
            .map(|(k, v)| (k.as_str(), FileOverride::from(v)))
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&body).map_err(|e| PersistError::Io {
        action: "cannot encode admin state for",
        path: state_path(dir),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');

    let target = state_path(dir);
    let tmp = temp_path(dir);
    let result = (|| {
        let mut f = create_temp(&tmp).map_err(io_err("cannot create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &target).map_err(io_err("cannot rename temp file to", &target))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| PersistError::NotDurable {
                dir: dir.to_path_buf(),
                path: target.clone(),
                source,
            })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The temp file [`save`] writes before renaming it over the state file:
/// `.admin-state.json.tmp.<pid>` in the same directory.
pub fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{}{}", temp_prefix(), std::process::id()))
}

/// What every temp file's name starts with.
fn temp_prefix() -> String {
    format!(".{STATE_FILE}.tmp.")
}

/// Creates `path` as a new private file. Something already there (a temp
/// file a crash left, with the same process id after a restart; a link
/// someone placed) is unlinked and the create tried once more; if
/// something is there again, the save fails rather than use it.
fn create_temp(path: &Path) -> io::Result<File> {
    match create_new_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            create_new_private(path)
        }
        other => other,
    }
}

/// `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600: never opens an existing file,
/// never follows a symlink (not even a dangling one).
fn create_new_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    opts.open(path)
}

/// Removes temp files an earlier process left in `dir` when it died in
/// the middle of a save (call it at start, before anything saves):
/// entries named `.admin-state.json.tmp.*` that are files or symlinks
/// (a link is removed itself; its target is never touched). Returns what
/// was removed. A missing directory has nothing stale.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = temp_prefix();
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let stale = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix));
        let kind = entry.file_type()?;
        if stale && (kind.is_file() || kind.is_symlink()) {
            fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Reads the state file in `dir`. A missing file (or directory) is an empty
/// set of overrides.
pub fn load(dir: &Path) -> Result<BTreeMap<PopName, Override>, PersistError> {
    let path = state_path(dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(PersistError::Io {
                action: "cannot read",
                path,
                source,
            })
        }
    };
    decode(&bytes, &path)
}

/// Decodes the content of the state file at `path` (named in errors).
pub fn decode(bytes: &[u8], path: &Path) -> Result<BTreeMap<PopName, Override>, PersistError> {
    let corrupt = |detail: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let file: FileFormat<String> = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at == "." || at.is_empty() {
            corrupt(inner.to_string())
        } else {
            corrupt(format!("{at}: {inner}"))
        }
    })?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not supported (this build reads version {FORMAT_VERSION})",
            file.version
        )));
    }
    file.overrides
        .into_iter()
        .map(|(k, v)| {
            Name::parse(&k)
                .map(|n| (n, Override::from(v)))
                .map_err(|e| corrupt(format!("overrides: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::admin::Phase;
    use std::time::{Duration, SystemTime};

    fn ov(phase: Phase, reason: &str) -> Override {
        Override {
            phase,
            reason: reason.into(),
            who: "ops@host".into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_003_600)),
            phase_ends: None,
            force: false,
        }
    }

    fn name(s: &str) -> PopName {
        Name::parse(s).expect("valid test name")
    }

    #[test]
    fn missing_file_and_missing_dir_are_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("load").is_empty());
        assert!(load(&dir.path().join("nope")).expect("load").is_empty());
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("state");
        let mut m = BTreeMap::new();
        m.insert(name("ams"), ov(Phase::Drained, "fibre cut"));
        m.insert(name("fra"), ov(Phase::Disabled, "decommission"));
        save(&sub, &m).expect("save");
        let back = load(&sub).expect("load");
        assert_eq!(back, m);
        let names: Vec<_> = fs::read_dir(&sub)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![STATE_FILE.to_string()]);

        // Replacing with a smaller set really replaces it.
        m.remove("fra");
        save(&sub, &m).expect("save again");
        assert_eq!(load(&sub).expect("load").len(), 1);
        m.clear();
        save(&sub, &m).expect("save empty");
        assert!(load(&sub).expect("load").is_empty());
    }

    #[test]
    fn monotonic_deadline_is_not_persisted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = ov(Phase::DnsRemoved, "x");
        o.phase_ends = Some(tokio::time::Instant::now());
        let m = BTreeMap::from([(name("ams"), o)]);
        save(dir.path(), &m).expect("save");
        let back = load(dir.path()).expect("load");
        assert_eq!(back["ams"].phase_ends, None);
        assert_eq!(back["ams"].phase, Phase::DnsRemoved);
    }

    fn corrupt_err(contents: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(state_path(dir.path()), contents).expect("write");
        match load(dir.path()) {
            Err(e @ PersistError::Corrupt { .. }) => {
                let s = e.to_string();
                assert!(s.contains(STATE_FILE), "error names the file: {s}");
                s
            }
            other => panic!("expected a corrupt-file error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_files_are_reported_with_what_is_wrong() {
        assert!(corrupt_err("").contains("empty"));
        assert!(corrupt_err("{\"version\": 1, \"overr").contains("EOF"));
        assert!(corrupt_err("{\"version\": 7, \"overrides\": {}}").contains("version 7"));
        let e = corrupt_err(
            r#"{"version": 1, "overrides": {"ams": {"phase": "sideways", "reason": "", "who": "",
                "since": {"secs_since_epoch": 0, "nanos_since_epoch": 0}, "until": null}}}"#,
        );
        assert!(e.contains("overrides.ams.phase"), "{e}");
        assert!(e.contains("sideways"), "{e}");
        let e = corrupt_err(r#"{"version": 1, "overrides": {"a b": {}}}"#);
        assert!(e.contains("overrides"), "{e}");
        let e = corrupt_err(r#"{"version": 1, "overrides": {}, "extra": true}"#);
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn invalid_pop_name_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = BTreeMap::from([(name("ams"), ov(Phase::Drained, "x"))]);
        save(dir.path(), &good).expect("save");
        let text = fs::read_to_string(state_path(dir.path())).expect("read");
        fs::write(state_path(dir.path()), text.replace("\"ams\"", "\"a m s\"")).expect("write");
        let e = load(dir.path()).expect_err("bad name");
        assert!(e.to_string().contains("a m s"), "{e}");
    }

    #[test]
    fn save_into_unwritable_place_fails_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        fs::write(&file, "x").expect("write");
        let e = save(&file, &BTreeMap::new()).expect_err("a file is not a directory");
        assert!(e.to_string().contains("plain-file"), "{e}");
        assert!(!e.replaced(), "nothing was replaced");
    }

    /// A link someone placed at the temp path (the state directory is
    /// writable by them) is never followed: its target stays as it was,
    /// and the state file is a regular file with the new content.
    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_temp_path_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let victim = elsewhere.path().join("victim");
        fs::write(&victim, "precious\n").expect("write");
        std::os::unix::fs::symlink(&victim, temp_path(dir.path())).expect("symlink");
        let m = BTreeMap::from([(name("ams"), ov(Phase::Drained, "x"))]);
        save(dir.path(), &m).expect("save");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
        let meta = fs::symlink_metadata(state_path(dir.path())).expect("state file");
        assert!(meta.file_type().is_file(), "a regular file: {meta:?}");
        assert_eq!(load(dir.path()).expect("load"), m);
        assert!(
            fs::symlink_metadata(temp_path(dir.path())).is_err(),
            "no temp left"
        );
    }

    /// A temp file a crash left behind (same process id after a restart,
    /// as in a container) does not block saving.
    #[test]
    fn a_stale_temp_file_does_not_block_saving() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(temp_path(dir.path()), "{\"version\": 1, \"overr").expect("write");
        let m = BTreeMap::from([(name("ams"), ov(Phase::Disabled, "x"))]);
        save(dir.path(), &m).expect("save");
        assert_eq!(load(dir.path()).expect("load"), m);
        save(dir.path(), &BTreeMap::new()).expect("save again");
        assert!(load(dir.path()).expect("load").is_empty());
    }

    /// What a crash leaves in the directory (temp files of earlier
    /// processes, also links) is removed at start; the state file and
    /// anything else stay, and a link's target is never touched.
    #[cfg(unix)]
    #[test]
    fn stale_temp_files_are_removed_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = BTreeMap::from([(name("ams"), ov(Phase::Drained, "x"))]);
        save(dir.path(), &m).expect("save");
        let stale = dir.path().join(format!(".{STATE_FILE}.tmp.4242"));
        fs::write(&stale, "half a file").expect("write");
        let victim = dir.path().join("other-file");
        fs::write(&victim, "keep\n").expect("write");
        let link = dir.path().join(format!(".{STATE_FILE}.tmp.1"));
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let mut removed = remove_stale_temp_files(dir.path()).expect("sweep");
        removed.sort();
        assert_eq!(removed, vec![link.clone(), stale.clone()]);
        assert!(fs::symlink_metadata(&stale).is_err() && fs::symlink_metadata(&link).is_err());
        assert_eq!(fs::read_to_string(&victim).expect("read"), "keep\n");
        assert_eq!(load(dir.path()).expect("load"), m);
        assert!(remove_stale_temp_files(&dir.path().join("missing"))
            .expect("a missing directory has nothing stale")
            .is_empty());
    }

    /// Every phase, an auto-undrain with nanoseconds and one without, a
    /// reason that needs escaping.
    fn every_phase() -> BTreeMap<PopName, Override> {
        let mut m = BTreeMap::new();
        for (p, phase) in [
            ("ams", Phase::DnsRemoved),
            ("fra", Phase::Shutdown),
            ("lon", Phase::Drained),
            ("par", Phase::Restoring),
            ("sin", Phase::Disabled),
        ] {
            m.insert(name(p), ov(phase, "fibre \"cut\" ü"));
        }
        if let Some(o) = m.get_mut("lon") {
            o.until = Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_003_600, 500));
        }
        if let Some(o) = m.get_mut("sin") {
            o.until = None;
        }
        m
    }

    /// The file as written by the build whose core types carried serde
    /// themselves (recorded once, never re-recorded): this build writes it
    /// byte for byte the same and reads it back into the same overrides.
    #[test]
    fn the_file_format_is_unchanged() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core/testdata/admin-state-v1.json");
        let want = fs::read_to_string(&path).expect("recorded file");
        let dir = tempfile::tempdir().expect("tempdir");
        save(dir.path(), &every_phase()).expect("save");
        assert_eq!(
            fs::read_to_string(state_path(dir.path())).expect("read"),
            want
        );
        assert_eq!(
            decode(want.as_bytes(), &path).expect("decode"),
            every_phase()
        );
    }
}
