//! Restore treats the bucket as untrusted: whoever can write it must not be
//! able to write outside the state directory, fill the disk, loosen file
//! modes, or slip plaintext past a backup key. Against a real S3 server
//! (s3s-fs, SigV4 checked); the bad snapshots are planted as any S3 client
//! with the bucket's credentials could.

mod support;

use molt_core::Secret;
use molt_storage::mirror::{
    BackupKey, MirrorError, MirrorOptions, RestoreLimits, StateMirror, hash_bytes,
};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use support::S3Server;

async fn server() -> (tempfile::TempDir, S3Server) {
    support::server_with_bucket().await
}

use support::remote;

async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: &[u8]) {
    store
        .put(&key.into(), PutPayload::from(bytes.to_vec()))
        .await
        .unwrap();
}

/// Plants snapshot `seq` naming `files` (path, content, declared size), with
/// each content stored under its hash, as the mirror lays them out.
async fn plant(store: &Arc<dyn ObjectStore>, seq: u64, files: &[(&str, &[u8], u64)]) {
    let mut listed = serde_json::Map::new();
    for (path, content, size) in files {
        let hash = hash_bytes(content);
        put(
            store,
            &format!("molt/objects/{}/{hash}", &hash[..2]),
            content,
        )
        .await;
        listed.insert(path.to_string(), json!({ "hash": hash, "size": size }));
    }
    let manifest = json!({ "version": 1, "seq": seq, "created_ms": 1, "files": listed });
    put(
        store,
        &format!("molt/manifests/{seq:020}.json"),
        manifest.to_string().as_bytes(),
    )
    .await;
}

fn mirror(state: &Path, server: &S3Server) -> StateMirror {
    StateMirror::new(state, remote(server), MirrorOptions::default())
}

fn is_damaged(result: Result<molt_storage::mirror::RestoreReport, MirrorError>) -> String {
    match result {
        Err(err @ MirrorError::Corrupt { .. }) => err.to_string(),
        other => panic!("expected a damaged snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn paths_that_leave_the_state_directory_are_refused_and_the_snapshot_before_restored() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    let outside = tempfile::tempdir().unwrap();
    let state_dir = outside.path().join("state");
    let absolute = outside.path().join("absolute.txt");
    plant(&store, 1, &[("molt.toml", b"[gateway]\n", 10)]).await;
    let bad: [&str; 5] = [
        "../escaped.txt",
        absolute.to_str().unwrap(),
        "workspace/../../escaped.txt",
        ".molt-sync/snapshot.json",
        "a\\..\\..\\escaped.txt",
    ];
    for (n, path) in bad.iter().enumerate() {
        plant(&store, 2 + n as u64, &[(path, b"pwned", 5)]).await;
    }
    // A file that is also a directory of another.
    plant(
        &store,
        7,
        &[("a", b"x", 1), ("a-z", b"z", 1), ("a/b", b"y", 1)],
    )
    .await;

    let restorer = mirror(&state_dir, &server);
    for seq in 2..=7 {
        let reason = is_damaged(restorer.restore(Some(seq)).await);
        assert!(reason.contains(&format!("snapshot {seq}")), "{reason}");
    }
    // The newest snapshots are all damaged: the restore at start takes the first.
    let report = restorer.restore_if_needed().await.unwrap().unwrap();
    assert_eq!((report.seq, report.files), (1, 1));
    assert!(!outside.path().join("escaped.txt").exists());
    assert!(!absolute.exists());
    let mut names: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".molt-sync", "molt.toml"]);
}

#[cfg(unix)]
#[tokio::test]
async fn a_symbolic_link_in_the_state_directory_is_never_written_through() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    plant(&store, 1, &[("workspace/notes.md", b"notes", 5)]).await;
    let state = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), state.path().join("workspace")).unwrap();

    let err = mirror(state.path(), &server)
        .restore(None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MirrorError::Local { .. }) && err.to_string().contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    // Nor the mirror's own folder, where downloads are staged.
    let state = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), state.path().join(".molt-sync")).unwrap();
    let err = mirror(state.path(), &server)
        .restore(None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn an_object_larger_than_its_manifest_says_or_a_snapshot_over_the_limits_is_refused() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    let big = vec![b'x'; 1 << 20];
    plant(&store, 1, &[("small.txt", &big, 5)]).await;
    let state = tempfile::tempdir().unwrap();
    let reason = is_damaged(mirror(state.path(), &server).restore(Some(1)).await);
    assert!(reason.contains("more than 5 bytes"), "{reason}");
    assert!(!state.path().join("small.txt").exists());

    plant(&store, 2, &[("a", b"1", 1), ("b", b"2", 1), ("c", b"3", 1)]).await;
    let limits = RestoreLimits {
        max_files: 2,
        ..RestoreLimits::default()
    };
    let options = MirrorOptions {
        restore_limits: limits,
        ..MirrorOptions::default()
    };
    let limited = StateMirror::new(state.path(), remote(&server), options.clone());
    let reason = is_damaged(limited.restore(Some(2)).await);
    assert!(reason.contains("3 files"), "{reason}");
    plant(&store, 3, &[("huge", b"1", u64::MAX / 2)]).await;
    let reason = is_damaged(limited.restore(Some(3)).await);
    assert!(reason.contains("more than"), "{reason}");
    let written: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != ".molt-sync")
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn restored_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    let token = state.path().join("gateway-token");
    std::fs::write(&token, "secret").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(state.path().join("channels")).unwrap();
    std::fs::write(state.path().join("channels/discord.json"), "{}").unwrap();
    mirror(state.path(), &server).backup_now().await.unwrap();

    let fresh = tempfile::tempdir().unwrap();
    mirror(fresh.path(), &server)
        .restore_if_needed()
        .await
        .unwrap()
        .unwrap();
    let mode = |path: &str| {
        std::fs::metadata(fresh.path().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("gateway-token"), 0o600);
    assert_eq!(mode("channels/discord.json"), 0o600);
    assert_eq!(mode("channels"), 0o700);
}

#[tokio::test]
async fn with_a_backup_key_moltworkers_plaintext_layout_is_not_restored() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    put(&store, "workspace/skills/evil/SKILL.md", b"# planted").await;
    let key = BackupKey::from_base64(&Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="))
        .unwrap();
    let options = MirrorOptions {
        key: Some(key),
        ..MirrorOptions::default()
    };
    let state = tempfile::tempdir().unwrap();
    let keyed = StateMirror::new(state.path(), remote(&server), options);
    assert!(matches!(
        keyed.restore_legacy().await,
        Err(MirrorError::PlaintextRefused)
    ));
    // At start it is skipped with a warning, not restored.
    assert!(keyed.restore_if_needed().await.unwrap().is_none());
    assert!(!state.path().join("workspace").exists());
    // Without a key the same bucket restores (Moltworker's own case).
    let plain = mirror(state.path(), &server);
    assert_eq!(plain.restore_legacy().await.unwrap().unwrap().files, 1);
}

#[tokio::test]
async fn moltworkers_layout_over_the_limits_is_refused_before_anything_is_written() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    put(&store, "workspace/AGENTS.md", &[b'a'; 600]).await;
    put(&store, "workspace/MEMORY.md", &[b'm'; 600]).await;
    let limited = |limits: RestoreLimits, state: &std::path::Path| {
        let options = MirrorOptions {
            restore_limits: limits,
            ..MirrorOptions::default()
        };
        StateMirror::new(state, remote(&server), options)
    };
    let state = tempfile::tempdir().unwrap();
    let too_many = limited(
        RestoreLimits {
            max_files: 1,
            ..RestoreLimits::default()
        },
        state.path(),
    );
    let reason = is_damaged(too_many.restore_legacy().await.map(Option::unwrap));
    assert!(reason.contains("2 files"), "{reason}");
    let too_large = limited(
        RestoreLimits {
            max_total_bytes: 1_000,
            ..RestoreLimits::default()
        },
        state.path(),
    );
    let reason = is_damaged(too_large.restore_legacy().await.map(Option::unwrap));
    assert!(reason.contains("1200 bytes"), "{reason}");
    assert!(!state.path().join("workspace").exists());
    // Within the limits the same bucket restores.
    let enough = limited(
        RestoreLimits {
            max_total_bytes: 1_200,
            ..RestoreLimits::default()
        },
        state.path(),
    );
    assert_eq!(enough.restore_legacy().await.unwrap().unwrap().files, 2);
}
