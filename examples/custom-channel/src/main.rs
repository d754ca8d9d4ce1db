//! Runs a Molt gateway with the echo model behind the line chat channel.
//!
//! `cargo run -p custom-channel -- [PORT]` (or `MOLT_LINE_PORT`; default 7070),
//! then chat with `nc 127.0.0.1 PORT`.

use custom_channel::{CHANNEL, LineChannel, host};
use molt_core::store::MemoryStore;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("MOLT_LINE_PORT").ok());
    let port: u16 = match port {
        Some(port) => port
            .parse()
            .map_err(|err| format!("bad port {port:?}: {err}"))?,
        None => 7070,
    };

    let gateway = host::echo_gateway(Arc::new(MemoryStore::new()));
    let channel = LineChannel::bind(("127.0.0.1", port)).await?;
    let address = channel.local_addr()?;
    gateway.register_egress(CHANNEL, channel.egress());
    tracing::info!(%address, model = gateway.model_name(), "line chat is listening");
    println!("Try it: nc {} {}", address.ip(), address.port());

    tokio::select! {
        summary = gateway.receive(Box::new(channel)) => tracing::warn!(?summary, "the channel stopped"),
        signal = tokio::signal::ctrl_c() => {
            signal?;
            tracing::info!("shutting down; letting replies in progress finish");
        }
    }
    // Runs in progress get a moment to deliver their replies.
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway.idle()).await;
    Ok(())
}
