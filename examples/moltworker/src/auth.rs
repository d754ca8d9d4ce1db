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

/// Checks every presented token (query, header, connect frame): all must match, and at least one must be there.
pub fn check<'a>(
    expected: &Secret,
    presented: impl IntoIterator<Item = Option<&'a str>>,
) -> AuthResult {
    let mut result = AuthResult::Missing;
    for token in presented.into_iter().flatten() {
        if !expected.matches(token) {
            return AuthResult::Mismatch;
        }
        result = AuthResult::Ok;
    }
    result
}
