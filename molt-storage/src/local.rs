//! The local-filesystem store: the embedded default.

use async_trait::async_trait;
use bytes::Bytes;
use molt_core::store::{LogStore, PutOutcome, Store, StoreError, validate_key, validate_record};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Log handles kept open at most; more are closed and reopened on demand.
const MAX_OPEN_LOGS: usize = 256;

/// Temporary files carry this marker; listings skip them.
const TEMP_MARKER: &str = ".molt-tmp-";

/// A [`Store`] and [`LogStore`] over a directory.
///
/// Keys map to paths under the root (`a/b` is `<root>/a/b`). Objects are
/// replaced atomically (write a temporary file, fsync it, rename it over the
/// old one, fsync the directory), so a crash leaves the old object or the new
/// one, never a torn one. Log appends are fsynced before they return; a torn
/// last line left by a crash is ignored on read.
#[derive(Clone, Debug)]
pub struct LocalFileStore {
    root: PathBuf,
    temp_counter: Arc<AtomicU64>,
    open_logs: Arc<Mutex<HashMap<String, Arc<Mutex<File>>>>>,
}

impl LocalFileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            temp_counter: Arc::default(),
            open_logs: Arc::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn temp_path(&self, target: &Path) -> PathBuf {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        target.with_file_name(format!("{name}{TEMP_MARKER}{}-{n}", std::process::id()))
    }

    /// Runs blocking filesystem work on `path` off the async threads, once
    /// no symlink on the way to it leads outside the root.
    async fn blocking<T: Send + 'static>(
        &self,
        key: &str,
        path: &Path,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (root, path) = (self.root.clone(), path.to_owned());
        let confined_work = move || {
            confine(&root, &path)?;
            work()
        };
        let outcome = match tokio::task::spawn_blocking(confined_work).await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join.to_string())),
        };
        outcome.map_err(
            |source| match source.get_ref().is_some_and(|e| e.is::<Escapes>()) {
                true => StoreError::InvalidKey {
                    key: key.to_owned(),
                    reason: "a symlink on the way leads outside its directory",
                },
                false => StoreError::Io {
                    key: key.to_owned(),
                    source,
                },
            },
        )
    }

    fn log_file(&self, key: &str, path: &Path) -> io::Result<Arc<Mutex<File>>> {
        let mut logs = self.open_logs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = logs.get(key) {
            return Ok(file.clone());
        }
        if logs.len() >= MAX_OPEN_LOGS {
            // Bounded: close the handles (appenders holding one keep theirs).
            logs.clear();
        }
        if let Some(parent) = path.parent() {
            create_dirs(parent)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        if !existed {
            file.sync_all()?;
            sync_parent(path)?;
        }
        // A crash may have left a torn last line: end it, so the next record
        // starts on a line of its own (readers skip the fragment).
        if file.metadata()?.len() > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        let file = Arc::new(Mutex::new(file));
        logs.insert(key.to_owned(), file.clone());
        Ok(file)
    }

    /// Forgets a log's handle, so the next append reopens it and repairs its tail.
    fn forget_log(&self, key: &str) {
        self.open_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Creates `dir` and any missing parents, syncing each new directory's parent
/// so the new entries survive a power loss.
fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        missing.push(path);
        current = path.parent();
    }
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        sync_parent(created)?;
    }
    Ok(())
}

/// Writes `value` to a synced temporary file beside `target`.
fn write_temp(temp: &Path, value: &[u8]) -> io::Result<()> {
    if let Some(parent) = temp.parent() {
        create_dirs(parent)?;
    }
    let mut file = File::create(temp)?;
    file.write_all(value)?;
    file.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Marks the error of a path that a symlink leads out of the root.
#[derive(Debug)]
struct Escapes;

impl std::fmt::Display for Escapes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a symlink on the way leads outside its directory")
    }
}

impl std::error::Error for Escapes {}

/// Refuses `path` (under `root`) when a symlink below its top-level
/// directory resolves outside that directory (or does not resolve at all):
/// a link in `workspace/` cannot reach the gateway's token beside it, nor
/// anything outside the store. The top level is the operator's: a
/// directory there that is itself a link (a volume mounted there) is
/// followed, as the base.
fn confine(root: &Path, path: &Path) -> io::Result<()> {
    let Ok(relative) = path.strip_prefix(root) else {
        return Ok(());
    };
    let mut parts = relative.components();
    let Some(first) = parts.next() else {
        return Ok(());
    };
    // The top level is the operator's: what is there is trusted.
    let (base, below) = (root.join(first), parts.as_path().to_owned());
    let real_base = match fs::canonicalize(&base) {
        Ok(real) => real,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut current = base;
    for part in below.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(&current) {
                Ok(target) if target.starts_with(&real_base) => {}
                _ => return Err(io::Error::new(io::ErrorKind::PermissionDenied, Escapes)),
            },
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[async_trait]
impl Store for LocalFileStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        self.blocking(key, &path.clone(), move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let temp = self.temp_path(&path);
        self.blocking(key, &path.clone(), move || {
            write_temp(&temp, &value)?;
            if let Err(err) = fs::rename(&temp, &path) {
                let _ = fs::remove_file(&temp);
                return Err(err);
            }
            sync_parent(&path)
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, value: Bytes) -> Result<PutOutcome, StoreError> {
        let path = self.path(key)?;
        let temp = self.temp_path(&path);
        self.blocking(key, &path.clone(), move || {
            write_temp(&temp, &value)?;
            // A hard link fails if the target exists: an atomic create-if-absent
            // that never exposes a half-written file.
            let linked = fs::hard_link(&temp, &path);
            let _ = fs::remove_file(&temp);
            match linked {
                Ok(()) => sync_parent(&path).map(|()| PutOutcome::Created),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    Ok(PutOutcome::AlreadyExists)
                }
                Err(err) => Err(err),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        // Walk only the directory the prefix names, not the whole tree; that
        // directory must be a valid key, so a prefix cannot leave the root.
        let start = match prefix.rfind('/') {
            Some(slash) => {
                validate_key(&prefix[..slash])?;
                root.join(&prefix[..slash])
            }
            None => root.clone(),
        };
        let prefix = prefix.to_owned();
        self.blocking(&prefix.clone(), &start.clone(), move || {
            let mut keys = Vec::new();
            let mut dirs = vec![start];
            while let Some(dir) = dirs.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    let Ok(relative) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key = relative
                        .to_string_lossy()
                        .replace(std::path::MAIN_SEPARATOR, "/");
                    if key.starts_with(&prefix) && !key.contains(TEMP_MARKER) {
                        keys.push(key);
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.blocking(key, &path.clone(), move || match fs::remove_file(&path) {
            Ok(()) => sync_parent(&path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        })
        .await
    }
}

#[async_trait]
impl LogStore for LocalFileStore {
    async fn append(&self, key: &str, record: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        validate_record(key, &record)?;
        let this = self.clone();
        let owned_key = key.to_owned();
        self.blocking(key, &path.clone(), move || {
            let file = this.log_file(&owned_key, &path)?;
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            let mut line = Vec::with_capacity(record.len() + 1);
            line.extend_from_slice(&record);
            line.push(b'\n');
            let length = file.metadata()?.len();
            // One write call per record, so concurrent appenders never interleave.
            let written = file.write_all(&line).and_then(|()| file.sync_data());
            if written.is_err() {
                // Take back a partial record (disk full, I/O error), and reopen next time.
                let _ = file.set_len(length);
                this.forget_log(&owned_key);
            }
            written
        })
        .await
    }

    async fn read(&self, key: &str) -> Result<Vec<Bytes>, StoreError> {
        let path = self.path(key)?;
        let owned_key = key.to_owned();
        self.blocking(key, &path.clone(), move || {
            let bytes = match fs::read(&path) {
                Ok(bytes) => Bytes::from(bytes),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(err) => return Err(err),
            };
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete < bytes.len() {
                tracing::warn!(key = %owned_key, bytes = bytes.len() - complete, "ignoring a torn last record");
            }
            let records = bytes.slice(..complete);
            Ok(records
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| records.slice_ref(line))
                .collect())
        })
        .await
    }

    async fn delete_log(&self, key: &str) -> Result<(), StoreError> {
        // Appends after this start a new file; the cached handle would write to the removed one.
        self.forget_log(key);
        Store::delete(self, key).await
    }
}
