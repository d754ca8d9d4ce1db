//! # molt-core
//!
//! The contract and the runtime of the Molt assistant gateway: messages,
//! the language-model and tool contracts, the tool-calling agent loop, the
//! durable inbox, sessions and transcripts, DM policies and pairing, skills,
//! configuration, and the small traits every other Molt crate implements.
//!
//! It is pure logic: no async runtime, no sockets, no files, no clock. What it
//! needs from the host comes in through [`platform::Platform`] and the
//! [`store::Store`] / [`store::LogStore`] traits, so it also builds for
//! `wasm32-unknown-unknown`.
//!
//! ```
//! use molt_core::agent::{Agent, AgentOptions};
//! use molt_core::cancel::CancelToken;
//! use molt_core::echo::{EchoModel, WordCountTool};
//! use molt_core::message::Message;
//! use molt_core::platform::Timer;
//! use molt_core::tool::ToolRegistry;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! /// A timer that never fires: enough for a run that needs no timeout.
//! struct NoTimeout;
//! impl Timer for NoTimeout {
//!     fn sleep(&self, _: Duration) -> futures::future::BoxFuture<'static, ()> {
//!         Box::pin(futures::future::pending())
//!     }
//! }
//!
//! let mut tools = ToolRegistry::new();
//! tools.register(Arc::new(WordCountTool)).unwrap();
//! let agent = Agent::new(Arc::new(EchoModel), Arc::new(tools), Arc::new(NoTimeout), AgentOptions::default());
//! let history = [Message::user(r#"/tool word_count {"text": "one two three"}"#)];
//! let outcome = futures::executor::block_on(agent.run("", &history, &CancelToken::new(), &mut |_| {})).unwrap();
//! assert_eq!(outcome.reply, "echo: the tool returned 3 words");
//! ```

pub mod access;
pub mod agent;
pub mod cancel;
pub mod channel;
pub mod config;
pub mod device;
pub mod devices;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod inbox;
pub mod media;
pub mod message;
pub mod model;
pub mod pairing;
pub mod platform;
pub mod policy;
pub mod prompt;
pub mod reminders;
pub mod routes;
pub mod secret;
pub mod session;
pub mod skills;
pub mod store;
pub mod throttle;
pub mod tool;
pub mod transcript;
pub mod webhook;
pub mod workspace;

pub use secret::Secret;
