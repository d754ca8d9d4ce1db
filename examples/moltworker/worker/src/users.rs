//! Who gets which sandbox. Each sandbox is a Durable Object (and its
//! container) named after its user, with its own state and its own backup
//! prefix, so users of one deployment keep their state apart (they share
//! the deployment's secrets: DEPLOY.md, step 10).
//!
//! `MOLT_USERS` lists `email=name` pairs (comma-separated); an entry `*`
//! gives every other Access identity a sandbox of its own, named after its
//! e-mail address. Unset, everyone reaches the default sandbox
//! (`MOLT_DEFAULT_USER`, default `moltbot`, Moltworker's sandbox name), as a
//! one-person deployment expects. Requests without an Access identity (an
//! OpenClaw client with the gateway token) reach the default sandbox.

use molt_core::access::AccessIdentity;

/// The default sandbox's name, as Moltworker names its one sandbox.
pub const DEFAULT_USER: &str = "moltbot";

/// The longest sandbox name.
const MAX_NAME: usize = 64;

/// Who gets which sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    default: String,
    mapped: Vec<(String, String)>,
    everyone: bool,
    configured: bool,
}

/// A `MOLT_USERS` or `MOLT_DEFAULT_USER` value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    /// An entry of `MOLT_USERS` is not `email=name` or `*`.
    #[error("entry {0:?} is not email=name or *")]
    Entry(String),
    /// A name that cannot name a sandbox.
    #[error("{0:?} is not a sandbox name (1 to 64 of a-z, 0-9, '.', '_', '-', '@')")]
    Name(String),
    /// The default name cannot name a sandbox.
    #[error("{0:?} is not a sandbox name (1 to 64 of a-z, 0-9, '.', '_', '-', '@')")]
    DefaultName(String),
}

impl UsersError {
    /// The variable at fault.
    pub fn var(&self) -> &'static str {
        match self {
            Self::DefaultName(_) => "MOLT_DEFAULT_USER",
            _ => "MOLT_USERS",
        }
    }
}

/// An Access identity that `MOLT_USERS` gives no sandbox.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} has no gateway here: add it to MOLT_USERS (email=name), or add * to give every user one"
)]
pub struct NotAUser(pub String);

impl Users {
    /// Reads `MOLT_DEFAULT_USER` and `MOLT_USERS`.
    pub fn parse(default: Option<&str>, list: Option<&str>) -> Result<Self, UsersError> {
        let default = default.unwrap_or(DEFAULT_USER).trim().to_ascii_lowercase();
        if !is_name(&default) {
            return Err(UsersError::DefaultName(default));
        }
        let mut users = Self {
            default,
            mapped: Vec::new(),
            everyone: false,
            configured: list.is_some(),
        };
        for entry in list.unwrap_or_default().split(',').map(str::trim) {
            match entry.split_once('=') {
                _ if entry.is_empty() => {}
                _ if entry == "*" => users.everyone = true,
                Some((email, name)) if !email.trim().is_empty() => {
                    let name = name.trim().to_ascii_lowercase();
                    if !is_name(&name) {
                        return Err(UsersError::Name(name));
                    }
                    users.mapped.push((email.trim().to_ascii_lowercase(), name));
                }
                _ => return Err(UsersError::Entry(entry.to_owned())),
            }
        }
        Ok(users)
    }

    /// The default sandbox.
    pub fn default_user(&self) -> &str {
        &self.default
    }

    /// Every sandbox named by the configuration (the default, then the mapped ones).
    pub fn named(&self) -> Vec<&str> {
        let mut names = vec![self.default.as_str()];
        for (_, name) in &self.mapped {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }

    /// The sandbox of a request made by `identity` (none: the default one).
    pub fn sandbox_of(&self, identity: Option<&AccessIdentity>) -> Result<String, NotAUser> {
        let Some(identity) = identity else {
            return Ok(self.default.clone());
        };
        if !self.configured {
            return Ok(self.default.clone());
        }
        let who = identity
            .email
            .as_deref()
            .unwrap_or(&identity.subject)
            .to_ascii_lowercase();
        if let Some((_, name)) = self.mapped.iter().find(|(email, _)| *email == who) {
            return Ok(name.clone());
        }
        if self.everyone && !who.is_empty() {
            return Ok(own_name(&who));
        }
        Err(NotAUser(who))
    }

    /// The backup prefix of sandbox `name` in the shared bucket: none for the
    /// default (a Moltworker bucket restores as it is), `users/<name>` for
    /// the others.
    pub fn backup_prefix(&self, name: &str) -> Option<String> {
        (name != self.default).then(|| format!("users/{name}"))
    }
}

/// The sandbox name of an identity with no entry (`*`): the address itself
/// when it is a valid name; else its valid characters and a hash of the
/// whole address, so that two addresses never share a sandbox.
fn own_name(who: &str) -> String {
    if is_name(who) {
        return who.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(who.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let kept: String = (who.chars())
        .map(|c| if is_name_char(c) { c } else { '_' })
        .take(MAX_NAME - hash.len() - 1)
        .collect();
    format!("{kept}-{hash}")
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.chars().all(is_name_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(email: &str) -> AccessIdentity {
        AccessIdentity {
            email: Some(email.to_owned()),
            subject: "sub".to_owned(),
            expires_at: 0,
        }
    }

    #[test]
    fn unset_sends_everyone_to_the_default() {
        let users = Users::parse(None, None).unwrap();
        assert_eq!(users.sandbox_of(None).unwrap(), "moltbot");
        assert_eq!(users.sandbox_of(Some(&who("a@x.io"))).unwrap(), "moltbot");
    }

    #[test]
    fn mapped_users_and_everyone_else() {
        let users = Users::parse(Some("home"), Some("Alice@x.io=alice, bob@x.io=bob")).unwrap();
        assert_eq!(users.sandbox_of(Some(&who("alice@X.io"))).unwrap(), "alice");
        assert_eq!(users.sandbox_of(None).unwrap(), "home");
        assert_eq!(
            users.sandbox_of(Some(&who("eve@x.io"))),
            Err(NotAUser("eve@x.io".into()))
        );
        let users = Users::parse(None, Some("*")).unwrap();
        assert_eq!(
            users.sandbox_of(Some(&who("Eve@x.io"))).unwrap(),
            "eve@x.io"
        );
        // Addresses that differ only in characters a name cannot hold stay apart.
        let plus = users.sandbox_of(Some(&who("a+b@x.io"))).unwrap();
        let underscore = users.sandbox_of(Some(&who("a_b@x.io"))).unwrap();
        assert_ne!(plus, underscore);
        assert!(plus.starts_with("a_b@x.io-") && plus.len() <= 64, "{plus}");
        let long = format!("{}@x.io", "a".repeat(80));
        let longer = format!("{}@x.io", "a".repeat(81));
        let one = users.sandbox_of(Some(&who(&long))).unwrap();
        let two = users.sandbox_of(Some(&who(&longer))).unwrap();
        assert!(one != two && one.len() <= 64 && two.len() <= 64);
        assert_eq!(
            users.backup_prefix("eve@x.io").as_deref(),
            Some("users/eve@x.io")
        );
        assert_eq!(users.backup_prefix("moltbot"), None);
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            Users::parse(None, Some("alice")),
            Err(UsersError::Entry("alice".into()))
        );
        assert!(matches!(
            Users::parse(None, Some("a@x=Al ice")),
            Err(UsersError::Name(_))
        ));
        assert_eq!(
            Users::parse(Some("a/b"), None).unwrap_err().var(),
            "MOLT_DEFAULT_USER"
        );
    }
}
