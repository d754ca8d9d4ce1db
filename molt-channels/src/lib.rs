//! # molt-channels
//!
//! Chat-platform adapters for the Molt assistant gateway. Each implements
//! `molt-core`'s channel contract (`molt_core::channel::ChannelIngress` and
//! `ChannelEgress`) and acknowledges a platform message only after it is
//! durably in the gateway's inbox, so no message is lost.
//!
//! - [`telegram`]: the Bot API, by long polling.
//!
//! Discord and Slack follow (see the crate README).

mod delivery;
pub mod discord;
pub mod doctor;
mod env;
mod http;
pub mod slack;
pub mod telegram;
