//! `file` probe: the classic maintenance switch. The check is healthy when
//! the file is present (or, with `healthy_if_present: false`, absent).
//!
//! Besides the interval, [`watch`] follows the file's directory with
//! inotify and wakes the check the moment the file is created, deleted or
//! renamed, so `touch /etc/anypop/maintenance` acts at once. If the
//! directory does not exist (yet), or inotify is unavailable, the check
//! falls back to its interval and retries the watch.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::Notify;

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

/// Watches `path`'s directory and calls `wake.notify_one()` whenever an
/// entry named like `path` appears, disappears or is renamed (and when the
/// watch is lost). Runs until cancelled; retries a failed watch every
/// `retry`. The first failure is logged at warn level, repeats at debug.
pub async fn watch(path: PathBuf, wake: Arc<Notify>, retry: Duration) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name().map(OsStr::to_os_string) else {
        tracing::warn!(path = %path.display(), "file check path has no file name; inotify disabled");
        return;
    };
    let mut warned = false;
    loop {
        match watch_once(&dir, &name, &wake).await {
            Ok(()) => {
                // The directory went away or the watch was dropped: the file
                // state may have changed.
                wake.notify_one();
                tracing::debug!(dir = %dir.display(), "inotify watch ended, re-arming");
            }
            Err(e) if !warned => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory with inotify; file check falls back to its interval");
                warned = true;
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "inotify watch still failing")
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// One inotify session; returns when the watch is gone.
async fn watch_once(dir: &Path, name: &OsStr, wake: &Notify) -> io::Result<()> {
    let inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR,
    )?;
    tracing::debug!(dir = %dir.display(), "inotify watch armed");
    // The file may have changed while no watch was armed.
    wake.notify_one();
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    while let Some(ev) = events.next().await {
        let ev = ev?;
        let about_file = ev.name.as_deref() == Some(name);
        let lost = ev.mask.intersects(
            EventMask::IGNORED
                | EventMask::DELETE_SELF
                | EventMask::MOVE_SELF
                | EventMask::Q_OVERFLOW,
        );
        if about_file || lost {
            wake.notify_one();
        }
        if ev
            .mask
            .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
        {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Target;
    use crate::model::Probe;

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
}
