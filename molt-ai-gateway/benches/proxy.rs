//! The proxy under load, against a local zero-delay mock provider, in one run:
//! requests per second and p50/p99 latency direct to the mock and through the
//! proxy at rising rates, cache-hit latency, the proxy's memory, and LiteLLM's
//! proxy on the same mock when it is installed.
//!
//! Run: `cargo bench -p molt-ai-gateway --bench proxy`. LiteLLM is used when
//! `target/litellm-venv/bin/litellm` exists (or `LITELLM_BIN` names it):
//! `python3 -m venv target/litellm-venv && target/litellm-venv/bin/pip install 'litellm[proxy]'`.
//! `BENCH_SECONDS` sets the time per step (default 5).
//!
//! The load is open-loop: requests leave on a fixed schedule, and latency is
//! measured from the scheduled time, so a slow server cannot hide its queue.

#[path = "../tests/support/fake.rs"]
mod fake;

use futures::StreamExt;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATES: [f64; 5] = [500.0, 1_000.0, 2_000.0, 3_000.0, 4_000.0];
const GATEWAY_KEY: &str = "bench-gateway-key";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Target {
    name: &'static str,
    url: String,
    model: &'static str,
    key: String,
    extra_headers: Vec<(&'static str, &'static str)>,
}

#[derive(Default)]
struct Stats {
    first_error: Option<String>,
    sent: usize,
    ok: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Stats {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_ms[index]
    }
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
}

/// Sends one request and reads the whole streamed answer; the error names what went wrong.
async fn one_request(client: &reqwest::Client, target: &Target, body: &str) -> Result<(), String> {
    let mut request = client
        .post(&target.url)
        .bearer_auth(&target.key)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in &target.extra_headers {
        request = request.header(*name, *value);
    }
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Err(format!("send: {err}")),
        Err(_) => return Err("timed out waiting for headers".into()),
    };
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    let mut body = response.bytes_stream();
    let mut done = false;
    let read = async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => done = done || bytes.windows(6).any(|w| w == b"[DONE]"),
                Err(_) => return false,
            }
        }
        true
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(true) if done => Ok(()),
        Ok(true) => Err("the stream ended without [DONE]".into()),
        Ok(false) => Err("the stream broke".into()),
        Err(_) => Err("timed out reading the stream".into()),
    }
}

async fn load(client: &reqwest::Client, target: &Arc<Target>, rate: f64, seconds: f64) -> Stats {
    let body = json!({
        "model": target.model,
        "messages": [{ "role": "user", "content": "Hello, benchmark" }],
        "stream": true,
        "stream_options": { "include_usage": true },
    })
    .to_string();
    let body = Arc::new(body);
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (client, target, body) = (client.clone(), target.clone(), body.clone());
        tasks.spawn(async move {
            let result = one_request(&client, &target, &body).await;
            (result, scheduled.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut stats = Stats {
        sent: total,
        ..Stats::default()
    };
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok((Ok(()), latency)) => {
                stats.ok += 1;
                stats.latencies_ms.push(latency);
            }
            Ok((Err(error), _)) => {
                stats.first_error.get_or_insert(error);
            }
            Err(_) => {}
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats.latencies_ms.sort_by(f64::total_cmp);
    stats
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A child process killed when dropped; with `group`, its whole process group
/// (LiteLLM's workers are its children).
struct Running {
    child: Child,
    group: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.group {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of every process in a process group, in KiB.
fn group_rss_kib(group: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The fields after the command name (which may hold spaces) start with state, ppid, pgrp.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(group)
        })
        .filter_map(|pid| rss_kib(pid, "VmRSS:"))
        .sum()
}

fn start_proxy(mock_openai_url: &str, dir: &std::path::Path) -> (Running, String) {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[providers]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{mock_openai_url}\"\napi_key = \"{}\"\n",
            fake::OPENAI_KEY
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_molt-ai-proxy"))
        .env("MOLT_AI_CONFIG", &config)
        .env("MOLT_AI_GATEWAY_KEY", GATEWAY_KEY)
        .env("MOLT_AI_BIND", "127.0.0.1:0")
        .env("MOLT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the molt-ai-proxy binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("the proxy prints its address")
        .to_string();
    (
        Running {
            child,
            group: false,
        },
        address,
    )
}

fn litellm_bin() -> Option<PathBuf> {
    let path = std::env::var_os("LITELLM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/litellm-venv/bin/litellm")
        });
    path.exists().then_some(path)
}

async fn start_litellm(
    bin: &std::path::Path,
    mock_openai_url: &str,
    dir: &std::path::Path,
    client: &reqwest::Client,
) -> Option<(Running, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: echo\n    litellm_params:\n      model: openai/echo\n      api_base: {mock_openai_url}\n      api_key: {}\ngeneral_settings:\n  master_key: {GATEWAY_KEY}\n",
            fake::OPENAI_KEY
        ),
    )
    .ok()?;
    let child = Command::new(bin)
        .process_group(0)
        // One worker per core, as LiteLLM recommends for throughput.
        .args([
            "--config",
            config.to_str()?,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "2",
        ])
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let running = Running { child, group: true };
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let health = client
            .get(format!("http://{address}/health/liveliness"))
            .send()
            .await;
        if health.is_ok_and(|response| response.status().is_success()) {
            return Some((running, address));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Cache hits inside the gateway, without HTTP: the time from `call` to the
/// end of the replayed stream.
async fn in_process_cache_hits(mock_openai_url: &str) {
    let toml = format!(
        "[cache]\nttl = \"1h\"\n[[providers]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{mock_openai_url}\"\napi_key = \"{}\"\n",
        fake::OPENAI_KEY
    );
    let config = molt_ai_gateway::GatewayConfig::from_toml(&toml).unwrap();
    let gateway = molt_ai_gateway::Gateway::from_config(&config, |_| None).unwrap();
    let mut request = molt_core::model::ModelRequest {
        messages: vec![molt_core::message::Message::user("Hello, benchmark")],
        ..Default::default()
    };
    request.options.model = Some("openai/echo".into());
    let call = molt_ai_gateway::Call::new(request);
    let mut micros = Vec::with_capacity(20_000);
    for _ in 0..20_001 {
        let start = Instant::now();
        let answer = gateway.call(call.clone()).await.unwrap();
        let events: Vec<_> = answer.events.collect().await;
        assert!(events.iter().all(Result::is_ok));
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    micros.remove(0); // the miss that filled the cache
    micros.sort_by(f64::total_cmp);
    let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
    println!(
        "\nCache hits inside the gateway (no HTTP), 20,000 calls one after another: p50 {:.1} µs, p99 {:.1} µs",
        at(0.50),
        at(0.99)
    );
}

fn row(label: &str, rate: f64, stats: &Stats) -> String {
    if let Some(error) = &stats.first_error {
        eprintln!(
            "{label} at {rate:.0} req/s: {} failed, the first with: {error}",
            stats.sent - stats.ok
        );
    }
    format!(
        "| {label} | {rate:.0} | {:.0} | {}/{} | {:.2} | {:.2} |",
        stats.throughput(),
        stats.ok,
        stats.sent,
        stats.percentile(0.50),
        stats.percentile(0.99)
    )
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    // The mock gets its own single-threaded runtime, as a separate server would.
    let (mock_tx, mock_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mock = fake::FakeProvider::start().await;
            mock.state
                .quiet
                .store(true, std::sync::atomic::Ordering::Relaxed);
            mock_tx.send(mock.openai_url()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let mock_url = mock_rx.recv().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, proxy_address) = start_proxy(&mock_url, dir.path());
    let proxy_pid = proxy.child.id();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = molt_ai_gateway::provider::http_client(Duration::from_secs(5), REQUEST_TIMEOUT).unwrap();
        let direct = Arc::new(Target {
            name: "direct to the mock",
            url: format!("{mock_url}/chat/completions"),
            model: "echo",
            key: fake::OPENAI_KEY.into(),
            extra_headers: vec![],
        });
        let proxied = Arc::new(Target {
            name: "through molt-ai-proxy",
            url: format!("http://{proxy_address}/v1/chat/completions"),
            model: "openai/echo",
            key: GATEWAY_KEY.into(),
            extra_headers: vec![],
        });
        let cached = Arc::new(Target {
            name: "molt-ai-proxy, cache hit",
            extra_headers: vec![("cf-aig-cache-ttl", "3600")],
            ..Target { name: "", url: proxied.url.clone(), model: "openai/echo", key: GATEWAY_KEY.into(), extra_headers: vec![] }
        });
        // Warm up connections on both paths.
        for target in [&direct, &proxied, &cached] {
            load(&client, target, 500.0, 0.5).await;
        }
        println!("\n{seconds} s per step; latency in ms from the scheduled send to the end of the streamed answer.\n");
        println!("| path | offered req/s | achieved req/s | ok/sent | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|");
        let mut added = Vec::new();
        for rate in RATES {
            let d = load(&client, &direct, rate, seconds).await;
            let p = load(&client, &proxied, rate, seconds).await;
            println!("{}", row(direct.name, rate, &d));
            println!("{}", row(proxied.name, rate, &p));
            added.push((rate, p.percentile(0.50) - d.percentile(0.50), p.percentile(0.99) - d.percentile(0.99), p.ok == p.sent));
        }
        let hits = load(&client, &cached, 2_000.0, seconds).await;
        println!("{}", row(cached.name, 2_000.0, &hits));
        let rss = rss_kib(proxy_pid, "VmRSS:").unwrap_or(0);
        let peak = rss_kib(proxy_pid, "VmHWM:").unwrap_or(0);
        println!("\nAdded by the proxy (proxy minus direct, same run):\n");
        println!("| offered req/s | p50 added ms | p99 added ms | all answered |");
        println!("|---|---|---|---|");
        for (rate, p50, p99, all) in &added {
            println!("| {rate:.0} | {p50:.2} | {p99:.2} | {all} |");
        }
        println!("\nmolt-ai-proxy memory after the run: RSS {:.1} MiB, peak RSS {:.1} MiB", rss as f64 / 1024.0, peak as f64 / 1024.0);

        in_process_cache_hits(&mock_url).await;

        match litellm_bin() {
            None => println!("\nLiteLLM: not installed (see the header of benches/proxy.rs); skipped."),
            Some(bin) => match start_litellm(&bin, &mock_url, dir.path(), &client).await {
                None => println!("\nLiteLLM: installed but did not become healthy within 120 s; skipped."),
                Some((litellm, address)) => {
                    let target = Arc::new(Target {
                        name: "through LiteLLM proxy",
                        url: format!("http://{address}/v1/chat/completions"),
                        model: "echo",
                        key: GATEWAY_KEY.into(),
                        extra_headers: vec![],
                    });
                    load(&client, &target, 50.0, 1.0).await;
                    println!("\n| path | offered req/s | achieved req/s | ok/sent | p50 ms | p99 ms |");
                    println!("|---|---|---|---|---|---|");
                    for rate in [100.0, 500.0, 1_000.0, 2_000.0] {
                        let d = load(&client, &direct, rate, seconds).await;
                        let p = load(&client, &proxied, rate, seconds).await;
                        let l = load(&client, &target, rate, seconds).await;
                        println!("{}", row(direct.name, rate, &d));
                        println!("{}", row(proxied.name, rate, &p));
                        println!("{}", row(target.name, rate, &l));
                        println!(
                            "| ratio LiteLLM/molt at {rate:.0} | | {:.2} | | {:.1} | {:.1} |",
                            l.throughput() / p.throughput(),
                            l.percentile(0.5) / p.percentile(0.5),
                            l.percentile(0.99) / p.percentile(0.99)
                        );
                    }
                    let litellm_rss = group_rss_kib(litellm.child.id());
                    println!("\nLiteLLM proxy RSS after the run: {:.1} MiB (all its processes)", litellm_rss as f64 / 1024.0);
                }
            },
        }
    });
    drop(proxy);
}
