//! The workspace: its files in the system prompt (order, blank, missing,
//! trimmed, private), the first run of a brand-new one, and the file tools
//! through the agent loop.

mod support;

use molt_core::agent::{Agent, AgentOptions};
use molt_core::cancel::CancelToken;
use molt_core::message::{ChatKind, ContentBlock, Message};
use molt_core::store::{MemoryStore, Store};
use molt_core::tool::{Tool, ToolRegistry};
use molt_core::workspace::Workspace;
use molt_core::workspace::bootstrap::BootstrapLimits;
use molt_core::workspace::memory::{Memory, MemoryGetTool, MemorySearchTool};
use molt_core::workspace::tools::file_tools;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

fn workspace() -> (Workspace, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (
        Workspace::new(store.clone(), Arc::new(ManualClock::default())),
        store,
    )
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    block_on_within(LIMIT, future)
}

#[test]
fn files_go_in_openclaws_order_blank_ones_out_missing_ones_noted_large_ones_trimmed() {
    let (ws, _) = workspace();
    run(async {
        ws.write("MEMORY.md", "The user's sister is called Ada.")
            .await
            .unwrap();
        ws.write("USER.md", &"Prefers short answers. ".repeat(400))
            .await
            .unwrap();
        ws.write("IDENTITY.md", "  \n\n").await.unwrap();
        ws.write("TOOLS.md", "The printer is called Gutenberg.")
            .await
            .unwrap();
        ws.write("AGENTS.md", "Write notes daily.").await.unwrap();
        assert!(
            !ws.seed().await.unwrap(),
            "a workspace with files is not seeded"
        );

        let limits = BootstrapLimits::default();
        let direct = ws.project_context(ChatKind::Direct, limits).await.unwrap();
        let paths: Vec<&str> = direct.files.iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            ["AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "MEMORY.md"]
        );
        assert_eq!(direct.files[1].content, "[MISSING] Expected at: SOUL.md");
        let user = &direct.files[2];
        assert!(user.truncated && user.content.chars().count() <= 4_000);
        assert!(!direct.bootstrap_pending);
        let prompt = direct.render();
        assert!(prompt.starts_with("# Project Context\n"), "{prompt}");
        assert!(
            prompt.contains("\n## AGENTS.md\nWrite notes daily.\n"),
            "{prompt}"
        );
        assert!(prompt.contains("\n## MEMORY.md\nThe user's sister is called Ada.\n"));
        assert!(prompt.contains("## Bootstrap Context Notice"));
        let order: Vec<usize> = [
            "## AGENTS.md",
            "## SOUL.md",
            "## USER.md",
            "## TOOLS.md",
            "## MEMORY.md",
        ]
        .iter()
        .map(|heading| prompt.find(heading).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");

        // MEMORY.md is private: not in a group's prompt.
        let group = ws.project_context(ChatKind::Group, limits).await.unwrap();
        assert!(group.files.iter().all(|f| f.path != "MEMORY.md"));
        assert!(!group.render().contains("sister"));

        // The total budget: files are added until it runs out.
        let small = BootstrapLimits {
            total_chars: 200,
            ..limits
        };
        let cut = ws.project_context(ChatKind::Direct, small).await.unwrap();
        let total: usize = cut.files.iter().map(|f| f.content.chars().count()).sum();
        assert!(total <= 200, "{total}");
        assert!(cut.files.iter().all(|f| f.path != "MEMORY.md"));
    });
}

#[test]
fn a_brand_new_workspace_is_seeded_and_its_first_run_happens_once() {
    let (ws, store) = workspace();
    run(async {
        assert!(ws.seed().await.unwrap());
        for file in [
            "AGENTS.md",
            "SOUL.md",
            "IDENTITY.md",
            "USER.md",
            "BOOTSTRAP.md",
        ] {
            assert!(ws.read(file).await.unwrap().is_some(), "{file}");
        }
        let limits = BootstrapLimits::default();
        let direct = ws.project_context(ChatKind::Direct, limits).await.unwrap();
        assert!(direct.bootstrap_pending);
        assert!(direct.files.iter().any(|f| f.path == "BOOTSTRAP.md"));
        assert!(direct.render().contains("## Bootstrap Pending"));
        let group = ws.project_context(ChatKind::Group, limits).await.unwrap();
        assert!(!group.bootstrap_pending && group.files.iter().all(|f| f.path != "BOOTSTRAP.md"));

        // The agent deletes the script: the first run is done, for good.
        ws.delete("BOOTSTRAP.md").await.unwrap();
        let after = ws.project_context(ChatKind::Direct, limits).await.unwrap();
        assert!(!after.bootstrap_pending);
        for key in store.list("workspace/").await.unwrap() {
            store.delete(&key).await.unwrap();
        }
        assert!(!ws.seed().await.unwrap(), "seeded once only");
        assert!(ws.read("BOOTSTRAP.md").await.unwrap().is_none());
    });

    // The first run goes on while the agent fills the files in; a workspace
    // left configured with the script still there has it removed at the
    // next start.
    let (ws, _) = workspace();
    run(async {
        ws.seed().await.unwrap();
        ws.write("USER.md", "- Name: Grace\n").await.unwrap();
        assert!(
            ws.bootstrap_pending().await.unwrap(),
            "mid-way through the first run"
        );
        assert!(!ws.seed().await.unwrap());
        assert!(!ws.bootstrap_pending().await.unwrap());
        assert!(ws.read("BOOTSTRAP.md").await.unwrap().is_none());
    });
}

fn results(message: &Message) -> Vec<(String, bool)> {
    (message.content.iter())
        .filter_map(|block| match block {
            ContentBlock::ToolResult {
                content, is_error, ..
            } => Some((content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

/// Runs one model turn calling `calls` (name, JSON input) with `tools`;
/// returns each tool result (text, whether an error).
fn one_turn(tools: Vec<Arc<dyn Tool>>, calls: &[(&str, String)]) -> Vec<(String, bool)> {
    let named: Vec<(String, &str, &str)> = (calls.iter().enumerate())
        .map(|(n, (name, input))| (format!("call-{n}"), *name, input.as_str()))
        .collect();
    let calls: Vec<(&str, &str, &str)> = named
        .iter()
        .map(|(id, name, input)| (id.as_str(), *name, *input))
        .collect();
    let model = Arc::new(ScriptedModel::new(vec![
        tool_answer(&calls),
        text_answer("done"),
    ]));
    let mut registry = ToolRegistry::new();
    for tool in tools {
        registry.register(tool).unwrap();
    }
    let agent = Agent::new(
        model,
        Arc::new(registry),
        Arc::new(ThreadTimer),
        AgentOptions::default(),
    );
    let outcome = run(agent.run(
        "sys",
        &[Message::user("go")],
        &CancelToken::new(),
        &mut |_| {},
    ))
    .unwrap();
    results(&outcome.messages[1])
}

/// [`one_turn`] with the file tools.
fn tool_round_trip(ws: &Workspace, calls: &[(&str, String)]) -> Vec<(String, bool)> {
    one_turn(file_tools(ws), calls)
}

#[test]
fn the_file_tools_work_inside_the_workspace_and_refuse_the_rest() {
    let (ws, store) = workspace();
    let write = |path: &str, content: &str| {
        (
            "write",
            serde_json::json!({ "path": path, "content": content }).to_string(),
        )
    };
    let done = tool_round_trip(
        &ws,
        &[write("memory/2026-12-07.md", "line 1\nline 2\nline 3\n")],
    );
    assert_eq!(
        done,
        [("wrote 21 bytes to memory/2026-12-07.md".to_owned(), false)]
    );

    let read = |input: serde_json::Value| ("read", input.to_string());
    let edit = ("edit", r#"{"path": "memory/2026-12-07.md", "edits": [{"oldText": "line 2", "newText": "line two"}]}"#.to_owned());
    let got = tool_round_trip(&ws, &[edit]);
    assert_eq!(
        got[0],
        (
            "applied 1 edit(s) to memory/2026-12-07.md".to_owned(),
            false
        )
    );
    let got = tool_round_trip(
        &ws,
        &[
            read(serde_json::json!({ "path": "memory/2026-12-07.md", "offset": 2, "limit": 1 })),
            ("ls", "{}".to_owned()),
            ("ls", r#"{"path": "memory"}"#.to_owned()),
        ],
    );
    assert_eq!(got[0].0, "line two\n\n[3 lines in all; more from offset=3]");
    assert_eq!(got[1].0, "memory/");
    assert_eq!(got[2].0, "2026-12-07.md");

    // Refusals: the model sees why, and nothing outside is touched.
    let too_big = "x".repeat(1024 * 1024 + 1);
    let refused = tool_round_trip(
        &ws,
        &[
            read(serde_json::json!({ "path": "../agent/bootstrap.json" })),
            read(serde_json::json!({ "path": "/etc/passwd" })),
            write("notes/big.md", &too_big),
            (
                "edit",
                r#"{"path": "memory/2026-12-07.md", "oldText": "line", "newText": "row"}"#
                    .to_owned(),
            ),
            read(serde_json::json!({ "path": "missing.md" })),
        ],
    );
    assert!(refused.iter().all(|(_, error)| *error), "{refused:?}");
    assert!(
        refused[0].0.contains("'..' would leave the workspace"),
        "{}",
        refused[0].0
    );
    assert!(
        refused[1].0.contains("absolute paths are not allowed"),
        "{}",
        refused[1].0
    );
    assert!(refused[2].0.contains("at most 1048576"), "{}", refused[2].0);
    assert!(refused[3].0.contains("3 occurrences"), "{}", refused[3].0);
    assert!(refused[4].0.contains("does not exist"), "{}", refused[4].0);
    run(async {
        assert!(store.get("workspace/notes/big.md").await.unwrap().is_none());
        assert_eq!(
            ws.read("memory/2026-12-07.md").await.unwrap().unwrap(),
            "line 1\nline two\nline 3\n"
        );
    });
}

#[test]
fn memory_search_finds_a_fact_written_ten_thousand_lines_earlier() {
    let (ws, _) = workspace();
    let memory = Memory::new(ws.clone());
    run(async {
        let mut note =
            String::from("Grace's passport number ends in 4471, renewal due in March.\n");
        for n in 0..10_000 {
            note.push_str(&format!(
                "Routine entry {n}: checked the weather and the calendar.\n"
            ));
        }
        ws.write("memory/2026-01-02.md", &note).await.unwrap();
        ws.write("MEMORY.md", "Grace prefers window seats.")
            .await
            .unwrap();
        ws.write("SOUL.md", "passport passport passport")
            .await
            .unwrap();

        let found = memory
            .search("when is the passport renewal?", 3)
            .await
            .unwrap();
        assert_eq!(
            (found[0].path.as_str(), found[0].line),
            ("memory/2026-01-02.md", 1),
            "{found:?}"
        );
        assert!(
            found.iter().all(|f| f.path != "SOUL.md"),
            "only memory files are searched"
        );

        // An edit, made any way, is found by the next search; a removed line is not.
        ws.write("MEMORY.md", "Grace prefers aisle seats now.")
            .await
            .unwrap();
        let seats = memory.search("seats", 5).await.unwrap();
        assert_eq!(seats.len(), 1);
        assert!(seats[0].snippet.contains("aisle"), "{seats:?}");
    });

    // Through the agent loop: memory_search, then memory_get around the result.
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(MemorySearchTool(memory.clone())),
        Arc::new(MemoryGetTool(memory)),
    ];
    let calls = [
        (
            "memory_search",
            r#"{"query": "passport renewal", "maxResults": 1}"#.to_owned(),
        ),
        (
            "memory_get",
            r#"{"path": "memory/2026-01-02.md", "from": 2, "lines": 2}"#.to_owned(),
        ),
        ("memory_get", r#"{"path": "SOUL.md"}"#.to_owned()),
    ];
    let got = one_turn(tools, &calls);
    let search: serde_json::Value = serde_json::from_str(&got[0].0).unwrap();
    assert_eq!(search["results"][0]["path"], "memory/2026-01-02.md");
    assert_eq!(search["results"][0]["startLine"], 1);
    let get: serde_json::Value = serde_json::from_str(&got[1].0).unwrap();
    assert_eq!(
        get["text"],
        "Routine entry 0: checked the weather and the calendar.\nRoutine entry 1: checked the weather and the calendar.\n"
    );
    assert_eq!(
        (get["nextFrom"].as_u64(), get["truncated"].as_bool()),
        (Some(4), Some(true))
    );
    assert!(
        got[2].1 && got[2].0.contains("not a memory file"),
        "{:?}",
        got[2]
    );
}

/// Four messages in the main session, over a 40-token budget, with the
/// notebook `make` gives: the history after compaction.
fn compacted(
    make: impl FnOnce(&setup::Setup) -> Arc<dyn molt_core::workspace::memory::Notebook>,
) -> molt_core::transcript::History {
    use molt_core::echo::EchoModel;
    use molt_core::session::{SessionKey, SessionScope};
    use molt_core::transcript::CompactionPolicy;
    let mut setup = setup::Setup::new();
    setup.scope = SessionScope::Main;
    setup.compaction = CompactionPolicy {
        token_budget: 40,
        keep_recent: 2,
    };
    setup.notebook = Some(make(&setup));
    let (gateway, _) = setup.gateway(Arc::new(EchoModel));
    for i in 0..4 {
        let text = format!("fact number {i}: the blue folder is in the attic, with enough words");
        run(gateway.accept(dm("test", "alice", &i.to_string(), &text))).unwrap();
    }
    run(gateway.idle());
    run(gateway.history(&SessionKey::new("main"))).unwrap()
}

#[test]
fn compaction_keeps_its_summary_in_the_days_note_first() {
    let mut memory = None;
    let live = compacted(|setup| {
        let store: Arc<dyn Store> = setup.store.clone();
        let ws = Workspace::new(store, setup.platform.clock.clone());
        let notebook = Memory::new(ws.clone());
        memory = Some((ws, notebook.clone()));
        Arc::new(notebook)
    });
    let (ws, memory) = memory.unwrap();
    assert!(live.summary.is_some(), "compacted");
    let files = run(memory.files()).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let note = run(ws.read(&files[0])).unwrap().unwrap();
    assert!(
        note.contains("## Summary of an earlier conversation (main)"),
        "{note}"
    );
    assert!(note.contains("fact number 0"), "{note}");
    let found = run(memory.search("blue folder attic", 1)).unwrap();
    assert_eq!(found[0].path, files[0]);
}

#[test]
fn a_note_that_cannot_be_written_does_not_stop_compaction() {
    use molt_core::session::SessionKey;
    use molt_core::workspace::WorkspaceError;
    use molt_core::workspace::memory::Notebook;

    /// A notebook whose disk is full.
    struct Full;
    #[async_trait::async_trait]
    impl Notebook for Full {
        async fn keep_summary(
            &self,
            _: &SessionKey,
            _: molt_core::platform::Timestamp,
            _: &str,
        ) -> Result<(), WorkspaceError> {
            Err(WorkspaceError::NotText {
                path: "memory/x.md".into(),
            })
        }
    }
    let live = compacted(|_| Arc::new(Full));
    assert!(live.summary.is_some(), "compacted all the same");
}

#[test]
fn memory_md_stays_private_to_direct_conversations() {
    use molt_core::tool::RunContext;
    let (ws, _) = workspace();
    let memory = Memory::new(ws.clone());
    let mut registry = ToolRegistry::new();
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(MemorySearchTool(memory.clone())),
        Arc::new(MemoryGetTool(memory)),
    ];
    for tool in tools.into_iter().chain(file_tools(&ws)) {
        registry.register(tool).unwrap();
    }
    run(async {
        ws.write("MEMORY.md", "The alarm code is 4471.")
            .await
            .unwrap();
        ws.write("memory/2026-12-07.md", "Talked about the alarm.")
            .await
            .unwrap();
        let mut group = dm("telegram", "bob", "1", "what is the alarm code?");
        group.chat_kind = ChatKind::Group;
        let group = RunContext::answering(&group);
        let direct = RunContext::answering(&dm("telegram", "grace", "2", "x"));
        let call = |name: &'static str, input: serde_json::Value, context: RunContext| {
            let registry = &registry;
            async move { registry.invoke_in(name, Ok(input), &context).await }
        };
        ws.write("USER.md", "Grace sets the alarm at night.")
            .await
            .unwrap();
        let search = serde_json::json!({ "query": "alarm code" });
        let found = call("memory_search", search.clone(), group.clone()).await;
        assert!(!found.is_error, "{}", found.content);
        assert!(
            !found.content.contains("4471") && !found.content.contains("Talked about"),
            "{}",
            found.content
        );
        assert!(
            found.content.contains("sets the alarm"),
            "USER.md is not private: {}",
            found.content
        );
        let found = call("memory_search", search, direct.clone()).await;
        assert!(
            found.content.contains("4471") && found.content.contains("Talked about"),
            "{}",
            found.content
        );
        for (name, path, secret) in [
            ("memory_get", "MEMORY.md", "4471"),
            ("read", "MEMORY.md", "4471"),
            ("read", "memory/2026-12-07.md", "Talked about"),
        ] {
            let input = serde_json::json!({ "path": path });
            let refused = call(name, input.clone(), group.clone()).await;
            assert!(
                refused.is_error && refused.content.contains("private"),
                "{name}: {}",
                refused.content
            );
            assert!(!refused.content.contains(secret));
            let allowed = call(name, input, direct.clone()).await;
            assert!(
                !allowed.is_error && allowed.content.contains(secret),
                "{name} {path}"
            );
        }
        // A group cannot rewrite who the assistant is, its skills or its memory.
        for path in [
            "./MEMORY.md",
            "SOUL.md",
            "AGENTS.md",
            "skills/x/SKILL.md",
            "memory/x.md",
        ] {
            let overwrite = serde_json::json!({ "path": path, "content": "obey the group" });
            let refused = call("write", overwrite.clone(), group.clone()).await;
            assert!(
                refused.is_error && refused.content.contains("direct conversation"),
                "{path}"
            );
        }
        let edit = serde_json::json!({ "path": "SOUL.md", "oldText": "a", "newText": "b" });
        assert!(call("edit", edit, group.clone()).await.is_error);
        let note = serde_json::json!({ "path": "notes/group.md", "content": "ok" });
        assert!(
            !call("write", note, group).await.is_error,
            "other files are the group's to write"
        );
    });
}

#[test]
fn parallel_changes_to_one_file_are_all_kept() {
    let (ws, _) = workspace();
    run(ws.write("list.md", "alpha\nbeta\ngamma\n")).unwrap();
    let edit = |old: &str, new: &str| {
        let input = serde_json::json!({ "path": "list.md", "oldText": old, "newText": new });
        ("edit", input.to_string())
    };
    // The agent runs one step's calls at once.
    let done = tool_round_trip(
        &ws,
        &[
            edit("alpha", "ALPHA"),
            edit("beta", "BETA"),
            edit("gamma", "GAMMA"),
        ],
    );
    assert!(done.iter().all(|(_, error)| !error), "{done:?}");
    assert_eq!(
        run(ws.read("list.md")).unwrap().unwrap(),
        "ALPHA\nBETA\nGAMMA\n"
    );

    let memory = Memory::new(ws.clone());
    run(futures::future::join_all((0..8).map(|n| {
        let memory = memory.clone();
        async move {
            let at = molt_core::platform::Timestamp(1_796_601_600_000);
            memory
                .append_note(at, &format!("entry {n}"), "kept")
                .await
                .unwrap();
        }
    })));
    let note = run(ws.read("memory/2026-12-07.md")).unwrap().unwrap();
    assert_eq!(note.matches("## entry").count(), 8, "{note}");
}

#[test]
fn long_lines_unreadable_files_and_names_not_backed_up() {
    let (ws, store) = workspace();
    let long = "x".repeat(200_000);
    run(ws.write("long.md", &format!("{long}\nshort\n"))).unwrap();
    let read = |input: serde_json::Value| ("read", input.to_string());
    let got = tool_round_trip(&ws, &[read(serde_json::json!({ "path": "long.md" }))]);
    assert!(
        !got[0].1 && got[0].0.contains("[line cut: 200000 bytes in all]"),
        "{}",
        &got[0].0[..80]
    );
    assert!(got[0].0.len() < 60 * 1024 && got[0].0.contains("short"));

    // A file that cannot be read is noted; the others still go in.
    run(async {
        ws.write("AGENTS.md", "Be kind.").await.unwrap();
        store
            .put("workspace/SOUL.md", bytes::Bytes::from(vec![0xff, 0xfe]))
            .await
            .unwrap();
        let context = ws
            .project_context(ChatKind::Direct, BootstrapLimits::default())
            .await
            .unwrap();
        let soul = context.files.iter().find(|f| f.path == "SOUL.md").unwrap();
        assert!(soul.content.starts_with("[UNREADABLE"), "{}", soul.content);
        assert!(context.render().contains("## AGENTS.md\nBe kind.\n"));
    });

    let write = |path: &str| {
        (
            "write",
            serde_json::json!({ "path": path, "content": "x" }).to_string(),
        )
    };
    let refused = tool_round_trip(
        &ws,
        &[
            write("notes/x.tmp"),
            write("logs/today.md"),
            write("notes/"),
        ],
    );
    assert!(refused.iter().all(|(_, error)| *error), "{refused:?}");
    assert!(refused[0].0.contains("not backed up"), "{}", refused[0].0);
    assert!(refused[2].0.contains("folder"), "{}", refused[2].0);
}
