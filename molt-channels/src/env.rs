//! Settings read from the environment, the same way for every channel.

use molt_core::policy::{ChannelPolicy, DmPolicy};

/// The access policy from `<PREFIX>_DM_POLICY` (`pairing` by default) and
/// `<PREFIX>_DM_ALLOW_FROM` (comma-separated sender ids).
pub(crate) fn policy_from_env(prefix: &str) -> Result<ChannelPolicy, String> {
    let mut policy = ChannelPolicy::default();
    let name = format!("{prefix}_DM_POLICY");
    if let Ok(value) = std::env::var(&name) {
        policy.dm_policy = value
            .trim()
            .parse::<DmPolicy>()
            .map_err(|err| format!("{name}: {err}"))?;
    }
    if let Ok(value) = std::env::var(format!("{prefix}_DM_ALLOW_FROM")) {
        policy.allow_from = value
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(String::from)
            .collect();
    }
    Ok(policy)
}

/// The trimmed value of `name`, or `None` when it is unset or blank.
pub(crate) fn var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}
