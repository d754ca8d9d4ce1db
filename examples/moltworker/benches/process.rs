//! Process-level numbers of the release binary: time from process start to
//! `/health` answering, idle memory (RSS), and binary size.
//!
//! Run: `cargo bench -p moltworker --bench process` (prints a table).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STARTS: usize = 20;

fn main() {
    // `cargo bench` passes flags such as --bench; this harness takes none.
    let binary = env!("CARGO_BIN_EXE_moltworker");
    let mut start_times = Vec::new();
    let mut idle_rss = Vec::new();
    for run in 0..STARTS {
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env("MOLT_STATE_DIR", state.path())
            .env("MOLT_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while !health_ok(port) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no /health within 10 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        start_times.push(started.elapsed());
        if run < 3 {
            // Idle: after one chat-free second of serving.
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            std::thread::sleep(Duration::from_secs(1));
            idle_rss.push(rss_kib(child.id()));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    start_times.sort();
    let size = std::fs::metadata(binary).unwrap().len();
    let median = start_times[STARTS / 2];
    println!(
        "\nmoltworker ({}, {STARTS} starts)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("| measure                         | value |");
    println!("|---------------------------------|-------|");
    println!("| start → /health, median         | {:.1} ms |", ms(median));
    println!(
        "| start → /health, min / max      | {:.1} / {:.1} ms |",
        ms(start_times[0]),
        ms(start_times[STARTS - 1])
    );
    println!(
        "| idle RSS (3 runs, max)          | {:.1} MiB |",
        *idle_rss.iter().max().unwrap() as f64 / 1024.0
    );
    println!(
        "| binary size                     | {:.1} MiB |",
        size as f64 / (1024.0 * 1024.0)
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
