//! Restore: a snapshot (or Moltworker's rclone layout) into the state
//! directory, treating the bucket as untrusted input.
//!
//! Everything is downloaded into a staging directory and checked before any
//! local file changes. A manifest is refused as damaged when a path is not a
//! plain relative path inside the state directory (no `..`, no absolute
//! paths, nothing the mirror excludes, no file that is also a directory), when
//! it names more files or bytes than [`RestoreLimits`] allow, or when an
//! object holds more than its manifest says. Files are put in place without
//! following symbolic links, with mode 0600 in directories of mode 0700.

use super::manifest::object_name;
use super::{
    Excludes, FileEntry, Inner, Manifest, MirrorError, RestoreReport, STAGING, StateMirror, legacy,
    remote_error,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most a restore takes from the bucket; beyond it the snapshot is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreLimits {
    /// Files in one snapshot.
    pub max_files: usize,
    /// Bytes of one file.
    pub max_file_bytes: u64,
    /// Bytes of one snapshot, all files together.
    pub max_total_bytes: u64,
    /// Bytes of one manifest.
    pub max_manifest_bytes: u64,
}

impl Default for RestoreLimits {
    fn default() -> Self {
        Self {
            max_files: 200_000,
            max_file_bytes: 4 << 30,
            max_total_bytes: 16 << 30,
            max_manifest_bytes: 64 << 20,
        }
    }
}

impl StateMirror {
    /// Restores snapshot `at`, or the newest complete one, into the state
    /// directory. Everything is downloaded and checked before any local file
    /// changes; then files are put in place one by one, each atomically.
    pub async fn restore(&self, at: Option<u64>) -> Result<RestoreReport, MirrorError> {
        let mut inner = self.inner.lock().await;
        let numbers = self.manifests().await?;
        let candidates: Vec<u64> = match at {
            Some(seq) if numbers.contains(&seq) => vec![seq],
            Some(seq) => return Err(MirrorError::NoSnapshot(Some(seq))),
            None => numbers.iter().rev().copied().collect(),
        };
        let mut last_error = MirrorError::NoSnapshot(None);
        for seq in candidates {
            match self.restore_one(&mut inner, seq).await {
                Ok(report) => {
                    let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
                    status.manifest_seq = status.manifest_seq.max(numbers.last().copied());
                    return Ok(report);
                }
                // A damaged snapshot: fall back to the one before it.
                Err(error @ MirrorError::Corrupt { .. }) if at.is_none() => {
                    tracing::warn!(%error, "skipping a damaged snapshot");
                    last_error = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    async fn restore_one(&self, inner: &mut Inner, seq: u64) -> Result<RestoreReport, MirrorError> {
        let manifest = self.read_manifest(inner, seq).await?;
        self.check_manifest(&manifest)?;
        let local = self.scan(inner).await?;
        let staging = self.root.join(STAGING);
        let needed: Vec<(String, FileEntry)> = manifest
            .files
            .iter()
            .filter(|(path, entry)| local.get(*path).is_none_or(|have| have.hash != entry.hash))
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect();
        let (transfer, into) = (&self.transfer(true), &staging);
        let downloaded = self
            .stage(&staging, needed, |(path, entry)| async move {
                let name = self.path(&object_name(&self.object_id(&entry.hash)));
                let target = into.join(&path);
                let size = transfer
                    .download(&name, &target, Some(&entry.hash), entry.size, seq)
                    .await?;
                Ok((path, size))
            })
            .await?;
        let mut report = RestoreReport {
            seq,
            files: downloaded.len(),
            bytes: downloaded.iter().map(|(_, size)| size).sum(),
            removed: 0,
        };
        for (path, _) in &downloaded {
            self.put_in_place(&staging, path, path)?;
        }
        for path in local
            .keys()
            .filter(|path| !manifest.files.contains_key(*path))
        {
            let target = self.root.join(path);
            match std::fs::remove_file(&target) {
                Ok(()) => report.removed += 1,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(MirrorError::Local {
                        path: target,
                        source: err,
                    });
                }
            }
        }
        let _ = std::fs::remove_dir_all(&staging);
        self.write_marker(&manifest)?;
        self.adopt(inner, manifest);
        Ok(report)
    }

    /// Downloads every item (concurrently) into `staging`, where `fetch`
    /// writes it and returns its relative path and size; on any failure the
    /// staging directory is removed and no local file has changed.
    async fn stage<T, F, Fut>(
        &self,
        staging: &Path,
        items: Vec<T>,
        fetch: F,
    ) -> Result<Vec<(String, u64)>, MirrorError>
    where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = Result<(String, u64), MirrorError>>,
    {
        let _ = std::fs::remove_dir_all(staging);
        // Never through a symbolic link (a `.molt-sync` pointing elsewhere, say).
        std::fs::create_dir_all(&self.root).map_err(self.local_error(&self.root))?;
        create_private_dirs(&self.root, staging).map_err(self.local_error(staging))?;
        futures::stream::iter(items)
            .map(fetch)
            .buffer_unordered(self.options.concurrency.max(1))
            .try_collect()
            .await
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(staging);
            })
    }

    /// At start, before serving: restores the newest snapshot when the state
    /// directory is empty, or when it still matches an older snapshot that the
    /// bucket has since moved past. Local changes that were never backed up win.
    pub async fn restore_if_needed(&self) -> Result<Option<RestoreReport>, MirrorError> {
        let newest = self.manifests().await?.last().copied();
        let local = {
            let mut inner = self.inner.lock().await;
            self.scan(&mut inner).await?
        };
        let Some(newest) = newest else {
            // No snapshot of ours yet: a bucket written by Moltworker's rclone
            // sync can still fill an empty state directory.
            return match local.is_empty() {
                true => match self.restore_legacy().await {
                    Err(MirrorError::PlaintextRefused) => {
                        tracing::warn!("{}", MirrorError::PlaintextRefused);
                        Ok(None)
                    }
                    other => other,
                },
                false => Ok(None),
            };
        };
        let behind = match self.read_marker() {
            None => local.is_empty(),
            Some(marker) => marker.seq < newest && marker.files == local,
        };
        if !behind {
            tracing::info!(
                newest,
                "local state is current or newer than the bucket: not restoring"
            );
            return Ok(None);
        }
        self.restore(None).await.map(Some)
    }

    /// Restores from Moltworker's rclone layout, when the bucket has one:
    /// `openclaw/` (or the older `clawdbot/`, or a bare `clawdbot.json`) into
    /// `openclaw/`, `workspace/` into `workspace/`, and `skills/` into
    /// `workspace/skills/`. Like rclone's copy, it adds files and removes none.
    /// The next backup then writes the first snapshot in this mirror's layout.
    ///
    /// Moltworker's layout is plaintext: with a backup key set it is refused
    /// ([`MirrorError::PlaintextRefused`]), since anyone who can write the
    /// bucket could have put it there.
    pub async fn restore_legacy(&self) -> Result<Option<RestoreReport>, MirrorError> {
        if self.options.key.is_some() {
            return Err(MirrorError::PlaintextRefused);
        }
        let _guard = self.inner.lock().await;
        let mut plan: Vec<LegacyFile> = Vec::new();
        for source in &legacy::CONFIG_SOURCES {
            let found = self.legacy_files(source).await?;
            if !found.is_empty() {
                plan.extend(found);
                break;
            }
        }
        if plan.is_empty() {
            let bare = ObjectPath::from(legacy::BARE_CONFIG);
            match self.remote.head(&bare).await {
                Ok(meta) => plan.push(LegacyFile {
                    key: legacy::BARE_CONFIG.to_string(),
                    target: legacy::OLD_CONFIG_NAME.to_string(),
                    size: meta.size,
                }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(remote_error(legacy::BARE_CONFIG, err).into()),
            }
        }
        for source in &legacy::OTHER_SOURCES {
            plan.extend(self.legacy_files(source).await?);
        }
        if plan.is_empty() {
            return Ok(None);
        }
        // One source per target: `skills/` wins over skills found under `workspace/`.
        let plan: BTreeMap<String, LegacyFile> = plan
            .into_iter()
            .map(|file| (file.target.clone(), file))
            .collect();
        let limits = &self.options.restore_limits;
        let refused = |reason: String| Err(MirrorError::Corrupt { seq: 0, reason });
        if plan.len() > limits.max_files {
            return refused(format!(
                "Moltworker's layout has {} files, more than the {} a restore takes",
                plan.len(),
                limits.max_files
            ));
        }
        let total: u64 = plan.values().map(|file| file.size).sum();
        if total > limits.max_total_bytes {
            return refused(format!(
                "Moltworker's layout holds {total} bytes, more than the {} a restore takes",
                limits.max_total_bytes
            ));
        }
        let plan: Vec<(String, String)> = plan
            .into_values()
            .map(|file| (file.key, file.target))
            .collect();
        let max_file_bytes = limits.max_file_bytes;
        let staging = self.root.join(STAGING);
        let (transfer, into) = (&self.transfer(false), &staging);
        let downloaded = self
            .stage(&staging, plan, |(key, target)| async move {
                let name = ObjectPath::from(key.as_str());
                let size = transfer
                    .download(&name, &into.join(&target), None, max_file_bytes, 0)
                    .await?;
                Ok((target, size))
            })
            .await?;
        for (target, _) in &downloaded {
            let mut destination = target.clone();
            // Moltbot's config file takes its new name, unless that name is already there.
            let renamed = destination == legacy::OLD_CONFIG_NAME
                && !downloaded
                    .iter()
                    .any(|(other, _)| other == legacy::NEW_CONFIG_NAME);
            if renamed {
                destination = legacy::NEW_CONFIG_NAME.to_string();
            }
            self.put_in_place(&staging, target, &destination)?;
        }
        let _ = std::fs::remove_dir_all(&staging);
        tracing::info!(
            files = downloaded.len(),
            "restored state from Moltworker's backup layout"
        );
        Ok(Some(RestoreReport {
            seq: 0,
            files: downloaded.len(),
            bytes: downloaded.iter().map(|(_, size)| size).sum(),
            removed: 0,
        }))
    }

    /// The keys under a legacy prefix and where each lands; excluded and
    /// unsafe paths are left out.
    async fn legacy_files(
        &self,
        source: &legacy::LegacySource,
    ) -> Result<Vec<LegacyFile>, MirrorError> {
        let prefix = ObjectPath::from(source.prefix.trim_end_matches('/'));
        let listed: Vec<(String, u64)> = self
            .remote
            .list(Some(&prefix))
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .map_err(|err| remote_error(source.prefix, err))?;
        Ok(listed
            .into_iter()
            .filter_map(|(key, size)| {
                let relative = key.strip_prefix(source.prefix)?;
                let target = format!("{}{relative}", source.target);
                check_path(&target, &self.options.excludes)
                    .is_ok()
                    .then_some(LegacyFile { key, target, size })
            })
            .collect())
    }

    /// Refuses a manifest whose paths leave the state directory, collide, or
    /// add up to more than the limits.
    pub(super) fn check_manifest(&self, manifest: &Manifest) -> Result<(), MirrorError> {
        validate_manifest(
            manifest,
            &self.options.restore_limits,
            &self.options.excludes,
        )
        .map_err(|reason| MirrorError::Corrupt {
            seq: manifest.seq,
            reason,
        })
    }

    /// Moves `staged` from the staging directory to `destination` in the state
    /// directory, refusing to write through a symbolic link.
    fn put_in_place(
        &self,
        staging: &Path,
        staged: &str,
        destination: &str,
    ) -> Result<(), MirrorError> {
        let target = self.root.join(destination);
        let parent = target.parent().unwrap_or(&self.root);
        create_private_dirs(&self.root, parent).map_err(self.local_error(parent))?;
        std::fs::rename(staging.join(staged), &target).map_err(self.local_error(&target))
    }
}

/// Checks a manifest read from a bucket: every path a plain relative path
/// outside what the mirror excludes (and its own folder), no file inside
/// another, every hash a SHA-256, and no more files or bytes than `limits`.
/// The reason names the first problem found.
pub fn validate_manifest(
    manifest: &Manifest,
    limits: &RestoreLimits,
    excludes: &Excludes,
) -> Result<(), String> {
    if manifest.files.len() > limits.max_files {
        return Err(format!(
            "{} files, more than the {} a restore takes",
            manifest.files.len(),
            limits.max_files
        ));
    }
    let mut total = 0u64;
    for (path, entry) in &manifest.files {
        check_path(path, excludes).map_err(|reason| format!("unsafe path {path:?}: {reason}"))?;
        check_entry(entry, limits).map_err(|reason| format!("file {path:?}: {reason}"))?;
        let inside_a_file = path
            .match_indices('/')
            .any(|(slash, _)| manifest.files.contains_key(&path[..slash]));
        if inside_a_file {
            return Err(format!("{path:?} is inside another file"));
        }
        total = total.saturating_add(entry.size);
    }
    if total > limits.max_total_bytes {
        return Err(format!(
            "{total} bytes, more than the {} a restore takes",
            limits.max_total_bytes
        ));
    }
    Ok(())
}

/// Why `path` may not come from a bucket: it must be a relative `/`-separated
/// path of plain segments, outside what the mirror excludes and its own folder.
pub(super) fn check_path(path: &str, excludes: &Excludes) -> Result<(), &'static str> {
    if molt_core::store::validate_key(path).is_err() {
        return Err("not a relative path of plain segments");
    }
    if path == ".molt-sync" || path.starts_with(".molt-sync/") || excludes.matches(path) {
        return Err("the mirror never writes there");
    }
    Ok(())
}

fn check_entry(entry: &FileEntry, limits: &RestoreLimits) -> Result<(), String> {
    let hex = entry.hash.len() == 64
        && entry
            .hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err("its hash is not a SHA-256 in hex".into());
    }
    if entry.size > limits.max_file_bytes {
        return Err(format!(
            "{} bytes, more than the {} a restore takes",
            entry.size, limits.max_file_bytes
        ));
    }
    Ok(())
}

/// Creates `dir` and its missing parents under `root` with mode 0700, and
/// fails if any of them, below `root`, is a symbolic link or not a directory.
pub(super) fn create_private_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
    let relative = dir.strip_prefix(root).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "outside the state directory",
        )
    })?;
    let mut current = PathBuf::from(root);
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "refusing to restore through a symbolic link",
                ));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a file is in the way of a directory",
                ));
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => private_dir(&current)?,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

#[cfg(not(unix))]
fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path)
}

/// A file of Moltworker's layout: its key in the bucket, where it lands, its size.
struct LegacyFile {
    key: String,
    target: String,
    size: u64,
}
