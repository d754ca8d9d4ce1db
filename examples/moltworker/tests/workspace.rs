//! The assistant's workspace through the real gateway: a Moltworker bucket's
//! `workspace/` restored and put into the system prompt the model receives
//! (checked at the Anthropic fake); a fresh gateway seeded with the defaults
//! and its first-run script; the file tools refusing a symlink out of the
//! workspace.

mod support;

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;

use object_store::{ObjectStoreExt, PutPayload};
use support::Gateway;

/// The model fake's environment (the `echo` model answers "You said: ...").
fn model_env(fake: &fake::FakeProvider) -> Vec<(&'static str, String)> {
    vec![
        ("ANTHROPIC_API_KEY", fake::ANTHROPIC_KEY.to_owned()),
        ("ANTHROPIC_BASE_URL", fake.anthropic_url()),
        ("MOLT_MODEL", "echo".to_owned()),
    ]
}

fn start(state: &std::path::Path, env: &[(&'static str, String)]) -> Gateway {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gateway::start(state, &env)
}

/// The system prompt of the `n`th request the fake received.
fn system_prompt(fake: &fake::FakeProvider, n: usize) -> String {
    let received = fake.state.received.lock().unwrap().clone();
    let system = &received[n].body["system"];
    match system {
        serde_json::Value::String(text) => text.clone(),
        blocks => (blocks.as_array().into_iter().flatten())
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moltworker_workspace_is_restored_and_the_model_sees_it() {
    let (_root, server) = s3::server_with_bucket().await;
    let bucket = s3::remote(&server);
    let files = [
        ("workspace/AGENTS.md", "Keep daily notes in memory/."),
        ("workspace/SOUL.md", "You are Clawd, dry and kind."),
        ("workspace/IDENTITY.md", "- Name: Clawd\n- Emoji: 🦞"),
        (
            "workspace/USER.md",
            "- Name: Grace\n- Time zone: Europe/Lisbon",
        ),
        ("workspace/MEMORY.md", "Grace's sister is Ada."),
        (
            "workspace/memory/2026-12-06.md",
            "Grace asked about flights.",
        ),
    ];
    for (key, text) in files {
        let payload = PutPayload::from(text.as_bytes().to_vec());
        bucket.put(&key.into(), payload).await.unwrap();
    }
    let fake = fake::FakeProvider::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut env = model_env(&fake);
    env.extend([
        ("R2_ACCESS_KEY_ID", s3::ACCESS_KEY.to_owned()),
        ("R2_SECRET_ACCESS_KEY", s3::SECRET_KEY.to_owned()),
        ("S3_ENDPOINT", server.endpoint()),
        ("S3_REGION", "us-east-1".to_owned()),
    ]);
    let gateway = start(state.path(), &env);
    let mut client = gateway.connected().await;
    let events = client.chat("who am I?", "run-1").await;
    assert_eq!(events.last().unwrap()["payload"]["state"], "final");

    let system = system_prompt(&fake, 0);
    for (key, text) in &files[..5] {
        let path = key.trim_start_matches("workspace/");
        assert!(
            system.contains(&format!("## {path}\n{text}\n")),
            "{path} missing from:\n{system}"
        );
    }
    let order: Vec<usize> = [
        "## AGENTS.md",
        "## SOUL.md",
        "## IDENTITY.md",
        "## USER.md",
        "## MEMORY.md",
    ]
    .iter()
    .map(|heading| system.find(heading).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(
        !system.contains("BOOTSTRAP.md"),
        "a migrated workspace is not new"
    );
    assert!(
        system.contains("Today is 20"),
        "the model is told the date: {system}"
    );
    // Not seeded over: the person's own files stay as they were.
    let soul = std::fs::read_to_string(state.path().join("workspace/SOUL.md")).unwrap();
    assert_eq!(soul, "You are Clawd, dry and kind.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_gateway_seeds_the_workspace_and_runs_its_first_run_script() {
    let fake = fake::FakeProvider::start().await;
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path(), &model_env(&fake));
    let mut client = gateway.connected().await;
    client.chat("hello", "run-1").await;
    let system = system_prompt(&fake, 0);
    assert!(system.contains("## Bootstrap Pending"), "{system}");
    assert!(system.contains("## BOOTSTRAP.md\n"), "{system}");
    assert!(system.contains("## AGENTS.md\n"));

    // The agent deletes the script (here, the person does): it is not seen again.
    std::fs::remove_file(state.path().join("workspace/BOOTSTRAP.md")).unwrap();
    client.chat("and now?", "run-2").await;
    let system = system_prompt(&fake, 1);
    assert!(!system.contains("## BOOTSTRAP.md") && !system.contains("Bootstrap Pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_tools_do_not_follow_a_symlink_out_of_the_workspace() {
    let state = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "the gateway's secret").unwrap();
    let gateway = Gateway::start(state.path(), &[]);
    let mut client = gateway.connected().await;
    client.chat("hello", "run-0").await;
    std::os::unix::fs::symlink(outside.path(), state.path().join("workspace/out")).unwrap();
    // Nor to the gateway's own state beside the workspace.
    let token_file = std::fs::read_dir(state.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_file())
        .expect("the state holds a file");
    std::os::unix::fs::symlink(&token_file, state.path().join("workspace/state.md")).unwrap();

    // The offline echo model calls the tool it is told to, and says what it returned.
    let reply = |events: Vec<serde_json::Value>| {
        events.last().unwrap()["payload"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let read = client
        .chat(r#"/tool read {"path": "out/secret.txt"}"#, "run-1")
        .await;
    let read = reply(read);
    assert!(
        read.contains("symlink") && !read.contains("the gateway's secret"),
        "{read}"
    );
    let write = client
        .chat(
            r#"/tool write {"path": "out/planted.md", "content": "x"}"#,
            "run-2",
        )
        .await;
    assert!(reply(write).contains("symlink"));
    assert!(!outside.path().join("planted.md").exists());
    let beside = reply(
        client
            .chat(r#"/tool read {"path": "state.md"}"#, "run-3")
            .await,
    );
    assert!(beside.contains("symlink"), "{beside}");
}
