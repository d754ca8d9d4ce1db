//! # molt-storage
//!
//! Persistence for the Molt assistant gateway.
//!
//! Today this crate holds the embedded default: [`LocalFileStore`], which keeps
//! a state directory on the local filesystem and implements both
//! [`molt_core::store::Store`] (objects, written atomically: temporary file,
//! fsync, rename) and [`molt_core::store::LogStore`] (append-only JSONL logs,
//! each record fsynced before the call returns). R2 through the S3 API, and
//! continuous backup and crash-safe restore, build on it in a later release.
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
