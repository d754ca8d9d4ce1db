//! `moltworker devices`: list, approve, reject and remove the devices that
//! OpenClaw clients pair, on the state directory a running gateway uses.
//!
//! The gateway reads device decisions from its state on every connect, so a
//! decision taken here counts at once; a removed device's open connections
//! close at the gateway's next check of them (every 30 s).

use crate::platform::TokioPlatform;
use molt_core::devices::{DeviceBook, DevicesError};
use molt_core::store::StoreError;
use molt_storage::LocalFileStore;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// The usage line of the `devices` command.
pub const USAGE: &str = "moltworker devices list | approve <requestId> | approve-all | reject <requestId> | remove <deviceId>";

/// Why a `devices` command failed.
#[derive(Debug, thiserror::Error)]
pub enum DevicesCommandError {
    /// The command line is not one of [`USAGE`]'s forms.
    #[error("unknown devices command {0:?}; usage: {USAGE}")]
    Usage(String),
    /// The request or device is unknown, or the state could not be changed.
    #[error(transparent)]
    Devices(#[from] DevicesError),
    /// The state could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state directory does not exist.
    #[error(
        "no gateway state in {} (set MOLT_STATE_DIR to the gateway's state directory)",
        .0.display()
    )]
    NoState(std::path::PathBuf),
}

impl DevicesCommandError {
    /// The process exit code: 2 for a usage error, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DevicesCommandError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs `devices <args>` on the state in `state_dir`; returns what to print.
pub async fn command(state_dir: &Path, args: &[&str]) -> Result<String, DevicesCommandError> {
    if !state_dir.is_dir() {
        return Err(DevicesCommandError::NoState(state_dir.to_owned()));
    }
    let platform = TokioPlatform::platform();
    let book = DeviceBook::new(
        Arc::new(LocalFileStore::new(state_dir)),
        platform.clock,
        platform.entropy,
    );
    match args {
        ["list"] => list(&book).await,
        ["approve", request_id] => {
            let device = book.approve(request_id, None).await?;
            Ok(format!(
                "approved device {}: it may connect now\n",
                device.device_id
            ))
        }
        ["approve-all"] => {
            let mut out = String::new();
            for request in book.pending().await? {
                match book.approve(&request.request_id, None).await {
                    Ok(device) => writeln!(out, "approved device {}", device.device_id),
                    Err(err) => writeln!(out, "could not approve {}: {err}", request.request_id),
                }
                .expect("writing to a string");
            }
            Ok(if out.is_empty() {
                "no pending devices\n".to_owned()
            } else {
                out
            })
        }
        ["reject", request_id] => {
            let request = book.reject(request_id).await?;
            Ok(format!("rejected device {}\n", request.device_id))
        }
        ["remove", device_id] => {
            book.remove(device_id).await?;
            Ok(format!("removed device {device_id}: it must pair again\n"))
        }
        _ => Err(DevicesCommandError::Usage(args.join(" "))),
    }
}

/// Pending requests (with the command that approves each) and paired devices.
async fn list(book: &DeviceBook) -> Result<String, DevicesCommandError> {
    let mut out = String::new();
    let pending = book.pending().await?;
    if pending.is_empty() {
        out.push_str("no pending devices\n");
    } else {
        out.push_str("pending devices:\n");
    }
    for request in pending {
        let _ = writeln!(
            out,
            "  {id}  {client} ({mode}, {platform}), role {role}, scopes [{scopes}], from {ip}\n    approve: moltworker devices approve {request}",
            id = request.device_id,
            client = request.meta.client_id.escape_debug(),
            mode = request.meta.client_mode.escape_debug(),
            platform = request
                .meta
                .platform
                .as_deref()
                .unwrap_or("?")
                .escape_debug(),
            role = request.role.escape_debug(),
            scopes = request.scopes.join(", ").escape_debug(),
            ip = request.meta.remote_ip.as_deref().unwrap_or("?"),
            request = request.request_id,
        );
    }
    let paired = book.paired().await?;
    if !paired.is_empty() {
        out.push_str("paired devices:\n");
    }
    for device in paired {
        let _ = writeln!(
            out,
            "  {id}  {client}, roles [{roles}], scopes [{scopes}]",
            id = device.device_id,
            client = device.meta.client_id.escape_debug(),
            roles = device.roles.join(", ").escape_debug(),
            scopes = device.scopes.join(", ").escape_debug(),
        );
    }
    Ok(out)
}
