//! The gateway's configuration: a TOML file, environment variables (the ones
//! Moltworker users already set), or both.

use crate::layers::budget::OverBudget;
use crate::layers::rate_limit::Limit;
use crate::layers::retry::{RetryPolicy, Timeouts};
use crate::pricing::PriceTable;
use crate::provider::{Api, ProviderConfig};
use molt_core::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML or has a wrong field (never quotes the file).
    #[error("configuration file: {0}")]
    File(String),
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Invalid(String),
    /// A provider client could not be built.
    #[error("provider {name}: {reason}")]
    Provider {
        /// The provider.
        name: String,
        /// Why.
        reason: String,
    },
}

/// One provider in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Its name.
    pub name: String,
    /// Its API.
    pub api: Api,
    /// Its base URL.
    pub base_url: String,
    /// Its key, inline (prefer `api_key_env`).
    pub api_key: Option<Secret>,
    /// The environment variable holding its key.
    pub api_key_env: Option<String>,
    /// A Cloudflare AI Gateway token (`cf-aig-authorization`), inline.
    pub gateway_token: Option<Secret>,
    /// The environment variable holding that token.
    pub gateway_token_env: Option<String>,
    /// `max_tokens` for Anthropic requests that leave it unset.
    pub default_max_tokens: Option<u32>,
    /// For Chat Completions: name the output limit `max_completion_tokens`
    /// (default: yes for OpenAI itself, no for compatible servers).
    pub max_completion_tokens: Option<bool>,
}

/// One step of a route.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepEntry {
    /// The provider's name.
    pub provider: String,
    /// The model id to ask it for.
    pub model: String,
}

/// One arm of a split.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmEntry {
    /// The route it sends to.
    pub route: String,
    /// Its weight.
    pub weight: u32,
}

/// One conditional rule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenEntry {
    /// Matches these users.
    #[serde(default)]
    pub users: Vec<String>,
    /// Matches calls whose metadata holds all these pairs.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The route it sends to.
    pub route: String,
}

/// A route: a fallback chain, a split, or conditional rules.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// A fallback chain.
    #[serde(default)]
    pub steps: Vec<StepEntry>,
    /// A weighted split between other routes.
    #[serde(default)]
    pub split: Vec<ArmEntry>,
    /// Whether a split keeps each user on one arm.
    #[serde(default)]
    pub sticky: bool,
    /// Conditional rules, tried in order.
    #[serde(default)]
    pub when: Vec<WhenEntry>,
    /// The route for calls no rule matches.
    pub otherwise: Option<String>,
}

/// Cache settings in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheEntry {
    /// The default TTL (unset: cache only calls that ask).
    #[serde(default, with = "optional_duration")]
    pub ttl: Option<Duration>,
    /// The memory bound.
    pub max_bytes: Option<usize>,
    /// How long an identical call waits for the first caller's answer.
    #[serde(default, with = "optional_duration")]
    pub wait_limit: Option<Duration>,
}

/// Budget settings in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetEntry {
    /// The daily cap in US dollars.
    pub daily_usd: Option<f64>,
    /// The monthly cap in US dollars.
    pub monthly_usd: Option<f64>,
    /// The model to use past a cap (unset: refuse).
    pub downgrade_to: Option<String>,
    /// The price of models not in the price table (unset: such models are
    /// refused while a budget is set).
    pub default_price: Option<crate::pricing::Price>,
    /// Output tokens a call reserves when it sets no `max_tokens` (1024).
    pub output_estimate_tokens: Option<u64>,
}

impl BudgetEntry {
    /// What to do past a cap.
    pub fn over_budget(&self) -> OverBudget {
        match &self.downgrade_to {
            Some(model) => OverBudget::Downgrade(model.clone()),
            None => OverBudget::Reject,
        }
    }
}

/// Retry settings in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryEntry {
    /// Attempts in all.
    pub max_attempts: Option<u32>,
    /// The first backoff delay.
    #[serde(default, with = "optional_duration")]
    pub base_delay: Option<Duration>,
    /// The longest backoff delay.
    #[serde(default, with = "optional_duration")]
    pub max_delay: Option<Duration>,
    /// The longest `retry-after` worth waiting for.
    #[serde(default, with = "optional_duration")]
    pub max_retry_after: Option<Duration>,
}

/// Timeouts in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsEntry {
    /// Time to first token.
    #[serde(default, with = "optional_duration")]
    pub first_token: Option<Duration>,
    /// One attempt.
    #[serde(default, with = "optional_duration")]
    pub attempt: Option<Duration>,
    /// The whole call: every retry and fallback step, and the stream.
    #[serde(default, with = "optional_duration")]
    pub total: Option<Duration>,
}

/// Analytics settings in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsEntry {
    /// Records kept in memory.
    pub ring: Option<usize>,
    /// A JSONL file to append records to.
    pub jsonl: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The providers.
    #[serde(default)]
    pub providers: Vec<ProviderEntry>,
    /// Named routes.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteEntry>,
    /// The route used when a call names no model.
    pub default_route: Option<String>,
    /// Retries (per step).
    #[serde(default)]
    pub retry: RetryEntry,
    /// Timeouts (per step).
    #[serde(default)]
    pub timeouts: TimeoutsEntry,
    /// The cache (off unless `ttl` is set or calls ask).
    #[serde(default)]
    pub cache: CacheEntry,
    /// Rate limits.
    #[serde(default)]
    pub rate_limits: Vec<Limit>,
    /// Spending caps.
    pub budget: Option<BudgetEntry>,
    /// Prices, added to (and overriding) the published ones.
    #[serde(default)]
    pub prices: PriceTable,
    /// Analytics sinks.
    #[serde(default)]
    pub analytics: AnalyticsEntry,
}

impl GatewayConfig {
    /// Parses a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text)
            .map_err(|err| ConfigError::File(molt_core::config::describe_toml_error(text, &err)))
    }

    /// The retry policy, defaults filled in.
    pub fn retry_policy(&self) -> RetryPolicy {
        let default = RetryPolicy::default();
        RetryPolicy {
            max_attempts: self
                .retry
                .max_attempts
                .unwrap_or(default.max_attempts)
                .max(1),
            base_delay: self.retry.base_delay.unwrap_or(default.base_delay),
            max_delay: self.retry.max_delay.unwrap_or(default.max_delay),
            max_retry_after: self
                .retry
                .max_retry_after
                .unwrap_or(default.max_retry_after),
        }
    }

    /// The timeouts, defaults filled in (first token 60 s, attempt 10 min, total 15 min).
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            first_token: Some(self.timeouts.first_token.unwrap_or(Duration::from_secs(60))),
            attempt: Some(self.timeouts.attempt.unwrap_or(Duration::from_secs(600))),
            total: Some(self.timeouts.total.unwrap_or(Duration::from_secs(900))),
        }
    }

    /// Adds providers and a `default` route from the environment variables
    /// Moltworker users set, unless the file already names those providers:
    /// `ANTHROPIC_API_KEY` (+ `ANTHROPIC_BASE_URL`), `OPENAI_API_KEY`
    /// (+ `OPENAI_BASE_URL`), `AI_GATEWAY_API_KEY` + `AI_GATEWAY_BASE_URL`
    /// (legacy; a URL ending in `/openai` means OpenAI, else Anthropic), and
    /// `CLOUDFLARE_AI_GATEWAY_API_KEY` + `CF_AI_GATEWAY_ACCOUNT_ID` +
    /// `CF_AI_GATEWAY_GATEWAY_ID` with `CF_AI_GATEWAY_MODEL` (`provider/model`,
    /// default `anthropic/claude-sonnet-4-5`). `MOLT_MODEL` overrides the
    /// default route's first model id.
    pub fn add_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        let var = |name: &str| {
            env(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let mut steps = Vec::new();
        let mut add = |config: &mut Self, entry: ProviderEntry, model: &str| {
            if !config
                .providers
                .iter()
                .any(|known| known.name == entry.name)
            {
                steps.push(StepEntry {
                    provider: entry.name.clone(),
                    model: model.to_string(),
                });
                config.providers.push(entry);
            }
        };
        let provider = |name: &str, api: Api, base_url: String, key: String| ProviderEntry {
            name: name.into(),
            api,
            base_url,
            api_key: Some(Secret::new(key)),
            api_key_env: None,
            gateway_token: None,
            gateway_token_env: None,
            default_max_tokens: None,
            max_completion_tokens: None,
        };
        if let (Some(key), Some(account), Some(gateway)) = (
            var("CLOUDFLARE_AI_GATEWAY_API_KEY"),
            var("CF_AI_GATEWAY_ACCOUNT_ID"),
            var("CF_AI_GATEWAY_GATEWAY_ID"),
        ) {
            let target =
                var("CF_AI_GATEWAY_MODEL").unwrap_or_else(|| "anthropic/claude-sonnet-4-5".into());
            let (gateway_provider, model) = target
                .split_once('/')
                .unwrap_or(("anthropic", target.as_str()));
            let (config, model) = ProviderConfig::cloudflare_ai_gateway(
                &account,
                &gateway,
                gateway_provider,
                model,
                None,
            );
            let mut entry = provider(&config.name, config.api, config.base_url, key);
            entry.max_completion_tokens = Some(config.max_completion_tokens);
            add(self, entry, &model);
        }
        if let (Some(key), Some(base)) = (var("AI_GATEWAY_API_KEY"), var("AI_GATEWAY_BASE_URL")) {
            let base = base.trim_end_matches('/').to_string();
            if base.ends_with("/openai") {
                add(self, provider("openai", Api::OpenAi, base, key), "gpt-4o");
            } else {
                add(
                    self,
                    provider("anthropic", Api::Anthropic, base, key),
                    "claude-sonnet-4-5",
                );
            }
        }
        if let Some(key) = var("ANTHROPIC_API_KEY") {
            let base =
                var("ANTHROPIC_BASE_URL").unwrap_or_else(|| "https://api.anthropic.com".into());
            add(
                self,
                provider("anthropic", Api::Anthropic, base, key),
                "claude-sonnet-4-5",
            );
        }
        if let Some(key) = var("OPENAI_API_KEY") {
            let base = var("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".into());
            add(self, provider("openai", Api::OpenAi, base, key), "gpt-4o");
        }
        if let (Some(model), Some(first)) = (var("MOLT_MODEL"), steps.first_mut()) {
            first.model = model;
        }
        if !steps.is_empty() && !self.routes.contains_key("default") {
            self.routes.insert(
                "default".into(),
                RouteEntry {
                    steps,
                    split: vec![],
                    sticky: false,
                    when: vec![],
                    otherwise: None,
                },
            );
            self.default_route.get_or_insert_with(|| "default".into());
        }
    }

    /// Whether any provider is configured.
    pub fn has_providers(&self) -> bool {
        !self.providers.is_empty()
    }
}

/// Durations written as `250ms`, `30s`, `5m`, `1h`, `1d`, or a number of seconds.
pub mod duration {
    use serde::{Deserialize, Deserializer, de::Error};
    use std::time::Duration;

    /// Parses `250ms`, `30s`, `5m`, `1h`, `1d` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("not a duration: {text:?}"))?;
        let seconds = match unit.trim() {
            "ms" => value / 1000.0,
            "" | "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86_400.0,
            other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
        };
        Duration::try_from_secs_f64(seconds).map_err(|err| format!("{text:?}: {err}"))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(crate) enum Raw {
        Seconds(f64),
        Text(String),
    }

    impl Raw {
        pub(crate) fn into_duration(self) -> Result<Duration, String> {
            match self {
                Raw::Seconds(seconds) => {
                    Duration::try_from_secs_f64(seconds).map_err(|err| err.to_string())
                }
                Raw::Text(text) => parse(&text),
            }
        }
    }

    /// Deserializes a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Raw::deserialize(deserializer)?
            .into_duration()
            .map_err(D::Error::custom)
    }
}

mod optional_duration {
    use super::duration::Raw;
    use serde::{Deserialize, Deserializer, de::Error};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Raw>::deserialize(deserializer)?
            .map(|raw| raw.into_duration().map_err(D::Error::custom))
            .transpose()
    }
}
