//! The parts of the `moltworker` gateway binary, as a library so that its
//! tests and benchmarks use the same code: the tokio host services, the
//! gateway token, the HTTP routes, the Control UI's WebSocket protocol and
//! its chat channel.

pub mod access_gate;
pub mod admin;
pub mod admin_page;
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
pub mod server;
pub mod webchat;
