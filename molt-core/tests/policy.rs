//! DM policies, pairing codes and group mention gating.

mod support;

use molt_core::message::ChatKind;
use molt_core::policy::*;
use molt_core::store::MemoryStore;
use std::sync::Arc;
use std::time::Duration;
use support::{block_on_within, dm, platform};

const LIMIT: Duration = Duration::from_secs(10);

fn book(store: &Arc<MemoryStore>, platform: &molt_core::platform::Platform) -> PairingBook {
    PairingBook::new(
        store.clone(),
        platform.clock.clone(),
        platform.entropy.clone(),
    )
}

fn pairing_policy() -> ChannelPolicy {
    ChannelPolicy {
        dm_policy: DmPolicy::Pairing,
        ..ChannelPolicy::default()
    }
}

#[test]
fn unknown_sender_gets_one_code_that_expires() {
    let (platform, clock) = platform();
    let store = Arc::new(MemoryStore::new());
    let pairing = book(&store, &platform);
    block_on_within(LIMIT, async {
        let verdict = evaluate(
            &pairing_policy(),
            &pairing,
            &dm("telegram", "alice", "1", "hi"),
        )
        .await
        .unwrap();
        let Verdict::ReplyPairingCode(code) = verdict else {
            panic!("expected a code, got {verdict:?}")
        };
        assert_eq!(code.len(), 8);
        assert!(
            code.bytes().all(|b| PAIRING_ALPHABET.contains(&b)),
            "{code}"
        );
        assert!(!code.contains(['0', 'O', '1', 'I']));

        // A second message while the code is valid gets no second reply.
        let again = evaluate(
            &pairing_policy(),
            &pairing,
            &dm("telegram", "alice", "2", "hello?"),
        )
        .await
        .unwrap();
        assert_eq!(again, Verdict::Ignore(IgnoreReason::PairingPending));

        // After an hour the code is gone and a new one is issued.
        clock.advance(PAIRING_CODE_TTL + Duration::from_secs(1));
        assert!(pairing.pending("telegram").await.unwrap().is_empty());
        assert!(matches!(
            pairing.approve("telegram", &code).await,
            Err(PairingError::UnknownCode(_))
        ));
        let renewed = evaluate(
            &pairing_policy(),
            &pairing,
            &dm("telegram", "alice", "3", "hi"),
        )
        .await
        .unwrap();
        assert!(matches!(renewed, Verdict::ReplyPairingCode(new) if new != code));
    });
}

#[test]
fn at_most_three_pending_per_channel() {
    let (platform, _) = platform();
    let pairing = book(&Arc::new(MemoryStore::new()), &platform);
    block_on_within(LIMIT, async {
        for sender in ["a", "b", "c"] {
            assert!(matches!(
                pairing.request("telegram", sender, None).await.unwrap(),
                PairingRequest::Issued(_)
            ));
        }
        assert_eq!(
            pairing.request("telegram", "d", None).await.unwrap(),
            PairingRequest::Full
        );
        // Another channel has its own limit.
        assert!(matches!(
            pairing.request("discord", "d", None).await.unwrap(),
            PairingRequest::Issued(_)
        ));
    });
}

#[test]
fn approve_and_reject_persist_across_restart() {
    let (platform, _) = platform();
    let store = Arc::new(MemoryStore::new());
    block_on_within(LIMIT, async {
        let pairing = book(&store, &platform);
        let PairingRequest::Issued(alice) = pairing
            .request("telegram", "alice", Some("Alice"))
            .await
            .unwrap()
        else {
            panic!()
        };
        let PairingRequest::Issued(bob) = pairing.request("telegram", "bob", None).await.unwrap()
        else {
            panic!()
        };
        let PairingRequest::Issued(carol) =
            pairing.request("telegram", "carol", None).await.unwrap()
        else {
            panic!()
        };

        // Codes are accepted in lower case too.
        assert_eq!(
            pairing
                .approve("telegram", &alice.to_lowercase())
                .await
                .unwrap(),
            "alice"
        );
        assert_eq!(pairing.reject("telegram", &bob).await.unwrap(), "bob");
        assert!(matches!(
            pairing.approve("telegram", &bob).await,
            Err(PairingError::UnknownCode(_))
        ));

        // A fresh book over the same store (a restart) sees the same state.
        let restarted = book(&store, &platform);
        assert!(restarted.is_approved("telegram", "alice").await.unwrap());
        assert!(!restarted.is_approved("telegram", "bob").await.unwrap());
        assert!(!restarted.is_approved("discord", "alice").await.unwrap());
        let pending = restarted.pending("telegram").await.unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|p| (p.sender.as_str(), p.code.as_str()))
                .collect::<Vec<_>>(),
            [("carol", carol.as_str())]
        );

        let verdict = evaluate(
            &pairing_policy(),
            &restarted,
            &dm("telegram", "alice", "9", "hi"),
        )
        .await
        .unwrap();
        assert_eq!(verdict, Verdict::Allow);
    });
}

#[test]
fn allowlist_open_and_disabled() {
    let (platform, _) = platform();
    let pairing = book(&Arc::new(MemoryStore::new()), &platform);
    block_on_within(LIMIT, async {
        let allowlist = ChannelPolicy {
            dm_policy: DmPolicy::Allowlist,
            allow_from: vec!["42".into()],
            ..ChannelPolicy::default()
        };
        assert_eq!(
            evaluate(&allowlist, &pairing, &dm("slack", "42", "1", "hi"))
                .await
                .unwrap(),
            Verdict::Allow
        );
        let stranger = evaluate(&allowlist, &pairing, &dm("slack", "7", "2", "hi"))
            .await
            .unwrap();
        assert_eq!(stranger, Verdict::Ignore(IgnoreReason::NotAllowed));
        // The allowlist policy never hands out codes.
        assert!(pairing.pending("slack").await.unwrap().is_empty());

        let open = ChannelPolicy {
            dm_policy: DmPolicy::Open,
            ..ChannelPolicy::default()
        };
        assert_eq!(
            evaluate(&open, &pairing, &dm("slack", "7", "3", "hi"))
                .await
                .unwrap(),
            Verdict::Allow
        );

        let disabled = ChannelPolicy {
            dm_policy: DmPolicy::Disabled,
            allow_from: vec!["42".into()],
            ..ChannelPolicy::default()
        };
        let verdict = evaluate(&disabled, &pairing, &dm("slack", "42", "4", "hi"))
            .await
            .unwrap();
        assert_eq!(verdict, Verdict::Ignore(IgnoreReason::DmDisabled));
    });
}

#[test]
fn groups_need_their_own_allowance_then_a_mention() {
    let (platform, _) = platform();
    let pairing = book(&Arc::new(MemoryStore::new()), &platform);
    block_on_within(LIMIT, async {
        // A stranger adds the bot to a group of theirs and mentions it.
        let mut message = dm("telegram", "7", "1", "@bot hello all");
        message.chat_kind = ChatKind::Group;
        message.chat_id = "-100".into();
        message.mentioned = true;
        let verdict = |policy: ChannelPolicy, message: molt_core::message::InboundMessage| {
            let pairing = &pairing;
            async move { evaluate(&policy, pairing, &message).await.unwrap() }
        };
        // The default: only listed groups, and none is listed.
        assert_eq!(
            verdict(ChannelPolicy::default(), message.clone()).await,
            Verdict::Ignore(IgnoreReason::GroupNotAllowed)
        );
        // Open DMs, an allowlisted or approved sender: none of it opens a group.
        let dms_open = ChannelPolicy {
            dm_policy: DmPolicy::Open,
            allow_from: vec!["*".into()],
            ..ChannelPolicy::default()
        };
        assert_eq!(
            verdict(dms_open, message.clone()).await,
            Verdict::Ignore(IgnoreReason::GroupNotAllowed)
        );
        let disabled = ChannelPolicy {
            group_policy: GroupPolicy::Disabled,
            group_allow_from: vec!["-100".into()],
            ..ChannelPolicy::default()
        };
        assert_eq!(
            verdict(disabled, message.clone()).await,
            Verdict::Ignore(IgnoreReason::GroupsDisabled)
        );

        // A listed group: answered when mentioned, in threads too.
        let listed = ChannelPolicy {
            dm_policy: DmPolicy::Disabled,
            group_allow_from: vec!["-100".into()],
            ..ChannelPolicy::default()
        };
        assert_eq!(
            verdict(listed.clone(), message.clone()).await,
            Verdict::Allow
        );
        let mut in_thread = message.clone();
        in_thread.chat_kind = ChatKind::Thread;
        assert_eq!(verdict(listed.clone(), in_thread).await, Verdict::Allow);
        let mut unmentioned = message.clone();
        unmentioned.mentioned = false;
        assert_eq!(
            verdict(listed.clone(), unmentioned.clone()).await,
            Verdict::Ignore(IgnoreReason::NotMentioned)
        );
        let ungated = ChannelPolicy {
            require_mention: false,
            ..listed.clone()
        };
        assert_eq!(verdict(ungated, unmentioned).await, Verdict::Allow);

        // A sender allowlist inside groups.
        let senders = ChannelPolicy {
            group_senders: vec!["42".into()],
            ..listed
        };
        assert_eq!(
            verdict(senders.clone(), message.clone()).await,
            Verdict::Ignore(IgnoreReason::SenderNotAllowedInGroup)
        );
        let mut owner = message.clone();
        owner.sender.id = "42".into();
        assert_eq!(verdict(senders, owner).await, Verdict::Allow);

        // Open: any group, still gated on mentions.
        let open = ChannelPolicy {
            group_policy: GroupPolicy::Open,
            ..ChannelPolicy::default()
        };
        assert_eq!(verdict(open, message).await, Verdict::Allow);
        // Group messages never create pairing requests.
        assert!(pairing.pending("telegram").await.unwrap().is_empty());
    });
}
