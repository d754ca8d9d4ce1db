//! The required-environment check: before anything reaches a container, the
//! Worker tells the operator, by name, each secret still to set (as
//! Moltworker does): JSON for API clients, a page for browsers.

use crate::pages;
use crate::settings::{InvalidVar, Settings, value};
use serde_json::json;
use worker::{Env, Response, Result};

/// The model providers, any one of which is enough (each a set of variables).
const MODEL_PROVIDERS: &[&[&str]] = &[
    &["ANTHROPIC_API_KEY"],
    &["OPENAI_API_KEY"],
    &["AI_GATEWAY_API_KEY", "AI_GATEWAY_BASE_URL"],
    &[
        "CLOUDFLARE_AI_GATEWAY_API_KEY",
        "CF_AI_GATEWAY_ACCOUNT_ID",
        "CF_AI_GATEWAY_GATEWAY_ID",
    ],
];

/// What the deployment still lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvReport {
    /// Each missing secret or variable, by name (a model provider as one
    /// entry naming the alternatives).
    pub missing: Vec<String>,
    /// Variables set to something unusable.
    pub invalid: Vec<InvalidVar>,
}

impl EnvReport {
    /// Whether the Worker can serve.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.invalid.is_empty()
    }
}

/// Checks `env`: the gateway token, Cloudflare Access (unless `DEV_MODE`),
/// and one model provider.
pub fn check(env: &Env, settings: Result<&Settings, &InvalidVar>) -> EnvReport {
    let is_set = |name: &str| value(env, name).is_some();
    let mut report = EnvReport::default();
    let dev_mode = settings.map(|s| s.dev_mode).unwrap_or(false);
    let mut required = vec!["MOLTBOT_GATEWAY_TOKEN"];
    if !dev_mode {
        required.extend(["CF_ACCESS_TEAM_DOMAIN", "CF_ACCESS_AUD"]);
    }
    report.missing = (required.into_iter())
        .filter(|name| !is_set(name))
        .map(str::to_owned)
        .collect();
    if !(MODEL_PROVIDERS.iter()).any(|provider| provider.iter().all(|name| is_set(name))) {
        report.missing.push(
            "ANTHROPIC_API_KEY (or OPENAI_API_KEY, AI_GATEWAY_API_KEY + AI_GATEWAY_BASE_URL, or CLOUDFLARE_AI_GATEWAY_API_KEY + CF_AI_GATEWAY_ACCOUNT_ID + CF_AI_GATEWAY_GATEWAY_ID)"
                .to_owned(),
        );
    }
    if let Err(invalid) = settings {
        report.invalid.push(invalid.clone());
    }
    report
}

/// The 503 that names what is missing: a page for a browser, JSON otherwise.
pub fn refusal(report: &EnvReport, wants_html: bool) -> Result<Response> {
    let invalid: Vec<String> = report.invalid.iter().map(ToString::to_string).collect();
    let response = if wants_html {
        Response::from_html(pages::config_error(&report.missing, &invalid))?
    } else {
        Response::from_json(&json!({
            "error": "Configuration error",
            "message": "Required environment variables are not configured",
            "missing": report.missing,
            "invalid": invalid,
            "hint": "Set these using: wrangler secret put <VARIABLE_NAME>",
        }))?
    };
    Ok(response.with_status(503))
}
