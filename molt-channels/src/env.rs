//! Settings read from the environment, the same way for every channel. (DM
//! policies, `<CHANNEL>_DM_POLICY`, are read by `molt_core::config::Config`.)

/// The trimmed value of `name`, or `None` when it is unset or blank.
pub(crate) fn var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}
