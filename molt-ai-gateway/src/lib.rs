//! # molt-ai-gateway
//!
//! A router in front of model providers (Anthropic, OpenAI, OpenAI-compatible
//! endpoints, Cloudflare AI Gateway): caching, rate limits, retries,
//! fallbacks, traffic splits, budgets, and token and cost accounting, usable as
//! a library (it implements `molt-core`'s language-model contract) and as a
//! proxy server.
//!
//! The providers and the router arrive with the "molt-ai-gateway" issue; this
//! crate holds no code yet. Until then the gateway answers with
//! `molt_core::echo::EchoModel`, clearly labelled offline.
