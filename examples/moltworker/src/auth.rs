//! The gateway token: where it comes from, and how a presented token is checked.

use molt_core::Secret;
use std::io;
use std::path::Path;

/// The file in the state directory that holds a generated token.
pub const TOKEN_FILE: &str = "gateway-token";

/// Where the token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `MOLTBOT_GATEWAY_TOKEN` or the configuration file.
    Configured,
    /// Generated on an earlier start and read from the state directory.
    Stored,
    /// Generated now and written to the state directory.
    Generated,
}

/// The configured token, or the one stored in `state_dir`, or a new one saved there (mode 0600).
pub fn load_or_create(
    configured: Option<Secret>,
    state_dir: &Path,
) -> io::Result<(Secret, TokenSource)> {
    if let Some(token) = configured {
        return Ok((token, TokenSource::Configured));
    }
    let path = state_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(stored) if !stored.trim().is_empty() => {
            return Ok((Secret::new(stored.trim()), TokenSource::Stored));
        }
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let token = crate::platform::random_token();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    let mut file = options.open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok((Secret::new(token), TokenSource::Generated))
}

/// The outcome of checking presented tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// A token was presented and matches.
    Ok,
    /// No token was presented.
    Missing,
    /// A token was presented and does not match.
    Mismatch,
}

impl AuthResult {
    /// The close reason (and error message) for a refused connection.
    pub fn refusal(self) -> Option<(&'static str, &'static str)> {
        match self {
            AuthResult::Ok => None,
            AuthResult::Missing => Some((
                "AUTH_TOKEN_MISSING",
                "unauthorized: gateway token missing (provide gateway auth token)",
            )),
            AuthResult::Mismatch => Some((
                "AUTH_TOKEN_MISMATCH",
                "unauthorized: gateway token mismatch (provide gateway auth token)",
            )),
        }
    }
}

/// The cookie that keeps an operator signed in to `/_admin/` once the page
/// was opened with the token (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "molt_session";

/// How long an admin session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The session cookie's value for `token`, issued at `issued_secs` (seconds
/// since the Unix epoch): `<issued>.<hash of the token and issued>`, so the
/// token itself is never kept in a cookie and a session ends after [`SESSION_TTL`].
pub fn session_value(token: &Secret, issued_secs: u64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"molt-session\0")
        .chain_update(token.expose().as_bytes())
        .chain_update(b"\0")
        .chain_update(issued_secs.to_string().as_bytes())
        .finalize();
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{issued_secs}.{hash}")
}

/// Whether the `Cookie` header carries a session cookie of `token` issued
/// less than [`SESSION_TTL`] before `now_secs` (compared in constant time).
pub fn has_session(token: &Secret, cookie_header: Option<&str>, now_secs: u64) -> bool {
    let Some(value) = molt_core::access::cookie(cookie_header, SESSION_COOKIE) else {
        return false;
    };
    let Some(issued) = value
        .split_once('.')
        .and_then(|(issued, _)| issued.parse::<u64>().ok())
    else {
        return false;
    };
    let fresh = issued <= now_secs && now_secs - issued < SESSION_TTL.as_secs();
    fresh && Secret::new(session_value(token, issued)).matches(value)
}

/// Checks every presented token (query, header, connect frame): all must match, and at least one must be there.
pub fn check<'a>(
    expected: &Secret,
    presented: impl IntoIterator<Item = Option<&'a str>>,
) -> AuthResult {
    let mut result = AuthResult::Missing;
    // An empty token counts as no token at all.
    for token in presented
        .into_iter()
        .flatten()
        .filter(|token| !token.is_empty())
    {
        if !expected.matches(token) {
            return AuthResult::Mismatch;
        }
        result = AuthResult::Ok;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_presented_token_must_match() {
        let expected = Secret::new("right");
        assert_eq!(check(&expected, [None, None]), AuthResult::Missing);
        assert_eq!(check(&expected, [Some(""), None]), AuthResult::Missing);
        assert_eq!(check(&expected, [Some("right"), None]), AuthResult::Ok);
        assert_eq!(
            check(&expected, [Some("right"), Some("wrong")]),
            AuthResult::Mismatch
        );
        assert_eq!(check(&expected, [None, Some("righ")]), AuthResult::Mismatch);
    }

    #[test]
    fn a_session_cookie_is_bound_to_the_token_and_expires() {
        let token = Secret::new("right");
        let cookie = |value: &str| format!("a=b; {SESSION_COOKIE}={value}");
        let issued = 1_000_000;
        let value = session_value(&token, issued);
        assert!(has_session(&token, Some(&cookie(&value)), issued + 60));
        assert!(!has_session(
            &token,
            Some(&cookie(&value)),
            issued + SESSION_TTL.as_secs()
        ));
        assert!(!has_session(
            &Secret::new("other"),
            Some(&cookie(&value)),
            issued + 60
        ));
        let forged = format!("{}.{}", issued + 100, value.split_once('.').unwrap().1);
        assert!(!has_session(&token, Some(&cookie(&forged)), issued + 200));
        assert!(!has_session(&token, Some("molt_session=garbage"), issued));
        assert!(!has_session(&token, None, issued));
    }

    #[test]
    fn a_generated_token_is_stored_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = load_or_create(None, dir.path()).unwrap();
        assert_eq!((first.expose().len(), source), (64, TokenSource::Generated));
        let (again, source) = load_or_create(None, dir.path()).unwrap();
        assert_eq!((again, source), (first, TokenSource::Stored));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
