//! Scanning the state directory: which files to mirror, and their hashes
//! (recomputed only when a file's size or modification time changed).

use super::manifest::FileEntry;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

/// Which paths are never mirrored.
///
/// Patterns: `name/` excludes a directory of that name anywhere; `*suffix`
/// and `prefix*` match file names; anything else matches a file name exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excludes(Vec<String>);

impl Default for Excludes {
    /// Locks, logs, temporary files, and the mirror's own directory.
    fn default() -> Self {
        Self::new([
            "*.lock",
            "*.tmp",
            "*.swp",
            ".molt-tmp-*",
            "logs/",
            ".molt-sync/",
            ".git/",
        ])
    }
}

impl Excludes {
    /// These patterns.
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self(patterns.into_iter().map(Into::into).collect())
    }

    /// Whether the relative path of a file, `path`, is excluded.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_path(path, true)
    }

    /// Whether the relative path of a directory is excluded (with all below it).
    pub fn matches_dir(&self, path: &str) -> bool {
        self.matches_path(path, false)
    }

    fn matches_path(&self, path: &str, ends_in_file: bool) -> bool {
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            let is_file = ends_in_file && parts.peek().is_none();
            for pattern in &self.0 {
                let hit = if let Some(directory) = pattern.strip_suffix('/') {
                    !is_file && part == directory
                } else if !is_file {
                    false
                } else if let Some(suffix) = pattern.strip_prefix('*') {
                    part.ends_with(suffix)
                } else if let Some(prefix) = pattern.strip_suffix('*') {
                    part.starts_with(prefix)
                } else {
                    part == pattern
                };
                if hit {
                    return true;
                }
            }
        }
        false
    }
}

/// What a file looked like when it was last hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    modified: Option<SystemTime>,
}

/// Remembers hashes between scans.
#[derive(Debug, Default)]
pub struct HashCache {
    entries: HashMap<String, (Stamp, String)>,
}

/// Every mirrored file under `root`, with its hash.
pub fn scan(
    root: &Path,
    excludes: &Excludes,
    cache: &mut HashCache,
) -> std::io::Result<BTreeMap<String, FileEntry>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Some(relative) = relative_name(root, &path) else {
                continue;
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !excludes.matches_dir(&relative) {
                    pending.push(path);
                }
                continue;
            }
            if !kind.is_file() || excludes.matches(&relative) {
                continue;
            }
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Deleted between listing and reading: simply not part of this snapshot.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let stamp = Stamp {
                size: metadata.len(),
                modified: metadata.modified().ok(),
            };
            let hash = match cache.entries.get(&relative) {
                Some((known, hash)) if *known == stamp && stamp.modified.is_some() => hash.clone(),
                _ => match hash_file(&path) {
                    Ok((hash, _)) => hash,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                },
            };
            cache
                .entries
                .insert(relative.clone(), (stamp.clone(), hash.clone()));
            files.insert(
                relative,
                FileEntry {
                    hash,
                    size: stamp.size,
                },
            );
        }
    }
    cache.entries.retain(|path, _| files.contains_key(path));
    Ok(files)
}

/// `path` relative to `root`, `/`-separated; `None` for names that are not UTF-8.
fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|part| part.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

/// The SHA-256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    let mut size = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// The SHA-256 (hex) of some bytes.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_excludes_skip_locks_logs_temporaries_and_the_mirror_itself() {
        let excludes = Excludes::default();
        for path in [
            "a.lock",
            "dir/b.tmp",
            "logs/x.jsonl",
            "deep/logs/x",
            ".molt-sync/state.json",
            "pairing/.molt-tmp-3",
        ] {
            assert!(excludes.matches(path), "{path}");
        }
        for path in [
            "transcripts/a.jsonl",
            "logs.json",
            "pairing/telegram.json",
            "workspace/logs-notes.md",
        ] {
            assert!(!excludes.matches(path), "{path}");
        }
    }
}
