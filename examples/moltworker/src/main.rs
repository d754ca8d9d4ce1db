//! `moltworker`: the Molt container gateway on embedded defaults.
//!
//! Serves the Control UI, its WebSocket and the status API on
//! `127.0.0.1:18789`, keeps state in `./.molt` (or `MOLT_STATE_DIR`), and
//! answers through molt-ai-gateway when a provider key is set
//! (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, the Cloudflare AI Gateway variables,
//! or `<state>/ai-gateway.toml`), else with the offline echo model.

use molt_ai_gateway::listen::{self, ServeLimits};
use molt_ai_gateway::{Gateway as AiGateway, GatewayConfig};
use molt_core::agent::{Agent, AgentOptions};
use molt_core::config::Config;
use molt_core::echo::{EchoModel, WordCountTool};
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::model::LanguageModel;
use molt_core::skills::{load_skills, skills_prompt};
use molt_core::tool::ToolRegistry;
use molt_core::transcript::CompactionPolicy;
use molt_storage::LocalFileStore;
use moltworker::browser::BrowserSetup;
use moltworker::platform::TokioPlatform;
use moltworker::server::AppState;
use moltworker::{auth, backup, server, webchat};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;

/// How long shutdown waits for runs in progress; unfinished ones resume on the next start.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const USAGE: &str = "\
moltworker: the Molt assistant gateway

USAGE: moltworker [--help | --version]
       moltworker backup now | backup status | restore [--at N]
       moltworker doctor
       moltworker pairing list | approve <channel> <code> | reject <channel> <code>
                          | revoke <channel> <sender>
       moltworker devices list | approve <requestId> | approve-all | reject <requestId>
                          | remove <deviceId>

Serves the Control UI on http://127.0.0.1:18789 (MOLT_BIND to change).
State lives in ./.molt (MOLT_STATE_DIR to change); configuration is read from
<state>/molt.toml (MOLT_CONFIG to change) and the environment
(MOLTBOT_GATEWAY_TOKEN, TELEGRAM_DM_POLICY, DEBUG_ROUTES, ...).
Operator routes (/api/) need CF_ACCESS_TEAM_DOMAIN + CF_ACCESS_AUD (Cloudflare
Access) when set, else the gateway token. Behind a proxy, MOLT_TRUSTED_PROXIES
(addresses or networks) makes its forwarded client addresses count.
Models: ANTHROPIC_API_KEY (+ ANTHROPIC_BASE_URL), OPENAI_API_KEY (+ OPENAI_BASE_URL),
AI_GATEWAY_API_KEY + AI_GATEWAY_BASE_URL, CLOUDFLARE_AI_GATEWAY_API_KEY +
CF_AI_GATEWAY_ACCOUNT_ID + CF_AI_GATEWAY_GATEWAY_ID (+ CF_AI_GATEWAY_MODEL),
MOLT_MODEL, or <state>/ai-gateway.toml (MOLT_AI_CONFIG to change). Without
one, replies come from the offline echo model.
Backup: with R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID (or
S3_ENDPOINT) set, state is restored from the bucket at start when missing, and
mirrored to it (R2_BUCKET_NAME, default moltbot-data) within a second of each
change. `backup now`, `backup status` and `restore [--at N]` act on it.
Channels: TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN, SLACK_BOT_TOKEN + SLACK_APP_TOKEN.
Who is answered, per channel: <CHANNEL>_DM_POLICY (pairing, the default,
allowlist, open or disabled) with <CHANNEL>_DM_ALLOW_FROM (sender ids);
<CHANNEL>_GROUP_POLICY (allowlist, the default, open or disabled) with
<CHANNEL>_GROUP_ALLOW_FROM (group chat ids) and <CHANNEL>_GROUP_SENDERS (sender
ids); groups answer only when the bot is mentioned. `pairing list` shows the
codes strangers got and `pairing approve` lets them in, while the gateway
runs. `doctor` checks each configured channel and says what to fix.
Browser: a local Chromium starts on first use (MOLT_BROWSER=off, a binary, or a
ws:// or http:// CDP URL to change); its tools reach only public addresses
(MOLT_EGRESS_ALLOW_HOSTS, MOLT_EGRESS_DENY_HOSTS, MOLT_EGRESS_ALLOW_NETWORKS).
CDP_SECRET enables the /cdp endpoint for Puppeteer and Playwright.
Logs go to stderr; RUST_LOG sets the level (default: info).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("backup" | "restore" | "doctor" | "pairing" | "devices") => return run_command(&args),
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("moltworker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("moltworker: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {}
    }
    let logs = moltworker::logs::LogRing::default();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(logs.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "could not start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(logs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` (default `info`), except that the WebSocket library never logs
/// below `warn` (at `trace` it prints whole frames, and `connect` frames carry
/// the gateway token), nor the HTTP and TLS libraries below `info` (their
/// traces show request frames, which carry provider keys).
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let websocket = ["tungstenite=warn", "tokio_tungstenite=warn"].map(String::from);
    let http = molt_ai_gateway::provider::HTTP_LOG_TARGETS.map(|target| format!("{target}=info"));
    websocket
        .into_iter()
        .chain(http)
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, EnvFilter::add_directive)
}

/// A one-off `backup`, `restore`, `doctor`, `pairing` or `devices` command.
fn run_command(args: &[String]) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let state_dir =
        PathBuf::from(std::env::var("MOLT_STATE_DIR").unwrap_or_else(|_| ".molt".to_owned()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("moltworker: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args[0].as_str() {
        "doctor" => runtime.block_on(doctor()),
        "pairing" => {
            let words: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            match runtime.block_on(moltworker::pairing::command(&state_dir, &words)) {
                Ok(output) => {
                    print!("{output}");
                    Ok(())
                }
                Err(err) => {
                    eprintln!("moltworker: {err}");
                    return ExitCode::from(err.exit_code());
                }
            }
        }
        "devices" => {
            let words: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            match runtime.block_on(moltworker::devices::command(&state_dir, &words)) {
                Ok(output) => {
                    print!("{output}");
                    Ok(())
                }
                Err(err) => {
                    eprintln!("moltworker: {err}");
                    return ExitCode::from(err.exit_code());
                }
            }
        }
        _ => runtime.block_on(backup::command(&state_dir, args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("moltworker: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the health of every configured channel; fails when one needs attention.
async fn doctor() -> Result<(), String> {
    let reports = moltworker::channels::doctor().await;
    if reports.is_empty() {
        println!(
            "no channel configured: set TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN, or SLACK_BOT_TOKEN and SLACK_APP_TOKEN"
        );
        return Ok(());
    }
    for report in &reports {
        print!("{report}");
    }
    match reports.iter().filter(|r| !r.healthy()).count() {
        0 => Ok(()),
        n => Err(format!("{n} channel(s) need attention")),
    }
}

async fn run(logs: moltworker::logs::LogRing) -> Result<(), String> {
    let started = Instant::now();
    let state_dir =
        PathBuf::from(std::env::var("MOLT_STATE_DIR").unwrap_or_else(|_| ".molt".to_owned()));
    std::fs::create_dir_all(&state_dir).map_err(|err| {
        format!(
            "cannot create state directory {}: {err}",
            state_dir.display()
        )
    })?;
    // Restore before anything reads the state: the config, the token, the inbox.
    let mirror = backup::mirror_from_env(&state_dir, |name| std::env::var(name).ok())?;
    if let Some(mirror) = &mirror {
        match mirror.restore_if_needed().await {
            Ok(Some(report)) => tracing::info!(
                snapshot = report.seq,
                files = report.files,
                bytes = report.bytes,
                "restored state from the bucket"
            ),
            Ok(None) => {}
            // With state on disk, serve it and let the mirror catch up later.
            Err(err) if has_local_state(&state_dir) => {
                tracing::warn!(%err, "cannot reach the bucket at start; serving the local state");
            }
            // With no state on disk, serving would start from nothing and later
            // mirror that over the bucket's snapshots: refuse instead.
            Err(err) => {
                return Err(format!(
                    "cannot restore state from the bucket, and there is none on disk: {err}"
                ));
            }
        }
    }
    let (config, config_view) = load_config(&state_dir)?;
    let (token, token_source) = auth::load_or_create(config.gateway.token.clone(), &state_dir)
        .map_err(|err| format!("cannot store the gateway token: {err}"))?;

    let platform = TokioPlatform::platform();
    let store = Arc::new(LocalFileStore::new(&state_dir));
    let (skills, skill_errors) = load_skills(store.as_ref(), "workspace/skills/")
        .await
        .map_err(|err| err.to_string())?;
    for err in skill_errors {
        tracing::warn!(%err, "skipping a skill");
    }
    let mut tools = ToolRegistry::new();
    tools
        .register(Arc::new(WordCountTool))
        .map_err(|err| err.to_string())?;
    let browser = BrowserSetup::from_env(|name| std::env::var(name).ok())?;
    browser.register_tools(&mut tools)?;
    let options = AgentOptions {
        max_steps: config.agent.max_steps,
        run_timeout: Duration::from_secs(config.agent.run_timeout_secs),
        ..AgentOptions::default()
    };
    let ModelSetup {
        model,
        ai,
        configured: model_configured,
        models,
    } = load_model(&state_dir)?;
    let agent = Agent::new(model, Arc::new(tools), platform.timer.clone(), options);
    let chat = webchat::ChatStream::new(config.session_scope);
    let observer = chat.clone();
    let broadcasts = tokio::sync::broadcast::channel(256).0;
    let feed = broadcasts.clone();
    let metrics = Arc::new(moltworker::metrics::GatewayMetrics::default());
    let counted = metrics.clone();
    let store_for_channels: Arc<dyn molt_core::store::Store> = store.clone();
    let store_for_admin = store_for_channels.clone();
    let access = moltworker::access_gate::AccessGate::from_env(|name| std::env::var(name).ok())?;
    let trusted_proxies = molt_ai_gateway::listen::TrustedProxies::parse(
        &std::env::var("MOLT_TRUSTED_PROXIES").unwrap_or_default(),
    )
    .map_err(|err| format!("MOLT_TRUSTED_PROXIES: {err}"))?;
    if access.is_some() {
        tracing::info!("Cloudflare Access guards /api/");
    }
    let devices = molt_core::devices::DeviceBook::new(
        store.clone(),
        platform.clock.clone(),
        platform.entropy.clone(),
    );
    let gateway = Gateway::new(GatewayParts {
        store: store.clone(),
        logs: store,
        agent,
        platform,
        system_prompt: format!("{}{}", config.agent.system_prompt, skills_prompt(&skills)),
        scope: config.session_scope,
        compaction: CompactionPolicy {
            token_budget: config.agent.history_token_budget,
            keep_recent: config.agent.keep_recent_messages,
        },
        policies: config.channels.clone(),
        observer: Some(Arc::new(move |event| {
            if let Some(message) = moltworker::protocol::session_message(&event) {
                // Nobody listening is fine.
                let _ = feed.send(message);
            }
            counted.on_run_event(&event);
            observer.on_run_event(event)
        })),
    });
    gateway.register_egress(webchat::CHANNEL, Arc::new(chat.clone()));
    let board = moltworker::channels::ChannelBoard::default();
    let store_for_channels_restart = store_for_channels.clone();
    let connected = moltworker::channels::connect(&gateway, store_for_channels, &board).await;
    let channel_names: Vec<&str> = connected.iter().map(|c| c.name).collect();
    if !model_configured {
        tracing::warn!("no model provider is configured: answering with the offline echo model");
    }

    // Messages accepted before a crash are answered before new traffic arrives.
    let resumed = gateway
        .resume_pending()
        .await
        .map_err(|err| format!("cannot read the inbox: {err}"))?;
    if resumed > 0 {
        tracing::info!(resumed, "resuming messages accepted before the last stop");
    }
    let channels = moltworker::channels::ChannelRuntime::start(
        &gateway,
        store_for_channels_restart,
        board,
        metrics.clone(),
        connected,
    );

    let listener = tokio::net::TcpListener::bind(config.gateway.bind)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.gateway.bind))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let state = Arc::new(AppState {
        gateway: gateway.clone(),
        chat,
        token: token.clone(),
        started,
        model_configured,
        mirror: mirror.clone(),
        throttle: Default::default(),
        handshakes: Default::default(),
        devices,
        store: store_for_admin,
        access,
        trusted_proxies,
        broadcasts,
        presence: Default::default(),
        channels,
        models,
        config: config_view,
        metrics,
        ai,
        logs,
        debug_routes: config.gateway.debug_routes,
    });
    tracing::info!(%address, state_dir = %state_dir.display(), skills = skills.len(), channels = ?channel_names, "moltworker is serving");
    // The URL carries the token, so it goes to stdout for the operator, never into the logs.
    match token_source {
        auth::TokenSource::Configured => {
            println!("Control UI: http://{address}/ (token from MOLTBOT_GATEWAY_TOKEN)");
            println!("Admin: http://{address}/_admin/?token=<MOLTBOT_GATEWAY_TOKEN>");
        }
        _ => {
            println!("Control UI: http://{address}/?token={}", token.expose());
            println!("Admin: http://{address}/_admin/?token={}", token.expose());
        }
    }

    let (stop_mirror, mirror_stopped) = tokio::sync::oneshot::channel::<()>();
    let mirroring = mirror.map(|mirror| {
        tokio::spawn(mirror.run(async move {
            let _ = mirror_stopped.await;
        }))
    });
    let app = server::router(state.clone()).merge(browser.cdp_routes());
    let limits = ServeLimits {
        max_connections: config.gateway.max_connections,
        header_read_timeout: Duration::from_secs(config.gateway.header_read_timeout_secs),
        ..ServeLimits::default()
    };
    let health = tokio::spawn(moltworker::protocol::broadcast_health(state.clone()));
    let stopping = async {
        shutdown_signal().await;
        // Connected clients hear why they are being closed.
        state.broadcast(moltworker::protocol::Broadcast::Shutdown {
            reason: "gateway stopping".to_owned(),
            restart_expected_ms: None,
        });
        // Each connection sends it and closes; a stuck one is not waited for long.
        let closed = async {
            while state.presence.connected() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closed).await;
    };
    listen::serve(listener, app, limits, stopping).await;
    health.abort();

    // Channels stop taking messages first; what they delivered is in the inbox.
    state.channels.stop().await;
    tracing::info!("shutting down: waiting for runs in progress");
    if tokio::time::timeout(DRAIN_TIMEOUT, gateway.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            "runs still in progress after {DRAIN_TIMEOUT:?}; they resume on the next start"
        );
    }
    // Transcript records and inbox entries are fsynced as they are written; the
    // mirror makes one last backup of them.
    if let Some(mirroring) = mirroring {
        let _ = stop_mirror.send(());
        if tokio::time::timeout(DRAIN_TIMEOUT, mirroring)
            .await
            .is_err()
        {
            tracing::warn!(
                "the last backup did not finish in {DRAIN_TIMEOUT:?}; the next start restores the previous snapshot or keeps local state"
            );
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The model that answers, and what the status routes say of it.
struct ModelSetup {
    model: Arc<dyn LanguageModel>,
    /// molt-ai-gateway, when a provider is configured.
    ai: Option<Arc<AiGateway>>,
    /// A real provider (not the offline echo model).
    configured: bool,
    /// The models it can answer with (`provider/model`).
    models: Vec<String>,
}

/// The model: molt-ai-gateway over the configured providers, or the offline
/// echo model when none is configured.
fn load_model(state_dir: &std::path::Path) -> Result<ModelSetup, String> {
    let path = std::env::var_os("MOLT_AI_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("ai-gateway.toml"));
    let mut config = match std::fs::read_to_string(&path) {
        Ok(text) => {
            GatewayConfig::from_toml(&text).map_err(|err| format!("{}: {err}", path.display()))?
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => GatewayConfig::default(),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let env = |name: &str| std::env::var(name).ok();
    config.add_env(env);
    if !config.has_providers() {
        return Ok(ModelSetup {
            model: Arc::new(EchoModel),
            ai: None,
            configured: false,
            models: vec!["molt/echo".to_owned()],
        });
    }
    let gateway = AiGateway::from_config(&config, env).map_err(|err| err.to_string())?;
    tracing::info!(model = %gateway.name(), models = ?gateway.models(), "model calls go through molt-ai-gateway");
    let models = gateway.models().to_vec();
    let gateway = Arc::new(gateway);
    Ok(ModelSetup {
        model: gateway.clone(),
        ai: Some(gateway),
        configured: true,
        models,
    })
}

/// Whether the state directory holds anything (the token, the inbox, transcripts, ...).
fn has_local_state(state_dir: &std::path::Path) -> bool {
    std::fs::read_dir(state_dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// The configuration, and its redacted view for `config.get`.
fn load_config(
    state_dir: &std::path::Path,
) -> Result<(Config, moltworker::config_view::ConfigView), String> {
    let path = std::env::var_os("MOLT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("molt.toml"));
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let config = Config::load(file.as_deref(), |name| std::env::var(name).ok())
        .map_err(|err| format!("{}: {err}", path.display()))?;
    let view = moltworker::config_view::ConfigView::new(&config, &path, file.is_some());
    Ok((config, view))
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
