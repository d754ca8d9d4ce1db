//! The state mirror beside `rclone sync` (Debian's rclone, with Moltworker's
//! flags), in one run, on one data set, against the same local S3 server
//! (s3s-fs, SigV4 checked), counting the requests each makes at the server.
//! Each step runs `BENCH_ROUNDS` times (default 3), molt and rclone taking
//! turns, and the median is reported: this machine is noisy.
//!
//! Run: `cargo bench -p molt-storage --bench sync`. rclone runs beside it
//! when it is on PATH (`apt-get install rclone`; `BENCH_RCLONE=0` skips it).
//! `BENCH_FILES` and `BENCH_FILE_BYTES` change the data set (default 10,000
//! files of 10 KiB: 100 MB).

#[path = "../tests/support/mod.rs"]
mod support;

use molt_storage::mirror::{MirrorOptions, StateMirror};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{ACCESS_KEY, S3Server, SECRET_KEY};

/// One measured run of one tool: how long it took, and the requests the
/// server counted.
#[derive(Clone, Copy)]
struct Sample {
    seconds: f64,
    requests: usize,
}

/// One step of the table: the median of each tool's rounds.
struct Row {
    what: &'static str,
    molt: Sample,
    rclone: Option<Sample>,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn write_data_set(root: &Path, files: usize, bytes: usize) {
    for n in 0..files {
        let path = root.join(format!("workspace/dir{:03}/file{n:05}.md", n % 100));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = format!("file {n}\n").into_bytes();
        text.resize(bytes, b'a' + (n % 26) as u8);
        std::fs::write(path, text).unwrap();
    }
}

fn rclone_installed() -> bool {
    std::process::Command::new("rclone")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

async fn rclone_run(server: &S3Server, args: &[&str]) {
    let status = tokio::process::Command::new("rclone")
        .args(args)
        // Moltworker's flags.
        .args(["--transfers=16", "--fast-list", "--s3-no-check-bucket"])
        // No config file: the remote is configured by the variables below.
        .env("RCLONE_CONFIG", "/notfound")
        .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
        .env("RCLONE_CONFIG_BENCH_PROVIDER", "Cloudflare")
        .env("RCLONE_CONFIG_BENCH_ENDPOINT", server.endpoint())
        .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_BENCH_REGION", "auto")
        .env("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true")
        // rclone's S3 client fails on a custom CA bundle with its own transport; plain HTTP needs none.
        .env_remove("AWS_CA_BUNDLE")
        .status()
        .await
        .expect("rclone runs (apt-get install rclone)");
    assert!(status.success(), "rclone {args:?} failed");
}

async fn measure(server: &S3Server, run: impl std::future::Future<Output = ()>) -> Sample {
    let before = server.requests.load(Ordering::SeqCst);
    let started = Instant::now();
    run.await;
    Sample {
        seconds: started.elapsed().as_secs_f64(),
        requests: server.requests.load(Ordering::SeqCst) - before,
    }
}

/// The sample of median time (requests are the same from round to round).
fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    samples[samples.len() / 2]
}

/// Counts the files under `root`.
fn count_files(root: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = std::fs::read_dir(&directory)
            .unwrap_or_else(|err| panic!("{}: {err}", directory.display()));
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    // The server gets a runtime of its own, as it would a process of its own:
    // molt then shares no worker threads with it, just as rclone does not.
    let server_runtime = runtime();
    let s3 = tempfile::tempdir().unwrap();
    let server = server_runtime.block_on(S3Server::start(s3.path()));
    runtime().block_on(run(&server));
}

async fn run(server: &S3Server) {
    let files = env_number("BENCH_FILES", 10_000);
    let file_bytes = env_number("BENCH_FILE_BYTES", 10 * 1024);
    let rounds = env_number("BENCH_ROUNDS", 3).max(1);
    let total_mb = (files * file_bytes) as f64 / 1e6;
    let state = tempfile::tempdir().unwrap();
    write_data_set(state.path(), files, file_bytes);
    let dir = state.path().to_str().unwrap().to_string();
    let with_rclone = std::env::var("BENCH_RCLONE").as_deref() != Ok("0") && rclone_installed();
    let options = MirrorOptions::default;
    let mut rows = Vec::new();

    // Each step: `rounds` turns of molt then rclone, medians reported.
    macro_rules! step {
        ($what:expr, |$round:ident| $molt:expr, $rclone:expr) => {{
            let (mut molt, mut rclone) = (Vec::new(), Vec::new());
            for $round in 0..rounds {
                molt.push(measure(server, $molt).await);
                if with_rclone {
                    let args: Vec<String> = $rclone;
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    rclone.push(measure(server, rclone_run(server, &args)).await);
                }
            }
            rows.push(Row {
                what: $what,
                molt: median(molt),
                rclone: with_rclone.then(|| median(rclone)),
            });
        }};
    }

    // First backup: each round into empty buckets of its own (rclone's, the
    // way Moltworker uses one, is a bucket to itself). The last round's
    // buckets serve the steps after.
    let bucket = |tool: &str, round: usize| {
        let name = format!("{tool}-{round}");
        server.bucket(&name);
        name
    };
    let last = rounds - 1;
    let remote = |round: usize| {
        server
            .config(&format!("molt-{round}"))
            .object_store()
            .unwrap()
    };
    let rclone_target = format!("bench:rclone-{last}");
    step!(
        "first backup",
        |round| async {
            bucket("molt", round);
            let mirror = StateMirror::new(state.path(), remote(round), options());
            mirror.backup_now().await.map(drop).unwrap()
        },
        vec![
            "sync".into(),
            dir.clone(),
            format!("bench:{}", bucket("rclone", round))
        ]
    );
    let mirror = StateMirror::new(state.path(), remote(last), options());
    mirror.backup_now().await.unwrap();
    step!(
        "no change (running mirror)",
        |_round| async { mirror.backup_now().await.map(drop).unwrap() },
        vec!["sync".into(), dir.clone(), rclone_target.clone()]
    );
    step!(
        "no change (fresh process: hashes every file)",
        |_round| async {
            let cold = StateMirror::new(state.path(), remote(last), options());
            cold.backup_now().await.map(drop).unwrap()
        },
        vec!["sync".into(), dir.clone(), rclone_target.clone()]
    );
    let changed = state.path().join("workspace/dir000/file00000.md");
    step!(
        "one file changed (running mirror)",
        |round| async {
            std::fs::write(&changed, format!("changed in round {round}\n")).unwrap();
            mirror.backup_now().await.map(drop).unwrap()
        },
        vec!["sync".into(), dir.clone(), rclone_target.clone()]
    );
    let restored = tempfile::tempdir().unwrap();
    let into = |tool: &str, round: usize| restored.path().join(format!("{tool}-{round}"));
    step!(
        "full restore",
        |round| async {
            let restorer = StateMirror::new(into("molt", round), remote(last), options());
            restorer.restore(None).await.map(drop).unwrap()
        },
        vec![
            "copy".into(),
            rclone_target.clone(),
            into("rclone", round).to_str().unwrap().to_string(),
        ]
    );
    // Every restore must have brought every file back.
    for round in 0..rounds {
        assert_eq!(count_files(&into("molt", round).join("workspace")), files);
        if with_rclone {
            assert_eq!(count_files(&into("rclone", round).join("workspace")), files);
        }
    }

    let latencies = write_to_durable(state.path(), remote(last)).await;

    println!(
        "\nData set: {files} files, {total_mb:.0} MB. Same s3s-fs server on loopback; requests counted at the server; median of {rounds} rounds.\n"
    );
    println!(
        "| step | molt s | molt requests | rclone s | rclone requests | rclone / molt (time) |"
    );
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let (seconds, requests, ratio) = match row.rclone {
            Some(rclone) => (
                format!("{:.3}", rclone.seconds),
                rclone.requests.to_string(),
                format!("{:.1}×", rclone.seconds / row.molt.seconds),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {:.3} | {} | {seconds} | {requests} | {ratio} |",
            row.what, row.molt.seconds, row.molt.requests
        );
    }
    let restore = rows.last().expect("rows");
    print!(
        "\nRestore throughput: molt {:.0} MB/s",
        total_mb / restore.molt.seconds
    );
    match restore.rclone {
        Some(rclone) => println!(", rclone {:.0} MB/s.", total_mb / rclone.seconds),
        None => println!(". (rclone skipped: not on PATH, or BENCH_RCLONE=0.)"),
    }
    println!(
        "Write to durable in the bucket (running mirror, {} writes 130 ms apart): median {:.0} ms, max {:.0} ms.",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// A fresh running mirror (default 200 ms debounce) over `state`; writes every
/// 130 ms, so some land while a backup is under way. A write is durable when a
/// snapshot in the bucket names it (the marker file is that snapshot's copy,
/// written once its manifest is in the bucket). Returns sorted latencies in ms.
async fn write_to_durable(state: &Path, remote: Arc<dyn object_store::ObjectStore>) -> Vec<f64> {
    let running = Arc::new(StateMirror::new(state, remote, MirrorOptions::default()));
    running.backup_now().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(running.clone().run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = env_number("BENCH_WRITES", 20).max(1);
    let mut written: Vec<(String, Instant)> = Vec::new();
    let mut latencies = Vec::new();
    let mut seen_seq = running.status().manifest_seq;
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.len() < writes && Instant::now() < deadline {
        let due = written
            .last()
            .is_none_or(|(_, at)| at.elapsed() >= Duration::from_millis(130));
        if written.len() < writes && due {
            let name = format!("pairing-{}.json", written.len());
            std::fs::write(state.join(&name), "{\"paired\":true}").unwrap();
            written.push((name, Instant::now()));
        }
        if running.status().manifest_seq != seen_seq {
            seen_seq = running.status().manifest_seq;
            let marker: serde_json::Value = serde_json::from_slice(
                &std::fs::read(state.join(".molt-sync/snapshot.json")).unwrap(),
            )
            .unwrap();
            for (name, at) in written.iter().skip(latencies.len()) {
                if marker["files"].get(name.as_str()).is_none() {
                    break;
                }
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(latencies.len(), writes, "every write became durable");
    let _ = stop.send(());
    let _ = task.await;
    latencies.sort_by(f64::total_cmp);
    latencies
}
