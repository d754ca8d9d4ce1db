//! Router layers: each wraps a [`ModelService`](crate::service::ModelService)
//! and adds one behaviour, so they compose like tower layers and test alone.

pub mod budget;
pub mod cache;
pub mod fallback;
pub mod rate_limit;
pub mod retry;
pub mod split;
