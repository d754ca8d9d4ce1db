//! `moltworker pairing`: list, approve and reject the pairing codes that
//! unknown senders got, on the state directory a running gateway uses.
//!
//! The gateway reads pairing decisions from its state on every message, so a
//! decision taken here counts at once, without a restart.

use crate::platform::TokioPlatform;
use molt_core::pairing::{PAIRING_CODE_TTL, PairingBook, PairingError};
use molt_core::platform::Timestamp;
use molt_core::store::StoreError;
use molt_storage::LocalFileStore;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The usage line of the `pairing` command.
pub const USAGE: &str = "moltworker pairing list | approve <channel> <code> | reject <channel> <code> | revoke <channel> <sender>";

/// Why a `pairing` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PairingCommandError {
    /// The command line is not one of [`USAGE`]'s forms.
    #[error("unknown pairing command {0:?}; usage: {USAGE}")]
    Usage(String),
    /// The code is unknown or expired, or the state could not be changed.
    #[error(transparent)]
    Pairing(#[from] PairingError),
    /// The state could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state directory does not exist (the gateway keeps its state
    /// elsewhere: set `MOLT_STATE_DIR` as it has it).
    #[error(
        "no gateway state in {} (set MOLT_STATE_DIR to the gateway's state directory)",
        .0.display()
    )]
    NoState(std::path::PathBuf),
}

impl PairingCommandError {
    /// The process exit code: 2 for a usage error, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PairingCommandError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs `pairing <args>` on the state in `state_dir`; returns what to print.
pub async fn command(state_dir: &Path, args: &[&str]) -> Result<String, PairingCommandError> {
    if !state_dir.is_dir() {
        return Err(PairingCommandError::NoState(state_dir.to_owned()));
    }
    let platform = TokioPlatform::platform();
    let book = PairingBook::new(
        Arc::new(LocalFileStore::new(state_dir)),
        platform.clock.clone(),
        platform.entropy,
    );
    match args {
        ["list"] => list(&book, platform.clock.now()).await,
        ["approve", channel, code] => {
            let sender = book.approve(channel, code).await?;
            Ok(format!(
                "approved {channel} sender {}: their next message is answered\n",
                sender.escape_debug()
            ))
        }
        ["reject", channel, code] => {
            let sender = book.reject(channel, code).await?;
            Ok(format!(
                "rejected {channel} sender {}: their code no longer counts (they may ask again)\n",
                sender.escape_debug()
            ))
        }
        ["revoke", channel, sender] => Ok(if book.revoke(channel, sender).await? {
            format!("revoked {channel} sender {sender}: they must pair again\n")
        } else {
            format!("{channel} sender {sender} was not approved; nothing changed\n")
        }),
        _ => Err(PairingCommandError::Usage(args.join(" "))),
    }
}

/// Pending requests (with the command that approves each) and approved senders.
async fn list(book: &PairingBook, now: Timestamp) -> Result<String, PairingCommandError> {
    let mut pending = String::new();
    let mut approved = String::new();
    for channel in book.channels().await? {
        for request in book.pending(&channel).await? {
            let age = elapsed(request.issued_at, now);
            let left = PAIRING_CODE_TTL.saturating_sub(age);
            let _ = writeln!(
                pending,
                "  {channel:<9} {code}  sender {sender}{name}, asked {age} ago, expires in {left}\n            approve: moltworker pairing approve {channel} {code}",
                channel = channel.escape_debug(),
                code = request.code,
                sender = request.sender.escape_debug(),
                name = display_name(request.name.as_deref()),
                age = minutes(age),
                left = minutes(left),
            );
        }
        for sender in book.approved(&channel).await? {
            let _ = writeln!(
                approved,
                "  {channel:<9} sender {id}{name}, approved {age} ago",
                channel = channel.escape_debug(),
                id = sender.sender.escape_debug(),
                name = display_name(sender.name.as_deref()),
                age = minutes(elapsed(sender.approved_at, now)),
            );
        }
    }
    let mut out = String::new();
    if pending.is_empty() {
        out.push_str("no pending pairing requests\n");
    } else {
        out.push_str("pending pairing requests:\n");
        out.push_str(&pending);
    }
    if !approved.is_empty() {
        out.push_str("approved senders:\n");
        out.push_str(&approved);
    }
    Ok(out)
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis(now.0.saturating_sub(since.0))
}

fn minutes(duration: Duration) -> String {
    match duration.as_secs() / 60 {
        0 => "under a minute".to_owned(),
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    }
}

/// A name as given by its sender, with control characters escaped so it
/// cannot steer the operator's terminal.
fn display_name(name: Option<&str>) -> String {
    name.map(|name| format!(" ({})", name.escape_debug()))
        .unwrap_or_default()
}
