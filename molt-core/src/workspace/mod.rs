//! The agent's workspace, laid out as OpenClaw's: the files that say who
//! the assistant is and whom it serves (`AGENTS.md`, `SOUL.md`,
//! `IDENTITY.md`, `USER.md`, `MEMORY.md`, and a first-run `BOOTSTRAP.md`),
//! its notes (`memory/YYYY-MM-DD.md`) and its skills, under [`PREFIX`] in the
//! state (where a Moltworker bucket's `workspace/` is restored).
//!
//! Everything goes through the [`Store`], so each write is durable and
//! mirrored like the rest of the state. [`bootstrap`] turns the files into
//! the project context of the system prompt; [`tools`] gives the agent
//! `read`, `write`, `edit` and `ls` inside the workspace, and nowhere else.

pub mod bootstrap;
pub mod memory;
mod templates;
pub mod tools;

use crate::platform::{Clock, Timestamp};
use crate::store::{Store, StoreError, validate_key};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Where the workspace lives in the store.
pub const PREFIX: &str = "workspace/";
/// Where the first-run state is kept (outside the workspace, so the agent's
/// file tools cannot change it).
pub const BOOTSTRAP_STATE_KEY: &str = "agent/bootstrap.json";
/// The first-run script, in a brand-new workspace until the agent deletes it.
pub const BOOTSTRAP_FILE: &str = "BOOTSTRAP.md";

/// The files that say who the assistant is: outside a direct conversation
/// the tools do not change them (nor the skills), so a group cannot rewrite
/// what the person's own conversations are told.
pub const PROTECTED_FILES: [&str; 8] = [
    "AGENTS.md",
    "SOUL.md",
    "IDENTITY.md",
    "USER.md",
    "TOOLS.md",
    "MEMORY.md",
    BOOTSTRAP_FILE,
    "HEARTBEAT.md",
];

fn normalized(path: &str) -> &str {
    path.trim().trim_start_matches("./").trim_end_matches('/')
}

/// Whether `path` (relative to the workspace) holds what only a direct
/// conversation may see: `MEMORY.md` and the notes in `memory/` (which
/// keep summaries of direct conversations).
pub fn is_private(path: &str) -> bool {
    let path = normalized(path);
    path == "MEMORY.md" || path == "memory" || path.starts_with("memory/")
}

/// Whether `path` is one only a direct conversation may change: the
/// [`PROTECTED_FILES`], the skills, and the private files.
pub fn is_protected(path: &str) -> bool {
    let path = normalized(path);
    PROTECTED_FILES.contains(&path)
        || path == "skills"
        || path.starts_with("skills/")
        || is_private(path)
}

/// Names the backup leaves out (its default excludes), refused for files so
/// that what the tools write is never kept on one machine only.
fn not_backed_up(relative: &str) -> bool {
    relative.split('/').any(|segment| {
        matches!(segment, "logs" | ".git" | ".molt-sync")
            || segment.contains(".molt-tmp-")
            || [".lock", ".tmp", ".swp"]
                .iter()
                .any(|end| segment.ends_with(end))
    })
}

/// Why a workspace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The path is not one inside the workspace.
    #[error("{path:?} is not a path inside the workspace: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotText {
        /// The file.
        path: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// When the workspace was seeded, and when its first run was done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapState {
    seeded_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
}

/// One lock per file being changed.
type FileLocks = Arc<std::sync::Mutex<HashMap<String, Arc<futures::lock::Mutex<()>>>>>;

/// The workspace in a store. Cheap to clone (clones share the file locks).
#[derive(Clone)]
pub struct Workspace {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    locks: FileLocks,
}

impl Workspace {
    /// The workspace under [`PREFIX`] in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            locks: FileLocks::default(),
        }
    }

    /// Today's date (`YYYY-MM-DD`, UTC) by the workspace's clock.
    pub fn today(&self) -> String {
        memory::day_of(self.clock.now())
    }

    /// The store key of the file at `path` ([`Workspace::key`]), refusing
    /// a folder's path (ending in `/`) and names the backup leaves out.
    pub fn file_key(path: &str) -> Result<String, WorkspaceError> {
        let key = Self::key(path)?;
        let invalid = |reason| WorkspaceError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        if path.trim().ends_with('/') {
            return Err(invalid("that is a folder; give a file's path"));
        }
        if not_backed_up(&key[PREFIX.len()..]) {
            return Err(invalid(
                "files named *.lock, *.tmp or *.swp, or in logs/ or .git/, are not backed up; choose another name",
            ));
        }
        Ok(key)
    }

    /// Changes the file at `path` under its lock: `change` gets the current
    /// text (if any) and returns the new text and a result, or a refusal
    /// (given back as the inner error); nothing is written on a refusal.
    pub async fn update<T>(
        &self,
        path: &str,
        change: impl FnOnce(Option<&str>) -> Result<(String, T), String>,
    ) -> Result<Result<T, String>, WorkspaceError> {
        let key = Self::file_key(path)?;
        let lock = self.lock_of(&key);
        let _held = lock.lock().await;
        let current = self.read(path).await?;
        match change(current.as_deref()) {
            Ok((text, result)) => {
                self.store.put(&key, Bytes::from(text)).await?;
                Ok(Ok(result))
            }
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    /// The store key of `path`, a `/`-separated path relative to the
    /// workspace (`./` allowed in front); absolute paths, `..`, `.` and
    /// empty segments and backslashes are refused.
    pub fn key(path: &str) -> Result<String, WorkspaceError> {
        let invalid = |reason| WorkspaceError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        let relative = path.trim().trim_start_matches("./");
        if relative.starts_with('/') {
            return Err(invalid(
                "absolute paths are not allowed; give it relative to the workspace",
            ));
        }
        if relative.contains('\\') || relative.contains('\0') {
            return Err(invalid("use '/' between folders"));
        }
        if relative.split('/').any(|segment| segment == "..") {
            return Err(invalid("'..' would leave the workspace"));
        }
        let key = format!("{PREFIX}{}", relative.trim_end_matches('/'));
        validate_key(&key).map_err(|_| invalid("empty or '.' parts are not allowed"))?;
        Ok(key)
    }

    /// The text of the file at `path`, if there is one.
    pub async fn read(&self, path: &str) -> Result<Option<String>, WorkspaceError> {
        let Some(bytes) = self.store.get(&Self::file_key(path)?).await? else {
            return Ok(None);
        };
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| WorkspaceError::NotText {
                path: path.to_owned(),
            })
    }

    /// Writes (or replaces) the file at `path`, durably, under its lock.
    pub async fn write(&self, path: &str, text: &str) -> Result<(), WorkspaceError> {
        let key = Self::file_key(path)?;
        let lock = self.lock_of(&key);
        let _held = lock.lock().await;
        Ok(self.store.put(&key, Bytes::from(text.to_owned())).await?)
    }

    fn lock_of(&self, key: &str) -> Arc<futures::lock::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Removes the file at `path` (a missing file is not an error).
    pub async fn delete(&self, path: &str) -> Result<(), WorkspaceError> {
        Ok(self.store.delete(&Self::file_key(path)?).await?)
    }

    /// Every file under the folder `dir` (`""` for the whole workspace), as
    /// paths relative to the workspace, sorted.
    pub async fn files(&self, dir: &str) -> Result<Vec<String>, WorkspaceError> {
        let prefix = match dir.trim().trim_start_matches("./").trim_end_matches('/') {
            "" | "." => PREFIX.to_owned(),
            dir => format!("{}/", Self::key(dir)?),
        };
        let keys = self.store.list(&prefix).await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(PREFIX).map(str::to_owned))
            .collect())
    }

    /// Whether nothing of a configured workspace is there: none of
    /// `AGENTS.md`, `SOUL.md`, `IDENTITY.md`, `USER.md`, `MEMORY.md`, no
    /// notes and no skills.
    pub async fn is_brand_new(&self) -> Result<bool, WorkspaceError> {
        for name in [
            "AGENTS.md",
            "SOUL.md",
            "IDENTITY.md",
            "USER.md",
            "MEMORY.md",
        ] {
            if self.store.get(&Self::key(name)?).await?.is_some() {
                return Ok(false);
            }
        }
        for dir in ["memory", "skills"] {
            if !self.files(dir).await?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// At start: seeds a brand-new workspace with the default files and the
    /// first-run script (once: never again after its first run is done),
    /// and ends a first run left unfinished in a workspace that looks
    /// configured since (a seeded file changed, or notes written), removing
    /// the script. Returns whether it seeded.
    pub async fn seed(&self) -> Result<bool, WorkspaceError> {
        let mut state = self.bootstrap_state().await?;
        if state.seeded_at.is_some() {
            if state.completed_at.is_none()
                && self.read(BOOTSTRAP_FILE).await?.is_some()
                && self.looks_configured().await?
            {
                self.delete(BOOTSTRAP_FILE).await?;
                self.complete_bootstrap(&mut state).await?;
            }
            return Ok(false);
        }
        if !self.is_brand_new().await? {
            return Ok(false);
        }
        for (name, text) in templates::DEFAULTS {
            self.write(name, text).await?;
        }
        self.write(BOOTSTRAP_FILE, templates::BOOTSTRAP).await?;
        state.seeded_at = Some(self.clock.now());
        self.save_bootstrap_state(&state).await?;
        tracing::info!("seeded a brand-new workspace with the default files and BOOTSTRAP.md");
        Ok(true)
    }

    /// Whether the first-run script is still to be followed: seeded, and
    /// not yet deleted by the agent (its deletion ends the first run).
    pub async fn bootstrap_pending(&self) -> Result<bool, WorkspaceError> {
        let mut state = self.bootstrap_state().await?;
        if state.seeded_at.is_none() || state.completed_at.is_some() {
            return Ok(false);
        }
        if self.read(BOOTSTRAP_FILE).await?.is_some() {
            return Ok(true);
        }
        self.complete_bootstrap(&mut state).await?;
        Ok(false)
    }

    async fn complete_bootstrap(&self, state: &mut BootstrapState) -> Result<(), WorkspaceError> {
        state.completed_at = Some(self.clock.now());
        self.save_bootstrap_state(state).await?;
        tracing::info!("the workspace's first run is done");
        Ok(())
    }

    async fn looks_configured(&self) -> Result<bool, WorkspaceError> {
        for (name, template) in templates::DEFAULTS {
            if name != "AGENTS.md" && self.read(name).await?.as_deref() != Some(template) {
                return Ok(true);
            }
        }
        let notes = !self.files("memory").await?.is_empty();
        Ok(notes || self.read("MEMORY.md").await?.is_some())
    }

    async fn bootstrap_state(&self) -> Result<BootstrapState, WorkspaceError> {
        let Some(bytes) = self.store.get(BOOTSTRAP_STATE_KEY).await? else {
            return Ok(BootstrapState::default());
        };
        serde_json::from_slice(&bytes).map_err(|err| {
            WorkspaceError::Store(StoreError::Corrupt {
                key: BOOTSTRAP_STATE_KEY.into(),
                reason: err.to_string(),
            })
        })
    }

    async fn save_bootstrap_state(&self, state: &BootstrapState) -> Result<(), WorkspaceError> {
        let json = serde_json::to_vec(state).expect("the state serializes");
        Ok(self
            .store
            .put(BOOTSTRAP_STATE_KEY, Bytes::from(json))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_workspace() {
        assert_eq!(Workspace::key("AGENTS.md").unwrap(), "workspace/AGENTS.md");
        assert_eq!(
            Workspace::key("./memory/2026-12-07.md").unwrap(),
            "workspace/memory/2026-12-07.md"
        );
        for outside in [
            "/etc/passwd",
            "../state.json",
            "memory/../../x",
            "a\\b",
            "",
            ".",
            "a//b",
            "a/./b",
        ] {
            assert!(Workspace::key(outside).is_err(), "{outside:?}");
        }
    }
}
