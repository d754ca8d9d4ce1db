//! # molt-ai-gateway
//!
//! A router in front of model providers: Anthropic's Messages API, OpenAI's
//! Chat Completions and every OpenAI-compatible server, directly or through
//! Cloudflare AI Gateway. Around each provider call it composes layers
//! (retries with backoff that honour `retry-after`, timeouts, ordered
//! fallbacks, weighted and conditional routes, a response cache with
//! single-flight, rate limits, spending caps, and per-call analytics).
//!
//! Use it as a library (a [`Gateway`] is a `molt-core` language model) or as a
//! proxy that OpenAI and Anthropic clients point at ([`proxy`]).
//!
//! ```no_run
//! use molt_ai_gateway::{Gateway, GatewayConfig};
//! use molt_core::model::{ModelRequest, complete};
//! use molt_core::message::Message;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = GatewayConfig::default();
//! config.add_env(|name| std::env::var(name).ok()); // ANTHROPIC_API_KEY, OPENAI_API_KEY, ...
//! let gateway = Gateway::from_config(&config, |name| std::env::var(name).ok())?;
//! let request = ModelRequest { messages: vec![Message::user("Hello")], ..ModelRequest::default() };
//! let answer = complete(&gateway, request).await?;
//! println!("{}", answer.message.text());
//! # Ok(()) }
//! ```

pub mod analytics;
pub mod clock;
pub mod config;
pub mod error;
pub mod gateway;
pub mod layers;
pub mod listen;
pub mod pricing;
pub mod prometheus;
pub mod provider;
pub mod proxy;
pub mod router;
pub mod service;
pub mod wire;

pub use config::{ConfigError, GatewayConfig};
pub use error::GatewayError;
pub use gateway::Gateway;
pub use provider::{Api, Provider, ProviderConfig};
pub use service::{Answer, AnswerInfo, Call, CallContext, ModelService};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
