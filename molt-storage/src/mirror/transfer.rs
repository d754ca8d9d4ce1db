//! Moving one file between the state directory and the bucket: small files in
//! one request, large ones as a multipart upload of equal-size parts (as R2
//! requires) read from disk as they go, and downloads streamed to disk with
//! their hash checked, so memory stays bounded by the part size.

use super::sealing::{self, BackupKey};
use super::{FileEntry, MirrorError};
use crate::s3::remote_error;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// What an upload of one local file came to, and the requests it made.
pub(super) struct Upload {
    pub outcome: Uploaded,
    pub requests: usize,
}

/// Where one local file stands after an upload.
pub(super) enum Uploaded {
    /// The file's object is in the bucket: sent now, or already there.
    Stored { entry: FileEntry, sent: bool },
    /// The file changed while it was read; its object was not written. The
    /// entry holds what was read, so the caller can try again.
    Changed(FileEntry),
    /// The file is gone.
    Vanished,
}

impl Uploaded {
    fn after(self, requests: usize) -> Upload {
        Upload {
            outcome: self,
            requests,
        }
    }
}

/// Moves files between a directory and a bucket, sealing when a key is set.
pub(super) struct Transfer<'a> {
    pub remote: &'a dyn ObjectStore,
    pub key: Option<&'a BackupKey>,
    /// Files at least this large go up in parts.
    pub multipart_threshold: u64,
    /// The size of every part but the last.
    pub part_size: usize,
}

impl Transfer<'_> {
    /// Uploads the file at `local`, expected to be `expected` (from the scan),
    /// as the object `name_of(hash)`. Small files are read whole and named
    /// by what was read; large ones are streamed under the expected hash, and
    /// abandoned as [`Uploaded::Changed`] if the bytes turn out different.
    pub async fn upload(
        &self,
        local: &Path,
        expected: &FileEntry,
        name_of: impl Fn(&str) -> ObjectPath,
    ) -> Result<Upload, MirrorError> {
        if expected.size < self.multipart_threshold {
            let Some((bytes, entry)) = read_file(local).await? else {
                return Ok(Uploaded::Vanished.after(0));
            };
            let name = name_of(&entry.hash);
            let sent = self.put_create(&name, self.seal(bytes)).await?;
            return Ok(Uploaded::Stored { entry, sent }.after(1));
        }
        // Large: a HEAD first spares re-sending what the bucket already has.
        let name = name_of(&expected.hash);
        match self.remote.head(&name).await {
            Ok(_) => {
                let entry = expected.clone();
                return Ok(Uploaded::Stored { entry, sent: false }.after(1));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(remote_error(name.as_ref(), err).into()),
        }
        match self.key {
            // Sealing works on the whole file: read it, then send it in parts.
            Some(_) => {
                let Some((bytes, entry)) = read_file(local).await? else {
                    return Ok(Uploaded::Vanished.after(1));
                };
                let sealed = self.seal(bytes);
                let name = name_of(&entry.hash);
                let parts = sealed.len().div_ceil(self.part_size);
                let chunks = (0..parts).map(|n| {
                    let end = ((n + 1) * self.part_size).min(sealed.len());
                    Ok(sealed.slice(n * self.part_size..end))
                });
                self.put_parts(&name, futures::stream::iter(chunks)).await?;
                // The HEAD, starting the upload, its parts, completing it.
                Ok(Uploaded::Stored { entry, sent: true }.after(3 + parts))
            }
            None => self.stream_up(local, expected, &name).await,
        }
    }

    /// Streams a plaintext file up in parts, hashing as it reads; aborts the
    /// upload when the file is not what the scan saw.
    async fn stream_up(
        &self,
        local: &Path,
        expected: &FileEntry,
        name: &ObjectPath,
    ) -> Result<Upload, MirrorError> {
        let file = match tokio::fs::File::open(local).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Uploaded::Vanished.after(1));
            }
            Err(source) => return Err(local_error(local, source)),
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let part_size = self.part_size;
        let read = file_parts(file, part_size, local).inspect_ok(|part| {
            hasher.update(part);
            size += part.len() as u64;
        });
        let mut upload = self
            .remote
            .put_multipart(name)
            .await
            .map_err(|err| remote_error(name.as_ref(), err))?;
        let sent = send_parts(upload.as_mut(), name, read).await;
        let read_entry = FileEntry {
            hash: hex::encode(hasher.finalize()),
            size,
        };
        // The HEAD, starting the upload, its parts, then completing or aborting it.
        let requests = 3 + size.div_ceil(part_size as u64) as usize;
        if sent.is_err() || read_entry != *expected {
            let _ = upload.abort().await;
            sent?;
            return Ok(Uploaded::Changed(read_entry).after(requests));
        }
        upload
            .complete()
            .await
            .map_err(|err| remote_error(name.as_ref(), err))?;
        let entry = read_entry;
        Ok(Uploaded::Stored { entry, sent: true }.after(requests))
    }

    /// A multipart upload of `parts`.
    async fn put_parts(
        &self,
        name: &ObjectPath,
        read: impl Stream<Item = Result<Bytes, MirrorError>>,
    ) -> Result<(), MirrorError> {
        let mut upload = self
            .remote
            .put_multipart(name)
            .await
            .map_err(|err| remote_error(name.as_ref(), err))?;
        if let Err(error) = send_parts(upload.as_mut(), name, read).await {
            let _ = upload.abort().await;
            return Err(error);
        }
        upload
            .complete()
            .await
            .map(drop)
            .map_err(|err| remote_error(name.as_ref(), err).into())
    }

    /// Writes `name` unless it exists; `false` when it did.
    pub async fn put_create(&self, name: &ObjectPath, bytes: Bytes) -> Result<bool, MirrorError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .remote
            .put_opts(name, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(err) => Err(remote_error(name.as_ref(), err).into()),
        }
    }

    /// Downloads `name` to `target` (a new file of mode 0600, synced),
    /// checking the content against `expected_hash` when given. Returns the
    /// size written. A missing object, one larger than `max_bytes`, a wrong
    /// hash or a seal that does not open is [`MirrorError::Corrupt`] for
    /// snapshot `seq`.
    pub async fn download(
        &self,
        name: &ObjectPath,
        target: &Path,
        expected_hash: Option<&str>,
        max_bytes: u64,
        seq: u64,
    ) -> Result<u64, MirrorError> {
        let corrupt = |reason: String| MirrorError::Corrupt {
            seq,
            reason: format!("{name}: {reason}"),
        };
        let result = match self.remote.get(name).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(corrupt("the object is missing".into()));
            }
            Err(err) => return Err(remote_error(name.as_ref(), err).into()),
        };
        let too_large = || corrupt(format!("the object holds more than {max_bytes} bytes"));
        // Sealed objects carry a nonce and a tag on top of the content.
        let overhead = if self.key.is_some() { 64 } else { 0 };
        if result.meta.size > max_bytes.saturating_add(overhead) {
            return Err(too_large());
        }
        let file = create_file(target.to_path_buf()).await?;
        let mut writer = BlockingWriter::new(file, target);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        match self.key {
            Some(key) => {
                let sealed = result
                    .bytes()
                    .await
                    .map_err(|err| remote_error(name.as_ref(), err))?;
                let plain = Bytes::from(key.open(&sealed).map_err(corrupt)?);
                if plain.len() as u64 > max_bytes {
                    return Err(too_large());
                }
                hasher.update(&plain);
                size = plain.len() as u64;
                writer.write(plain).await?;
            }
            None => {
                let mut stream = result.into_stream();
                let mut first = true;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|err| remote_error(name.as_ref(), err))?;
                    if first && sealing::is_sealed(&chunk) {
                        return Err(corrupt(sealing::NEEDS_KEY.into()));
                    }
                    first = false;
                    size += chunk.len() as u64;
                    // The listing's size is the server's word: count what comes.
                    if size > max_bytes {
                        return Err(too_large());
                    }
                    hasher.update(&chunk);
                    writer.write(chunk).await?;
                }
            }
        }
        writer.finish().await?;
        let hash = hex::encode(hasher.finalize());
        if expected_hash.is_some_and(|expected| expected != hash) {
            return Err(corrupt("the content does not match its hash".into()));
        }
        Ok(size)
    }

    /// Seals `bytes` when this transfer has a key.
    pub fn seal(&self, bytes: Bytes) -> Bytes {
        match self.key {
            Some(key) => Bytes::from(key.seal(&bytes)),
            None => bytes,
        }
    }
}

/// The parts of a file, read as they are needed: each `part_size` bytes but
/// the last.
fn file_parts(
    file: tokio::fs::File,
    part_size: usize,
    path: &Path,
) -> impl Stream<Item = Result<Bytes, MirrorError>> + use<> {
    let path = path.to_path_buf();
    futures::stream::try_unfold(file, move |mut file| {
        let path = path.clone();
        async move {
            let mut part = Vec::with_capacity(part_size);
            (&mut file)
                .take(part_size as u64)
                .read_to_end(&mut part)
                .await
                .map_err(|source| local_error(&path, source))?;
            Ok((!part.is_empty()).then(|| (Bytes::from(part), file)))
        }
    })
}

/// Sends `parts` as parts of `upload`, a few at a time.
async fn send_parts(
    upload: &mut dyn object_store::MultipartUpload,
    name: &ObjectPath,
    parts: impl Stream<Item = Result<Bytes, MirrorError>>,
) -> Result<(), MirrorError> {
    let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
    let mut parts = std::pin::pin!(parts);
    loop {
        while in_flight.len() >= PARTS_IN_FLIGHT {
            if let Some(result) = in_flight.next().await {
                result.map_err(|err| remote_error(name.as_ref(), err))?;
            }
        }
        let Some(part) = parts.next().await.transpose()? else {
            break;
        };
        in_flight.push(upload.put_part(PutPayload::from_bytes(part)));
    }
    while let Some(result) = in_flight.next().await {
        result.map_err(|err| remote_error(name.as_ref(), err))?;
    }
    Ok(())
}

/// Writes chunks to a file off the async threads, then syncs it.
struct BlockingWriter {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl BlockingWriter {
    fn new(file: std::fs::File, path: &Path) -> Self {
        Self {
            file: Some(file),
            path: path.to_path_buf(),
        }
    }

    async fn write(&mut self, chunk: Bytes) -> Result<(), MirrorError> {
        let mut file = self.file.take().expect("the file is back after each write");
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = file.write_all(&chunk);
            (file, result)
        })
        .await
        .expect("a file write does not panic");
        self.file = Some(file);
        result.map_err(|source| local_error(&self.path, source))
    }

    async fn finish(mut self) -> Result<(), MirrorError> {
        let file = self.file.take().expect("the file is back after each write");
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .expect("a file sync does not panic")
            .map_err(|source| local_error(&self.path, source))
    }
}

/// Reads a whole file off the async threads, with the entry its bytes make;
/// `None` when it is gone.
async fn read_file(path: &Path) -> Result<Option<(Bytes, FileEntry)>, MirrorError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let entry = FileEntry {
                hash: super::hash_bytes(&bytes),
                size: bytes.len() as u64,
            };
            Ok(Some((Bytes::from(bytes), entry)))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(local_error(path, source)),
    }
}

/// Creates `path` (and its parents, mode 0700) for writing with mode 0600,
/// replacing what was there.
async fn create_file(path: PathBuf) -> Result<std::fs::File, MirrorError> {
    let created = path.clone();
    tokio::task::spawn_blocking(move || {
        let parent = created.parent().unwrap_or(Path::new("."));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        std::fs::create_dir_all(parent)?;
        options.open(&created)
    })
    .await
    .expect("creating a file does not panic")
    .map_err(|source| local_error(&path, source))
}

fn local_error(path: &Path, source: std::io::Error) -> MirrorError {
    MirrorError::Local {
        path: path.to_path_buf(),
        source,
    }
}
