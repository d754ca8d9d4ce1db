//! A standard S3 client (boto3, from PyPI) lists and reads a backup. The
//! test script installs boto3 into `target/sdk-venv` and runs this test;
//! `MOLT_PYTHON` points elsewhere.

mod support;

use molt_storage::mirror::{MirrorOptions, StateMirror};
use std::collections::BTreeMap;
use support::{ACCESS_KEY, S3Server, SECRET_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs boto3: ./scripts/test installs it and runs this"]
async fn boto3_lists_and_reads_a_backup() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("MOLT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("../target/sdk-venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with boto3 at {} (run ./scripts/test, or set MOLT_PYTHON)",
        python.display()
    );
    let s3 = tempfile::tempdir().unwrap();
    let server = S3Server::start(s3.path()).await;
    server.bucket("moltbot-data");
    let state = tempfile::tempdir().unwrap();
    let files: BTreeMap<&str, &str> = [
        ("molt.toml", "[gateway]\n"),
        (
            "transcripts/main.jsonl",
            "{\"role\":\"user\",\"text\":\"hi\"}\n",
        ),
        ("workspace/skills/weather/SKILL.md", "# weather\n"),
    ]
    .into();
    for (path, text) in &files {
        let target = state.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    let remote = server.config("moltbot-data").object_store().unwrap();
    StateMirror::new(state.path(), remote, MirrorOptions::default())
        .backup_now()
        .await
        .unwrap();
    let output = tokio::process::Command::new(&python)
        .arg(root.join("tests/interop/boto3_check.py"))
        .env("ENDPOINT", server.endpoint())
        .env("ACCESS_KEY", ACCESS_KEY)
        .env("SECRET_KEY", SECRET_KEY)
        .env("BUCKET", "moltbot-data")
        .env("PREFIX", "molt")
        .env("EXPECTED", serde_json::to_string(&files).unwrap())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "boto3 could not read the backup:\n{report}"
    );
    assert!(report.contains("boto3 read 3 files"), "{report}");
}
