//! Effects: work the core decides on but does not do itself, because it
//! blocks or touches the outside world. The core pushes an [`Effect`] on
//! an unbounded channel and goes on applying inputs; [`run`] carries each
//! effect out and reports its result back as an [`Input`], so the outcome
//! is applied by the core like any other input.
//!
//! Today there is one effect: saving the admin state file. A new effect is
//! a new variant here plus an arm in [`run`] (and, if its outcome matters,
//! an `Input` variant the core handles); an effect that must not wait
//! behind a slow disk gets its own worker task spawned from [`run`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::mpsc;
use tracing::debug;

use super::admin::Override;
use super::persist::{self, SaveFailure};
use super::Input;
use crate::model::PopName;

/// Something the core wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Replace the admin state file with `overrides` (write, fsync,
    /// rename, fsync the directory), then report
    /// [`Input::Saved`] with the same `id`.
    SaveAdminState {
        id: u64,
        dir: PathBuf,
        overrides: BTreeMap<PopName, Override>,
    },
}

/// Carries out effects in order until the core ends. Saves run one at a
/// time on a blocking thread (the core never has more than one in
/// flight). `inputs` is weak so this task never keeps the core alive.
pub async fn run(mut effects: mpsc::UnboundedReceiver<Effect>, inputs: mpsc::WeakSender<Input>) {
    while let Some(effect) = effects.recv().await {
        match effect {
            Effect::SaveAdminState { id, dir, overrides } => {
                let result = tokio::task::spawn_blocking(move || {
                    persist::save(&dir, &overrides).map_err(|e| SaveFailure::from(&e))
                })
                .await
                .unwrap_or_else(|e| {
                    Err(SaveFailure {
                        error: format!("admin state saver failed: {e}"),
                        replaced: false,
                    })
                });
                let Some(tx) = inputs.upgrade() else { return };
                if tx.send(Input::Saved { id, result }).await.is_err() {
                    debug!("core gone before the admin state save was reported");
                    return;
                }
            }
        }
    }
}
