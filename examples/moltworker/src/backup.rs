//! State backup to R2 (or any S3-compatible bucket): the mirror that runs
//! beside the gateway, and the `backup` and `restore` subcommands.

use molt_core::Secret;
use molt_storage::S3Config;
use molt_storage::mirror::{BackupKey, MirrorOptions, StateMirror};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// The mirror of `state_dir` into the bucket named by the environment, or
/// `None` when no R2 credentials are set (local-only).
pub fn mirror_from_env(
    state_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Arc<StateMirror>>, String> {
    let Some(config) = S3Config::from_env(&env).map_err(|err| err.to_string())? else {
        return Ok(None);
    };
    let remote = config.object_store().map_err(|err| err.to_string())?;
    let mut options = MirrorOptions::default();
    if let Some(prefix) = env("MOLT_BACKUP_PREFIX").filter(|prefix| !prefix.trim().is_empty()) {
        options.prefix = prefix;
    }
    if let Some(key) = env("MOLT_BACKUP_KEY").filter(|key| !key.trim().is_empty()) {
        let key = BackupKey::from_base64(&Secret::new(key))
            .map_err(|err| format!("MOLT_BACKUP_KEY: {err}"))?;
        options.key = Some(key);
    }
    tracing::info!(bucket = %config.bucket, endpoint = %config.endpoint, prefix = %options.prefix, encrypted = options.key.is_some(), "state is mirrored to the bucket");
    Ok(Some(Arc::new(StateMirror::new(state_dir, remote, options))))
}

/// The storage part of the status document.
pub fn status(mirror: Option<&StateMirror>) -> Value {
    match mirror {
        None => {
            json!({ "mode": "local", "note": "No bucket is configured: state lives on this machine only. Set R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID to mirror it to R2." })
        }
        Some(mirror) => json!({ "mode": "mirrored", "mirror": mirror.status() }),
    }
}

/// Runs `moltworker backup now|status` or `moltworker restore [--at N]`;
/// prints a JSON report to stdout.
pub async fn command(state_dir: &Path, args: &[String]) -> Result<(), String> {
    let mirror = mirror_from_env(state_dir, |name| std::env::var(name).ok())?
        .ok_or("no bucket is configured: set R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID (or S3_ENDPOINT)")?;
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = match words.as_slice() {
        ["backup", "now"] => {
            serde_json::to_value(mirror.backup_now().await.map_err(|err| err.to_string())?)
        }
        ["backup", "status"] => {
            let snapshots = mirror.manifests().await.map_err(|err| err.to_string())?;
            Ok(json!({ "snapshots": snapshots, "newest": snapshots.last() }))
        }
        ["restore"] => {
            serde_json::to_value(mirror.restore(None).await.map_err(|err| err.to_string())?)
        }
        ["restore", "--at", seq] => {
            let seq: u64 = seq
                .parse()
                .map_err(|_| format!("--at takes a snapshot number, not {seq:?}"))?;
            serde_json::to_value(
                mirror
                    .restore(Some(seq))
                    .await
                    .map_err(|err| err.to_string())?,
            )
        }
        _ => {
            return Err(format!(
                "unknown command {:?}: use `backup now`, `backup status` or `restore [--at N]`",
                words.join(" ")
            ));
        }
    };
    println!("{}", report.map_err(|err| err.to_string())?);
    Ok(())
}
