//! What the Worker reads from its environment (`wrangler.jsonc` variables and
//! `wrangler secret put` secrets), with the names Moltworker's users already set.

use crate::users::Users;
use molt_core::Secret;
use molt_core::access::AccessConfig;
use molt_core::config::{SleepAfter, parse_bool, parse_sleep_after};
use worker::Env;
use worker::wasm_bindgen::JsValue;

/// The port the gateway listens on inside its container.
pub const GATEWAY_PORT: u16 = 18789;

/// The Durable Object binding of the sandboxes (one per user).
pub const SANDBOX_BINDING: &str = "Sandbox";

/// The Browser Rendering binding behind `/cdp`.
pub const BROWSER_BINDING: &str = "BROWSER";

/// The value of variable or secret `name`, trimmed; `None` when unset or empty.
pub fn value(env: &Env, name: &str) -> Option<String> {
    let env: &JsValue = env.as_ref();
    let value = worker::js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    let value = value.as_string()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// A variable that is set but cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct InvalidVar {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with it (never its value).
    pub reason: String,
}

/// The Worker's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DEV_MODE=true`: Cloudflare Access is not required (local development).
    pub dev_mode: bool,
    /// Cloudflare Access (`CF_ACCESS_TEAM_DOMAIN`, `CF_ACCESS_AUD`).
    pub access: Option<AccessConfig>,
    /// Where the Access signing keys are read (`MOLT_ACCESS_CERTS_URL`, for
    /// tests; the team's certs URL otherwise).
    pub access_certs_url: Option<String>,
    /// The `/cdp` secret (`CDP_SECRET`).
    pub cdp_secret: Option<Secret>,
    /// The Worker's public URL (`WORKER_URL`), for the container's browser
    /// tools and channel webhooks.
    pub worker_url: Option<String>,
    /// When an idle sandbox sleeps (`SANDBOX_SLEEP_AFTER`).
    pub sleep_after: SleepAfter,
    /// Who gets which sandbox (`MOLT_USERS`, `MOLT_DEFAULT_USER`).
    pub users: Users,
    /// A local stand-in for Cloudflare Containers (`MOLT_DEV_CONTAINER_LAUNCHER`,
    /// development and tests only): where sandboxes start their gateway
    /// when the runtime has no containers.
    pub container_launcher: Option<String>,
}

impl Settings {
    /// Reads the settings; a variable that is set but unusable is an error
    /// naming it.
    pub fn from_env(env: &Env) -> Result<Self, InvalidVar> {
        let get = |name| value(env, name);
        let invalid = |var: &'static str| move |reason: String| InvalidVar { var, reason };
        let dev_mode = match get("DEV_MODE") {
            Some(text) => parse_bool(&text).map_err(invalid("DEV_MODE"))?,
            None => false,
        };
        let access = match (get("CF_ACCESS_TEAM_DOMAIN"), get("CF_ACCESS_AUD")) {
            (Some(team), Some(audience)) => Some(AccessConfig::new(&team, &audience)),
            _ => None,
        };
        let sleep_after = match get("SANDBOX_SLEEP_AFTER") {
            Some(text) => parse_sleep_after(&text).map_err(invalid("SANDBOX_SLEEP_AFTER"))?,
            None => SleepAfter::Never,
        };
        let users = Users::parse(
            get("MOLT_DEFAULT_USER").as_deref(),
            get("MOLT_USERS").as_deref(),
        )
        .map_err(|err| InvalidVar {
            var: err.var(),
            reason: err.to_string(),
        })?;
        let worker_url = get("WORKER_URL").map(|url| {
            let url = url.trim_end_matches('/');
            if url.contains("://") {
                url.to_owned()
            } else {
                format!("https://{url}")
            }
        });
        Ok(Self {
            dev_mode,
            access,
            access_certs_url: get("MOLT_ACCESS_CERTS_URL"),
            cdp_secret: get("CDP_SECRET").map(Secret::new),
            worker_url,
            sleep_after,
            users,
            container_launcher: get("MOLT_DEV_CONTAINER_LAUNCHER"),
        })
    }
}

/// The secrets and variables passed into every container, by name, when set.
pub const CONTAINER_ENV: &[&str] = &[
    "MOLTBOT_GATEWAY_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AI_GATEWAY_API_KEY",
    "AI_GATEWAY_BASE_URL",
    "CLOUDFLARE_AI_GATEWAY_API_KEY",
    "CF_AI_GATEWAY_ACCOUNT_ID",
    "CF_AI_GATEWAY_GATEWAY_ID",
    "CF_AI_GATEWAY_MODEL",
    "MOLT_MODEL",
    "CF_ACCESS_TEAM_DOMAIN",
    "CF_ACCESS_AUD",
    "MOLT_ACCESS_CERTS_URL",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "R2_BUCKET_NAME",
    "CF_ACCOUNT_ID",
    "S3_ENDPOINT",
    "S3_REGION",
    "MOLT_BACKUP_KEY",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE",
    "TELEGRAM_DM_POLICY",
    "TELEGRAM_DM_ALLOW_FROM",
    "TELEGRAM_GROUP_POLICY",
    "TELEGRAM_GROUP_ALLOW_FROM",
    "TELEGRAM_GROUP_SENDERS",
    "DISCORD_BOT_TOKEN",
    "DISCORD_API_BASE",
    "DISCORD_DM_POLICY",
    "DISCORD_DM_ALLOW_FROM",
    "DISCORD_GROUP_POLICY",
    "DISCORD_GROUP_ALLOW_FROM",
    "DISCORD_GROUP_SENDERS",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_BASE",
    "SLACK_DM_POLICY",
    "SLACK_DM_ALLOW_FROM",
    "SLACK_GROUP_POLICY",
    "SLACK_GROUP_ALLOW_FROM",
    "SLACK_GROUP_SENDERS",
    "CDP_SECRET",
    "WORKER_URL",
    "SANDBOX_SLEEP_AFTER",
    "DEBUG_ROUTES",
    "MOLT_SESSION_SCOPE",
    "MOLT_LOG",
    "MOLT_EGRESS_ALLOW_HOSTS",
    "MOLT_EGRESS_DENY_HOSTS",
    "MOLT_EGRESS_ALLOW_NETWORKS",
];

/// The values that must never reach a log line, an error page or a response.
pub fn secret_values(env: &Env) -> Vec<String> {
    CONTAINER_ENV
        .iter()
        .filter(|name| is_secret(name))
        .filter_map(|name| value(env, name))
        .filter(|value| value.len() >= 6)
        .collect()
}

/// Whether `name` configures a chat channel (only the default sandbox gets those).
pub fn is_channel_var(name: &str) -> bool {
    ["TELEGRAM_", "DISCORD_", "SLACK_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

fn is_secret(name: &str) -> bool {
    ["TOKEN", "KEY", "SECRET", "PASSWORD"]
        .iter()
        .any(|part| name.contains(part))
}

/// `text` with every secret value replaced by `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "[redacted]")
    })
}
