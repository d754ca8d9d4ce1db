//! The methods a connection may call: one table from name to scope and
//! handler, each handler a plain async function with typed parameters.

mod chat;
mod devices;
pub mod sessions;
mod system;

pub use devices::redacted;
pub use system::label as channel_label;

use super::connect::Admitted;
use super::frames::{ErrorCode, RpcError};
use crate::server::AppState;
use futures::FutureExt;
use futures::future::BoxFuture;
use molt_core::devices::scope_satisfied;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// What a handler gets: the server's state and the calling connection.
#[derive(Clone)]
pub struct Call {
    /// The server.
    pub state: Arc<AppState>,
    /// The caller.
    pub conn: Arc<Admitted>,
    /// The sessions whose messages the caller asked to hear.
    pub subscriptions: Arc<sessions::Subscriptions>,
}

/// What a method answers.
#[derive(Debug)]
pub enum Reply {
    /// One response, now.
    Now(Result<Value, RpcError>),
    /// An acknowledgement now, and the final response once run `run_id`
    /// ends (OpenClaw's `agent`: two responses on one request id).
    Accepted {
        /// The acknowledgement.
        ack: Value,
        /// The run whose end brings the final response.
        run_id: String,
    },
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(result: Result<Value, RpcError>) -> Self {
        Reply::Now(result)
    }
}

type Handler = fn(Call, Value) -> BoxFuture<'static, Reply>;

/// A method: its name, the scope it needs (`None`: any connection), its handler.
pub struct Method {
    /// The method's name.
    pub name: &'static str,
    /// The scope a caller must hold.
    pub scope: Option<&'static str>,
    /// Whether `hello-ok` lists it (OpenClaw does not list `chat.inject`).
    pub advertised: bool,
    handler: Handler,
}

const READ: Option<&str> = Some("operator.read");
const WRITE: Option<&str> = Some("operator.write");
const ADMIN: Option<&str> = Some("operator.admin");
const PAIRING: Option<&str> = Some("operator.pairing");

/// A method whose handler answers once.
macro_rules! method {
    ($name:literal, $scope:expr, $handler:path) => {
        method!($name, $scope, $handler, true)
    };
    ($name:literal, $scope:expr, $handler:path, $advertised:literal) => {
        Method {
            name: $name,
            scope: $scope,
            advertised: $advertised,
            handler: |c, p| $handler(c, p).map(Reply::from).boxed(),
        }
    };
}

/// Every method, in the order `hello-ok` lists them. The scopes are OpenClaw's.
pub const METHODS: &[Method] = &[
    method!("health", None, system::health),
    method!("status", READ, system::status),
    method!("models.list", READ, system::models_list),
    method!("channels.status", READ, system::channels_status),
    method!("config.get", READ, system::config_get),
    method!("chat.send", WRITE, chat::chat_send),
    method!("chat.history", READ, chat::chat_history),
    method!("chat.abort", WRITE, chat::chat_abort),
    method!("chat.inject", ADMIN, chat::chat_inject, false),
    Method {
        name: "agent",
        scope: WRITE,
        advertised: true,
        handler: |c, p| chat::agent(c, p).boxed(),
    },
    method!("sessions.list", READ, sessions::list),
    method!("sessions.describe", READ, sessions::describe),
    method!("sessions.reset", ADMIN, sessions::reset),
    method!("sessions.delete", ADMIN, sessions::delete),
    method!("sessions.compact", ADMIN, sessions::compact),
    method!("sessions.subscribe", READ, sessions::subscribe),
    method!("sessions.unsubscribe", READ, sessions::unsubscribe),
    method!(
        "sessions.messages.subscribe",
        READ,
        sessions::messages_subscribe
    ),
    method!(
        "sessions.messages.unsubscribe",
        READ,
        sessions::messages_unsubscribe
    ),
    method!("device.pair.list", PAIRING, devices::pair_list),
    method!("device.pair.approve", PAIRING, devices::pair_approve),
    method!("device.pair.reject", PAIRING, devices::pair_reject),
    method!("device.pair.remove", PAIRING, devices::pair_remove),
    method!("device.token.rotate", PAIRING, devices::token_rotate),
    method!("device.token.revoke", PAIRING, devices::token_revoke),
];

/// The events a connection may receive.
pub const EVENTS: [&str; 11] = [
    "connect.challenge",
    "chat",
    "agent",
    "session.message",
    "tick",
    "presence",
    "health",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
    "sessions.changed",
];

/// Calls `method` for `call`: the scope first (an unknown method needs
/// `operator.admin`, as in OpenClaw), then the handler.
pub async fn dispatch(call: Call, method: &str, params: Value) -> Reply {
    let found = METHODS.iter().find(|m| m.name == method);
    let scope = found.map_or(ADMIN, |m| m.scope);
    if let Some(scope) = scope
        && !scope_satisfied(scope, &call.conn.scopes)
    {
        let details =
            json!({ "code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope] });
        let error = RpcError::new(ErrorCode::Forbidden, format!("missing scope: {scope}"));
        return Reply::Now(Err(error.with_details(details)));
    }
    match found {
        Some(method) => (method.handler)(call, params).await,
        None if method == "connect" => Reply::Now(Err(RpcError::invalid(
            "connect is only valid as the first request",
        ))),
        None => Reply::Now(Err(RpcError::invalid(format!("unknown method: {method}")))),
    }
}

/// `params` as `T`, or OpenClaw's `invalid <method> params` error.
fn params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    if !params.is_object() {
        return Err(RpcError::invalid(format!(
            "invalid {method} params: must be an object"
        )));
    }
    serde_json::from_value(params)
        .map_err(|err| RpcError::invalid(format!("invalid {method} params: {err}")))
}

fn unavailable(err: impl std::fmt::Display) -> RpcError {
    RpcError::unavailable(err.to_string())
}
