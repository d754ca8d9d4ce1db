//! OpenClaw's protocol on the release binary, from a client's side:
//! connect-to-`hello-ok` latency and `chat.send`-to-first-delta latency with
//! the offline echo model (median and p99 over 1,000 connections, each new),
//! and the gateway's resident memory idle and with 100 clients connected.
//!
//! Run: `cargo bench -p moltworker --bench protocol` (prints a table).
//! With `OPENCLAW_URL` (`ws://host:port`) and `OPENCLAW_TOKEN` set (and
//! `OPENCLAW_PID` for its memory), the same connect measurement runs against
//! that gateway too, in the same run, so the two compare as a ratio on a noisy
//! machine: `./scripts/bench-openclaw` installs OpenClaw from npm and does this.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 1000;
const WARM_UP: usize = 50;
const IDLE_CLIENTS: usize = 100;
/// The conversation is reset this often (untimed), so the history a run
/// reads stays the same size across the measurement.
const RESET_EVERY: usize = 50;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Gateway {
    child: Child,
    url: String,
    token: String,
    _state: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Gateway {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moltworker"))
        .env("MOLT_STATE_DIR", state.path())
        .env("MOLT_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .env("MOLT_BROWSER", "off")
        .env_remove("MOLTBOT_GATEWAY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the moltworker binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().strip_prefix("Control UI: http://").unwrap();
    let (address, token) = url.split_once("/?token=").unwrap();
    Gateway {
        child,
        url: format!("ws://{address}/ws"),
        token: token.to_owned(),
        _state: state,
    }
}

/// The next text frame as JSON.
async fn next(socket: &mut Socket) -> Value {
    loop {
        match socket.next().await.expect("open").expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

async fn request(socket: &mut Socket, id: &str, method: &str, params: Value) {
    let frame = json!({ "type": "req", "id": id, "method": method, "params": params });
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Opens a connection and completes the handshake as the owner (the gateway
/// token, no device); returns the socket and the time to `hello-ok`.
async fn connect(url: &str, token: &str) -> (Socket, Duration) {
    try_connect(url, token)
        .await
        .unwrap_or_else(|refused| panic!("{refused}"))
}

async fn try_connect(url: &str, token: &str) -> Result<(Socket, Duration), String> {
    let started = Instant::now();
    let (mut socket, _) =
        (tokio_tungstenite::connect_async(url).await).map_err(|e| e.to_string())?;
    let challenge = next(&mut socket).await;
    assert_eq!(challenge["event"], "connect.challenge");
    let params = json!({ "minProtocol": 3, "maxProtocol": 4, "role": "operator",
        "scopes": ["operator.admin", "operator.read", "operator.write"], "auth": { "token": token },
        "client": { "id": "cli", "version": "1", "platform": "linux", "mode": "cli" } });
    request(&mut socket, "c", "connect", params).await;
    loop {
        let frame = next(&mut socket).await;
        if frame["type"] == "res" && frame["id"] == "c" {
            return match frame["ok"] == true {
                true => Ok((socket, started.elapsed())),
                false => Err(frame.to_string()),
            };
        }
    }
}

/// Waits until the gateway at `url` admits a client (OpenClaw answers
/// UNAVAILABLE while its sidecars start).
async fn ready(url: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Err(refused) = try_connect(url, token).await {
        assert!(Instant::now() < deadline, "not ready: {refused}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The resident memory of `pid` and all its descendants.
fn tree_rss_kib(pid: u32) -> u64 {
    let children = moltworker::debug::child_pids(&pid.to_string());
    rss_kib(pid) + children.into_iter().map(tree_rss_kib).sum::<u64>()
}

/// Idle resident memory of the process tree, then with [`IDLE_CLIENTS`] connected.
async fn memory(pid: u32, url: &str, token: &str) -> (u64, u64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = tree_rss_kib(pid);
    let mut clients = Vec::new();
    for _ in 0..IDLE_CLIENTS {
        clients.push(connect(url, token).await.0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    (idle, tree_rss_kib(pid))
}

fn print_memory(name: &str, (idle, with_clients): (u64, u64)) {
    println!(
        "{name:<34} idle {:>7.1} MiB   with {IDLE_CLIENTS} clients {:>7.1} MiB   ({:.1} KiB per client)",
        idle as f64 / 1024.0,
        with_clients as f64 / 1024.0,
        with_clients.saturating_sub(idle) as f64 / IDLE_CLIENTS as f64
    );
}

/// Sends one chat message and returns the time to its first `delta` event.
async fn first_delta(socket: &mut Socket, key: &str) -> Duration {
    let started = Instant::now();
    let params = json!({ "message": format!("ping {key}"), "idempotencyKey": key });
    request(socket, "s", "chat.send", params).await;
    let mut elapsed = None;
    loop {
        let frame = next(socket).await;
        let payload = &frame["payload"];
        if frame["event"] == "chat" && payload["runId"] == key {
            if payload["state"] == "delta" && elapsed.is_none() {
                elapsed = Some(started.elapsed());
            }
            if payload["state"] == "final" {
                return elapsed.expect("a delta before the final event");
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<34} median {:>7.3} ms   p99 {:>7.3} ms   min {:>7.3} ms   max {:>7.3} ms   (n = {})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(samples[0]),
        ms(*samples.last().unwrap()),
        samples.len()
    );
}

/// Connect-to-hello-ok over `count` new connections (after a warm-up).
async fn connect_latencies(url: &str, token: &str, count: usize) -> Vec<Duration> {
    for _ in 0..WARM_UP {
        let (mut socket, _) = connect(url, token).await;
        let _ = socket.close(None).await;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let (mut socket, took) = connect(url, token).await;
        samples.push(took);
        let _ = socket.close(None).await;
    }
    samples
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let openclaw = (
        std::env::var("OPENCLAW_URL"),
        std::env::var("OPENCLAW_TOKEN"),
    );
    if let (Ok(url), Ok(token)) = &openclaw {
        // Its start keeps both cores busy for seconds: measure nothing until it is up.
        ready(url, token).await;
    }
    let gateway = start();
    let (url, token) = (gateway.url.clone(), gateway.token.clone());
    let connects = connect_latencies(&url, &token, CONNECTIONS).await;

    // chat.send to the first delta, each on a new connection.
    let mut deltas = Vec::with_capacity(CONNECTIONS);
    for n in 0..CONNECTIONS + WARM_UP {
        let (mut socket, _) = connect(&url, &token).await;
        if n % RESET_EVERY == 0 {
            request(&mut socket, "r", "sessions.reset", json!({ "key": "main" })).await;
        }
        let took = first_delta(&mut socket, &format!("k{n}")).await;
        if n >= WARM_UP {
            deltas.push(took);
        }
        let _ = socket.close(None).await;
    }

    let ours = memory(gateway.child.id(), &url, &token).await;

    println!("\nmoltworker protocol (release, one client at a time, new connection each)");
    summary("connect -> hello-ok", connects);
    summary("chat.send -> first delta (echo)", deltas);
    print_memory("resident memory (process tree)", ours);

    let openclaw = (
        std::env::var("OPENCLAW_URL"),
        std::env::var("OPENCLAW_TOKEN"),
    );
    if let (Ok(url), Ok(token)) = openclaw {
        ready(&url, &token).await;
        let theirs = connect_latencies(&url, &token, CONNECTIONS).await;
        println!("\nOpenClaw at {url}, same client, same run");
        summary("connect -> hello-ok", theirs);
        if let Some(pid) = std::env::var("OPENCLAW_PID")
            .ok()
            .and_then(|p| p.parse().ok())
        {
            print_memory(
                "resident memory (process tree)",
                memory(pid, &url, &token).await,
            );
        }
    }
}
