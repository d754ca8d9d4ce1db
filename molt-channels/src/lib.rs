//! # molt-channels
//!
//! Chat-platform adapters for the Molt assistant gateway. Each implements
//! `molt-core`'s channel contract (`molt_core::channel::ChannelIngress` and
//! `ChannelEgress`) and acknowledges a platform message only after it is
//! durably in the gateway's inbox, so no message is lost.
//!
//! - [`telegram`]: the Bot API, by long polling or a webhook.
//! - [`discord`]: the gateway WebSocket and the REST API.
//! - [`slack`]: Socket Mode and the Web API.
//! - [`doctor`]: health reports that say what to fix.

mod delivery;
pub mod discord;
pub mod doctor;
mod env;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod slack;
pub mod telegram;
