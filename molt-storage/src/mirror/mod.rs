//! Continuous backup of the state directory to a bucket, and crash-safe restore.
//!
//! Layout under the mirror's prefix:
//! - `objects/<sh>/<sha256>`: file contents, named by their hash (in folders
//!   by its first two characters), written once; large files in equal parts;
//! - `manifests/<seq>.json`: one per snapshot, naming every file and its hash.
//!
//! A backup uploads the objects it lacks first and writes the manifest last,
//! with a conditional put, so a manifest in the bucket always describes a
//! complete snapshot and a backup cut halfway leaves only unreferenced objects.
//! Restore takes the newest manifest whose objects are all there. Only changed
//! files move (content hashes), deletions propagate (a file missing from the
//! manifest is gone), and the last `keep_manifests` snapshots stay available.

mod legacy;
mod manifest;
mod restore;
mod scan;
mod sealing;
mod transfer;

pub use manifest::{FileEntry, Manifest};
pub use restore::{RestoreLimits, validate_manifest};
pub use scan::{Excludes, hash_bytes};
pub use sealing::{BackupKey, KeyError};

use crate::s3::remote_error;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use manifest::{MANIFEST_VERSION, manifest_name, object_name, parse_manifest_name};
use molt_core::store::StoreError;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use scan::HashCache;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use transfer::Uploaded;

/// How the mirror behaves.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// The key prefix in the bucket (`molt` by default).
    pub prefix: String,
    /// Paths never mirrored.
    pub excludes: Excludes,
    /// Snapshots kept for point-in-time restore.
    pub keep_manifests: usize,
    /// How long the directory must stay quiet after a change before a backup.
    pub debounce: Duration,
    /// The longest a change waits for its backup while changes keep coming
    /// (so a steady stream of writes cannot hold backups off).
    pub max_delay: Duration,
    /// How often a full check runs even without change events.
    pub full_check: Duration,
    /// The longest wait between attempts while the bucket fails.
    pub max_backoff: Duration,
    /// Uploads and downloads in flight at once.
    pub concurrency: usize,
    /// Unreferenced objects younger than this are left alone (a backup may be writing them).
    pub orphan_grace: Duration,
    /// Encrypt everything written (AES-256-GCM); `None` stores plaintext.
    pub key: Option<BackupKey>,
    /// Files at least this large are uploaded in parts, streamed from disk.
    pub multipart_threshold: u64,
    /// The size of every part but the last (at least 5 MiB, as S3 and R2
    /// require; R2 also wants them all equal, which they are).
    pub part_size: usize,
    /// The most a restore takes from the bucket.
    pub restore_limits: RestoreLimits,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        Self {
            prefix: "molt".into(),
            excludes: Excludes::default(),
            keep_manifests: 10,
            debounce: Duration::from_millis(200),
            max_delay: Duration::from_millis(500),
            full_check: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
            concurrency: 16,
            orphan_grace: Duration::from_secs(3600),
            key: None,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            restore_limits: RestoreLimits::default(),
        }
    }
}

/// The smallest part S3 and R2 accept (but for the last).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Why a backup or restore failed. Local state is never changed by a failed one.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Reading or writing the state directory failed.
    #[error("state directory {path}: {source}")]
    Local {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The bucket failed (see the kind: credentials, network, throttling, ...).
    #[error(transparent)]
    Remote(#[from] StoreError),
    /// A manifest or object in the bucket is not what it claims.
    #[error("snapshot {seq}: {reason}")]
    Corrupt {
        /// The snapshot.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A backup key is set, and the bucket offers only Moltworker's plaintext
    /// layout, which anyone who can write the bucket could have put there.
    #[error(
        "the bucket holds only Moltworker's unencrypted backup, and MOLT_BACKUP_KEY is set: not restoring plaintext (restore it once without the key, or remove it from the bucket)"
    )]
    PlaintextRefused,
    /// The bucket holds no snapshot (or not the one asked for).
    #[error("no snapshot to restore{}", .0.map(|seq| format!(" numbered {seq}")).unwrap_or_default())]
    NoSnapshot(Option<u64>),
}

impl MirrorError {
    /// What went wrong, without the endpoint, bucket, key or local path that
    /// the full message names (those go to the log, not to status pages).
    pub fn summary(&self) -> String {
        match self {
            MirrorError::Local { source, .. } => {
                format!(
                    "the state directory could not be read or written ({})",
                    source.kind()
                )
            }
            MirrorError::Remote(StoreError::Remote { kind, .. }) => {
                format!("the bucket failed: {kind}")
            }
            MirrorError::Remote(_) => "the bucket failed".to_owned(),
            MirrorError::Corrupt { seq, .. } => format!("snapshot {seq} is damaged"),
            MirrorError::PlaintextRefused | MirrorError::NoSnapshot(_) => self.to_string(),
        }
    }
}

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The snapshot written, or `None` when nothing had changed.
    pub seq: Option<u64>,
    /// Objects uploaded.
    pub objects: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Requests made to the bucket.
    pub requests: usize,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub seq: u64,
    /// Files written.
    pub files: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Local files removed because the snapshot does not have them.
    pub removed: usize,
}

/// The mirror's state, for the admin API and `backup status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MirrorStatus {
    /// When the last backup succeeded (ms since the Unix epoch).
    pub last_success_ms: Option<u64>,
    /// When the last backup was tried.
    pub last_attempt_ms: Option<u64>,
    /// The newest snapshot in the bucket that this mirror knows of.
    pub manifest_seq: Option<u64>,
    /// Objects uploaded since start.
    pub objects_uploaded: u64,
    /// Bytes uploaded since start.
    pub bytes_uploaded: u64,
    /// How long the last backup took.
    pub last_duration_ms: u64,
    /// The last failure, cleared by a success, in words safe to show
    /// anyone who may read the status ([`MirrorError::summary`]).
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub failures_in_a_row: u32,
    /// Whether changes are waiting to be backed up.
    pub pending: bool,
}

#[derive(Default)]
struct Inner {
    cache: HashCache,
    /// The newest snapshot known to be in the bucket.
    last: Option<Manifest>,
    /// Objects known to be in the bucket: those the snapshots seen name, and
    /// those uploaded since (plus a listing, when one was worth it).
    known_objects: HashSet<String>,
    /// Whether `known_objects` includes a listing of the bucket.
    listed: bool,
    /// Manifests already read, by number.
    manifests: HashMap<u64, Manifest>,
}

/// Mirrors one state directory to one bucket prefix.
pub struct StateMirror {
    root: PathBuf,
    remote: Arc<dyn ObjectStore>,
    options: MirrorOptions,
    inner: tokio::sync::Mutex<Inner>,
    status: Mutex<MirrorStatus>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for StateMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMirror")
            .field("root", &self.root)
            .field("prefix", &self.options.prefix)
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The file inside the state directory that records the last snapshot this
/// directory matched (written after each backup and restore).
const MARKER: &str = ".molt-sync/snapshot.json";
const STAGING: &str = ".molt-sync/restore";
/// Up to this many objects not known to be in the bucket are uploaded
/// conditionally without a listing (one listing page holds 1,000 keys).
const BLIND_UPLOADS_BEFORE_LISTING: usize = 1000;
/// Rounds a backup gives a large file that changes while it uploads.
const MAX_TRIES_WHILE_CHANGING: usize = 3;

impl StateMirror {
    /// A mirror of `root` into `remote` (see [`S3Config::object_store`](crate::S3Config::object_store)).
    pub fn new(
        root: impl Into<PathBuf>,
        remote: Arc<dyn ObjectStore>,
        options: MirrorOptions,
    ) -> Self {
        Self {
            root: root.into(),
            remote,
            options,
            inner: tokio::sync::Mutex::new(Inner::default()),
            status: Mutex::new(MirrorStatus::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mirror's state now.
    pub fn status(&self) -> MirrorStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the running mirror ([`run`](Self::run)) to back up now.
    pub fn trigger(&self) {
        self.mark_pending();
        self.wake.notify_one();
    }

    fn mark_pending(&self) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending = true;
    }

    fn path(&self, name: &str) -> ObjectPath {
        match self.options.prefix.trim_matches('/') {
            "" => ObjectPath::from(name),
            prefix => ObjectPath::from(format!("{prefix}/{name}")),
        }
    }

    /// Moves files to and from the bucket; `sealed` says whether this mirror's
    /// key (if any) applies (Moltworker's plaintext layout has none).
    fn transfer(&self, sealed: bool) -> transfer::Transfer<'_> {
        transfer::Transfer {
            remote: self.remote.as_ref(),
            key: self.options.key.as_ref().filter(|_| sealed),
            multipart_threshold: self.options.multipart_threshold,
            part_size: self.options.part_size.max(MIN_PART_SIZE),
        }
    }

    /// The name of the object holding content with this hash.
    fn object_id(&self, hash: &str) -> String {
        match &self.options.key {
            Some(key) => key.object_id(hash),
            None => hash.to_string(),
        }
    }

    fn open(&self, seq: u64, what: &str, bytes: Bytes) -> Result<Bytes, MirrorError> {
        let corrupt = |reason: String| MirrorError::Corrupt {
            seq,
            reason: format!("{what}: {reason}"),
        };
        match &self.options.key {
            Some(key) => key.open(&bytes).map(Bytes::from).map_err(corrupt),
            None if sealing::is_sealed(&bytes) => Err(corrupt(sealing::NEEDS_KEY.into())),
            None => Ok(bytes),
        }
    }

    fn local_error(&self, path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError {
        let path = path.to_path_buf();
        move |source| MirrorError::Local { path, source }
    }

    /// The snapshot numbers in the bucket, oldest first.
    pub async fn manifests(&self) -> Result<Vec<u64>, MirrorError> {
        let directory = self.path("manifests");
        let mut numbers: Vec<u64> = self
            .remote
            .list(Some(&directory))
            .map_ok(|meta| parse_manifest_name(meta.location.as_ref()))
            .try_collect::<Vec<_>>()
            .await
            .map_err(|err| remote_error("manifests/", err))?
            .into_iter()
            .flatten()
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    async fn read_manifest(&self, inner: &mut Inner, seq: u64) -> Result<Manifest, MirrorError> {
        if let Some(manifest) = inner.manifests.get(&seq) {
            return Ok(manifest.clone());
        }
        let name = manifest_name(seq);
        let result = self
            .remote
            .get(&self.path(&name))
            .await
            .map_err(|err| remote_error(&name, err))?;
        let limit = self.options.restore_limits.max_manifest_bytes;
        if result.meta.size > limit {
            return Err(MirrorError::Corrupt {
                seq,
                reason: format!("a manifest of {} bytes, over {limit}", result.meta.size),
            });
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|err| remote_error(&name, err))?;
        let bytes = self.open(seq, "manifest", bytes)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|err| MirrorError::Corrupt {
                seq,
                reason: format!("unreadable manifest: {err}"),
            })?;
        if manifest.seq != seq || manifest.version > MANIFEST_VERSION {
            return Err(MirrorError::Corrupt {
                seq,
                reason: format!(
                    "manifest says seq {} version {}",
                    manifest.seq, manifest.version
                ),
            });
        }
        inner.manifests.insert(seq, manifest.clone());
        Ok(manifest)
    }

    /// Backs the state directory up now: uploads what changed, then writes a
    /// new snapshot if anything did. Serialised with other backups and restores.
    pub async fn backup_now(&self) -> Result<BackupReport, MirrorError> {
        let started = Instant::now();
        let attempt = now_ms();
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt_ms = Some(attempt);
        let result = {
            let mut inner = self.inner.lock().await;
            self.backup(&mut inner).await
        };
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_duration_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(report) => {
                status.last_success_ms = Some(attempt);
                status.last_error = None;
                status.failures_in_a_row = 0;
                status.objects_uploaded += report.objects as u64;
                status.bytes_uploaded += report.bytes;
                if report.seq.is_some() {
                    status.manifest_seq = report.seq;
                }
                status.pending = false;
            }
            Err(error) => {
                status.last_error = Some(error.summary());
                status.failures_in_a_row += 1;
                status.pending = true;
            }
        }
        result
    }

    async fn backup(&self, inner: &mut Inner) -> Result<BackupReport, MirrorError> {
        let mut report = BackupReport::default();
        let files = self.scan(inner).await?;
        if inner.last.is_none() {
            report.requests += 1;
            if let Some(&newest) = self.manifests().await?.last() {
                report.requests += 1;
                let newest = self.read_manifest(inner, newest).await?;
                self.adopt(inner, newest);
            }
        }
        if inner.last.as_ref().is_some_and(|last| last.files == files) {
            self.write_marker(inner.last.as_ref().expect("checked"))?;
            return Ok(report);
        }
        // Upload what the bucket lacks, one object per distinct hash. A small
        // file that changed since the scan is uploaded as it is now and the
        // manifest names that; a large one (streamed in parts) is tried again;
        // a file that vanished leaves the manifest. Paths that shared the old
        // hash of a changed file still lack their object, so repeat until
        // every path names an object the bucket has.
        let mut files = files;
        let mut changing: HashMap<String, usize> = HashMap::new();
        loop {
            let known = &inner.known_objects;
            let mut seen = HashSet::new();
            let missing: Vec<(String, FileEntry)> = files
                .iter()
                .filter(|(_, entry)| {
                    !known.contains(&self.object_id(&entry.hash)) && seen.insert(&entry.hash)
                })
                .map(|(path, entry)| (path.clone(), entry.clone()))
                .collect();
            if missing.is_empty() {
                break;
            }
            // Objects not known to be there are written with `If-None-Match`,
            // so an unneeded upload costs one request and changes nothing.
            // Only when that would be many requests is the bucket listed.
            if missing.len() > BLIND_UPLOADS_BEFORE_LISTING && !inner.listed {
                report.requests += 1;
                let listed = self.list_objects().await?;
                inner
                    .known_objects
                    .extend(listed.into_iter().map(|(hash, _)| hash));
                inner.listed = true;
                continue;
            }
            let transfer = self.transfer(true);
            let transfer = &transfer;
            let uploads = futures::stream::iter(missing)
                .map(|(path, expected)| async move {
                    let local = self.root.join(&path);
                    let name_of = |hash: &str| self.path(&object_name(&self.object_id(hash)));
                    let upload = transfer.upload(&local, &expected, name_of).await?;
                    Ok::<_, MirrorError>((path, upload))
                })
                .buffer_unordered(self.options.concurrency.max(1))
                .try_collect::<Vec<_>>()
                .await?;
            for (path, upload) in uploads {
                report.requests += upload.requests;
                match upload.outcome {
                    Uploaded::Vanished => {
                        files.remove(&path);
                    }
                    Uploaded::Stored { entry, sent } => {
                        if sent {
                            report.objects += 1;
                            report.bytes += entry.size;
                        }
                        inner.known_objects.insert(self.object_id(&entry.hash));
                        files.insert(path, entry);
                    }
                    Uploaded::Changed(entry) => {
                        let tries = changing.entry(path.clone()).or_default();
                        *tries += 1;
                        if *tries < MAX_TRIES_WHILE_CHANGING {
                            files.insert(path, entry);
                            continue;
                        }
                        // Still being written: this snapshot keeps the last
                        // version backed up (if any); a later one takes it.
                        let previous = inner.last.as_ref().and_then(|last| last.files.get(&path));
                        tracing::warn!(%path, "a large file keeps changing while it uploads; backing up its previous version");
                        match previous.cloned() {
                            Some(previous) => files.insert(path, previous),
                            None => files.remove(&path),
                        };
                    }
                }
            }
        }
        let mut seq = inner.last.as_ref().map_or(1, |last| last.seq + 1);
        let manifest = loop {
            let manifest = Manifest {
                version: MANIFEST_VERSION,
                seq,
                created_ms: now_ms(),
                files: files.clone(),
            };
            let body = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
            report.requests += 1;
            match self
                .put_create(
                    &manifest_name(seq),
                    self.transfer(true).seal(Bytes::from(body)),
                )
                .await?
            {
                true => break manifest,
                false => {
                    // Another writer took this number: carry on after the newest.
                    tracing::warn!(
                        seq,
                        "another writer holds this snapshot number; taking the next"
                    );
                    report.requests += 1;
                    seq = self.manifests().await?.last().copied().unwrap_or(seq) + 1;
                }
            }
        };
        report.seq = Some(manifest.seq);
        self.write_marker(&manifest)?;
        inner.manifests.insert(manifest.seq, manifest.clone());
        inner.last = Some(manifest);
        report.requests += self.prune(inner).await?;
        Ok(report)
    }

    /// Takes `manifest` as the newest snapshot in the bucket: the objects it
    /// names are there, since a manifest is written after its objects.
    fn adopt(&self, inner: &mut Inner, manifest: Manifest) {
        let named = manifest
            .files
            .values()
            .map(|file| self.object_id(&file.hash));
        inner.known_objects.extend(named);
        inner.last = Some(manifest);
    }

    async fn scan(&self, inner: &mut Inner) -> Result<BTreeMap<String, FileEntry>, MirrorError> {
        let mut cache = std::mem::take(&mut inner.cache);
        let (root, excludes) = (self.root.clone(), self.options.excludes.clone());
        let (cache, files) = tokio::task::spawn_blocking(move || {
            let files = scan::scan(&root, &excludes, &mut cache);
            (cache, files)
        })
        .await
        .expect("the scan does not panic");
        inner.cache = cache;
        files.map_err(self.local_error(&self.root))
    }

    /// Every object in the bucket: its hash and when it was written.
    async fn list_objects(&self) -> Result<Vec<(String, SystemTime)>, MirrorError> {
        let directory = self.path("objects");
        self.remote
            .list(Some(&directory))
            .map_ok(|meta| {
                let hash = meta.location.filename().unwrap_or_default().to_string();
                (hash, SystemTime::from(meta.last_modified))
            })
            .try_collect()
            .await
            .map_err(|err| MirrorError::Remote(remote_error("objects/", err)))
    }

    /// Writes `name` unless it exists; `false` when it did.
    async fn put_create(&self, name: &str, bytes: Bytes) -> Result<bool, MirrorError> {
        self.transfer(false)
            .put_create(&self.path(name), bytes)
            .await
    }

    /// Keeps the newest snapshots; removes older manifests and the objects no
    /// kept manifest names. Returns the requests it made.
    async fn prune(&self, inner: &mut Inner) -> Result<usize, MirrorError> {
        let keep = self.options.keep_manifests.max(1);
        let numbers = self.manifests().await?;
        let mut requests = 1;
        if numbers.len() <= keep {
            return Ok(requests);
        }
        let (old, kept) = numbers.split_at(numbers.len() - keep);
        let mut referenced = HashSet::new();
        for &seq in kept {
            if !inner.manifests.contains_key(&seq) {
                requests += 1;
            }
            let manifest = self.read_manifest(inner, seq).await?;
            referenced.extend(
                manifest
                    .files
                    .values()
                    .map(|file| self.object_id(&file.hash)),
            );
        }
        for &seq in old {
            requests += 1;
            let name = manifest_name(seq);
            match self.remote.delete(&self.path(&name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(remote_error(&name, err).into()),
            }
            inner.manifests.remove(&seq);
        }
        requests += 1;
        let cutoff = SystemTime::now() - self.options.orphan_grace;
        for (hash, written) in self.list_objects().await? {
            if referenced.contains(&hash) || written > cutoff {
                continue;
            }
            requests += 1;
            let name = object_name(&hash);
            match self.remote.delete(&self.path(&name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(remote_error(&name, err).into()),
            }
            inner.known_objects.remove(&hash);
        }
        Ok(requests)
    }

    fn write_marker(&self, manifest: &Manifest) -> Result<(), MirrorError> {
        let path = self.root.join(MARKER);
        let body = serde_json::to_vec(manifest).expect("manifests serialize");
        write_atomically(&path, &body).map_err(self.local_error(&path))
    }

    fn read_marker(&self) -> Option<Manifest> {
        let bytes = std::fs::read(self.root.join(MARKER)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Mirrors continuously until `shutdown` completes: a backup after each
    /// burst of changes (once the directory is quiet for `debounce`, or
    /// `max_delay` after the burst began, whichever is first), a full
    /// check every `full_check`, on [`trigger`](Self::trigger), and a last one
    /// at shutdown. Failures back off up to `max_backoff` and are retried.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let (events, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let watcher = self.watch(events);
        if watcher.is_none() {
            tracing::warn!(root = %self.root.display(), "cannot watch the state directory; relying on the periodic check");
        }
        tokio::pin!(shutdown);
        use tokio::time::Instant;
        let mut asap = true; // a first check at start, and on each trigger
        let mut first_change: Option<Instant> = None; // not yet backed up
        let mut quiet_at = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = Duration::ZERO;
        let mut next_full = Instant::now() + self.options.full_check;
        loop {
            let wanted = match asap {
                true => Some(Instant::now()),
                false => first_change.map(|first| quiet_at.min(first + self.options.max_delay)),
            };
            let due = wanted.map(|at| retry_at.map_or(at, |retry| at.max(retry)));
            let wake_at = due.map_or(next_full, |at| at.min(next_full));
            tokio::select! {
                () = &mut shutdown => break,
                Some(changed_at) = changes.recv() => {
                    self.mark_pending();
                    // The change may have queued while a backup ran: count from when it happened.
                    let changed_at = Instant::from_std(changed_at);
                    first_change = Some(first_change.map_or(changed_at, |first| first.min(changed_at)));
                    quiet_at = quiet_at.max(changed_at + self.options.debounce);
                }
                () = self.wake.notified() => {
                    asap = true;
                    retry_at = None;
                }
                () = tokio::time::sleep_until(wake_at) => {
                    if due.is_none_or(|at| at > Instant::now()) {
                        // The periodic full check.
                        next_full = Instant::now() + self.options.full_check;
                    }
                    asap = false;
                    match self.backup_now().await {
                        Ok(_) => {
                            first_change = None;
                            retry_at = None;
                            backoff = Duration::ZERO;
                        }
                        Err(error) => {
                            let ceiling = self.options.max_backoff.max(Duration::from_millis(10));
                            backoff = (backoff * 2).max(Duration::from_millis(500).min(ceiling)).min(ceiling);
                            tracing::warn!(%error, retry_in = ?backoff, "backup failed; local state is intact");
                            retry_at = Some(Instant::now() + backoff);
                            first_change.get_or_insert_with(Instant::now);
                        }
                    }
                }
            }
        }
        drop(watcher);
        if let Err(error) = self.backup_now().await {
            tracing::warn!(%error, "the last backup before shutdown failed");
        }
    }

    /// Watches the state directory; each relevant change sends when it happened.
    fn watch(
        &self,
        events: tokio::sync::mpsc::UnboundedSender<std::time::Instant>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let root = self.root.clone();
        let excludes = self.options.excludes.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let relevant = event.paths.iter().any(|path| {
                    path.strip_prefix(&root)
                        .ok()
                        .and_then(|relative| relative.to_str())
                        .is_some_and(|relative| !excludes.matches(&relative.replace('\\', "/")))
                });
                if relevant {
                    let _ = events.send(std::time::Instant::now());
                }
            })
            .ok()?;
        std::fs::create_dir_all(&self.root).ok()?;
        watcher
            .watch(&self.root, notify::RecursiveMode::Recursive)
            .ok()?;
        Some(watcher)
    }
}

/// Writes a file through a synced temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let temp = parent.join(format!(
        ".molt-tmp-{}-{}",
        std::process::id(),
        path.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("file")
    ));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}
