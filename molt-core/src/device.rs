//! OpenClaw's device identity, checked as OpenClaw's gateway checks it: an
//! Ed25519 key whose SHA-256 (in hex) is the device id, and a connect proof
//! that signs the connection's challenge nonce with the claims of the
//! `connect` request, in payload form `v3` or (for older clients) `v2`.
//!
//! Pure logic: the caller gives the challenge nonce it sent and the time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// The most a proof's `signedAt` may differ from the server's clock, either way.
pub const MAX_SIGNATURE_SKEW_MS: u64 = 120_000;

/// The DER prefix of an Ed25519 public key in SPKI form (the raw 32 bytes follow).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The `device` object of a `connect` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceProof {
    /// The device id: hex SHA-256 of the raw public key.
    pub id: String,
    /// The raw 32-byte public key, base64url (padded, standard base64 or an
    /// SPKI PEM are taken too).
    pub public_key: String,
    /// The Ed25519 signature of the signed payload, base64url.
    pub signature: String,
    /// When the client signed, in milliseconds since the Unix epoch.
    pub signed_at_ms: u64,
    /// The nonce of the connection's `connect.challenge`.
    pub nonce: String,
}

/// What else of the `connect` request the proof signs.
#[derive(Clone, Copy, Debug)]
pub struct ConnectClaims<'a> {
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// The role asked for (`operator` when the request names none).
    pub role: &'a str,
    /// The scopes asked for, in the order sent.
    pub scopes: &'a [String],
    /// The token the request authenticates with (`auth.token`, else
    /// `auth.deviceToken`, else empty).
    pub token: &'a str,
    /// `client.platform`, when sent.
    pub platform: Option<&'a str>,
    /// `client.deviceFamily`, when sent.
    pub device_family: Option<&'a str>,
}

/// The form of the signed payload a proof matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadVersion {
    /// `v2|id|client|mode|role|scopes|signedAt|token|nonce`.
    V2,
    /// `v2`'s fields, then `|platform|deviceFamily` (trimmed, ASCII lower-cased).
    V3,
}

/// A proof that held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// The device id.
    pub id: String,
    /// The public key in its canonical form (raw bytes, base64url without
    /// padding): what a paired device's record keeps and compares.
    pub public_key: String,
    /// The payload form that matched.
    pub version: PayloadVersion,
}

/// Why a device proof was refused, in OpenClaw's words and codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceAuthError {
    /// The id is not the hash of the public key.
    #[error("device identity mismatch")]
    IdMismatch,
    /// `signedAt` is more than [`MAX_SIGNATURE_SKEW_MS`] from now.
    #[error("device signature expired")]
    SignatureExpired,
    /// The proof carries no nonce.
    #[error("device nonce required")]
    NonceRequired,
    /// The nonce is not this connection's challenge.
    #[error("device nonce mismatch")]
    NonceMismatch,
    /// The signature verifies as neither payload form.
    #[error("device signature invalid")]
    SignatureInvalid,
    /// The public key is not an Ed25519 key.
    #[error("device public key invalid")]
    PublicKeyInvalid,
}

impl DeviceAuthError {
    /// OpenClaw's `details.code` for this refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::IdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            Self::SignatureExpired => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            Self::NonceRequired => "DEVICE_AUTH_NONCE_REQUIRED",
            Self::NonceMismatch => "DEVICE_AUTH_NONCE_MISMATCH",
            Self::SignatureInvalid => "DEVICE_AUTH_SIGNATURE_INVALID",
            Self::PublicKeyInvalid => "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        }
    }

    /// OpenClaw's `details.reason` for this refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::IdMismatch => "device-id-mismatch",
            Self::SignatureExpired => "device-signature-stale",
            Self::NonceRequired => "device-nonce-missing",
            Self::NonceMismatch => "device-nonce-mismatch",
            Self::SignatureInvalid => "device-signature",
            Self::PublicKeyInvalid => "device-public-key",
        }
    }
}

/// The device id of a raw Ed25519 public key: its SHA-256 in lower-case hex.
pub fn device_id(public_key: &[u8; 32]) -> String {
    Sha256::digest(public_key)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A public key as clients send it: raw 32 bytes in base64url (or standard
/// base64, padded or not), or an SPKI PEM.
pub fn decode_public_key(text: &str) -> Result<[u8; 32], DeviceAuthError> {
    let bytes = if text.contains("BEGIN") {
        let body: String = (text.lines())
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = decode_base64(&body).ok_or(DeviceAuthError::PublicKeyInvalid)?;
        der.strip_prefix(&SPKI_PREFIX[..])
            .map(<[u8]>::to_vec)
            .ok_or(DeviceAuthError::PublicKeyInvalid)?
    } else {
        decode_base64(text).ok_or(DeviceAuthError::PublicKeyInvalid)?
    };
    bytes
        .try_into()
        .map_err(|_| DeviceAuthError::PublicKeyInvalid)
}

/// Base64 in either alphabet, with or without padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let normalized: String = (text.trim().trim_end_matches('='))
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized).ok()
}

/// The text a proof signs, in form `version`.
pub fn signed_payload(
    version: PayloadVersion,
    proof: &DeviceProof,
    claims: &ConnectClaims<'_>,
) -> String {
    let mut fields = vec![
        match version {
            PayloadVersion::V2 => "v2".to_owned(),
            PayloadVersion::V3 => "v3".to_owned(),
        },
        proof.id.clone(),
        claims.client_id.to_owned(),
        claims.client_mode.to_owned(),
        claims.role.to_owned(),
        claims.scopes.join(","),
        proof.signed_at_ms.to_string(),
        claims.token.to_owned(),
        proof.nonce.clone(),
    ];
    if version == PayloadVersion::V3 {
        let normalize = |value: Option<&str>| value.unwrap_or_default().trim().to_ascii_lowercase();
        fields.push(normalize(claims.platform));
        fields.push(normalize(claims.device_family));
    }
    fields.join("|")
}

/// Checks a device proof against the connection's `challenge_nonce` at
/// `now_ms`, in OpenClaw's order: the id, the time, the nonce, then the
/// signature (as `v3`, then as `v2`).
pub fn verify(
    proof: &DeviceProof,
    claims: &ConnectClaims<'_>,
    challenge_nonce: &str,
    now_ms: u64,
) -> Result<VerifiedDevice, DeviceAuthError> {
    let raw = decode_public_key(&proof.public_key)?;
    if device_id(&raw) != proof.id {
        return Err(DeviceAuthError::IdMismatch);
    }
    if now_ms.abs_diff(proof.signed_at_ms) > MAX_SIGNATURE_SKEW_MS {
        return Err(DeviceAuthError::SignatureExpired);
    }
    if proof.nonce.trim().is_empty() {
        return Err(DeviceAuthError::NonceRequired);
    }
    if proof.nonce != challenge_nonce {
        return Err(DeviceAuthError::NonceMismatch);
    }
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| DeviceAuthError::PublicKeyInvalid)?;
    let signature = decode_base64(&proof.signature)
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(DeviceAuthError::SignatureInvalid)?;
    let version = [PayloadVersion::V3, PayloadVersion::V2]
        .into_iter()
        .find(|&version| {
            let payload = signed_payload(version, proof, claims);
            key.verify_strict(payload.as_bytes(), &signature).is_ok()
        })
        .ok_or(DeviceAuthError::SignatureInvalid)?;
    Ok(VerifiedDevice {
        id: proof.id.clone(),
        public_key: URL_SAFE_NO_PAD.encode(raw),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Node's crypto (as OpenClaw's clients make them): a key pair,
    // then the v2 and v3 payloads below signed with it.
    const ID: &str = "2bbb30c389e9dd646cdb0e59cd2ca0c7c516e9e630a649fb841c87fe594517f3";
    const PUBLIC_KEY: &str = "22_36lFRpO-BKdghWBbx6nJ3RqCGANO36t9MO06jGRc";
    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA22/36lFRpO+BKdghWBbx6nJ3RqCGANO36t9MO06jGRc=\n-----END PUBLIC KEY-----\n";
    const NONCE: &str = "5d3c2e1a-7b7e-4a53-9a55-0f1f3c2d9e10";
    const SIGNED_AT: u64 = 1_765_090_000_456;
    const V2_SIGNATURE: &str =
        "w8CLRYWmzNmClamZupxVMqZdNOs_QkTGvyb_8Y6LHG4qgYeGYI9vTUpBtamOglabyu0AI8Oo0Xik14S56iL0CA";
    const V3_SIGNATURE: &str =
        "n3uQnXZG0dOeZwaCUm2X6Ac29mtWqnDG2P_PpRzf3AGZTzMdwGwKouA_gW3SqlspfN9Mg4sUc1Yzb8lHCRlCBA";

    fn proof(signature: &str) -> DeviceProof {
        DeviceProof {
            id: ID.into(),
            public_key: PUBLIC_KEY.into(),
            signature: signature.into(),
            signed_at_ms: SIGNED_AT,
            nonce: NONCE.into(),
        }
    }

    /// openclaw-node's claims: `gateway-client`/`backend`, read and write, a token.
    fn node_scopes() -> Vec<String> {
        vec!["operator.read".into(), "operator.write".into()]
    }

    fn node_claims(scopes: &[String]) -> ConnectClaims<'_> {
        ConnectClaims {
            client_id: "gateway-client",
            client_mode: "backend",
            role: "operator",
            scopes,
            token: "s3cr3t",
            platform: Some("linux"),
            device_family: None,
        }
    }

    /// The Control UI's claims, signed as v3 with platform and family.
    fn ui_claims(scopes: &[String]) -> ConnectClaims<'_> {
        ConnectClaims {
            client_id: "openclaw-control-ui",
            client_mode: "webchat",
            role: "operator",
            scopes,
            token: "",
            platform: Some(" Linux "),
            device_family: Some("DESKTOP"),
        }
    }

    #[test]
    fn node_signed_proofs_verify_as_v2_and_v3() {
        let scopes = node_scopes();
        let verified = verify(
            &proof(V2_SIGNATURE),
            &node_claims(&scopes),
            NONCE,
            SIGNED_AT,
        );
        let verified = verified.unwrap();
        assert_eq!(verified.version, PayloadVersion::V2);
        assert_eq!(
            (verified.id.as_str(), verified.public_key.as_str()),
            (ID, PUBLIC_KEY)
        );

        let admin = vec!["operator.admin".to_owned()];
        let later = SIGNED_AT + MAX_SIGNATURE_SKEW_MS;
        let verified = verify(&proof(V3_SIGNATURE), &ui_claims(&admin), NONCE, later).unwrap();
        assert_eq!(verified.version, PayloadVersion::V3);
    }

    #[test]
    fn keys_are_taken_in_every_form_clients_send() {
        let raw = decode_public_key(PUBLIC_KEY).unwrap();
        assert_eq!(decode_public_key(PEM).unwrap(), raw);
        let standard = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(decode_public_key(&standard).unwrap(), raw);
        assert_eq!(device_id(&raw), ID);
        for bad in ["", "not base64!", "AAAA", &PEM.replace("MCow", "MCox")] {
            assert_eq!(
                decode_public_key(bad),
                Err(DeviceAuthError::PublicKeyInvalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_refusal_is_openclaws() {
        let scopes = node_scopes();
        let claims = node_claims(&scopes);
        let check = |proof: &DeviceProof, nonce: &str, now: u64| verify(proof, &claims, nonce, now);
        let good = proof(V2_SIGNATURE);

        let other_id = DeviceProof {
            id: "0".repeat(64),
            ..good.clone()
        };
        assert_eq!(
            check(&other_id, NONCE, SIGNED_AT),
            Err(DeviceAuthError::IdMismatch)
        );
        let stale = SIGNED_AT + MAX_SIGNATURE_SKEW_MS + 1;
        assert_eq!(
            check(&good, NONCE, stale),
            Err(DeviceAuthError::SignatureExpired)
        );
        let early = SIGNED_AT - MAX_SIGNATURE_SKEW_MS - 1;
        assert_eq!(
            check(&good, NONCE, early),
            Err(DeviceAuthError::SignatureExpired)
        );
        let no_nonce = DeviceProof {
            nonce: " ".into(),
            ..good.clone()
        };
        assert_eq!(
            check(&no_nonce, NONCE, SIGNED_AT),
            Err(DeviceAuthError::NonceRequired)
        );
        let other = "6e1f0000-0000-4000-8000-000000000000";
        assert_eq!(
            check(&good, other, SIGNED_AT),
            Err(DeviceAuthError::NonceMismatch)
        );

        // The same signature does not cover other claims, nor a v3 proof another family.
        let more_scopes = vec!["operator.admin".to_owned()];
        let widened = verify(&good, &node_claims(&more_scopes), NONCE, SIGNED_AT);
        assert_eq!(widened, Err(DeviceAuthError::SignatureInvalid));
        let mut tablet = ui_claims(&more_scopes);
        tablet.device_family = Some("tablet");
        let moved = verify(&proof(V3_SIGNATURE), &tablet, NONCE, SIGNED_AT);
        assert_eq!(moved, Err(DeviceAuthError::SignatureInvalid));
        let garbage = proof("AAAA");
        assert_eq!(
            check(&garbage, NONCE, SIGNED_AT),
            Err(DeviceAuthError::SignatureInvalid)
        );
        assert_eq!(
            DeviceAuthError::SignatureExpired.code(),
            "DEVICE_AUTH_SIGNATURE_EXPIRED"
        );
    }
}
