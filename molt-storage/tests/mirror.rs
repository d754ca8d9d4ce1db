//! The state mirror against a real S3-compatible server (s3s-fs, SigV4 checked).

mod support;

use futures::TryStreamExt;
use molt_core::store::RemoteErrorKind;
use molt_storage::mirror::{MirrorError, MirrorOptions, StateMirror};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::S3Server;

async fn server() -> (tempfile::TempDir, S3Server) {
    support::server_with_bucket().await
}

use support::remote;

fn write(root: &Path, path: &str, text: &str) {
    let target = root.join(path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(target, text).unwrap();
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path)).ok()
}

/// A mirror running in the background until stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(mirror: &Arc<StateMirror>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mirror.clone().run(async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Stops it (after its last backup).
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

fn options() -> MirrorOptions {
    MirrorOptions {
        orphan_grace: Duration::ZERO,
        ..MirrorOptions::default()
    }
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_directory_without_excluded_files() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    write(state.path(), "molt.toml", "[gateway]\n");
    write(state.path(), "transcripts/main.jsonl", "{\"a\":1}\n");
    write(state.path(), "workspace/skills/x/SKILL.md", "# x\n");
    write(state.path(), "gateway.lock", "pid");
    write(state.path(), "logs/today.log", "noise");
    let mirror = StateMirror::new(state.path(), remote(&server), options());
    let report = mirror.backup_now().await.unwrap();
    assert_eq!((report.seq, report.objects), (Some(1), 3));

    let fresh = tempfile::tempdir().unwrap();
    let restorer = StateMirror::new(fresh.path(), remote(&server), options());
    let restored = restorer
        .restore_if_needed()
        .await
        .unwrap()
        .expect("an empty directory is restored");
    assert_eq!((restored.seq, restored.files), (1, 3));
    assert_eq!(
        read(fresh.path(), "transcripts/main.jsonl").as_deref(),
        Some("{\"a\":1}\n")
    );
    assert_eq!(
        read(fresh.path(), "workspace/skills/x/SKILL.md").as_deref(),
        Some("# x\n")
    );
    assert_eq!(read(fresh.path(), "gateway.lock"), None);
    assert_eq!(read(fresh.path(), "logs/today.log"), None);
}

#[tokio::test]
async fn only_changes_move_and_deletions_propagate() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    for n in 0..20 {
        write(state.path(), &format!("files/{n}.json"), &format!("{n}"));
    }
    let mirror = StateMirror::new(state.path(), remote(&server), options());
    assert_eq!(mirror.backup_now().await.unwrap().objects, 20);
    // Nothing changed: no snapshot, no request.
    let unchanged = mirror.backup_now().await.unwrap();
    assert_eq!(
        (unchanged.seq, unchanged.objects, unchanged.requests),
        (None, 0, 0)
    );
    // One file changed, one deleted: one object, one manifest.
    write(state.path(), "files/3.json", "three");
    std::fs::remove_file(state.path().join("files/4.json")).unwrap();
    let changed = mirror.backup_now().await.unwrap();
    assert_eq!(
        (changed.seq, changed.objects, changed.bytes),
        (Some(2), 1, 5)
    );
    assert!(
        changed.requests <= 3,
        "object + manifest + listing of manifests: {changed:?}"
    );
    // Restoring over a directory that still has the deleted file removes it.
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "files/4.json", "4");
    let restorer = StateMirror::new(other.path(), remote(&server), options());
    let report = restorer.restore(None).await.unwrap();
    assert_eq!((report.files, report.removed), (19, 1));
    assert_eq!(read(other.path(), "files/3.json").as_deref(), Some("three"));
    assert_eq!(read(other.path(), "files/4.json"), None);
}

#[tokio::test]
async fn a_backup_cut_halfway_is_never_restored() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    write(state.path(), "a.json", "complete");
    let mirror = StateMirror::new(state.path(), remote(&server), options());
    mirror.backup_now().await.unwrap();
    // What a cut backup leaves: objects uploaded, no manifest written.
    let store = remote(&server);
    store
        .put(
            &"molt/objects/00/0000000000000000000000000000000000000000000000000000000000000000"
                .into(),
            PutPayload::from_static(b"half"),
        )
        .await
        .unwrap();
    // And a damaged snapshot naming an object that never arrived.
    let damaged = serde_json::json!({
        "version": 1, "seq": 2, "created_ms": 0,
        "files": { "a.json": { "hash": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "size": 4 } }
    });
    store
        .put(
            &"molt/manifests/00000000000000000002.json".into(),
            PutPayload::from(damaged.to_string().into_bytes()),
        )
        .await
        .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let report = StateMirror::new(fresh.path(), remote(&server), options())
        .restore(None)
        .await
        .unwrap();
    assert_eq!(report.seq, 1, "the damaged snapshot is skipped");
    assert_eq!(read(fresh.path(), "a.json").as_deref(), Some("complete"));
    // Asking for the damaged one by number fails, and leaves the directory as it was.
    let error = StateMirror::new(fresh.path(), remote(&server), options())
        .restore(Some(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, MirrorError::Corrupt { seq: 2, .. }),
        "{error}"
    );
    assert_eq!(read(fresh.path(), "a.json").as_deref(), Some("complete"));
}

#[tokio::test]
async fn old_snapshots_are_pruned_with_their_objects_and_any_kept_one_restores() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    let mirror = StateMirror::new(
        state.path(),
        remote(&server),
        MirrorOptions {
            keep_manifests: 2,
            ..options()
        },
    );
    for version in 1..=4 {
        write(state.path(), "config.json", &format!("version {version}"));
        mirror.backup_now().await.unwrap();
    }
    assert_eq!(mirror.manifests().await.unwrap(), [3, 4]);
    let objects: Vec<_> = remote(&server)
        .list(Some(&"molt/objects".into()))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(objects.len(), 2, "objects of pruned snapshots are gone");
    let fresh = tempfile::tempdir().unwrap();
    StateMirror::new(fresh.path(), remote(&server), options())
        .restore(Some(3))
        .await
        .unwrap();
    assert_eq!(
        read(fresh.path(), "config.json").as_deref(),
        Some("version 3")
    );
    assert!(matches!(
        mirror.restore(Some(1)).await,
        Err(MirrorError::NoSnapshot(Some(1)))
    ));
}

#[tokio::test]
async fn when_the_bucket_is_down_local_state_stays_and_the_mirror_catches_up() {
    let (s3, mut server) = server().await;
    let state = tempfile::tempdir().unwrap();
    write(state.path(), "a.json", "1");
    let mirror = StateMirror::new(state.path(), remote(&server), options());
    mirror.backup_now().await.unwrap();
    let address = server.address;
    server.stop();
    write(state.path(), "a.json", "2");
    write(state.path(), "b.json", "new");
    let error = mirror.backup_now().await.unwrap_err();
    assert!(
        matches!(
            &error,
            MirrorError::Remote(molt_core::store::StoreError::Remote {
                kind: RemoteErrorKind::Network,
                ..
            })
        ),
        "{error}"
    );
    let status = mirror.status();
    assert!(
        status.last_error.is_some() && status.pending && status.failures_in_a_row == 1,
        "{status:?}"
    );
    assert_eq!(
        read(state.path(), "a.json").as_deref(),
        Some("2"),
        "local state is untouched"
    );
    // The bucket comes back on the same address.
    let _server = S3Server::start_on(s3.path(), address).await;
    let report = mirror.backup_now().await.unwrap();
    assert_eq!(report.seq, Some(2));
    let status = mirror.status();
    assert!(
        status.last_error.is_none() && !status.pending && status.manifest_seq == Some(2),
        "{status:?}"
    );
}

#[tokio::test]
async fn local_changes_that_were_never_backed_up_are_not_overwritten_at_start() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    write(state.path(), "a.json", "backed up");
    let mirror = StateMirror::new(state.path(), remote(&server), options());
    mirror.backup_now().await.unwrap();
    write(state.path(), "a.json", "newer, not yet backed up");
    assert!(mirror.restore_if_needed().await.unwrap().is_none());
    assert_eq!(
        read(state.path(), "a.json").as_deref(),
        Some("newer, not yet backed up")
    );
}

#[tokio::test]
async fn a_write_is_in_the_bucket_within_a_second() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    let mirror = Arc::new(StateMirror::new(
        state.path(),
        remote(&server),
        MirrorOptions {
            debounce: Duration::from_millis(100),
            ..options()
        },
    ));
    let running = Running::start(&mirror);
    // Let the first (empty) check pass, then write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = Instant::now();
    write(state.path(), "pairing/telegram.json", "{\"paired\":true}");
    let fresh = tempfile::tempdir().unwrap();
    let reader = StateMirror::new(fresh.path(), remote(&server), options());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(report) = reader.restore(None).await
            && report.files > 0
            && read(fresh.path(), "pairing/telegram.json").is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the write never reached the bucket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reported, not asserted: timing on a shared machine is the benchmark's business.
    println!("write durable in the bucket after {:?}", written.elapsed());
    running.stop().await;
    assert!(mirror.status().last_success_ms.is_some());
}

#[tokio::test]
async fn a_steady_stream_of_writes_does_not_hold_backups_off() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    // Writes come every 100 ms, more often than the debounce lets quiet
    // begin: only the `max_delay` ceiling gets a backup out while they last.
    let mirror = Arc::new(StateMirror::new(
        state.path(),
        remote(&server),
        MirrorOptions {
            debounce: Duration::from_millis(300),
            max_delay: Duration::from_millis(400),
            ..options()
        },
    ));
    let running = Running::start(&mirror);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = mirror.status().manifest_seq;
    let mut backed_up_while_writing = false;
    for n in 0..30 {
        write(
            state.path(),
            "transcripts/main.jsonl",
            &"line\n".repeat(n + 1),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        backed_up_while_writing |= mirror.status().manifest_seq != first;
    }
    running.stop().await;
    assert!(
        backed_up_while_writing,
        "no backup in 3 s of writes 100 ms apart"
    );
}

#[tokio::test]
async fn a_fresh_process_uploads_a_change_without_listing_the_bucket() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    for n in 0..50 {
        write(state.path(), &format!("notes/{n}.md"), &format!("note {n}"));
    }
    StateMirror::new(state.path(), remote(&server), options())
        .backup_now()
        .await
        .unwrap();
    write(state.path(), "notes/7.md", "changed");
    let before = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    let report = StateMirror::new(state.path(), remote(&server), options())
        .backup_now()
        .await
        .unwrap();
    let requests = server.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    // List the manifests, read the newest (its objects are known to be in
    // the bucket), upload the one new object, write the manifest, and list
    // the manifests to prune: no listing of the objects.
    assert_eq!((requests, report.requests, report.objects), (5, 5, 1));
    let fresh = tempfile::tempdir().unwrap();
    StateMirror::new(fresh.path(), remote(&server), options())
        .restore(None)
        .await
        .unwrap();
    assert_eq!(read(fresh.path(), "notes/7.md").as_deref(), Some("changed"));
    assert_eq!(read(fresh.path(), "notes/8.md").as_deref(), Some("note 8"));
}

/// A file of `size` bytes that no two parts repeat.
fn large_file(root: &Path, path: &str, size: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..size)
        .map(|n| (n % 251) as u8 ^ (n >> 20) as u8)
        .collect();
    let target = root.join(path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(target, &bytes).unwrap();
    bytes
}

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_large_file_goes_up_in_equal_parts_and_comes_back_whole() {
    for sealed in [false, true] {
        let (_s3, server) = server().await;
        let state = tempfile::tempdir().unwrap();
        let key = sealed.then(|| {
            use base64::Engine;
            let text = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
            molt_storage::mirror::BackupKey::from_base64(&molt_core::Secret::new(text)).unwrap()
        });
        let options = MirrorOptions {
            multipart_threshold: 8 * MIB as u64,
            part_size: 5 * MIB,
            key,
            ..options()
        };
        let big = large_file(state.path(), "workspace/archive.bin", 12 * MIB + 12_345);
        write(state.path(), "small.json", "{}");
        let mirror = StateMirror::new(state.path(), remote(&server), options.clone());
        let report = mirror.backup_now().await.unwrap();
        assert_eq!(report.objects, 2);
        let parts = server.part_sizes.lock().unwrap().clone();
        // Every part but the last is the part size; the last holds the rest
        // (plus the seal's 36 bytes when encrypted).
        let seal = if sealed { 8 + 12 + 16 } else { 0 };
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(
            parts[..2].iter().all(|&size| size == 5 * MIB as u64),
            "{parts:?}"
        );
        assert_eq!(parts[2], (2 * MIB + 12_345 + seal) as u64);

        // A backup with nothing new does not send it again, even from a
        // fresh process that does not know the bucket holds it.
        write(state.path(), "small.json", "{\"changed\":1}");
        StateMirror::new(state.path(), remote(&server), options.clone())
            .backup_now()
            .await
            .unwrap();
        assert_eq!(server.part_sizes.lock().unwrap().len(), 3);

        let fresh = tempfile::tempdir().unwrap();
        let restored = StateMirror::new(fresh.path(), remote(&server), options)
            .restore(None)
            .await
            .unwrap();
        assert_eq!(restored.files, 2);
        let back = std::fs::read(fresh.path().join("workspace/archive.bin")).unwrap();
        assert!(
            back == big,
            "the large file came back whole (sealed: {sealed})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_rewritten_during_its_upload_is_never_stored_torn() {
    let (_s3, server) = server().await;
    let state = tempfile::tempdir().unwrap();
    let options = MirrorOptions {
        multipart_threshold: 8 * MIB as u64,
        part_size: 5 * MIB,
        ..options()
    };
    let path = state.path().join("workspace/db.bin");
    let versions: Vec<Vec<u8>> = (0..2u8)
        .map(|version| vec![b'a' + version; 12 * MIB])
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &versions[0]).unwrap();
    // Replace it atomically (a temporary file, then a rename, as the stores
    // do), over and over, while backups run: the version the scan hashed is
    // often not the one the upload then reads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, versions, stop) = (path.clone(), versions.clone(), stop.clone());
        std::thread::spawn(move || {
            let temp = path.with_file_name(".molt-tmp-db.bin");
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                std::fs::write(&temp, &versions[n % 2]).unwrap();
                std::fs::rename(&temp, &path).unwrap();
            }
        })
    };
    let mirror = StateMirror::new(state.path(), remote(&server), options.clone());
    for _ in 0..3 {
        write(state.path(), "tick.json", &format!("{:?}", Instant::now()));
        mirror.backup_now().await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // Whatever each snapshot holds of the file, it is one whole version.
    for seq in mirror.manifests().await.unwrap() {
        let fresh = tempfile::tempdir().unwrap();
        StateMirror::new(fresh.path(), remote(&server), options.clone())
            .restore(Some(seq))
            .await
            .unwrap();
        if let Ok(back) = std::fs::read(fresh.path().join("workspace/db.bin")) {
            assert!(versions.contains(&back), "snapshot {seq} holds a torn file");
        }
    }
}

#[tokio::test]
async fn with_a_key_the_bucket_holds_no_plaintext_and_restores_only_with_that_key() {
    use base64::Engine;
    let (_s3, server) = server().await;
    let key = |byte: u8| {
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        Some(molt_storage::mirror::BackupKey::from_base64(&molt_core::Secret::new(text)).unwrap())
    };
    let state = tempfile::tempdir().unwrap();
    write(
        state.path(),
        "secrets/diary.md",
        "the password is swordfish",
    );
    let mirror = StateMirror::new(
        state.path(),
        remote(&server),
        MirrorOptions {
            key: key(7),
            ..options()
        },
    );
    mirror.backup_now().await.unwrap();
    // Nothing in the bucket shows the content, the file name, or the content's hash.
    let plain_hash = molt_storage::mirror::hash_bytes(b"the password is swordfish");
    let mut stored = Vec::new();
    let mut pending = vec![server.root.join("moltbot-data")];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(directory).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                stored.push((
                    entry.path().display().to_string(),
                    std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
    }
    assert!(stored.len() >= 2);
    for (name, bytes) in &stored {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("swordfish") && !text.contains("diary") && !name.contains(&plain_hash),
            "{name}"
        );
    }
    let fresh = tempfile::tempdir().unwrap();
    StateMirror::new(
        fresh.path(),
        remote(&server),
        MirrorOptions {
            key: key(7),
            ..options()
        },
    )
    .restore(None)
    .await
    .unwrap();
    assert_eq!(
        read(fresh.path(), "secrets/diary.md").as_deref(),
        Some("the password is swordfish")
    );
    let other = tempfile::tempdir().unwrap();
    let error = StateMirror::new(other.path(), remote(&server), options())
        .restore(None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("MOLT_BACKUP_KEY"), "{error}");
    let error = StateMirror::new(
        other.path(),
        remote(&server),
        MirrorOptions {
            key: key(8),
            ..options()
        },
    )
    .restore(None)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("wrong key"), "{error}");
    assert_eq!(read(other.path(), "secrets/diary.md"), None);
}

#[tokio::test]
async fn the_running_mirror_reports_an_outage_and_catches_up_when_the_bucket_returns() {
    let (s3, mut server) = server().await;
    let state = tempfile::tempdir().unwrap();
    let options = MirrorOptions {
        debounce: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..options()
    };
    let mirror = Arc::new(StateMirror::new(state.path(), remote(&server), options));
    let running = Running::start(&mirror);
    // Waits (up to 10 s) until the mirror's status passes `check`.
    let wait_for = |check: fn(&molt_storage::MirrorStatus) -> bool| {
        let mirror = mirror.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !check(&mirror.status()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            mirror.status()
        }
    };
    let address = server.address;
    server.stop();
    for n in 0..5 {
        write(state.path(), &format!("during-outage/{n}.json"), "kept");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let status = wait_for(|status| status.last_error.is_some() && status.pending).await;
    assert!(
        status.last_error.is_some() && status.pending,
        "the outage shows: {status:?}"
    );
    let _server = S3Server::start_on(s3.path(), address).await;
    let status = wait_for(|status| {
        status.last_error.is_none() && !status.pending && status.manifest_seq.is_some()
    })
    .await;
    assert!(
        status.last_error.is_none() && !status.pending,
        "caught up: {status:?}"
    );
    let fresh = tempfile::tempdir().unwrap();
    let report = StateMirror::new(fresh.path(), remote(&server), MirrorOptions::default())
        .restore(None)
        .await
        .unwrap();
    assert_eq!(
        report.files, 5,
        "nothing written during the outage was lost"
    );
    running.stop().await;
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, text: &str) {
    store
        .put(&key.into(), PutPayload::from(text.as_bytes().to_vec()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bucket_written_by_moltworkers_rclone_sync_restores_into_an_empty_directory() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    put(&store, "openclaw/openclaw.json", "{\"gateway\":{}}").await;
    put(
        &store,
        "openclaw/agents/main/sessions/s1.jsonl",
        "{\"role\":\"user\"}\n",
    )
    .await;
    put(&store, "openclaw/gateway.lock", "stale").await;
    put(&store, "workspace/notes.md", "notes").await;
    put(&store, "skills/weather/SKILL.md", "# weather").await;
    put(
        &store,
        "clawdbot/clawdbot.json",
        "older, and ignored when openclaw/ exists",
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let mirror = StateMirror::new(state.path(), remote(&server), options());
    let report = mirror
        .restore_if_needed()
        .await
        .unwrap()
        .expect("the legacy layout is restored");
    assert_eq!((report.seq, report.files), (0, 4));
    assert_eq!(
        read(state.path(), "openclaw/openclaw.json").as_deref(),
        Some("{\"gateway\":{}}")
    );
    assert_eq!(
        read(state.path(), "openclaw/agents/main/sessions/s1.jsonl").as_deref(),
        Some("{\"role\":\"user\"}\n")
    );
    assert_eq!(
        read(state.path(), "workspace/notes.md").as_deref(),
        Some("notes")
    );
    assert_eq!(
        read(state.path(), "workspace/skills/weather/SKILL.md").as_deref(),
        Some("# weather")
    );
    assert_eq!(
        read(state.path(), "openclaw/gateway.lock"),
        None,
        "locks are excluded"
    );
    // The next backup writes the first snapshot in the mirror's own layout.
    assert_eq!(mirror.backup_now().await.unwrap().seq, Some(1));
}

#[tokio::test]
async fn the_moltbot_era_layout_restores_with_its_config_renamed() {
    let (_s3, server) = server().await;
    let store = remote(&server);
    put(&store, "clawdbot/clawdbot.json", "{\"old\":true}").await;
    put(&store, "clawdbot/devices/paired.json", "[]").await;
    let state = tempfile::tempdir().unwrap();
    StateMirror::new(state.path(), remote(&server), options())
        .restore_if_needed()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read(state.path(), "openclaw/openclaw.json").as_deref(),
        Some("{\"old\":true}")
    );
    assert_eq!(
        read(state.path(), "openclaw/devices/paired.json").as_deref(),
        Some("[]")
    );
    // And the oldest: a bare clawdbot.json at the root of the bucket.
    let (_s3_oldest, oldest) = self::server().await;
    put(&remote(&oldest), "clawdbot.json", "{\"oldest\":true}").await;
    let state = tempfile::tempdir().unwrap();
    StateMirror::new(state.path(), remote(&oldest), options())
        .restore_if_needed()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read(state.path(), "openclaw/openclaw.json").as_deref(),
        Some("{\"oldest\":true}")
    );
}
