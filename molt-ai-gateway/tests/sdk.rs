//! The official `openai` and `anthropic` Python SDKs against the proxy, through
//! both provider kinds. `./scripts/test` installs the SDKs into
//! `target/sdk-venv` and runs this test; `MOLT_PYTHON` points elsewhere.

mod support;

use support::fake::FakeProvider;
use support::{GATEWAY_KEY, gateway_toml, start_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the official Python SDKs: ./scripts/test installs them and runs this"]
async fn the_official_python_sdks_work_against_the_proxy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("MOLT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("../target/sdk-venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with the SDKs at {} (run ./scripts/test, or set MOLT_PYTHON)",
        python.display()
    );
    let fake = FakeProvider::start().await;
    let proxy = start_proxy(&gateway_toml(&fake, ""), 1 << 20).await;
    let output = tokio::process::Command::new(&python)
        .arg(root.join("tests/sdk/sdk_check.py"))
        .env("PROXY_URL", proxy.url(""))
        .env("GATEWAY_KEY", GATEWAY_KEY)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    println!("{report}");
    assert!(output.status.success(), "the SDK checks failed:\n{report}");
    assert!(report.contains("OK"), "{report}");
}
