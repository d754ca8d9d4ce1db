//! The state mirror beside `rclone sync` (Debian's rclone, with Moltworker's
//! flags), in one run, on one data set, against the same local S3 server
//! (s3s-fs, SigV4 checked), counting the requests each makes at the server.
//!
//! Run: `cargo bench -p molt-storage --bench sync`; with `BENCH_RCLONE=1`
//! rclone runs beside it (needs `rclone` on PATH: `apt-get install rclone`). `BENCH_FILES` and `BENCH_FILE_BYTES` change the
//! data set (default 10,000 files of 10 KiB: 100 MB).

#[path = "../tests/support/mod.rs"]
mod support;

use molt_storage::mirror::{MirrorOptions, StateMirror};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{ACCESS_KEY, S3Server, SECRET_KEY};

struct Step {
    what: String,
    seconds: f64,
    requests: usize,
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

async fn rclone(server: &S3Server, args: &[&str]) {
    let status = tokio::process::Command::new("rclone")
        .args(args)
        // Moltworker's flags.
        .args(["--transfers=16", "--fast-list", "--s3-no-check-bucket"])
        .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
        .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
        .env("RCLONE_CONFIG_BENCH_ENDPOINT", server.endpoint())
        .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_BENCH_REGION", "us-east-1")
        .env("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true")
        // For provider "Other" rclone lists with ListObjects v1, which s3s-fs answers empty; R2 takes v2.
        .env("RCLONE_CONFIG_BENCH_LIST_VERSION", "2")
        // rclone's S3 client fails on a custom CA bundle with its own transport; plain HTTP needs none.
        .env_remove("AWS_CA_BUNDLE")
        .status()
        .await
        .expect("rclone runs (apt-get install rclone)");
    assert!(status.success(), "rclone {args:?} failed");
}

async fn measure<F: std::future::Future<Output = ()>>(
    server: &S3Server,
    what: &str,
    run: F,
) -> Step {
    let before = server.requests.load(Ordering::SeqCst);
    let started = Instant::now();
    run.await;
    Step {
        what: what.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        requests: server.requests.load(Ordering::SeqCst) - before,
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let files = env_number("BENCH_FILES", 10_000);
    let file_bytes = env_number("BENCH_FILE_BYTES", 10 * 1024);
    let total_mb = (files * file_bytes) as f64 / 1e6;
    let s3 = tempfile::tempdir().unwrap();
    let server = S3Server::start(s3.path()).await;
    server.bucket("moltbot-data");
    let state = tempfile::tempdir().unwrap();
    write_data_set(state.path(), files, file_bytes);
    let remote = server.config("moltbot-data").object_store().unwrap();
    let dir = state.path().to_str().unwrap().to_string();
    // rclone gets a bucket of its own: at a prefix it first asks whether the
    // prefix is a file, which s3s-fs (mapping keys to directories) answers with
    // a 500 after about 45 s, a cost a real bucket does not have.
    server.bucket("rclone-data");
    let rclone_target = "bench:rclone-data";
    let mirror = StateMirror::new(state.path(), remote.clone(), MirrorOptions::default());
    let mut steps = Vec::new();
    // rclone beside it: opt-in for now, since against s3s-fs its listings come
    // back empty (so its sync re-uploads everything and its copy restores
    // nothing), which would make any comparison meaningless.
    let with_rclone = std::env::var_os("BENCH_RCLONE").is_some();
    let rclone_step = |args: Vec<String>| {
        let server = &server;
        async move {
            if with_rclone {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                rclone(server, &args).await;
            }
        }
    };

    steps.push(
        measure(&server, "first backup: molt", async {
            mirror.backup_now().await.map(drop).unwrap()
        })
        .await,
    );
    steps.push(
        measure(
            &server,
            "first backup: rclone sync",
            rclone_step(vec!["sync".into(), dir.clone(), rclone_target.into()]),
        )
        .await,
    );
    steps.push(
        measure(&server, "no change: molt (running mirror)", async {
            mirror.backup_now().await.map(drop).unwrap()
        })
        .await,
    );
    let cold = StateMirror::new(state.path(), remote.clone(), MirrorOptions::default());
    steps.push(
        measure(
            &server,
            "no change: molt (fresh process: hashes every file)",
            async { cold.backup_now().await.map(drop).unwrap() },
        )
        .await,
    );
    steps.push(
        measure(
            &server,
            "no change: rclone sync",
            rclone_step(vec!["sync".into(), dir.clone(), rclone_target.into()]),
        )
        .await,
    );
    std::fs::write(
        state.path().join("workspace/dir000/file00000.md"),
        "changed\n",
    )
    .unwrap();
    steps.push(
        measure(&server, "one file changed: molt (running mirror)", async {
            mirror.backup_now().await.map(drop).unwrap()
        })
        .await,
    );
    steps.push(
        measure(
            &server,
            "one file changed: rclone sync",
            rclone_step(vec!["sync".into(), dir.clone(), rclone_target.into()]),
        )
        .await,
    );
    let fresh = tempfile::tempdir().unwrap();
    let restorer = StateMirror::new(fresh.path(), remote.clone(), MirrorOptions::default());
    steps.push(
        measure(&server, "full restore: molt", async {
            restorer.restore(None).await.map(drop).unwrap()
        })
        .await,
    );
    let fresh_rclone = tempfile::tempdir().unwrap();
    let into = fresh_rclone.path().to_str().unwrap().to_string();
    steps.push(
        measure(
            &server,
            "full restore: rclone copy",
            rclone_step(vec!["copy".into(), rclone_target.into(), into.clone()]),
        )
        .await,
    );

    // Both restores must have brought every file back.
    let count = |root: &Path| {
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
    };
    assert!(
        count(&fresh.path().join("workspace")) == files,
        "molt restored every file"
    );
    if with_rclone {
        assert_eq!(
            count(&fresh_rclone.path().join("workspace")),
            files,
            "rclone restored every file"
        );
    }

    // Write to durable: the running mirror (default 200 ms debounce), five writes.
    let running = Arc::new(StateMirror::new(
        state.path(),
        remote.clone(),
        MirrorOptions::default(),
    ));
    running.backup_now().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(running.clone().run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    for n in 0..5 {
        let seq_before = running.status().manifest_seq;
        let written = Instant::now();
        std::fs::write(
            state.path().join(format!("pairing-{n}.json")),
            format!("{{\"n\":{n}}}"),
        )
        .unwrap();
        while running.status().manifest_seq == seq_before
            && written.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(written.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = stop.send(());
    let _ = task.await;
    latencies.sort_by(f64::total_cmp);

    println!(
        "\nData set: {files} files, {total_mb:.0} MB. Same s3s-fs server on loopback; requests counted at the server.\n"
    );
    println!("| step | seconds | requests |");
    println!("|---|---|---|");
    for step in steps
        .iter()
        .filter(|step| with_rclone || !step.what.contains("rclone"))
    {
        println!(
            "| {} | {:.3} | {} |",
            step.what, step.seconds, step.requests
        );
    }
    let ratio = |molt: usize, rclone: usize| steps[rclone].seconds / steps[molt].seconds;
    if with_rclone {
        println!("\n| comparison | rclone / molt |");
        println!("|---|---|");
        println!("| first backup, time | {:.1}× |", ratio(0, 1));
        println!("| no change, time (running mirror) | {:.0}× |", ratio(2, 4));
        println!("| no change, time (fresh process) | {:.1}× |", ratio(3, 4));
        println!("| one file changed, time | {:.0}× |", ratio(5, 6));
        println!(
            "| one file changed, requests | {} vs {} |",
            steps[6].requests, steps[5].requests
        );
        println!("| full restore, time | {:.1}× |", ratio(7, 8));
        println!(
            "\nRestore throughput: molt {:.0} MB/s, rclone {:.0} MB/s.",
            total_mb / steps[7].seconds,
            total_mb / steps[8].seconds
        );
    } else {
        println!("\n(rclone steps skipped: set BENCH_RCLONE=1 to run them.)");
        println!(
            "\nRestore throughput: molt {:.0} MB/s.",
            total_mb / steps[7].seconds
        );
    }
    println!(
        "Write to durable in the bucket (running mirror, 5 writes): median {:.0} ms, max {:.0} ms.",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}
