//! Admission of a `connect` request, in OpenClaw's order: the protocol
//! version, the role, the credentials, the device's proof, then pairing.
//!
//! A client holding the gateway token without a device identity is the
//! operator (as Moltworker's Control UI is): it gets the scopes it asks for,
//! all of them when it names none. A client with a device identity must be
//! paired: an unknown device is told so (`NOT_PAIRED`, close 1008), and
//! waits for an operator; nothing is approved because it looks local.

use super::Presented;
use super::frames::{ConnectParams, RpcError, close_reason};
use crate::auth::{self, AuthResult};
use crate::server::AppState;
use molt_core::device::{self, ConnectClaims, DeviceProof};
use molt_core::devices::{DeviceMeta, DeviceToken, Standing, TokenRefusal};
use serde_json::json;

/// Close code for a refused handshake.
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code for a protocol mismatch.
pub const PROTOCOL_ERROR: u16 = 1002;

/// The scopes of the gateway token's holder when it names none.
pub const OWNER_SCOPES: [&str; 5] = [
    "operator.admin",
    "operator.read",
    "operator.write",
    "operator.pairing",
    "operator.approvals",
];

/// Scopes the gateway token alone does not give once Cloudflare Access is
/// configured: the upgrade must carry a valid Access token for them.
pub const ACCESS_ONLY_SCOPES: [&str; 2] = ["operator.admin", "operator.pairing"];

/// How a connection authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// The gateway token.
    Token,
    /// A paired device's token.
    DeviceToken,
}

impl AuthMethod {
    /// OpenClaw's name for it (`hello-ok.auth.method`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::DeviceToken => "device-token",
        }
    }
}

/// A connection let in.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The protocol version agreed.
    pub protocol: u32,
    /// Its role.
    pub role: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its device, when it has one.
    pub device_id: Option<String>,
    /// Its device's public key (canonical), when it has one.
    pub public_key: Option<String>,
    /// How it authenticated.
    pub method: AuthMethod,
    /// Its device token (for `hello-ok`), when it is a paired device.
    pub device_token: Option<DeviceToken>,
}

/// A connection refused: the error to answer, then the close.
#[derive(Debug)]
pub struct Refusal {
    /// The error response.
    pub error: RpcError,
    /// The close code.
    pub code: u16,
    /// The close reason (at most 120 bytes).
    pub reason: String,
}

impl Refusal {
    fn new(error: RpcError, code: u16) -> Self {
        let reason = close_reason(&error.message);
        Self {
            error,
            code,
            reason,
        }
    }
}

/// Decides whether the client of `params` comes in.
pub async fn admit(
    state: &AppState,
    params: &ConnectParams,
    challenge: &str,
    presented: &Presented,
) -> Result<Admitted, Refusal> {
    let Some(protocol) = params.agreed_protocol() else {
        let details = json!({
            "code": "PROTOCOL_MISMATCH",
            "clientMinProtocol": params.min_protocol,
            "clientMaxProtocol": params.max_protocol,
            "expectedProtocol": super::frames::PROTOCOL_VERSION,
            "minimumProbeProtocol": super::frames::MIN_PROTOCOL_VERSION,
        });
        let error = RpcError::invalid("protocol mismatch").with_details(details);
        return Err(Refusal::new(error, PROTOCOL_ERROR));
    };
    let role = params.role.as_deref().unwrap_or("operator");
    if role != "operator" {
        // Nodes (role `node`) are OpenClaw's device hosts; Molt has none.
        return Err(Refusal::new(
            RpcError::invalid("invalid role"),
            POLICY_VIOLATION,
        ));
    }
    let auth = params.auth.as_ref();
    let token = auth.and_then(|a| a.token.as_deref());
    let password = auth.and_then(|a| a.password.as_deref());
    let device_token = auth.and_then(|a| a.device_token.as_deref());
    let shared = auth::check(
        &state.token,
        [
            presented.query.as_deref(),
            presented.header.as_deref(),
            token,
            password,
        ],
    );

    let Some(proof) = &params.device else {
        if let Some((code, message)) = shared.refusal() {
            state.failed_attempt(presented.client, shared);
            let error = RpcError::invalid(message).with_details(json!({ "code": code }));
            return Err(Refusal::new(error, POLICY_VIOLATION));
        }
        let mut scopes = match &params.scopes {
            Some(scopes) if !scopes.is_empty() => scopes.clone(),
            _ => OWNER_SCOPES.map(str::to_owned).to_vec(),
        };
        // With Access in front, deciding about devices takes Access, as the admin API does.
        if let Some(gate) = &state.access {
            let passed = match &presented.access_token {
                Some(token) => gate.verify(token).await.is_ok(),
                None => false,
            };
            if !passed {
                scopes.retain(|scope| !ACCESS_ONLY_SCOPES.contains(&scope.as_str()));
            }
        }
        return Ok(Admitted {
            protocol,
            role: role.to_owned(),
            scopes,
            device_id: None,
            public_key: None,
            method: AuthMethod::Token,
            device_token: None,
        });
    };

    // The device's proof: it signs this connection's nonce and these claims.
    let scopes = params.scopes.clone().unwrap_or_default();
    let proof = DeviceProof {
        id: proof.id.clone(),
        public_key: proof.public_key.clone(),
        signature: proof.signature.clone(),
        signed_at_ms: proof.signed_at,
        nonce: proof.nonce.clone(),
    };
    let claims = ConnectClaims {
        client_id: &params.client.id,
        client_mode: &params.client.mode,
        role,
        scopes: &scopes,
        token: token.or(device_token).unwrap_or_default(),
        platform: Some(params.client.platform.as_str()),
        device_family: params.client.device_family.as_deref(),
    };
    let verified =
        device::verify(&proof, &claims, challenge, crate::protocol::now_ms()).map_err(|err| {
            let details = json!({ "code": err.code(), "reason": err.reason() });
            Refusal::new(
                RpcError::invalid(err.to_string()).with_details(details),
                POLICY_VIOLATION,
            )
        })?;

    let method = if shared == AuthResult::Ok {
        AuthMethod::Token
    } else {
        let presented_token = device_token.or(token).unwrap_or_default();
        let checked = state
            .devices
            .check_token(&verified.id, role, presented_token, &scopes)
            .await
            .map_err(|err| {
                Refusal::new(RpcError::unavailable(err.to_string()), POLICY_VIOLATION)
            })?;
        match checked {
            Ok(()) => AuthMethod::DeviceToken,
            Err(refusal) => {
                state.failed_attempt(presented.client, AuthResult::Mismatch);
                let (code, message) = match refusal {
                    TokenRefusal::ScopeMismatch => (
                        "AUTH_SCOPE_MISMATCH",
                        "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)",
                    ),
                    TokenRefusal::Mismatch if device_token.is_some() => (
                        "AUTH_DEVICE_TOKEN_MISMATCH",
                        "unauthorized: device token mismatch (rotate/reissue device token)",
                    ),
                    TokenRefusal::Mismatch => shared.refusal().unwrap_or((
                        "AUTH_TOKEN_MISMATCH",
                        "unauthorized: gateway token mismatch (provide gateway auth token)",
                    )),
                };
                let error = RpcError::invalid(message).with_details(json!({ "code": code }));
                return Err(Refusal::new(error, POLICY_VIOLATION));
            }
        }
    };

    let unavailable = |err: molt_core::store::StoreError| {
        Refusal::new(RpcError::unavailable(err.to_string()), POLICY_VIOLATION)
    };
    let standing = state
        .devices
        .standing(&verified.id, &verified.public_key, role, &scopes)
        .await
        .map_err(unavailable)?;
    let reason = match standing {
        Standing::Paired(_) => {
            // Removed since the look above: not in.
            let device_token = state
                .devices
                .ensure_token(&verified.id, role, &scopes)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    let error =
                        RpcError::unavailable("the device's pairing changed; connect again");
                    Refusal::new(error, POLICY_VIOLATION)
                })?;
            return Ok(Admitted {
                protocol,
                role: role.to_owned(),
                scopes,
                device_id: Some(verified.id),
                public_key: Some(verified.public_key),
                method,
                device_token: Some(device_token),
            });
        }
        Standing::NotPaired { .. } => ("not-paired", "device is not approved yet"),
        Standing::RoleUpgrade => (
            "role-upgrade",
            "device is asking for a higher role than currently approved",
        ),
        Standing::ScopeUpgrade => (
            "scope-upgrade",
            "device is asking for more scopes than currently approved",
        ),
    };
    let meta = DeviceMeta {
        client_id: params.client.id.clone(),
        client_mode: params.client.mode.clone(),
        platform: Some(params.client.platform.clone()),
        device_family: params.client.device_family.clone(),
        display_name: params.client.display_name.clone(),
        remote_ip: Some(presented.client.to_string()),
    };
    let request = state
        .devices
        .request(&verified.id, &verified.public_key, role, &scopes, meta)
        .await
        .map_err(unavailable)?;
    tracing::info!(device = %verified.id, request = %request.request_id, "a device asks to be paired");
    state.broadcast(super::Broadcast::event(
        "device.pair.requested",
        serde_json::to_value(&request).unwrap_or_default(),
        "operator.pairing",
    ));
    let (code, text) = reason;
    let message = format!("pairing required: {text}");
    let details = json!({
        "code": "PAIRING_REQUIRED",
        "reason": code,
        "requestId": request.request_id,
        "remediationHint": "Approve this device from the pending pairing requests.",
        "deviceId": verified.id,
        "requestedRole": role,
        "requestedScopes": scopes,
    });
    let close = close_reason(&format!("{message} (requestId: {})", request.request_id));
    Err(Refusal {
        error: RpcError::new(super::frames::ErrorCode::NotPaired, message).with_details(details),
        code: POLICY_VIOLATION,
        reason: close,
    })
}
