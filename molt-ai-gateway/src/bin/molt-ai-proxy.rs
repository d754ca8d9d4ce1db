//! `molt-ai-proxy`: the gateway as an HTTP proxy for OpenAI and Anthropic clients.
//!
//! Environment: `MOLT_AI_GATEWAY_KEY` (required: the key clients present),
//! `MOLT_AI_BIND` (default `127.0.0.1:8788`), `MOLT_AI_CONFIG` (a TOML file),
//! and the provider variables (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, ...).

use molt_ai_gateway::proxy::{self, ProxyConfig};
use molt_ai_gateway::{Gateway, GatewayConfig};
use molt_core::Secret;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
molt-ai-proxy: an OpenAI- and Anthropic-compatible proxy in front of model providers

USAGE: molt-ai-proxy [--help | --version]

Environment:
  MOLT_AI_GATEWAY_KEY  the key clients must present (required)
  MOLT_AI_BIND         the address to listen on (default 127.0.0.1:8788)
  MOLT_AI_CONFIG       a TOML configuration file (providers, routes, cache, limits, budgets)
  ANTHROPIC_API_KEY, OPENAI_API_KEY, CLOUDFLARE_AI_GATEWAY_API_KEY + CF_AI_GATEWAY_ACCOUNT_ID
  + CF_AI_GATEWAY_GATEWAY_ID (+ CF_AI_GATEWAY_MODEL), AI_GATEWAY_API_KEY + AI_GATEWAY_BASE_URL
                       providers, as Moltworker users set them
  MOLT_LOG             the log filter (default info); logs go to stderr";

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("molt-ai-proxy {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("molt-ai-proxy: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// `MOLT_LOG` (default `info`), except that the HTTP and TLS libraries never log
/// below `info`: their traces show request frames, which carry keys.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOLT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    molt_ai_gateway::provider::HTTP_LOG_TARGETS
        .iter()
        .filter_map(|target| format!("{target}=info").parse().ok())
        .fold(filter, tracing_subscriber::EnvFilter::add_directive)
}

async fn run() -> Result<(), String> {
    let env = |name: &str| std::env::var(name).ok();
    let mut config = match env("MOLT_AI_CONFIG") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|err| format!("{path}: {err}"))?;
            GatewayConfig::from_toml(&text).map_err(|err| err.to_string())?
        }
        None => GatewayConfig::default(),
    };
    config.add_env(env);
    if !config.has_providers() {
        return Err("no provider configured: set ANTHROPIC_API_KEY or OPENAI_API_KEY, or give MOLT_AI_CONFIG".into());
    }
    let key = env("MOLT_AI_GATEWAY_KEY")
        .filter(|key| !key.trim().is_empty())
        .ok_or("MOLT_AI_GATEWAY_KEY is not set: clients must present a key")?;
    let gateway = Arc::new(Gateway::from_config(&config, env).map_err(|err| err.to_string())?);
    let proxy_config = ProxyConfig {
        keys: vec![("default".into(), Secret::new(key.trim()))],
        ..ProxyConfig::default()
    };
    let bind = env("MOLT_AI_BIND").unwrap_or_else(|| "127.0.0.1:8788".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|err| format!("bind {bind}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    tracing::info!(%address, models = ?gateway.models(), "molt-ai-proxy listening");
    println!("listening on http://{address}");
    // Open requests get DRAIN_TIMEOUT to finish after a stop signal.
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = proxy::serve(listener, gateway, proxy_config, async move {
        shutdown().await;
        let _ = stopping.send(());
    });
    let deadline = async move {
        if stopped.await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.map_err(|err| err.to_string()),
        () = deadline => {
            tracing::warn!("requests still open after {DRAIN_TIMEOUT:?}; stopping anyway");
            Ok(())
        }
    }
}

/// How long open requests may run on after SIGTERM or SIGINT.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing open requests");
}
