//! The agent's configuration, from a TOML file and the environment.
//!
//! Environment variables win over the file. They use the names Moltworker
//! users already set, per channel (`TELEGRAM_`, `DISCORD_`, `SLACK_`):
//! `<CHANNEL>_DM_POLICY`, `<CHANNEL>_DM_ALLOW_FROM`, `<CHANNEL>_GROUP_POLICY`,
//! `<CHANNEL>_GROUP_ALLOW_FROM` (group chat ids) and `<CHANNEL>_GROUP_SENDERS`
//! (sender ids); and `MOLT_SESSION_SCOPE`. The host's server settings (its
//! address, token, debug routes, sleep) live in the same file's `[gateway]`
//! table, which the host reads (see `moltworker`'s settings).

use crate::policy::{ChannelPolicy, DmPolicy, GroupPolicy};
use crate::session::SessionScope;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Why the configuration is invalid. The message names the variable or field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable has an invalid value.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong (never the value of a secret).
        reason: String,
    },
    /// The configuration file is invalid.
    #[error("configuration file: {0}")]
    File(String),
}

/// The agent's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The system prompt.
    pub system_prompt: String,
    /// The most model calls in one run.
    pub max_steps: u32,
    /// The longest a run may take, in seconds.
    pub run_timeout_secs: u64,
    /// Compact history above this many estimated tokens.
    pub history_token_budget: usize,
    /// Messages kept verbatim when compacting.
    pub keep_recent_messages: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            system_prompt: "You are Molt, a helpful personal assistant.".to_owned(),
            max_steps: 8,
            run_timeout_secs: 600,
            history_token_budget: 60_000,
            keep_recent_messages: 8,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The agent.
    pub agent: AgentConfig,
    /// How direct messages map to sessions.
    pub session_scope: SessionScope,
    /// Access rules per channel name; channels not listed use [`Config::channel_policy`]'s default.
    pub channels: BTreeMap<String, ChannelPolicy>,
    /// The host's own table (`[gateway]`: the server's address, token and
    /// the like), read by the host, not here.
    #[serde(default, rename = "gateway")]
    host: serde::de::IgnoredAny,
}

impl Default for Config {
    fn default() -> Self {
        let mut channels = BTreeMap::new();
        // The Control UI is already behind the gateway token.
        channels.insert(
            "webchat".to_owned(),
            ChannelPolicy {
                dm_policy: DmPolicy::Open,
                ..ChannelPolicy::default()
            },
        );
        Self {
            agent: AgentConfig::default(),
            session_scope: SessionScope::Main,
            channels,
            host: serde::de::IgnoredAny,
        }
    }
}

impl Config {
    /// Loads the configuration from an optional TOML file's text, then the
    /// environment (read through `env`, so tests need not touch the process).
    pub fn load(
        file: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(text) => {
                let mut parsed: Config =
                    toml::from_str(text).map_err(|err| file_error(text, &err))?;
                let defaults = Config::default().channels;
                for (name, policy) in defaults {
                    parsed.channels.entry(name).or_insert(policy);
                }
                parsed
            }
            None => Config::default(),
        };
        config.apply_env(&env)?;
        Ok(config)
    }

    /// The access rules for `channel`.
    pub fn channel_policy(&self, channel: &str) -> ChannelPolicy {
        self.channels.get(channel).cloned().unwrap_or_default()
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        if let Some(value) = get("MOLT_SESSION_SCOPE") {
            self.session_scope = parse_env("MOLT_SESSION_SCOPE", &value, str::parse)?;
        }
        for channel in ["telegram", "discord", "slack"] {
            self.apply_channel_env(channel, &get)?;
        }
        Ok(())
    }
}

impl Config {
    /// `<CHANNEL>_DM_POLICY`, `<CHANNEL>_DM_ALLOW_FROM`, `<CHANNEL>_GROUP_POLICY`,
    /// `<CHANNEL>_GROUP_ALLOW_FROM` (chat ids) and `<CHANNEL>_GROUP_SENDERS`
    /// (sender ids), each over the file's value when set.
    fn apply_channel_env(
        &mut self,
        channel: &str,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let var = |suffix: &str| format!("{}_{suffix}", channel.to_ascii_uppercase());
        let policy = self.channels.entry(channel.to_owned()).or_default();
        let list = |value: String| -> Vec<String> {
            value
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let (dm_policy, group_policy) = (var("DM_POLICY"), var("GROUP_POLICY"));
        if let Some(value) = get(&dm_policy) {
            policy.dm_policy = parse_env(&dm_policy, &value, |v| v.parse::<DmPolicy>())?;
        }
        if let Some(value) = get(&var("DM_ALLOW_FROM")) {
            policy.allow_from = list(value);
        }
        if let Some(value) = get(&group_policy) {
            policy.group_policy = parse_env(&group_policy, &value, |v| v.parse::<GroupPolicy>())?;
        }
        if let Some(value) = get(&var("GROUP_ALLOW_FROM")) {
            policy.group_allow_from = list(value);
        }
        if let Some(value) = get(&var("GROUP_SENDERS")) {
            policy.group_senders = list(value);
        }
        Ok(())
    }
}

/// `value` of environment variable `var` parsed by `parse`, or an error naming the variable.
pub fn parse_env<T>(
    var: &str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(value.trim()).map_err(|reason| ConfigError::Env {
        var: var.to_owned(),
        reason,
    })
}

/// A TOML file error, described by [`describe_toml_error`].
pub fn file_error(text: &str, err: &toml::de::Error) -> ConfigError {
    ConfigError::File(describe_toml_error(text, err))
}

/// A TOML error naming the field and position, without the source snippet,
/// which could quote a secret (a mistyped `token = "..."` line, say).
pub fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let location = err.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.len() - line_start + 1;
        // The key on that line, under the last [section] header above it.
        let line_text = text[line_start..].lines().next().unwrap_or_default();
        let key = line_text
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| !key.is_empty());
        let section = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(['[', ']']));
        let field = match (section, key) {
            (Some(section), Some(key)) => format!("{section}.{key}, "),
            (None, Some(key)) => format!("{key}, "),
            _ => String::new(),
        };
        format!(" (at {field}line {line}, column {column})")
    });
    format!(
        "{}{}",
        hide_value(err.message().trim_end()),
        location.unwrap_or_default()
    )
}

/// Serde's "invalid type: string `...`" messages quote the value, which may be
/// a secret in the wrong place: keep the kind, hide the value.
fn hide_value(message: &str) -> String {
    let quotes_value = ["invalid type:", "invalid value:", "invalid length"]
        .iter()
        .any(|prefix| message.starts_with(prefix));
    let (Some(start), true) = (message.find('`'), quotes_value) else {
        return message.to_string();
    };
    match message[start + 1..].find('`') {
        Some(length) => format!(
            "{}(value hidden){}",
            &message[..start],
            &message[start + 1 + length + 1..]
        ),
        None => message.to_string(),
    }
}

/// A whole number above zero.
pub fn positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive whole number, got {value:?}")),
    }
}

/// `true`/`false` and their usual spellings (`1`, `yes`, `on`, ...).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// When an idle sandbox goes to sleep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SleepAfter {
    /// Never.
    #[default]
    Never,
    /// After this long without traffic.
    Idle(Duration),
}

/// Parses `never` or a duration such as `30s`, `10m`, `2h`, `1d`.
pub fn parse_sleep_after(value: &str) -> Result<SleepAfter, String> {
    if value.eq_ignore_ascii_case("never") {
        return Ok(SleepAfter::Never);
    }
    let invalid =
        || format!("expected \"never\" or a duration such as 30s, 10m, 2h, got {value:?}");
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    Ok(SleepAfter::Idle(Duration::from_secs(
        number.saturating_mul(seconds),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_overrides_file() {
        let file = "session_scope = \"per-peer\"\n[agent]\nmax_steps = 3\n[channels.telegram]\ndm_policy = \"open\"\n";
        let vars = env(&[
            ("TELEGRAM_DM_POLICY", "allowlist"),
            ("TELEGRAM_DM_ALLOW_FROM", "1, 2"),
        ]);
        let config = Config::load(Some(file), vars).unwrap();
        assert_eq!(config.agent.max_steps, 3);
        assert_eq!(config.session_scope, SessionScope::PerPeer);
        let telegram = config.channel_policy("telegram");
        assert_eq!(
            (telegram.dm_policy, telegram.allow_from),
            (DmPolicy::Allowlist, vec!["1".to_owned(), "2".to_owned()])
        );
        assert_eq!(config.channel_policy("webchat").dm_policy, DmPolicy::Open);
    }

    #[test]
    fn group_policies_come_from_the_environment() {
        let config = Config::load(None, env(&[])).unwrap();
        let telegram = config.channel_policy("telegram");
        assert_eq!(telegram.group_policy, GroupPolicy::Allowlist);
        assert!(telegram.group_allow_from.is_empty());
        let vars = env(&[
            ("SLACK_GROUP_POLICY", "allowlist"),
            ("SLACK_GROUP_ALLOW_FROM", "C1, C2"),
            ("SLACK_GROUP_SENDERS", "U1"),
            ("DISCORD_GROUP_POLICY", "disabled"),
        ]);
        let config = Config::load(None, vars).unwrap();
        let slack = config.channel_policy("slack");
        assert_eq!(slack.group_allow_from, ["C1", "C2"]);
        assert_eq!(slack.group_senders, ["U1"]);
        assert_eq!(
            config.channel_policy("discord").group_policy,
            GroupPolicy::Disabled
        );
        let err = Config::load(None, env(&[("TELEGRAM_GROUP_POLICY", "pairing")])).unwrap_err();
        assert!(err.to_string().contains("TELEGRAM_GROUP_POLICY"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_source() {
        let err = Config::load(None, env(&[("DISCORD_DM_POLICY", "sometimes")])).unwrap_err();
        assert!(err.to_string().contains("DISCORD_DM_POLICY"), "{err}");
        let err = Config::load(Some("[agent]\nmax_steps = \"many\"\n"), env(&[])).unwrap_err();
        assert!(err.to_string().contains("max_steps"), "{err}");
    }

    #[test]
    fn file_errors_never_quote_the_file() {
        let err =
            Config::load(Some("[agent]\nsytem_prompt = \"secret plans\"\n"), env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("sytem_prompt") && message.contains("line 2"),
            "{message}"
        );
        assert!(!message.contains("secret plans"), "{message}");
    }

    #[test]
    fn the_hosts_table_is_left_to_the_host() {
        let file = "[gateway]\nbind = \"0.0.0.0:1\"\nanything = 1\n[agent]\nmax_steps = 2\n";
        assert_eq!(
            Config::load(Some(file), env(&[])).unwrap().agent.max_steps,
            2
        );
    }
}
