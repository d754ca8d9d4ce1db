//! The Molt container gateway as a library; the `moltworker` binary is a
//! short `main` over it.
//!
//! - [`app`]: the builder, [`app::App::start`] from a state directory and the
//!   environment, and [`app::App::serve`] until shutdown;
//! - [`server`], [`admin`], [`admin_page`], [`debug`]: the routes, and who may
//!   reach them ([`auth`], [`access_gate`] for Cloudflare Access);
//! - [`protocol`]: OpenClaw's gateway protocol over the WebSocket;
//! - [`settings`]: the server's own settings, apart from the agent's;
//! - [`channels`], [`webchat`], [`backup`], [`browser`], [`metrics`], [`logs`]:
//!   the parts the gateway runs.
//!
//! ```no_run
//! # async fn example() -> Result<(), moltworker::app::StartError> {
//! use moltworker::app::App;
//! let app = App::start(std::path::Path::new(".molt"), Default::default()).await?;
//! println!("serving on http://{}/", app.address());
//! app.serve(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```

pub mod access_gate;
pub mod activity;
pub mod admin;
pub mod admin_page;
pub mod app;
pub mod auth;
pub mod backup;
pub mod browser;
pub mod channels;
pub mod config_view;
pub mod debug;
pub mod devices;
pub mod logs;
pub mod metrics;
pub mod pairing;
pub mod platform;
pub mod protocol;
pub mod reminders;
pub mod server;
pub mod settings;
pub mod webchat;
