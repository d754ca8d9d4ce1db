//! The providers' wire formats, translated to and from `molt-core`'s model contract.
//!
//! Each format has a request parser (for the proxy), a request encoder (for the
//! provider client), a stream decoder (provider SSE to model events), a stream
//! encoder (model events to the client's SSE), and error bodies in its own shape.

pub mod anthropic;
pub mod openai;

use crate::error::GatewayError;
use molt_core::model::{ModelOptions, ModelRequest, ProviderFields};
use serde_json::{Map, Value};

/// The API name of Anthropic's Messages API in [`ProviderFields`].
pub const ANTHROPIC: &str = "anthropic";
/// The API name of OpenAI's Chat Completions API in [`ProviderFields`].
pub const OPENAI: &str = "openai";

/// Fields that only tune sampling, storage or billing: safe to leave out when
/// the request goes to a provider of the other API.
const DROPPABLE: [&str; 12] = [
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "verbosity",
    "top_k",
    "container",
];

/// Adds `temperature` and `top_p`, which both APIs name alike.
pub(crate) fn insert_sampling(body: &mut Map<String, Value>, options: &ModelOptions) {
    if let Some(temperature) = options.temperature {
        body.insert("temperature".into(), Value::from(temperature));
    }
    if let Some(top_p) = options.top_p {
        body.insert("top_p".into(), Value::from(top_p));
    }
}

/// Keeps a client's API-specific fields (those `parse` did not translate).
pub(crate) fn provider_fields(api: &str, fields: Map<String, Value>) -> Option<ProviderFields> {
    (!fields.is_empty()).then(|| ProviderFields {
        api: api.to_string(),
        fields,
    })
}

/// Adds a request's API-specific fields to a body for a provider speaking `api`:
/// for the same API they are added (never replacing what the gateway wrote);
/// for the other API, fields that only tune sampling or billing are dropped and
/// any other one is refused, since its meaning would be lost.
pub(crate) fn merge_provider_fields(
    body: &mut Map<String, Value>,
    request: &ModelRequest,
    api: &str,
) -> Result<(), GatewayError> {
    let Some(extra) = &request.options.provider_fields else {
        return Ok(());
    };
    if extra.api == api {
        for (name, value) in &extra.fields {
            body.entry(name.clone()).or_insert_with(|| value.clone());
        }
        return Ok(());
    }
    let kept: Vec<&str> = extra
        .fields
        .keys()
        .map(String::as_str)
        .filter(|name| !DROPPABLE.contains(name))
        .collect();
    if !kept.is_empty() {
        return Err(GatewayError::InvalidRequest(format!(
            "{} cannot be translated from the {} API to the {api} API",
            kept.join(", "),
            extra.api
        )));
    }
    tracing::debug!(fields = ?extra.fields.keys().collect::<Vec<_>>(), "dropping fields the provider's API does not have");
    Ok(())
}

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
