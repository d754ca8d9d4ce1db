//! # molt-channels
//!
//! Chat-platform adapters for the Molt assistant gateway: Telegram (long
//! polling and webhook), Discord (gateway WebSocket and REST) and Slack
//! (Socket Mode and Web API).
//!
//! Each adapter implements `molt-core`'s channel contract
//! (`molt_core::channel::ChannelIngress` and `ChannelEgress`) and acknowledges a
//! platform message only after it is durably in the gateway's inbox, so no
//! message is lost. The adapters arrive with the "molt-channels" issue; this
//! crate holds no code yet.
