//! State kept in a bucket (a real S3-compatible server, s3s-fs with SigV4):
//! restored before serving after a SIGKILL, and never restored half-written.

mod support;

#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::Gateway;

fn bucket_env(server: &s3::S3Server) -> Vec<(&'static str, String)> {
    vec![
        ("R2_ACCESS_KEY_ID", s3::ACCESS_KEY.to_string()),
        ("R2_SECRET_ACCESS_KEY", s3::SECRET_KEY.to_string()),
        ("S3_ENDPOINT", server.endpoint()),
        ("S3_REGION", "us-east-1".to_string()),
        ("R2_BUCKET_NAME", "moltbot-data".to_string()),
    ]
}

fn start(state: &Path, env: &[(&'static str, String)]) -> Gateway {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut with_token = env.clone();
    with_token.push(("MOLTBOT_GATEWAY_TOKEN", "backup-test-token"));
    let mut gateway = Gateway::start(state, &with_token);
    gateway.token = "backup-test-token".into();
    gateway
}

async fn snapshot_seq(gateway: &Gateway) -> Option<u64> {
    let (_, body) = gateway.get("/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["storage"]["mode"], "mirrored", "{status}");
    status["storage"]["mirror"]["manifest_seq"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_a_new_machine_restores_the_conversation_before_serving() {
    let s3_root = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(s3_root.path()).await;
    server.bucket("moltbot-data");
    let env = bucket_env(&server);
    let first = tempfile::tempdir().unwrap();
    let gateway = start(first.path(), &env);
    let mut client = gateway.connected().await;
    client.chat("remember the blue door", "run-1").await;
    drop(client);
    // The mirror reports the snapshot once the conversation is in the bucket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = snapshot_seq(&gateway).await;
    while seq.is_none_or(|seq| seq < 2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seq = snapshot_seq(&gateway).await;
    }
    assert!(seq.is_some(), "no snapshot reached the bucket");
    gateway.signal("-KILL");
    drop(gateway);

    // A new machine: an empty state directory, the same bucket.
    let second = tempfile::tempdir().unwrap();
    let gateway = start(second.path(), &env);
    let mut client = gateway.connected().await;
    let history = client.history().await;
    assert!(
        history
            .iter()
            .any(|(role, text)| role == "user" && text == "remember the blue door"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_halfway_restores_the_previous_snapshot_never_a_mix() {
    let s3_root = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(s3_root.path()).await;
    server.bucket("moltbot-data");
    let env = bucket_env(&server);
    let state = tempfile::tempdir().unwrap();
    let write_all = |generation: &str| {
        for n in 0..400 {
            let path = state.path().join(format!("workspace/notes/{n:04}.md"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{generation} {n} {}", "x".repeat(2000))).unwrap();
        }
    };
    let backup = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_moltworker"));
        command
            .args(["backup", "now"])
            .env("MOLT_STATE_DIR", state.path())
            .env("RUST_LOG", "warn");
        for (name, value) in &env {
            command.env(name, value);
        }
        command
    };
    write_all("first");
    let output = backup().output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The second backup is killed while it uploads: once some of its objects are in.
    write_all("second");
    let objects = s3_root.path().join("moltbot-data/molt/objects");
    // Objects sit in folders by the first two characters of their names.
    let count = || {
        std::fs::read_dir(&objects).map_or(0, |folders| {
            folders
                .flatten()
                .filter_map(|folder| std::fs::read_dir(folder.path()).ok())
                .map(|objects| objects.count())
                .sum::<usize>()
        })
    };
    let mut child = backup().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < 410 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let manifests = std::fs::read_dir(s3_root.path().join("moltbot-data/molt/manifests"))
        .unwrap()
        .count();
    assert!(
        count() > 400 && manifests == 1,
        "killed mid-upload: {} objects, {manifests} manifests",
        count()
    );

    let fresh = tempfile::tempdir().unwrap();
    let mut restore = Command::new(env!("CARGO_BIN_EXE_moltworker"));
    restore
        .arg("restore")
        .env("MOLT_STATE_DIR", fresh.path())
        .env("RUST_LOG", "warn");
    for (name, value) in &env {
        restore.env(name, value);
    }
    let output = restore.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generations: std::collections::BTreeSet<String> = (0..400)
        .map(|n| {
            let text =
                std::fs::read_to_string(fresh.path().join(format!("workspace/notes/{n:04}.md")))
                    .unwrap();
            text.split(' ').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        generations.into_iter().collect::<Vec<_>>(),
        ["first"],
        "the previous snapshot, whole"
    );
}

#[tokio::test]
async fn backup_commands_explain_a_missing_bucket_configuration() {
    let state = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .args(["backup", "status"])
        .env("MOLT_STATE_DIR", state.path())
        .env_remove("R2_ACCESS_KEY_ID")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("R2_ACCESS_KEY_ID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_planted_in_the_bucket_cannot_make_restore_write_outside_the_state() {
    use object_store::{ObjectStoreExt, PutPayload};
    let s3_root = tempfile::tempdir().unwrap();
    let server = s3::S3Server::start(s3_root.path()).await;
    server.bucket("moltbot-data");
    // Whoever holds the bucket's keys writes a snapshot naming a path outside.
    let store = server.config("moltbot-data").object_store().unwrap();
    let content = b"written by the bucket".to_vec();
    let hash = molt_storage::mirror::hash_bytes(&content);
    let manifest = serde_json::json!({
        "version": 1, "seq": 1, "created_ms": 1,
        "files": { "../escaped.txt": { "hash": hash, "size": content.len() } },
    });
    for (key, bytes) in [
        (format!("molt/objects/{}/{hash}", &hash[..2]), content),
        (
            "molt/manifests/00000000000000000001.json".to_owned(),
            manifest.to_string().into_bytes(),
        ),
    ] {
        store
            .put(&key.as_str().into(), PutPayload::from(bytes))
            .await
            .unwrap();
    }
    let machine = tempfile::tempdir().unwrap();
    let state = machine.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .arg("restore")
        .env("MOLT_STATE_DIR", &state)
        .envs(bucket_env(&server))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("snapshot 1") && stderr.contains("unsafe path"),
        "{stderr}"
    );
    assert!(!machine.path().join("escaped.txt").exists());
}
