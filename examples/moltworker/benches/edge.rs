//! What the Worker adds, in workerd on this machine: its latency on an HTTP
//! request and a WebSocket message against the gateway directly (p50, p99,
//! three rounds in one run), and the cold path from a first connection to a
//! streamed reply while the container starts and restores its state from an
//! S3 server that checks SigV4. The measuring is worker/bench/edge.mjs; this
//! provides the S3 server, the model fake and the release binary.
//!
//! Run: `cargo bench -p moltworker --bench edge` (needs the worker's npm
//! packages and its wasm build: `cd worker && npm ci && ./build.sh`).

#[path = "../../../molt-ai-gateway/tests/support/fake.rs"]
mod fake;
#[path = "../../../molt-storage/tests/support/mod.rs"]
mod s3;
#[path = "../tests/support/stand_ins.rs"]
mod stand_ins;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; a `cargo test` of the benches runs nothing.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let stand_ins = stand_ins::StandIns::start().await;
    let worker_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/worker");
    let binary =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/moltworker");
    let status = tokio::process::Command::new("node")
        .current_dir(worker_dir)
        .arg("bench/edge.mjs")
        .env("MOLTWORKER_BIN", &binary)
        .envs(stand_ins.env())
        .kill_on_drop(true)
        .status()
        .await
        .expect("node runs");
    assert!(status.success(), "the measurement failed: {status}");
}
