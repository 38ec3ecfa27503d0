//! `file` probe: the classic maintenance switch. The check is healthy when
//! the file is present (or, with `healthy_if_present: false`, absent).
//!
//! Besides the interval, [`watch`] follows the file's directory with
//! inotify and wakes the check the moment the file is created, deleted or
//! renamed, so `touch /etc/anypop/maintenance` acts at once. The same
//! watch serves the pid files of `process` checks (a restarted service
//! rewrites its pid file). If the directory does not exist (yet), or
//! inotify is unavailable, the check falls back to its interval and
//! retries the watch.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Probed;

/// A prepared file check.
#[derive(Debug)]
pub struct FileTarget {
    pub path: PathBuf,
    pub healthy_if_present: bool,
}

impl FileTarget {
    /// Details: `present` / `absent`, or why the file cannot be examined.
    pub async fn probe(&self) -> Probed {
        let present = match tokio::fs::metadata(&self.path).await {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(format!("cannot stat {}: {e}", self.path.display())),
        };
        let word = if present { "present" } else { "absent" };
        let detail = format!("{} {word}", self.path.display());
        if present == self.healthy_if_present {
            Ok(detail)
        } else {
            Err(detail)
        }
    }
}

/// Watches one file: see [`watch_all`].
pub async fn watch(path: PathBuf, wake: Arc<Notify>, retry: Duration) {
    watch_all(vec![(path, wake)], retry).await
}

/// Watches the directories of all `files` with one inotify instance and
/// calls `notify_one()` on a file's `Notify` whenever an entry with its
/// name appears, disappears, is renamed or is written and closed (a pid
/// file rewritten in place), when its directory's watch is
/// (re-)armed, and when events were lost. Runs until cancelled. A
/// directory that cannot be watched (missing, no permission) is retried
/// every `retry`; the first failure per directory is logged at warn level.
pub async fn watch_all(files: Vec<(PathBuf, Arc<Notify>)>, retry: Duration) {
    let mut dirs: BTreeMap<PathBuf, DirWatch> = BTreeMap::new();
    for (path, wake) in files {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = path.file_name().map(OsStr::to_os_string) else {
            tracing::warn!(path = %path.display(), "file check path has no file name; inotify disabled for it");
            continue;
        };
        dirs.entry(dir)
            .or_insert_with(|| DirWatch {
                wd: None,
                warned: false,
                files: Vec::new(),
            })
            .files
            .push((name, wake));
    }
    if dirs.is_empty() {
        return;
    }
    let mut warned = false;
    loop {
        match watch_session(&mut dirs, retry).await {
            Err(e) if !warned => {
                tracing::warn!(error = %e, "inotify failed; file checks fall back to their interval");
                warned = true;
            }
            Err(e) => tracing::debug!(error = %e, "inotify still failing"),
            Ok(()) => warned = false,
        }
        for d in dirs.values_mut() {
            d.wd = None;
            d.wake_all();
        }
        tokio::time::sleep(retry).await;
    }
}

struct DirWatch {
    wd: Option<WatchDescriptor>,
    warned: bool,
    files: Vec<(OsString, Arc<Notify>)>,
}

impl DirWatch {
    fn wake_all(&self) {
        for (_, w) in &self.files {
            w.notify_one();
        }
    }
}

const DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// One inotify instance; returns only on an inotify error.
async fn watch_session(dirs: &mut BTreeMap<PathBuf, DirWatch>, retry: Duration) -> io::Result<()> {
    let inotify = Inotify::init()?;
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    let mut retry_at = Instant::now();
    loop {
        // Arm what is not armed (at most every `retry`).
        let mut unarmed = false;
        let due = Instant::now() >= retry_at;
        for (dir, d) in dirs.iter_mut().filter(|(_, d)| d.wd.is_none()) {
            if !due {
                unarmed = true;
                continue;
            }
            match events.watches().add(dir, DIR_MASK) {
                Ok(wd) => {
                    tracing::debug!(dir = %dir.display(), "inotify watch armed");
                    d.wd = Some(wd);
                    d.warned = false;
                    // The files may have changed while nothing watched.
                    d.wake_all();
                }
                Err(e) => {
                    unarmed = true;
                    if !d.warned {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory with inotify; its file checks fall back to their interval until it can be watched");
                        d.warned = true;
                    }
                }
            }
        }
        if unarmed && due {
            retry_at = Instant::now() + retry;
        }
        let ev = if unarmed {
            tokio::select! {
                ev = events.next() => ev,
                _ = tokio::time::sleep_until(retry_at) => continue,
            }
        } else {
            events.next().await
        };
        let Some(ev) = ev else {
            return Ok(());
        };
        let ev = ev?;
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            for d in dirs.values() {
                d.wake_all();
            }
            continue;
        }
        let Some(d) = dirs.values_mut().find(|d| d.wd.as_ref() == Some(&ev.wd)) else {
            continue;
        };
        if ev
            .mask
            .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
        {
            // The directory is gone or moved: re-arm on the path later.
            if ev.mask.contains(EventMask::MOVE_SELF) {
                if let Some(wd) = d.wd.take() {
                    let _ = events.watches().remove(wd);
                }
            }
            d.wd = None;
            d.wake_all();
            retry_at = Instant::now();
            continue;
        }
        if let Some(name) = ev.name.as_deref() {
            for (n, w) in &d.files {
                if n.as_os_str() == name {
                    w.notify_one();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Target;
    use crate::model::Probe;
    use std::path::Path;

    fn file(path: &Path, healthy_if_present: bool) -> Target {
        Target::new(&Probe::File {
            path: path.to_path_buf(),
            healthy_if_present,
        })
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn present_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maintenance");
        let out = file(&path, false).run(T).await;
        assert!(out.ok, "{out:?}");
        assert!(out.detail.ends_with("maintenance absent"), "{}", out.detail);
        let out = file(&path, true).run(T).await;
        assert!(!out.ok);

        std::fs::write(&path, b"").unwrap();
        let out = file(&path, false).run(T).await;
        assert!(!out.ok);
        assert!(
            out.detail.ends_with("maintenance present"),
            "{}",
            out.detail
        );
        let out = file(&path, true).run(T).await;
        assert!(out.ok, "{out:?}");
    }

    #[tokio::test]
    async fn watch_wakes_on_create_delete_and_rename_of_that_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maintenance");
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(watch(path.clone(), wake.clone(), Duration::from_secs(60)));
        // The armed watch wakes once by itself.
        tokio::time::timeout(T, wake.notified()).await.unwrap();

        // Another name in the directory: no wake-up.
        std::fs::write(dir.path().join("other"), b"").unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), wake.notified())
                .await
                .is_err()
        );

        std::fs::write(&path, b"").unwrap();
        tokio::time::timeout(T, wake.notified()).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        tokio::time::timeout(T, wake.notified()).await.unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();
        tokio::time::timeout(T, wake.notified()).await.unwrap();
        task.abort();
    }

    #[tokio::test]
    async fn watch_rearms_when_directory_appears() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("later");
        let path = dir.join("maintenance");
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(watch(path.clone(), wake.clone(), Duration::from_millis(50)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::create_dir(&dir).unwrap();
        // Armed on a retry: the arming wake-up.
        tokio::time::timeout(T, wake.notified()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, b"").unwrap();
        tokio::time::timeout(T, wake.notified()).await.unwrap();
        task.abort();
    }

    #[tokio::test]
    async fn one_watcher_serves_many_files_and_survives_directory_removal() {
        let base = tempfile::tempdir().unwrap();
        let a_dir = base.path().join("a");
        let b_dir = base.path().join("b");
        std::fs::create_dir(&a_dir).unwrap();
        std::fs::create_dir(&b_dir).unwrap();
        let a1 = Arc::new(Notify::new());
        let a2 = Arc::new(Notify::new());
        let b = Arc::new(Notify::new());
        let task = tokio::spawn(watch_all(
            vec![
                (a_dir.join("one"), a1.clone()),
                (a_dir.join("two"), a2.clone()),
                (b_dir.join("flag"), b.clone()),
            ],
            Duration::from_millis(50),
        ));
        for w in [&a1, &a2, &b] {
            tokio::time::timeout(T, w.notified()).await.unwrap();
        }
        let quiet = |w: Arc<Notify>| async move {
            tokio::time::timeout(Duration::from_millis(150), w.notified())
                .await
                .is_err()
        };

        std::fs::write(a_dir.join("two"), b"").unwrap();
        tokio::time::timeout(T, a2.notified()).await.unwrap();
        assert!(quiet(a1.clone()).await, "`one` woken by `two`");
        assert!(quiet(b.clone()).await, "`flag` woken by `two`");

        // Remove b's directory: its file is woken (state may have changed),
        // then the watch re-arms when the directory comes back.
        std::fs::remove_dir_all(&b_dir).unwrap();
        tokio::time::timeout(T, b.notified()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::create_dir(&b_dir).unwrap();
        tokio::time::timeout(T, b.notified()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(b_dir.join("flag"), b"").unwrap();
        tokio::time::timeout(T, b.notified()).await.unwrap();

        // a is still watched.
        std::fs::write(a_dir.join("one"), b"").unwrap();
        tokio::time::timeout(T, a1.notified()).await.unwrap();
        task.abort();
    }
}
