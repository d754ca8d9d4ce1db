//! Device pairing: requests, approval, device tokens (issued, reused,
//! rotated, revoked), and OpenClaw's scope rules; a second book on the same
//! store (another process) sees every decision at once.

mod support;

use futures::executor::block_on;
use molt_core::devices::{
    DeviceBook, DeviceMeta, DevicesError, MAX_PENDING, PENDING_TTL, Standing, TokenRefusal,
    scopes_satisfied,
};
use molt_core::store::MemoryStore;
use std::sync::Arc;
use std::time::Duration;
use support::platform;

const ID: &str = "2bbb30c389e9dd646cdb0e59cd2ca0c7c516e9e630a649fb841c87fe594517f3";
const KEY: &str = "22_36lFRpO-BKdghWBbx6nJ3RqCGANO36t9MO06jGRc";

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn meta() -> DeviceMeta {
    DeviceMeta {
        client_id: "gateway-client".into(),
        client_mode: "backend".into(),
        platform: Some("linux".into()),
        ..DeviceMeta::default()
    }
}

#[test]
fn a_device_is_requested_approved_and_given_a_token_for_its_role() {
    let (platform, _clock) = platform();
    let store = Arc::new(MemoryStore::new());
    let book = DeviceBook::new(
        store.clone(),
        platform.clock.clone(),
        platform.entropy.clone(),
    );
    let rw = scopes(&["operator.read", "operator.write"]);
    let standing = block_on(book.standing(ID, KEY, "operator", &rw)).unwrap();
    assert_eq!(standing, Standing::NotPaired { repair: false });

    let request = block_on(book.request(ID, KEY, "operator", &rw, meta())).unwrap();
    let again = block_on(book.request(ID, KEY, "operator", &rw, meta())).unwrap();
    assert_eq!(
        again.request_id, request.request_id,
        "one request per device"
    );
    assert_eq!(request.request_id.len(), 36);
    assert_eq!(block_on(book.pending()).unwrap(), [again]);

    // Another process on the same state approves; this one sees it at once.
    let other = DeviceBook::new(store, platform.clock.clone(), platform.entropy.clone());
    let paired = block_on(other.approve(&request.request_id, None)).unwrap();
    assert!(block_on(book.pending()).unwrap().is_empty());
    let token = paired.tokens["operator"].token.clone();
    assert_eq!(token.len(), 43, "32 bytes, base64url");
    assert!(matches!(
        block_on(book.standing(ID, KEY, "operator", &rw)).unwrap(),
        Standing::Paired(_)
    ));
    assert_eq!(
        block_on(book.standing(ID, KEY, "node", &[])).unwrap(),
        Standing::RoleUpgrade
    );
    let admin = scopes(&["operator.admin"]);
    assert_eq!(
        block_on(book.standing(ID, KEY, "operator", &admin)).unwrap(),
        Standing::ScopeUpgrade
    );
    let other_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        block_on(book.standing(ID, other_key, "operator", &rw)).unwrap(),
        Standing::NotPaired { repair: true }
    );

    // The token: reused while it covers the scopes, checked in constant time.
    let ensured = block_on(book.ensure_token(ID, "operator", &rw))
        .unwrap()
        .unwrap();
    assert_eq!(ensured.token, token);
    let check = |presented: &str, asked: &[String]| {
        block_on(book.check_token(ID, "operator", presented, asked)).unwrap()
    };
    assert_eq!(check(&token, &rw), Ok(()));
    assert_eq!(check(&token, &scopes(&["operator.read"])), Ok(()));
    assert_eq!(check("wrong", &rw), Err(TokenRefusal::Mismatch));
    assert_eq!(check(&token, &admin), Err(TokenRefusal::ScopeMismatch));
    assert_eq!(
        block_on(book.ensure_token(ID, "operator", &admin)).unwrap(),
        None
    );

    // Rotated: the old token stops working. Revoked: nothing works until a new one.
    let rotated = block_on(book.rotate_token(ID, "operator", None)).unwrap();
    assert_ne!(rotated.token, token);
    assert!(rotated.rotated_at_ms.is_some());
    assert_eq!(check(&token, &rw), Err(TokenRefusal::Mismatch));
    assert_eq!(check(&rotated.token, &rw), Ok(()));
    let too_wide = block_on(book.rotate_token(ID, "operator", Some(admin.clone())));
    assert!(matches!(too_wide, Err(DevicesError::NotApproved)));
    block_on(book.revoke_token(ID, "operator")).unwrap();
    assert_eq!(check(&rotated.token, &rw), Err(TokenRefusal::Mismatch));
    let fresh = block_on(book.ensure_token(ID, "operator", &rw))
        .unwrap()
        .unwrap();
    assert!(fresh.token != rotated.token && fresh.revoked_at_ms.is_none());
    assert_eq!(check(&fresh.token, &rw), Ok(()));

    // Removed: unknown from then on, its token with it.
    block_on(book.remove(ID)).unwrap();
    assert_eq!(check(&fresh.token, &rw), Err(TokenRefusal::Mismatch));
    assert!(matches!(
        block_on(book.remove(ID)),
        Err(DevicesError::UnknownDevice)
    ));
    assert!(block_on(book.paired()).unwrap().is_empty());
}

#[test]
fn requests_expire_and_a_rejected_or_unknown_one_cannot_be_approved() {
    let (platform, clock) = platform();
    let store = Arc::new(MemoryStore::new());
    let book = DeviceBook::new(store, platform.clock.clone(), platform.entropy.clone());
    let read = scopes(&["operator.read"]);
    let request = block_on(book.request(ID, KEY, "operator", &read, meta())).unwrap();
    clock.advance(PENDING_TTL + Duration::from_secs(1));
    assert!(block_on(book.pending()).unwrap().is_empty());
    let late = block_on(book.approve(&request.request_id, None));
    assert!(matches!(late, Err(DevicesError::UnknownRequest)));

    let request = block_on(book.request(ID, KEY, "operator", &read, meta())).unwrap();
    let rejected = block_on(book.reject(&request.request_id)).unwrap();
    assert_eq!(rejected.device_id, ID);
    let after = block_on(book.approve(&request.request_id, None));
    assert!(matches!(after, Err(DevicesError::UnknownRequest)));
    for forged in ["", "../paired/x", &"f".repeat(36)] {
        let refused = block_on(book.approve(forged, None));
        assert!(
            matches!(refused, Err(DevicesError::UnknownRequest)),
            "{forged}"
        );
    }
    let standing = block_on(book.standing("../x", KEY, "operator", &read)).unwrap();
    assert_eq!(standing, Standing::NotPaired { repair: false });
}

#[test]
fn the_pending_list_is_bounded_oldest_out() {
    let (platform, clock) = platform();
    let store = Arc::new(MemoryStore::new());
    let book = DeviceBook::new(store, platform.clock.clone(), platform.entropy.clone());
    for n in 0..=MAX_PENDING {
        let id = format!("{n:064x}");
        block_on(book.request(&id, KEY, "operator", &[], meta())).unwrap();
        clock.advance(Duration::from_millis(10));
    }
    let pending = block_on(book.pending()).unwrap();
    assert_eq!(pending.len(), MAX_PENDING);
    assert_eq!(pending[0].device_id, format!("{:064x}", 1));
}

#[test]
fn scopes_follow_openclaws_implications() {
    let has =
        |required: &[&str], granted: &[&str]| scopes_satisfied(&scopes(required), &scopes(granted));
    assert!(has(&["operator.read"], &["operator.write"]));
    assert!(has(&["operator.sessions.read"], &["operator.read"]));
    assert!(has(
        &["operator.pairing", "operator.write"],
        &["operator.admin"]
    ));
    assert!(has(&[], &[]));
    assert!(!has(&["operator.write"], &["operator.read"]));
    assert!(!has(&["operator.pairing"], &["operator.write"]));
    assert!(!has(
        &["operator.admin"],
        &["operator.read", "operator.write"]
    ));
}

#[test]
fn a_changed_request_gets_a_new_id_and_approval_stays_within_the_grantor() {
    let (platform, _clock) = platform();
    let store = Arc::new(MemoryStore::new());
    let book = DeviceBook::new(store, platform.clock.clone(), platform.entropy.clone());
    let read = scopes(&["operator.read"]);
    let admin = scopes(&["operator.admin"]);
    let first = block_on(book.request(ID, KEY, "operator", &read, meta())).unwrap();
    let widened = block_on(book.request(ID, KEY, "operator", &admin, meta())).unwrap();
    assert_ne!(
        widened.request_id, first.request_id,
        "what was seen is not what is approved"
    );
    assert_eq!(
        block_on(book.pending()).unwrap(),
        std::slice::from_ref(&widened)
    );
    let refused = block_on(book.approve(&widened.request_id, Some(&read)));
    assert!(matches!(refused, Err(DevicesError::NotApproved)));
    assert!(block_on(book.approve(&widened.request_id, Some(&admin))).is_ok());
}

#[test]
fn a_token_written_after_a_removal_does_not_bring_the_device_back() {
    use molt_core::store::Store;
    let (platform, _clock) = platform();
    let store = Arc::new(MemoryStore::new());
    let book = DeviceBook::new(
        store.clone(),
        platform.clock.clone(),
        platform.entropy.clone(),
    );
    let rw = scopes(&["operator.read", "operator.write"]);
    let request = block_on(book.request(ID, KEY, "operator", &rw, meta())).unwrap();
    let paired = block_on(book.approve(&request.request_id, None)).unwrap();
    let token = paired.tokens["operator"].clone();
    // Another process removes the device; this one, between reading it and
    // writing, then writes its token as it would have.
    block_on(book.remove(ID)).unwrap();
    let key = format!("devices/tokens/{ID}/operator.json");
    let bytes = serde_json::to_vec(&token).unwrap();
    block_on(store.put(&key, bytes.into())).unwrap();
    assert_eq!(
        block_on(book.standing(ID, KEY, "operator", &rw)).unwrap(),
        Standing::NotPaired { repair: false }
    );
    let check = block_on(book.check_token(ID, "operator", &token.token, &rw)).unwrap();
    assert_eq!(check, Err(TokenRefusal::Mismatch));
    assert!(block_on(book.paired()).unwrap().is_empty());
}
