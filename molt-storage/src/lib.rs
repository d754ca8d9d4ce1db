//! # molt-storage
//!
//! Persistence for the Molt assistant gateway.
//!
//! - [`LocalFileStore`], the embedded default: a state directory on the local
//!   filesystem implementing [`molt_core::store::Store`] (objects, written
//!   atomically: temporary file, fsync, rename) and
//!   [`molt_core::store::LogStore`] (append-only JSONL logs, each record fsynced
//!   before the call returns).
//! - [`S3Store`]: the same contract on R2 or any S3-compatible bucket, with
//!   conditional writes and typed errors.
//! - [`StateMirror`]: continuous backup of the state directory to a bucket
//!   (content-addressed objects, then a manifest written last), and crash-safe
//!   restore of the newest complete snapshot.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), molt_core::store::StoreError> {
//! use molt_core::store::{PutOutcome, Store};
//! use molt_storage::LocalFileStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = LocalFileStore::new(dir.path());
//! store.put("pairing/telegram.json", "{}".into()).await?;
//! assert_eq!(store.put_if_absent("pairing/telegram.json", "[]".into()).await?, PutOutcome::AlreadyExists);
//! assert_eq!(store.list("pairing/").await?, ["pairing/telegram.json"]);
//! # Ok(())
//! # }
//! ```

mod local;
pub mod mirror;
pub mod s3;

pub use local::LocalFileStore;
pub use mirror::{MirrorError, MirrorOptions, MirrorStatus, StateMirror};
pub use s3::{S3Config, S3ConfigError, S3Store};
