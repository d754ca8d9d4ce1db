//! The store contract: a small key/object interface, plus append-only logs.
//!
//! Keys are `/`-separated paths such as `pairing/telegram.json`. Every backend
//! checks keys with [`validate_key`], so a key means the same thing everywhere.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is not a valid store path.
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A log record contains a newline.
    #[error("log record for {key:?} contains a newline")]
    InvalidRecord {
        /// The log.
        key: String,
    },
    /// The backend's I/O failed.
    #[error("store I/O failed for {key:?}: {source}")]
    Io {
        /// The key.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data could not be decoded.
    #[error("stored data at {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What could not be decoded.
        reason: String,
    },
    /// A remote store (R2, S3) refused or failed the operation.
    #[error("remote store failed for {key:?} ({kind}): {message}")]
    Remote {
        /// The key.
        key: String,
        /// What kind of failure.
        kind: RemoteErrorKind,
        /// The store's own words.
        message: String,
    },
}

/// What kind of failure a remote store reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The credentials are missing, wrong, or not allowed this.
    Auth,
    /// The bucket does not exist.
    BucketMissing,
    /// The store could not be reached, or the connection broke.
    Network,
    /// The store asked to slow down (429, 503 SlowDown).
    Throttled,
    /// A conditional write found the object not as expected.
    PreconditionFailed,
    /// Anything else the store answered.
    Other,
}

impl RemoteErrorKind {
    /// Whether trying again later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, RemoteErrorKind::Network | RemoteErrorKind::Throttled)
    }
}

impl std::fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RemoteErrorKind::Auth => "bad credentials",
            RemoteErrorKind::BucketMissing => "missing bucket",
            RemoteErrorKind::Network => "network",
            RemoteErrorKind::Throttled => "throttled",
            RemoteErrorKind::PreconditionFailed => "precondition failed",
            RemoteErrorKind::Other => "store error",
        })
    }
}

/// The result of [`Store::put_if_absent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object was already there; nothing was written.
    AlreadyExists,
}

/// A key/object store. Writes are atomic: a reader sees the old object or the new one.
#[async_trait]
pub trait Store: Send + Sync {
    /// The object at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Writes (or replaces) the object at `key`, durably.
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError>;
    /// Writes the object only if `key` is free; atomic against concurrent writers.
    async fn put_if_absent(&self, key: &str, value: Bytes) -> Result<PutOutcome, StoreError>;
    /// The keys that start with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes the object at `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Append-only logs of records (one JSON document a line), such as transcripts.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends one record (without a newline) to the log at `key`, durably.
    async fn append(&self, key: &str, record: Bytes) -> Result<(), StoreError>;
    /// Every complete record of the log at `key`, oldest first (empty when missing).
    async fn read(&self, key: &str) -> Result<Vec<Bytes>, StoreError>;
    /// Removes the log at `key` and its records; removing a missing log is not an error.
    async fn delete_log(&self, key: &str) -> Result<(), StoreError>;
}

/// Checks that `key` is a relative `/`-separated path with no empty, `.` or `..` segments.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let fail = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return fail("must be 1 to 1024 bytes");
    }
    if key.contains(['\\', '\0']) || key.chars().any(char::is_control) {
        return fail("must not contain backslashes or control characters");
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return fail("segments must be non-empty and not '.' or '..'");
    }
    Ok(())
}

/// Checks that a log record fits on one line.
pub fn validate_record(key: &str, record: &[u8]) -> Result<(), StoreError> {
    if record.contains(&b'\n') {
        return Err(StoreError::InvalidRecord {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// A store in memory: for tests, benchmarks and embedders that persist elsewhere.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
    logs: Mutex<HashMap<String, Vec<Bytes>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self.objects().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        self.objects().insert(key.to_owned(), value);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: Bytes) -> Result<PutOutcome, StoreError> {
        validate_key(key)?;
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_owned(), value);
        Ok(PutOutcome::Created)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let objects = self.objects();
        Ok(objects
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.objects().remove(key);
        Ok(())
    }
}

#[async_trait]
impl LogStore for MemoryStore {
    async fn append(&self, key: &str, record: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        validate_record(key, &record)?;
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .push(record);
        Ok(())
    }

    async fn read(&self, key: &str) -> Result<Vec<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default())
    }

    async fn delete_log(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(())
    }
}

/// Encodes an arbitrary string (a platform id, a session key) as one safe key segment.
pub fn key_segment(raw: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    let encoded = utf8_percent_encode(raw, SEGMENT).to_string();
    if encoded.is_empty() {
        "%".to_owned()
    } else {
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn keys_are_checked() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", ".", "a\\b", "a\nb"] {
            assert!(validate_key(bad).is_err(), "{bad:?} should be refused");
        }
        validate_key("inbox/telegram/42").unwrap();
        assert_eq!(key_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(key_segment(".."), "%2E%2E");
    }

    #[test]
    fn memory_store_round_trips() {
        block_on(async {
            let store = MemoryStore::new();
            store.put("a/1", Bytes::from_static(b"x")).await.unwrap();
            assert_eq!(
                store.put_if_absent("a/1", Bytes::new()).await.unwrap(),
                PutOutcome::AlreadyExists
            );
            assert_eq!(
                store.put_if_absent("a/2", Bytes::new()).await.unwrap(),
                PutOutcome::Created
            );
            store.put("b/1", Bytes::new()).await.unwrap();
            assert_eq!(store.list("a/").await.unwrap(), ["a/1", "a/2"]);
            store.delete("a/1").await.unwrap();
            assert_eq!(store.get("a/1").await.unwrap(), None);
            assert!(
                store
                    .append("log", Bytes::from_static(b"a\nb"))
                    .await
                    .is_err()
            );
        });
    }
}
