//! Cloudflare Access: the token Access puts in front of an application (the
//! `Cf-Access-Jwt-Assertion` header, or the `CF_Authorization` cookie),
//! checked against the team's signing keys. RS256 only: the algorithm is
//! fixed here, never taken from the token.
//!
//! Pure logic, shared by the container and the Worker: fetching the keys
//! from [`AccessConfig::certs_url`] (and again when a token names a key not
//! held, [`AccessError::UnknownKey`]) is the host's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BoxedUint, PublicKey};
use serde::Deserialize;
use sha2::Sha256;

/// The header Access sets on every request it lets through.
pub const ASSERTION_HEADER: &str = "cf-access-jwt-assertion";

/// The cookie Access sets in browsers.
pub const COOKIE: &str = "CF_Authorization";

/// Seconds of clock difference allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// The application Access protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// The team domain, such as `myteam.cloudflareaccess.com`
    /// (`CF_ACCESS_TEAM_DOMAIN`; a leading `https://` is dropped).
    pub team_domain: String,
    /// The application's audience tag (`CF_ACCESS_AUD`).
    pub audience: String,
}

impl AccessConfig {
    /// A configuration for `team_domain` and `audience`.
    pub fn new(team_domain: &str, audience: &str) -> Self {
        let team_domain = team_domain.trim().trim_start_matches("https://");
        Self {
            team_domain: team_domain.trim_end_matches('/').to_owned(),
            audience: audience.trim().to_owned(),
        }
    }

    /// The issuer every token must name: `https://<team domain>`.
    pub fn issuer(&self) -> String {
        format!("https://{}", self.team_domain)
    }

    /// Where the team's signing keys are published.
    pub fn certs_url(&self) -> String {
        format!("{}/cdn-cgi/access/certs", self.issuer())
    }
}

/// Who Access let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessIdentity {
    /// The user's e-mail address (absent for service tokens).
    pub email: Option<String>,
    /// The subject: the user's id, or the service token's client id.
    pub subject: String,
    /// When the token expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a request did not pass Access.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The request carries no Access token.
    #[error("no Cloudflare Access token")]
    Missing,
    /// The token is not a well-formed JWT.
    #[error("the Access token is malformed")]
    Malformed,
    /// The token is not signed with RS256.
    #[error("the Access token is signed with {0}, not RS256")]
    Algorithm(String),
    /// The token names a key the team's key set does not hold (fetch the
    /// keys again, then check once more).
    #[error("the Access token names an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the Access token's signature is invalid")]
    BadSignature,
    /// The token has expired.
    #[error("the Access token has expired")]
    Expired,
    /// The token is not valid yet.
    #[error("the Access token is not valid yet")]
    NotYetValid,
    /// The token was issued by another team.
    #[error("the Access token was issued by another team")]
    WrongIssuer,
    /// The token is for another application.
    #[error("the Access token is for another application")]
    WrongAudience,
    /// The team's key set could not be read.
    #[error("the Access key set is unreadable: {0}")]
    Keys(String),
}

/// A team's signing keys, from its certs endpoint.
#[derive(Clone, Debug, Default)]
pub struct AccessKeys {
    keys: Vec<(String, PublicKey)>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl AccessKeys {
    /// The RSA signing keys of a JSON Web Key Set; keys of other types or
    /// algorithms are left out.
    pub fn from_jwks(json: &[u8]) -> Result<Self, AccessError> {
        let set: Jwks =
            serde_json::from_slice(json).map_err(|err| AccessError::Keys(err.to_string()))?;
        let keys = set
            .keys
            .into_iter()
            .filter(|key| key.kty == "RSA" && key.alg.as_deref().is_none_or(|alg| alg == "RS256"))
            .map(|key| {
                let kid = key
                    .kid
                    .ok_or(AccessError::Keys("a key without kid".into()))?;
                let number = |part: Option<String>| {
                    let bytes = URL_SAFE_NO_PAD
                        .decode(part.unwrap_or_default())
                        .map_err(|err| AccessError::Keys(format!("key {kid}: {err}")))?;
                    Ok::<_, AccessError>(BoxedUint::from_be_slice_vartime(&bytes))
                };
                let public = PublicKey::new(number(key.n)?, number(key.e)?)
                    .map_err(|err| AccessError::Keys(format!("key {kid}: {err}")))?;
                Ok((kid, public))
            })
            .collect::<Result<_, AccessError>>()?;
        Ok(Self { keys })
    }

    /// Whether the set holds key `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.key(kid).is_some()
    }

    fn key(&self, kid: &str) -> Option<&PublicKey> {
        self.keys
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, key)| key)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    exp: u64,
    nbf: Option<u64>,
    sub: String,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

/// The Access token of a request: the assertion header, else the cookie.
pub fn token_from_request<'a>(
    assertion: Option<&'a str>,
    cookie_header: Option<&'a str>,
) -> Option<&'a str> {
    (assertion.map(str::trim).filter(|token| !token.is_empty()))
        .or_else(|| cookie(cookie_header, COOKIE))
}

/// The value of cookie `name` in a `Cookie` request header.
pub fn cookie<'a>(cookie_header: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookie_header?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Checks `token` for the application `config` describes with the team's
/// `keys`, at `now` (seconds since the Unix epoch): the algorithm, the key,
/// the signature, then the time, the issuer and the audience.
pub fn verify(
    token: &str,
    config: &AccessConfig,
    keys: &AccessKeys,
    now: u64,
) -> Result<AccessIdentity, AccessError> {
    let mut parts = token.split('.');
    let (Some(encoded_header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AccessError::Malformed);
    };
    let header: Header = decode_json(encoded_header)?;
    if header.alg != "RS256" {
        return Err(AccessError::Algorithm(header.alg));
    }
    let kid = header.kid.ok_or(AccessError::UnknownKey)?;
    let key = keys.key(&kid).ok_or(AccessError::UnknownKey)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or(AccessError::BadSignature)?;
    // The signature covers `header.payload` as sent.
    let signed = &token[..encoded_header.len() + 1 + payload.len()];
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| AccessError::BadSignature)?;
    let claims: Claims = decode_json(payload)?;
    if claims.exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(AccessError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
    {
        return Err(AccessError::NotYetValid);
    }
    if claims.iss != config.issuer() {
        return Err(AccessError::WrongIssuer);
    }
    if !claims.aud.contains(&config.audience) {
        return Err(AccessError::WrongAudience);
    }
    Ok(AccessIdentity {
        email: claims.email,
        subject: claims.sub,
        expires_at: claims.exp,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AccessError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AccessError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AccessError::Malformed)
}
