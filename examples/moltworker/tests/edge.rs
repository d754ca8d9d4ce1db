//! The Worker (examples/moltworker/worker) in the real Workers runtime
//! (workerd, through Miniflare), in front of the real `moltworker` binary as
//! its container stand-in, with the strict Anthropic fake as the model, a
//! bucket on an S3 server that checks SigV4, and Debian's Chromium behind a
//! Browser Rendering stand-in: the Node tests in worker/tests/ drive it as
//! clients would.
//!
//! Needs Node.js, the worker's npm packages, its wasm build
//! (worker/build.sh) and Chromium, which `./scripts/test` provides: run with
//! `--ignored`.

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;
#[path = "support/stand_ins.rs"]
mod stand_ins;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, the worker's npm packages and wasm build, and Chromium: ./scripts/test runs it"]
async fn the_worker_in_workerd_in_front_of_the_gateway() {
    let stand_ins = stand_ins::StandIns::start().await;
    let worker_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/worker");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut node = tokio::process::Command::new("node");
    node.current_dir(worker_dir)
        .args(["--test", "--test-concurrency=1", "--test-force-exit"])
        .env("MOLTWORKER_BIN", env!("CARGO_BIN_EXE_moltworker"))
        .env("CHROMIUM_PATH", chromium)
        .envs(stand_ins.env())
        .kill_on_drop(true);
    // EDGE_TEST_ONLY=<pattern> runs the tests whose names match.
    if let Ok(only) = std::env::var("EDGE_TEST_ONLY") {
        node.arg(format!("--test-name-pattern={only}"));
    }
    node.arg("tests/");
    let status = tokio::time::timeout(Duration::from_secs(480), node.status())
        .await
        .expect("the Worker's tests finish within 8 minutes")
        .expect("node runs");
    assert!(status.success(), "the Worker's tests failed: {status}");
}
