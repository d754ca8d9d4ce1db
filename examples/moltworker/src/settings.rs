//! The server's own settings, apart from the agent's: the address it binds,
//! its token, the debug routes, when it may sleep, and its connection limits.
//!
//! They come from the `[gateway]` table of the same `molt.toml` the agent's
//! configuration is read from ([`molt_core::config::Config`] leaves that
//! table to the host), then from the environment, with the names Moltworker
//! users already set: `MOLTBOT_GATEWAY_TOKEN`, `SANDBOX_SLEEP_AFTER`,
//! `DEBUG_ROUTES`; and `MOLT_BIND`, `MOLT_MAX_CONNECTIONS`,
//! `MOLT_HEADER_READ_TIMEOUT` (seconds).

use molt_core::Secret;
use molt_core::config::{ConfigError, file_error, parse_bool, parse_env, positive};
pub use molt_core::config::{SleepAfter, parse_sleep_after};
use serde::Deserialize;
use std::net::SocketAddr;

/// The server's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where to listen (default `127.0.0.1:18789`).
    pub bind: SocketAddr,
    /// The gateway token; generated and stored in the state directory when unset.
    pub token: Option<Secret>,
    /// Whether `/debug/*` is mounted.
    pub debug_routes: bool,
    /// When an idle sandbox sleeps.
    #[serde(deserialize_with = "deserialize_sleep_after")]
    pub sleep_after: SleepAfter,
    /// The most connections served at once.
    pub max_connections: usize,
    /// How long a client may take to send its request headers, in seconds.
    pub header_read_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 18789)),
            token: None,
            debug_routes: false,
            sleep_after: SleepAfter::Never,
            max_connections: 512,
            header_read_timeout_secs: 15,
        }
    }
}

/// The file's tables, of which only `[gateway]` is read here.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    gateway: ServerSettings,
}

impl ServerSettings {
    /// The settings of an optional `molt.toml`'s `[gateway]` table, then the
    /// environment (read through `env`).
    pub fn load(
        file: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerSettings, ConfigError> {
        let mut settings = match file {
            Some(text) => {
                let file: File = toml::from_str(text).map_err(|err| file_error(text, &err))?;
                file.gateway
            }
            None => ServerSettings::default(),
        };
        settings.apply_env(|var| env(var).filter(|v| !v.trim().is_empty()))?;
        if (settings.token.as_ref()).is_some_and(|token| token.expose().trim().is_empty()) {
            return Err(ConfigError::File(
                "gateway.token must not be empty (remove it to have one generated)".into(),
            ));
        }
        Ok(settings)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(token) = get("MOLTBOT_GATEWAY_TOKEN") {
            self.token = Some(Secret::new(token.trim()));
        }
        if let Some(bind) = get("MOLT_BIND") {
            self.bind = parse_env("MOLT_BIND", &bind, |v| {
                v.parse()
                    .map_err(|e: std::net::AddrParseError| e.to_string())
            })?;
        }
        if let Some(value) = get("DEBUG_ROUTES") {
            self.debug_routes = parse_env("DEBUG_ROUTES", &value, parse_bool)?;
        }
        if let Some(value) = get("SANDBOX_SLEEP_AFTER") {
            self.sleep_after = parse_env("SANDBOX_SLEEP_AFTER", &value, parse_sleep_after)?;
        }
        if let Some(value) = get("MOLT_MAX_CONNECTIONS") {
            self.max_connections = parse_env("MOLT_MAX_CONNECTIONS", &value, positive)?;
        }
        if let Some(value) = get("MOLT_HEADER_READ_TIMEOUT") {
            self.header_read_timeout_secs = parse_env("MOLT_HEADER_READ_TIMEOUT", &value, |v| {
                positive(v).map(|n| n as u64)
            })?;
        }
        Ok(())
    }
}

fn deserialize_sleep_after<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SleepAfter, D::Error> {
    let value = String::deserialize(deserializer)?;
    parse_sleep_after(&value).map_err(serde::de::Error::custom)
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
    fn the_environment_wins_over_the_gateway_table() {
        let file =
            "[gateway]\nbind = \"127.0.0.1:1\"\nsleep_after = \"1h\"\n[agent]\nmax_steps = 3\n";
        let vars = env(&[("SANDBOX_SLEEP_AFTER", "10m"), ("DEBUG_ROUTES", "true")]);
        let settings = ServerSettings::load(Some(file), vars).unwrap();
        assert_eq!(settings.bind, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            settings.sleep_after,
            SleepAfter::Idle(std::time::Duration::from_secs(600))
        );
        assert!(settings.debug_routes);
    }

    #[test]
    fn invalid_values_name_their_source_and_never_quote_the_file() {
        let err = ServerSettings::load(None, env(&[("DEBUG_ROUTES", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("DEBUG_ROUTES"), "{err}");
        let err = ServerSettings::load(Some("[gateway]\nsleep_after = \"soon\"\n"), env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("sleep_after"), "{err}");
        let file = "[gateway]\ntokn = \"super-secret-value\"\n";
        let message = ServerSettings::load(Some(file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("tokn") && message.contains("line 2"),
            "{message}"
        );
        assert!(!message.contains("super-secret-value"), "{message}");
        let err = ServerSettings::load(Some("[gateway]\ntoken = \"  \"\n"), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("gateway.token must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn the_token_is_redacted_in_debug() {
        let settings =
            ServerSettings::load(None, env(&[("MOLTBOT_GATEWAY_TOKEN", "s3cret")])).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert!(settings.token.unwrap().matches("s3cret"));
    }
}
