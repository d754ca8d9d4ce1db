//! The configuration in force as `config.get` shows it: what was read from
//! `molt.toml` and the environment, secrets replaced by OpenClaw's marker.

use crate::settings::{ServerSettings, SleepAfter};
use molt_core::config::Config;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What stands in for a secret (OpenClaw's redaction marker).
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// The configuration, redacted, with where it came from and its hash.
pub struct ConfigView {
    path: String,
    exists: bool,
    config: Value,
    hash: String,
}

impl ConfigView {
    /// The view of `config` and `gateway`, read from `path` (`exists`: whether the file was there).
    pub fn new(
        config: &Config,
        gateway: &ServerSettings,
        path: &std::path::Path,
        exists: bool,
    ) -> Self {
        let sleep_after = match gateway.sleep_after {
            SleepAfter::Never => "never".to_owned(),
            SleepAfter::Idle(after) => humantime::format_duration(after).to_string(),
        };
        let agent = &config.agent;
        let config = json!({
            "gateway": {
                "bind": gateway.bind.to_string(),
                "token": gateway.token.as_ref().map(|_| REDACTED),
                "debugRoutes": gateway.debug_routes,
                "sleepAfter": sleep_after,
                "maxConnections": gateway.max_connections,
                "headerReadTimeoutSecs": gateway.header_read_timeout_secs,
            },
            "agent": {
                "systemPrompt": agent.system_prompt,
                "maxSteps": agent.max_steps,
                "runTimeoutSecs": agent.run_timeout_secs,
                "historyTokenBudget": agent.history_token_budget,
                "keepRecentMessages": agent.keep_recent_messages,
            },
            "sessionScope": config.session_scope,
            "channels": config.channels,
        });
        let hash = hex(&Sha256::digest(config.to_string().as_bytes()));
        Self {
            path: path.display().to_string(),
            exists,
            config,
            hash,
        }
    }

    /// `config.get`'s answer, in OpenClaw's snapshot shape.
    pub fn snapshot(&self) -> Value {
        json!({
            "path": self.path, "exists": self.exists, "valid": true,
            "raw": null, "parsed": null,
            "config": self.config, "runtimeConfig": self.config,
            "sourceConfig": self.config, "resolved": self.config,
            "hash": self.hash, "configRevisionHash": self.hash, "appliedConfigHash": self.hash,
            "issues": [], "warnings": [], "legacyIssues": [],
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
