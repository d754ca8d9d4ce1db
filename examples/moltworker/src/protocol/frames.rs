//! The frames of OpenClaw's gateway protocol, typed: the client's requests
//! (`connect`'s parameters are a closed object, as OpenClaw's schema has
//! them), the server's responses and events, and OpenClaw's error shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The protocol version spoken to clients that accept it.
pub const PROTOCOL_VERSION: u32 = 4;
/// The oldest version spoken, for older clients.
pub const MIN_PROTOCOL_VERSION: u32 = 3;
/// The longest close reason OpenClaw sends, in bytes.
pub const MAX_CLOSE_REASON: usize = 120;

/// The client ids OpenClaw knows (`client.id` is one of them).
pub const CLIENT_IDS: [&str; 17] = [
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// The client modes OpenClaw knows (`client.mode` is one of them).
pub const CLIENT_MODES: [&str; 8] = [
    "webchat", "cli", "ui", "backend", "node", "worker", "probe", "test",
];

/// A request from the client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFrame {
    /// Always `req`.
    #[serde(rename = "type")]
    pub kind: RequestType,
    /// The request's id, echoed by its response.
    pub id: String,
    /// The method called.
    pub method: String,
    /// The method's parameters.
    #[serde(default)]
    pub params: Value,
    /// A W3C trace parent, when sent.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The profile the client expects (not used here).
    #[serde(default, rename = "expectedProfileId")]
    pub expected_profile_id: Option<String>,
}

/// The one frame type a client sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestType {
    /// A request.
    Req,
}

impl RequestFrame {
    /// Reads a text frame as a request; on failure, the request id (when
    /// one can be read) and the error to answer with.
    pub fn parse(text: &str) -> Result<Self, (String, RpcError)> {
        Self::from_value(parse_json(text)?)
    }

    fn from_value(value: Value) -> Result<Self, (String, RpcError)> {
        let id = value["id"].as_str().unwrap_or("invalid").to_owned();
        let frame: Self = serde_json::from_value(value).map_err(|err| {
            (
                id.clone(),
                RpcError::invalid(format!("invalid request frame: {err}")),
            )
        })?;
        if frame.id.is_empty() || frame.method.is_empty() {
            let error = RpcError::invalid("invalid request frame: id and method must be non-empty");
            return Err((id, error));
        }
        Ok(frame)
    }
}

/// What a connection that is in may send: a request, or `cancel {id}`.
#[derive(Debug)]
pub enum ClientFrame {
    /// A request.
    Request(RequestFrame),
    /// The client no longer wants the answer to request `id`: the request is
    /// stopped if it is still being answered (an `agent` run is aborted),
    /// and answered with `INVALID_REQUEST` `request cancelled`.
    Cancel {
        /// The request's id.
        id: String,
    },
}

/// `{type: "cancel", id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelFrame {
    #[serde(rename = "type")]
    _kind: CancelType,
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum CancelType {
    Cancel,
}

impl ClientFrame {
    /// Reads a text frame; on failure, the request id (when one can be read)
    /// and the error to answer with.
    pub fn parse(text: &str) -> Result<Self, (String, RpcError)> {
        let value = parse_json(text)?;
        if value["type"] != "cancel" {
            return RequestFrame::from_value(value).map(ClientFrame::Request);
        }
        let id = value["id"].as_str().unwrap_or("invalid").to_owned();
        match serde_json::from_value::<CancelFrame>(value) {
            Ok(frame) if !frame.id.is_empty() => Ok(ClientFrame::Cancel { id: frame.id }),
            Ok(_) => Err((
                id,
                RpcError::invalid("invalid cancel frame: id must be non-empty"),
            )),
            Err(err) => Err((
                id,
                RpcError::invalid(format!("invalid cancel frame: {err}")),
            )),
        }
    }
}

fn parse_json(text: &str) -> Result<Value, (String, RpcError)> {
    serde_json::from_str(text).map_err(|err| {
        (
            String::new(),
            RpcError::invalid(format!("invalid request frame: {err}")),
        )
    })
}

/// A frame the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// The answer to a request.
    Res {
        /// The request's id.
        id: &'a str,
        /// Whether it succeeded.
        ok: bool,
        /// What it returned.
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        /// Why it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<RpcError>,
    },
    /// Something that happened.
    Event {
        /// The event's name.
        event: &'a str,
        /// Its payload.
        payload: Value,
        /// This connection's event counter (absent on `connect.challenge`).
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The presence and health versions, on `presence` and `health` events.
        #[serde(rename = "stateVersion", skip_serializing_if = "Option::is_none")]
        state_version: Option<Value>,
    },
}

impl ServerFrame<'_> {
    /// The response to request `id`.
    pub fn response(id: &str, result: Result<Value, RpcError>) -> ServerFrame<'_> {
        match result {
            Ok(payload) => ServerFrame::Res {
                id,
                ok: true,
                payload: Some(payload),
                error: None,
            },
            Err(error) => ServerFrame::Res {
                id,
                ok: false,
                payload: None,
                error: Some(error),
            },
        }
    }

    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("frames serialize")
    }
}

/// OpenClaw's top-level error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Bad input, a refused handshake, an unknown method.
    InvalidRequest,
    /// A scope the method needs is missing.
    Forbidden,
    /// The device must be paired (or identify itself) first.
    NotPaired,
    /// Try again later.
    Unavailable,
}

/// An error response, in OpenClaw's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcError {
    /// The code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Details for programs (`details.code` and the like).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether trying again may succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// How long to wait before trying again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    /// `INVALID_REQUEST` with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// `UNAVAILABLE` with `message`, to be tried again.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retryable: Some(true),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    /// The same error, to be tried again after `ms` milliseconds.
    pub fn retryable(mut self, ms: u64) -> Self {
        (self.retryable, self.retry_after_ms) = (Some(true), Some(ms));
        self
    }

    /// The same error with `details`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// The parameters of `connect` (closed, as OpenClaw's schema has them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectParams {
    /// The oldest protocol version the client speaks.
    pub min_protocol: u32,
    /// The newest protocol version the client speaks.
    pub max_protocol: u32,
    /// Who the client is.
    pub client: ClientInfo,
    /// Client capabilities, such as `tool-events`.
    #[serde(default)]
    pub caps: Vec<String>,
    /// Commands a node offers (not used here).
    #[serde(default)]
    pub commands: Vec<String>,
    /// Permissions a node holds (not used here).
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, bool>>,
    /// Computer-use settings (not used here).
    #[serde(default)]
    pub computer_use: Option<Value>,
    /// Deprecated.
    #[serde(default)]
    pub worker_runs: Option<Value>,
    /// A node's `PATH` (not used here).
    #[serde(default)]
    pub path_env: Option<String>,
    /// The role asked for (`operator` when absent).
    #[serde(default)]
    pub role: Option<String>,
    /// The scopes asked for.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Model catalog hints (not used here).
    #[serde(default)]
    pub model_catalog: Option<Value>,
    /// The device's identity proof.
    #[serde(default)]
    pub device: Option<DeviceParams>,
    /// Credentials.
    #[serde(default)]
    pub auth: Option<AuthParams>,
    /// The client's locale.
    #[serde(default)]
    pub locale: Option<String>,
    /// The client's user agent.
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// `connect.client`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientInfo {
    /// One of [`CLIENT_IDS`].
    pub id: String,
    /// A name to show.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The client's version.
    pub version: String,
    /// A build id.
    #[serde(default)]
    pub build_id: Option<String>,
    /// The platform, such as `linux`.
    pub platform: String,
    /// The device family, such as `desktop`.
    #[serde(default)]
    pub device_family: Option<String>,
    /// The hardware model.
    #[serde(default)]
    pub model_identifier: Option<String>,
    /// The client's time zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// One of [`CLIENT_MODES`].
    pub mode: String,
    /// The client instance.
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// `connect.device`: the device's signed proof.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceParams {
    /// The device id.
    pub id: String,
    /// The public key.
    pub public_key: String,
    /// The signature.
    pub signature: String,
    /// When it was signed (milliseconds).
    pub signed_at: u64,
    /// The challenge's nonce.
    pub nonce: String,
}

/// `connect.auth`: whichever credentials the client has.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthParams {
    /// The gateway token (or a device token, as openclaw-node sends it).
    #[serde(default)]
    pub token: Option<String>,
    /// A setup code's token (not supported here).
    #[serde(default)]
    pub bootstrap_token: Option<String>,
    /// A device token.
    #[serde(default)]
    pub device_token: Option<String>,
    /// The gateway password (the gateway token here).
    #[serde(default)]
    pub password: Option<String>,
    /// Not used here.
    #[serde(default)]
    pub approval_runtime_token: Option<String>,
    /// Not used here.
    #[serde(default)]
    pub agent_runtime_identity_token: Option<String>,
}

impl ConnectParams {
    /// Checks what serde cannot: non-empty strings and the known client ids and modes.
    pub fn validate(&self) -> Result<(), String> {
        let client = &self.client;
        if !CLIENT_IDS.contains(&client.id.as_str()) {
            return Err(format!(
                "client.id must be one of {}",
                CLIENT_IDS.join(", ")
            ));
        }
        if !CLIENT_MODES.contains(&client.mode.as_str()) {
            return Err(format!(
                "client.mode must be one of {}",
                CLIENT_MODES.join(", ")
            ));
        }
        if client.version.is_empty() || client.platform.is_empty() {
            return Err("client.version and client.platform must be non-empty".into());
        }
        if self.min_protocol == 0 || self.max_protocol == 0 {
            return Err("minProtocol and maxProtocol must be at least 1".into());
        }
        Ok(())
    }

    /// The protocol version both sides speak: 4 when the client's range
    /// holds it, else 3 for older clients.
    pub fn agreed_protocol(&self) -> Option<u32> {
        let range = self.min_protocol..=self.max_protocol;
        [PROTOCOL_VERSION, MIN_PROTOCOL_VERSION]
            .into_iter()
            .find(|version| range.contains(version))
    }
}

/// `reason` cut to [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connect(params: Value) -> Result<ConnectParams, serde_json::Error> {
        serde_json::from_value(params)
    }

    #[test]
    fn connect_parameters_are_a_closed_object_and_the_version_is_agreed() {
        let node = json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": { "id": "gateway-client", "version": "0.3.0", "platform": "linux", "mode": "backend" },
            "role": "operator", "scopes": ["operator.read", "operator.write"],
            "caps": [], "commands": [], "permissions": {}, "auth": { "token": "s" },
            "locale": "en-US", "userAgent": "openclaw-node/0.2.1",
        });
        let params = connect(node.clone()).unwrap();
        assert!(params.validate().is_ok());
        assert_eq!(params.agreed_protocol(), Some(4));
        let mut extra = node.clone();
        extra["surprise"] = json!(1);
        assert!(connect(extra).is_err());
        let mut bad_mode = node.clone();
        bad_mode["client"]["mode"] = json!("robot");
        assert!(connect(bad_mode).unwrap().validate().is_err());
        let range = |min: u32, max: u32| {
            let mut value = node.clone();
            value["minProtocol"] = json!(min);
            value["maxProtocol"] = json!(max);
            connect(value).unwrap().agreed_protocol()
        };
        assert_eq!(range(3, 3), Some(3));
        assert_eq!(range(3, 9), Some(4));
        assert_eq!(range(5, 6), None);
        assert_eq!(range(1, 2), None);
    }

    #[test]
    fn frames_are_read_strictly_and_errors_keep_the_id() {
        let ok = RequestFrame::parse(r#"{"type":"req","id":"1","method":"health"}"#).unwrap();
        assert_eq!((ok.id.as_str(), ok.method.as_str()), ("1", "health"));
        for bad in [
            "{",
            "[]",
            r#"{"type":"res","id":"2"}"#,
            r#"{"type":"req","id":"3","method":7}"#,
        ] {
            assert!(RequestFrame::parse(bad).is_err(), "{bad}");
        }
        let (id, error) =
            RequestFrame::parse(r#"{"type":"req","id":"4","method":""}"#).unwrap_err();
        assert_eq!((id.as_str(), error.code), ("4", ErrorCode::InvalidRequest));
        let text = ServerFrame::response("4", Err(error)).to_text();
        assert!(text.contains(r#""code":"INVALID_REQUEST""#), "{text}");
        assert_eq!(close_reason(&"é".repeat(100)).len(), 120);
    }
}
