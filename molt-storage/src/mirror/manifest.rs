//! Manifests: the list of files of one consistent snapshot, written after the
//! objects it names, so a manifest in the bucket means a complete snapshot.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The SHA-256 of its content, hex: also its object's name.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A snapshot of the state directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version.
    pub version: u32,
    /// The snapshot's number; each new snapshot takes the next one.
    pub seq: u64,
    /// When it was taken (milliseconds since the Unix epoch).
    pub created_ms: u64,
    /// The files, by path relative to the state directory (`/`-separated).
    pub files: BTreeMap<String, FileEntry>,
}

/// The format this crate writes.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest's object name under the mirror's prefix: zero-padded so names sort by number.
pub fn manifest_name(seq: u64) -> String {
    format!("manifests/{seq:020}.json")
}

/// The snapshot number in a manifest's object name.
pub fn parse_manifest_name(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

/// A content object's name under the mirror's prefix: spread over 256
/// subfolders by its first two characters, as git does, because S3 servers
/// that keep objects as files (MinIO, s3s-fs) slow down badly when thousands
/// of files are created in one directory. R2 does not mind either way.
pub fn object_name(hash: &str) -> String {
    let fanout = hash.get(..2).unwrap_or("00");
    format!("objects/{fanout}/{hash}")
}

impl Manifest {
    /// The total size of the snapshot's files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|file| file.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_sort_by_number_and_parse_back() {
        assert!(manifest_name(9) < manifest_name(10));
        assert_eq!(
            parse_manifest_name(&format!("molt/{}", manifest_name(42))),
            Some(42)
        );
        assert_eq!(parse_manifest_name("molt/manifests/notes.txt"), None);
    }
}
