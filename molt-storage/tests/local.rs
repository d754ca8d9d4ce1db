//! The local-filesystem store against the store contract, on a real directory.

use bytes::Bytes;
use molt_core::store::{LogStore, PutOutcome, Store, StoreError};
use molt_storage::LocalFileStore;
use std::io::Write;
use std::sync::Arc;

#[tokio::test]
async fn objects_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileStore::new(dir.path());
    assert_eq!(store.get("a/b.json").await.unwrap(), None);
    store
        .put("a/b.json", Bytes::from_static(b"one"))
        .await
        .unwrap();
    store
        .put("a/b.json", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(store.get("a/b.json").await.unwrap().unwrap(), "two");
    assert_eq!(
        store
            .put_if_absent("a/b.json", Bytes::from_static(b"three"))
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(store.get("a/b.json").await.unwrap().unwrap(), "two");
    assert_eq!(
        store.put_if_absent("a/c/d", Bytes::new()).await.unwrap(),
        PutOutcome::Created
    );
    store.put("ab", Bytes::new()).await.unwrap();
    assert_eq!(store.list("a/").await.unwrap(), ["a/b.json", "a/c/d"]);
    assert_eq!(store.list("a").await.unwrap(), ["a/b.json", "a/c/d", "ab"]);
    assert_eq!(store.list("missing/").await.unwrap(), Vec::<String>::new());
    store.delete("a/b.json").await.unwrap();
    store.delete("a/b.json").await.unwrap();
    assert_eq!(store.list("a/").await.unwrap(), ["a/c/d"]);
    // No temporary files are left behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains(".molt-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn keys_cannot_escape_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileStore::new(dir.path().join("state"));
    for key in ["../outside", "/etc/passwd", "a/../../b", ""] {
        assert!(
            matches!(
                store.put(key, Bytes::new()).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{key}"
        );
    }
    assert!(!dir.path().join("outside").exists());
    std::fs::write(dir.path().join("secret"), "x").unwrap();
    for prefix in ["../", "../../", "a/../../"] {
        assert!(
            matches!(store.list(prefix).await, Err(StoreError::InvalidKey { .. })),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn symlinks_that_lead_out_of_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("workspace/inner")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "not yours").unwrap();
    let link = |target: &std::path::Path, at: &str| {
        std::os::unix::fs::symlink(target, root.join(at)).unwrap()
    };
    link(&outside, "workspace/out");
    link(&outside.join("secret.txt"), "workspace/secret.txt");
    link(&outside.join("absent.txt"), "workspace/dangling.txt");
    link(&root.join("workspace/inner"), "workspace/alias");
    let store = LocalFileStore::new(&root);
    fn refused<T>(result: Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::InvalidKey { reason, .. }) if reason.contains("symlink"))
    }
    assert!(refused(store.get("workspace/secret.txt").await));
    assert!(refused(store.get("workspace/out/secret.txt").await));
    assert!(refused(
        store
            .put("workspace/out/planted.txt", Bytes::from("x"))
            .await
    ));
    assert!(refused(
        store
            .put_if_absent("workspace/dangling.txt", Bytes::from("x"))
            .await
    ));
    assert!(refused(store.delete("workspace/out/secret.txt").await));
    assert!(refused(
        store.append("workspace/out/log", Bytes::from("x")).await
    ));
    assert!(refused(store.list("workspace/out/").await));
    assert!(!outside.join("planted.txt").exists() && !outside.join("absent.txt").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "not yours"
    );
    // Nor to the state beside the workspace.
    std::fs::write(root.join("gateway-token"), "the token").unwrap();
    link(&root.join("gateway-token"), "workspace/token.md");
    assert!(refused(store.get("workspace/token.md").await));
    // A top-level directory that is a link (a volume mounted there) is the
    // base its keys stay in.
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::os::unix::fs::symlink(&volume, root.join("skills")).unwrap();
    store
        .put("skills/x/SKILL.md", Bytes::from("x"))
        .await
        .unwrap();
    assert_eq!(store.list("skills/").await.unwrap(), ["skills/x/SKILL.md"]);
    assert!(volume.join("x/SKILL.md").exists());
    // A symlink that stays inside its directory is followed.
    store
        .put("workspace/alias/note.md", Bytes::from("inside"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("workspace/inner/note.md")).unwrap(),
        "inside"
    );
}

#[tokio::test]
async fn put_if_absent_has_one_winner_under_contention() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileStore::new(dir.path()));
    let attempts = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put_if_absent("inbox/x", Bytes::from(format!("writer {i}")))
                .await
                .unwrap()
        })
    });
    let outcomes = futures_join(attempts).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PutOutcome::Created)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_deleted_log_is_gone_and_the_next_append_starts_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileStore::new(dir.path());
    let record = |n: u8| Bytes::from(format!("{{\"n\":{n}}}"));
    store.append("t/s.jsonl", record(1)).await.unwrap();
    store.delete_log("t/s.jsonl").await.unwrap();
    assert!(!dir.path().join("t/s.jsonl").exists());
    assert!(store.read("t/s.jsonl").await.unwrap().is_empty());
    // The open handle was dropped with the file: this lands in a new one.
    store.append("t/s.jsonl", record(2)).await.unwrap();
    assert_eq!(store.read("t/s.jsonl").await.unwrap(), [record(2)]);
    store.delete_log("t/missing.jsonl").await.unwrap();
}

#[tokio::test]
async fn logs_append_and_survive_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileStore::new(dir.path());
    assert!(store.read("t/s.jsonl").await.unwrap().is_empty());
    store
        .append("t/s.jsonl", Bytes::from_static(b"{\"n\":1}"))
        .await
        .unwrap();
    store
        .append("t/s.jsonl", Bytes::from_static(b"{\"n\":2}"))
        .await
        .unwrap();
    assert!(matches!(
        store.append("t/s.jsonl", Bytes::from_static(b"a\nb")).await,
        Err(StoreError::InvalidRecord { .. })
    ));
    // A crash mid-write leaves a partial line; it is ignored, the rest is kept.
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("t/s.jsonl"))
        .unwrap()
        .write_all(b"{\"n\":")
        .unwrap();
    let reopened = LocalFileStore::new(dir.path());
    assert_eq!(
        reopened.read("t/s.jsonl").await.unwrap(),
        ["{\"n\":1}", "{\"n\":2}"]
    );
    // Appending after the tear starts a fresh line, so the new record is intact.
    reopened
        .append("t/s.jsonl", Bytes::from_static(b"{\"n\":3}"))
        .await
        .unwrap();
    let records = reopened.read("t/s.jsonl").await.unwrap();
    assert_eq!(records.last().unwrap(), "{\"n\":3}");
    assert_eq!(
        records.len(),
        4,
        "the fragment stays as its own (unreadable) line: {records:?}"
    );
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn many_logs_stay_within_the_open_file_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileStore::new(dir.path());
    for i in 0..600 {
        store
            .append(
                &format!("t/{i}.jsonl"),
                Bytes::from(format!("{{\"n\":{i}}}")),
            )
            .await
            .unwrap();
    }
    // Reopened logs still append in order.
    store
        .append("t/0.jsonl", Bytes::from_static(b"{\"n\":\"again\"}"))
        .await
        .unwrap();
    assert_eq!(
        store.read("t/0.jsonl").await.unwrap(),
        ["{\"n\":0}", "{\"n\":\"again\"}"]
    );
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(open < 400, "{open} descriptors open");
}
