//! Optional client-side encryption of everything the mirror writes: AES-256-GCM
//! with a fresh random nonce per object, and object names keyed by the same
//! secret so they do not reveal content hashes.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use molt_core::Secret;
use sha2::{Digest, Sha256};

/// What starts every sealed object, so a wrong configuration is named plainly.
const MAGIC: &[u8; 8] = b"MOLTENC1";
const NONCE: usize = 12;
/// Why a sealed object cannot be read without a key.
pub(super) const NEEDS_KEY: &str = "encrypted; set the backup key (MOLT_BACKUP_KEY)";

/// A 256-bit key for sealing backups.
#[derive(Clone)]
pub struct BackupKey {
    key: Key<Aes256Gcm>,
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey([redacted])")
    }
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the backup key must be 32 bytes in base64 (`openssl rand -base64 32`): {0}")]
pub struct KeyError(String);

impl BackupKey {
    /// A key from its base64 text (as `MOLT_BACKUP_KEY` holds it).
    pub fn from_base64(text: &Secret) -> Result<Self, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.expose().trim())
            .map_err(|err| KeyError(err.to_string()))?;
        if bytes.len() != 32 {
            return Err(KeyError(format!("it decodes to {} bytes", bytes.len())));
        }
        Ok(Self {
            key: *Key::<Aes256Gcm>::from_slice(&bytes),
        })
    }

    /// Encrypts `plain`: magic, nonce, then ciphertext with its tag.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = Aes256Gcm::new(&self.key)
            .encrypt(&nonce, plain)
            .expect("AES-GCM encrypts any length this mirror writes");
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`seal`](Self::seal) wrote; an error names the problem.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let body = sealed
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not encrypted, but a backup key is set")?;
        if body.len() < NONCE {
            return Err("truncated".into());
        }
        let (nonce, ciphertext) = body.split_at(NONCE);
        Aes256Gcm::new(&self.key)
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| "cannot be decrypted with this key (wrong key, or damaged)".to_string())
    }

    /// The object name for content with this hash: keyed, so the bucket does
    /// not show which files are equal to known content.
    pub fn object_id(&self, hash: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"molt object id\0");
        hasher.update(self.key.as_slice());
        hasher.update(hash.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Whether stored bytes are sealed.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BackupKey {
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        BackupKey::from_base64(&Secret::new(text)).unwrap()
    }

    #[test]
    fn sealing_round_trips_and_refuses_the_wrong_key_or_tampering() {
        let sealed = key(1).seal(b"state");
        assert!(is_sealed(&sealed));
        assert_ne!(key(1).seal(b"state"), sealed, "a fresh nonce each time");
        assert_eq!(key(1).open(&sealed).unwrap(), b"state");
        assert!(key(2).open(&sealed).unwrap_err().contains("wrong key"));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key(1).open(&tampered).is_err());
        assert!(key(1).open(b"plain").unwrap_err().contains("not encrypted"));
        assert_ne!(key(1).object_id("abc"), key(2).object_id("abc"));
        assert!(BackupKey::from_base64(&Secret::new("c2hvcnQ=")).is_err());
        assert_eq!(format!("{:?}", key(1)), "BackupKey([redacted])");
    }
}
