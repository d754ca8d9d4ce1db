//! `moltworker`: the Molt container gateway on embedded defaults.
//!
//! Serves the Control UI, its WebSocket and the status API on
//! `127.0.0.1:18789`, keeps state in `./.molt` (or `MOLT_STATE_DIR`), and
//! answers through molt-ai-gateway when a provider key is set
//! (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, the Cloudflare AI Gateway variables,
//! or `<state>/ai-gateway.toml`), else with the offline echo model.

use moltworker::app::{App, StartError};
use moltworker::auth::TokenSource;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

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
Channels: TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN, SLACK_BOT_TOKEN + SLACK_APP_TOKEN (or + SLACK_SIGNING_SECRET).
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
    // Secret values never reach the log, even quoted in a platform's error.
    let secrets = moltworker::debug::secret_values(std::env::vars());
    let logs = moltworker::logs::LogRing::redacting(secrets);
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
    let secrets = moltworker::debug::secret_values(std::env::vars());
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(moltworker::logs::LogRing::redacting(secrets))
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
        _ => runtime.block_on(moltworker::backup::command(&state_dir, args)),
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
            "no channel configured: set TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN, or SLACK_BOT_TOKEN with SLACK_APP_TOKEN or SLACK_SIGNING_SECRET"
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

/// Starts the gateway and serves it until SIGINT or SIGTERM.
async fn run(logs: moltworker::logs::LogRing) -> Result<(), StartError> {
    let state_dir =
        PathBuf::from(std::env::var("MOLT_STATE_DIR").unwrap_or_else(|_| ".molt".to_owned()));
    let app = App::start(&state_dir, logs).await?;
    let address = app.address();
    // The URLs carry the token, so they go to stdout for the operator, never
    // into the logs; in one write, and a closed stdout is no reason to stop.
    let urls = match app.token() {
        (_, TokenSource::Configured) => format!(
            "Control UI: http://{address}/ (token from MOLTBOT_GATEWAY_TOKEN)\nAdmin: http://{address}/_admin/?token=<MOLTBOT_GATEWAY_TOKEN>\n"
        ),
        (token, _) => {
            let token = token.expose();
            format!(
                "Control UI: http://{address}/?token={token}\nAdmin: http://{address}/_admin/?token={token}\n"
            )
        }
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), urls.as_bytes());
    if let Some(mirror) = app.state().mirror.clone() {
        tokio::spawn(backup_on_signal(mirror));
    }
    app.serve(shutdown_signal()).await;
    Ok(())
}

/// SIGUSR1 asks for a backup now (the Worker's cron trigger sends it).
async fn backup_on_signal(mirror: std::sync::Arc<molt_storage::StateMirror>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut asked = match signal(SignalKind::user_defined1()) {
            Ok(asked) => asked,
            Err(err) => return tracing::warn!(%err, "cannot listen for SIGUSR1"),
        };
        while asked.recv().await.is_some() {
            match mirror.backup_now().await {
                Ok(_) => tracing::info!("SIGUSR1: backed up"),
                Err(err) => tracing::warn!(error = %err.summary(), "SIGUSR1: the backup failed"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = mirror;
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
