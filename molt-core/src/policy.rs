//! Who may talk to the assistant: DM policies with pairing, group policies
//! with allowlists, and mention gating in groups.

use crate::message::{ChatKind, InboundMessage};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

pub use crate::pairing::{
    ApprovedSender, MAX_PENDING_PER_CHANNEL, PAIRING_ALPHABET, PAIRING_CODE_TTL, PairingBook,
    PairingError, PairingRequest, PendingPairing,
};

/// How a channel treats direct messages from people it does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; an operator approves them.
    #[default]
    Pairing,
    /// Only senders on the allowlist (or approved earlier) are answered.
    Allowlist,
    /// Everyone is answered.
    Open,
    /// Direct messages are ignored.
    Disabled,
}

impl std::str::FromStr for DmPolicy {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "pairing" => Ok(Self::Pairing),
            "allowlist" => Ok(Self::Allowlist),
            "open" => Ok(Self::Open),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "expected pairing, allowlist, open or disabled, got {other:?}"
            )),
        }
    }
}

/// How a channel treats group chats (and channels, and threads in them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    /// Only groups on the channel's group allowlist are answered.
    #[default]
    Allowlist,
    /// Every group is answered (mention gating still applies).
    Open,
    /// Group messages are ignored.
    Disabled,
}

impl std::str::FromStr for GroupPolicy {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "allowlist" => Ok(Self::Allowlist),
            "open" => Ok(Self::Open),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "expected allowlist, open or disabled, got {other:?}"
            )),
        }
    }
}

/// One channel's access rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelPolicy {
    /// Direct-message policy.
    pub dm_policy: DmPolicy,
    /// Sender ids always allowed in direct messages (`*` allows everyone).
    pub allow_from: Vec<String>,
    /// Group policy. Pairing approvals and `allow_from` never open a group.
    pub group_policy: GroupPolicy,
    /// Group chat ids answered under [`GroupPolicy::Allowlist`] (`*` allows every group).
    pub group_allow_from: Vec<String>,
    /// When not empty, only these sender ids are answered inside allowed groups.
    pub group_senders: Vec<String>,
    /// In groups, answer only when the bot is mentioned.
    pub require_mention: bool,
}

impl Default for ChannelPolicy {
    fn default() -> Self {
        Self {
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: Vec::new(),
            group_senders: Vec::new(),
            require_mention: true,
        }
    }
}

/// Why a message is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The channel's DM policy is `disabled`.
    DmDisabled,
    /// The sender is not on the allowlist.
    NotAllowed,
    /// The sender already has a pending pairing code.
    PairingPending,
    /// The channel has the most pending pairing requests it allows.
    PairingFull,
    /// The channel's group policy is `disabled`.
    GroupsDisabled,
    /// The group is not on the group allowlist.
    GroupNotAllowed,
    /// The sender is not on the group sender allowlist.
    SenderNotAllowedInGroup,
    /// A group message that does not mention the bot.
    NotMentioned,
}

/// What to do with an inbound message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give it to the agent.
    Allow,
    /// Reply with this pairing code; the message never reaches the model.
    ReplyPairingCode(String),
    /// Do not answer.
    Ignore(IgnoreReason),
}

/// The reply an unknown sender gets under the `pairing` policy.
pub fn pairing_reply(code: &str) -> String {
    format!(
        "Hi! I don't know you yet. Your pairing code is {code}. Ask my operator to approve it; it is valid for one hour."
    )
}

/// Decides what to do with `message` under `policy`, issuing a pairing code when due.
pub async fn evaluate(
    policy: &ChannelPolicy,
    pairing: &PairingBook,
    message: &InboundMessage,
) -> Result<Verdict, StoreError> {
    if message.chat_kind != ChatKind::Direct {
        return Ok(evaluate_group(policy, message));
    }
    let sender = &message.sender.id;
    Ok(match policy.dm_policy {
        DmPolicy::Disabled => Verdict::Ignore(IgnoreReason::DmDisabled),
        DmPolicy::Open => Verdict::Allow,
        _ if listed(&policy.allow_from, sender)
            || pairing.is_approved(&message.channel, sender).await? =>
        {
            Verdict::Allow
        }
        DmPolicy::Allowlist => Verdict::Ignore(IgnoreReason::NotAllowed),
        DmPolicy::Pairing => match pairing
            .request(&message.channel, sender, message.sender.name.as_deref())
            .await?
        {
            PairingRequest::Issued(code) => Verdict::ReplyPairingCode(code),
            PairingRequest::AlreadyPending => Verdict::Ignore(IgnoreReason::PairingPending),
            PairingRequest::Full => Verdict::Ignore(IgnoreReason::PairingFull),
        },
    })
}

/// Group policy, then the group and sender allowlists, then mention gating.
fn evaluate_group(policy: &ChannelPolicy, message: &InboundMessage) -> Verdict {
    let reason = match policy.group_policy {
        GroupPolicy::Disabled => Some(IgnoreReason::GroupsDisabled),
        GroupPolicy::Allowlist if !listed(&policy.group_allow_from, &message.chat_id) => {
            Some(IgnoreReason::GroupNotAllowed)
        }
        _ if !policy.group_senders.is_empty()
            && !listed(&policy.group_senders, &message.sender.id) =>
        {
            Some(IgnoreReason::SenderNotAllowedInGroup)
        }
        _ if policy.require_mention && !message.mentioned => Some(IgnoreReason::NotMentioned),
        _ => None,
    };
    reason.map_or(Verdict::Allow, Verdict::Ignore)
}

/// Whether `id` is on `list` (where `*` stands for everyone).
fn listed(list: &[String], id: &str) -> bool {
    list.iter().any(|entry| entry == "*" || entry == id)
}
