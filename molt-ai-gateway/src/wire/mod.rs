//! The providers' wire formats, translated to and from `molt-core`'s model contract.
//!
//! Each format has a request parser (for the proxy), a request encoder (for the
//! provider client), a stream decoder (provider SSE to model events), a stream
//! encoder (model events to the client's SSE), and error bodies in its own shape.

pub mod anthropic;
pub mod openai;

use crate::error::GatewayError;

/// An image given inline as a `data:` URL, split into media type and base64 data.
pub(crate) fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (media_type, data) = rest.split_once(";base64,")?;
    Some((media_type, data))
}

/// Parses a JSON request body, naming the problem in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|err| GatewayError::InvalidRequest(format!("{err}")))
}

/// A provider-independent message for an error: the provider's own words when it sent some.
pub(crate) fn error_message(error: &GatewayError) -> String {
    match error {
        GatewayError::Upstream { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
