//! The workspace's costs, on the local-file store (a temporary directory):
//! - assembling the system prompt from a full workspace (every bootstrap
//!   file present, most at their limits), p50 and p99 over many runs, and
//!   how many characters (and about how many tokens, at 4 characters a
//!   token) the files add;
//! - `memory_search` over 10 MB of daily notes: the first search (which
//!   builds the index) and the next ones (which read the files again to
//!   find changes), p50 and p99.
//!
//! Run: `cargo bench -p moltworker --bench workspace` (prints one JSON line
//! per measure; run it several times for the spread).

use molt_core::message::{ChatKind, InboundMessage, Sender};
use molt_core::platform::Timestamp;
use molt_core::prompt::SystemPrompt;
use molt_core::store::Store;
use molt_core::workspace::Workspace;
use molt_core::workspace::bootstrap::{BootstrapLimits, WorkspacePrompt};
use molt_core::workspace::memory::Memory;
use molt_storage::LocalFileStore;
use moltworker::platform::TokioPlatform;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT_RUNS: usize = 2_000;
const SEARCH_RUNS: usize = 50;
const NOTES_BYTES: usize = 10 * 1024 * 1024;

/// This process's resident memory, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = (status.lines())
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1e3
}

/// Text of about `chars` characters, in lines of prose.
fn prose(chars: usize, topic: &str) -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.len() < chars {
        text.push_str(&format!(
            "- {topic} {n}: keep replies short, check the calendar before promising a time.\n"
        ));
        n += 1;
    }
    text
}

fn inbound() -> InboundMessage {
    InboundMessage {
        channel: "telegram".into(),
        account: "bot".into(),
        sender: Sender {
            id: "42".into(),
            name: None,
        },
        message_id: "1".into(),
        chat_id: "42".into(),
        chat_kind: ChatKind::Direct,
        thread_id: None,
        text: "hello".into(),
        attachments: Vec::new(),
        mentioned: true,
        sent_at: Timestamp(0),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalFileStore::new(dir.path()));
        let clock = TokioPlatform::platform().clock;
        let workspace = Workspace::new(store, clock);
        let files = [
            ("AGENTS.md", 19_000),
            ("SOUL.md", 6_000),
            ("IDENTITY.md", 600),
            ("USER.md", 3_800),
            ("TOOLS.md", 8_000),
            ("MEMORY.md", 19_000),
        ];
        for (name, size) in files {
            workspace.write(name, &prose(size, name)).await.unwrap();
        }
        let prompt = WorkspacePrompt {
            base: "You are a helpful assistant.".into(),
            workspace: workspace.clone(),
            limits: BootstrapLimits::default(),
        };
        let message = inbound();
        let rendered = prompt.for_run(&message).await;
        let mut samples = Vec::with_capacity(PROMPT_RUNS);
        for _ in 0..PROMPT_RUNS {
            let started = Instant::now();
            std::hint::black_box(prompt.for_run(&message).await);
            samples.push(started.elapsed());
        }
        let added = rendered.chars().count() - prompt.base.chars().count();
        println!(
            "{{\"measure\":\"prompt assembly, full workspace\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"chars_added\":{added},\"tokens_added_approx\":{}}}",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99),
            added / 4
        );

        // A brand-new workspace, as seeded (BOOTSTRAP.md included).
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh_store: Arc<dyn Store> = Arc::new(LocalFileStore::new(fresh_dir.path()));
        let fresh = Workspace::new(fresh_store, TokioPlatform::platform().clock);
        fresh.seed().await.unwrap();
        let seeded = WorkspacePrompt {
            base: prompt.base.clone(),
            workspace: fresh,
            limits: BootstrapLimits::default(),
        };
        let added = seeded.for_run(&message).await.chars().count() - prompt.base.chars().count();
        println!(
            "{{\"measure\":\"prompt, seeded workspace\",\"chars_added\":{added},\"tokens_added_approx\":{}}}",
            added / 4
        );

        // 10 MB of daily notes, one file a day.
        let memory = Memory::new(workspace.clone());
        let day = prose(NOTES_BYTES / 100, "note");
        for n in 0..100 {
            let mut note = day.clone();
            if n == 17 {
                note.push_str("- Grace's passport renewal is due on 3 March.\n");
            }
            workspace
                .write(&format!("memory/2026-{:02}-{:02}.md", n / 28 + 1, n % 28 + 1), &note)
                .await
                .unwrap();
        }
        let started = Instant::now();
        let first = memory.search("passport renewal", 6).await.unwrap();
        let first_ms = started.elapsed().as_secs_f64() * 1e3;
        assert!(first[0].snippet.contains("passport"), "{first:?}");
        let mut samples = Vec::with_capacity(SEARCH_RUNS);
        for _ in 0..SEARCH_RUNS {
            let started = Instant::now();
            std::hint::black_box(memory.search("passport renewal", 6).await.unwrap());
            samples.push(started.elapsed());
        }
        let rare = (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99));
        // A word on every line: every line is scored.
        let mut samples = Vec::with_capacity(SEARCH_RUNS / 5);
        for _ in 0..SEARCH_RUNS / 5 {
            let started = Instant::now();
            std::hint::black_box(memory.search("calendar", 6).await.unwrap());
            samples.push(started.elapsed());
        }
        let common = (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99));
        println!(
            "{{\"measure\":\"memory_search, 10 MB of notes\",\"first_ms\":{first_ms:.1},\"rare_p50_ms\":{:.2},\"rare_p99_ms\":{:.2},\"common_p50_ms\":{:.1},\"common_p99_ms\":{:.1},\"rss_mib_after\":{:.0}}}",
            rare.0,
            rare.1,
            common.0,
            common.1,
            rss_mib()
        );
    });
}
