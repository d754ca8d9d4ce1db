//! Restoring from a bucket written by Cloudflare's Moltworker, which copies
//! directories with rclone: `openclaw/` (the OpenClaw config directory),
//! `workspace/` and `skills/`, or, from its Moltbot days, `clawdbot/` and a
//! bare `clawdbot.json` at the bucket root.

/// Where a legacy prefix lands in the state directory.
pub(super) struct LegacySource {
    /// The prefix in the bucket (at its root, not under the mirror's prefix).
    pub prefix: &'static str,
    /// The directory it lands in.
    pub target: &'static str,
}

/// The config directory, newest name first: the first one present is used.
pub(super) const CONFIG_SOURCES: [LegacySource; 2] = [
    LegacySource {
        prefix: "openclaw/",
        target: "openclaw/",
    },
    LegacySource {
        prefix: "clawdbot/",
        target: "openclaw/",
    },
];

/// The other directories, each restored when present.
pub(super) const OTHER_SOURCES: [LegacySource; 2] = [
    LegacySource {
        prefix: "workspace/",
        target: "workspace/",
    },
    LegacySource {
        prefix: "skills/",
        target: "workspace/skills/",
    },
];

/// The oldest layout: the config file alone at the bucket root.
pub(super) const BARE_CONFIG: &str = "clawdbot.json";

/// The config file's names, old and new: `clawdbot.json` becomes `openclaw.json`.
pub(super) const OLD_CONFIG_NAME: &str = "openclaw/clawdbot.json";
pub(super) const NEW_CONFIG_NAME: &str = "openclaw/openclaw.json";
