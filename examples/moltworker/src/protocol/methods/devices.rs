//! Device pairing and device tokens: `device.pair.*` and `device.token.*`.

use super::{Call, params, unavailable};
use crate::protocol::Broadcast;
use crate::protocol::frames::RpcError;
use molt_core::devices::{DevicesError, PairedDevice, scope_satisfied, scopes_satisfied};
use serde::Deserialize;
use serde_json::{Value, json};

/// A paired device as `device.pair.list` shows it: tokens summarised, never shown.
pub fn redacted(device: &PairedDevice) -> Value {
    let mut value = serde_json::to_value(device).unwrap_or_default();
    let tokens: Vec<Value> = (device.tokens.iter())
        .map(|(role, token)| {
            json!({ "role": role, "scopes": token.scopes, "createdAtMs": token.created_at_ms.0,
                    "rotatedAtMs": token.rotated_at_ms.map(|t| t.0), "revokedAtMs": token.revoked_at_ms.map(|t| t.0) })
        })
        .collect();
    value["tokens"] = json!(tokens);
    value
}

/// Whether the caller may act on device `device_id`: an admin on any, a
/// device on itself only.
fn may_manage(call: &Call, device_id: &str) -> bool {
    scope_satisfied("operator.admin", &call.conn.scopes)
        || call.conn.device_id.as_deref() == Some(device_id)
}

pub(super) async fn pair_list(call: Call, _params: Value) -> Result<Value, RpcError> {
    let devices = &call.state.devices;
    let mut pending = devices.pending().await.map_err(unavailable)?;
    let mut paired = devices.paired().await.map_err(unavailable)?;
    // A device that is not an admin sees only itself.
    pending.retain(|request| may_manage(&call, &request.device_id));
    paired.retain(|device| may_manage(&call, &device.device_id));
    let paired: Vec<Value> = paired.iter().map(redacted).collect();
    Ok(json!({ "pending": pending, "paired": paired }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestId {
    request_id: String,
}

fn devices_error(err: DevicesError) -> RpcError {
    match err {
        DevicesError::Store(err) => unavailable(err),
        other => RpcError::invalid(other.to_string()),
    }
}

pub(super) async fn pair_approve(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: RequestId = params("device.pair.approve", value)?;
    // An operator grants only scopes it holds itself.
    let granted = Some(call.conn.scopes.as_slice());
    let device =
        (call.state.devices.approve(&p.request_id, granted).await).map_err(|err| match err {
            DevicesError::NotApproved => RpcError::invalid("device pairing approval denied"),
            other => devices_error(other),
        })?;
    tracing::info!(device = %device.device_id, "a device was paired");
    call.state.broadcast(Broadcast::pair_resolved(
        &p.request_id,
        &device.device_id,
        "approved",
    ));
    Ok(json!({ "requestId": p.request_id, "device": redacted(&device) }))
}

pub(super) async fn pair_reject(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: RequestId = params("device.pair.reject", value)?;
    let request = call
        .state
        .devices
        .reject(&p.request_id)
        .await
        .map_err(devices_error)?;
    call.state.broadcast(Broadcast::pair_resolved(
        &p.request_id,
        &request.device_id,
        "rejected",
    ));
    Ok(json!({ "requestId": p.request_id, "deviceId": request.device_id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceId {
    device_id: String,
}

pub(super) async fn pair_remove(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: DeviceId = params("device.pair.remove", value)?;
    if !may_manage(&call, &p.device_id) {
        return Err(RpcError::invalid("device removal denied"));
    }
    call.state
        .devices
        .remove(&p.device_id)
        .await
        .map_err(devices_error)?;
    call.state
        .broadcast(Broadcast::DeviceRemoved(p.device_id.clone()));
    Ok(json!({ "deviceId": p.device_id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRotate {
    device_id: String,
    role: String,
    scopes: Option<Vec<String>>,
}

pub(super) async fn token_rotate(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: TokenRotate = params("device.token.rotate", value)?;
    let denied = || RpcError::invalid("device token rotation denied");
    // A device rotates only its own token, and never beyond what it holds.
    if !may_manage(&call, &p.device_id) {
        return Err(denied());
    }
    let current = (call
        .state
        .devices
        .device(&p.device_id)
        .await
        .map_err(unavailable)?)
    .and_then(|device| device.tokens.get(&p.role).map(|token| token.scopes.clone()));
    let scopes = p.scopes.clone().or(current).unwrap_or_default();
    if !scopes_satisfied(&scopes, &call.conn.scopes) {
        return Err(denied());
    }
    let token = (call
        .state
        .devices
        .rotate_token(&p.device_id, &p.role, p.scopes)
        .await)
        .map_err(|err| match err {
            DevicesError::Store(err) => unavailable(err),
            _ => RpcError::invalid("device token rotation denied"),
        })?;
    let mut answer = json!({ "deviceId": p.device_id, "role": p.role, "scopes": token.scopes,
                             "rotatedAtMs": token.rotated_at_ms.map(|t| t.0) });
    // The new token goes only to the device itself, signed in with its token.
    let itself = call.conn.device_id.as_deref() == Some(p.device_id.as_str())
        && call.conn.method == crate::protocol::connect::AuthMethod::DeviceToken;
    if itself {
        answer["token"] = json!(token.token);
        answer["tokenDelivery"] = json!("in-band");
    } else {
        answer["tokenDelivery"] = json!("withheld-cross-device");
    }
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRevoke {
    device_id: String,
    role: String,
}

pub(super) async fn token_revoke(call: Call, value: Value) -> Result<Value, RpcError> {
    let p: TokenRevoke = params("device.token.revoke", value)?;
    if !may_manage(&call, &p.device_id) {
        return Err(RpcError::invalid("device token revocation denied"));
    }
    let revoked = (call.state.devices.revoke_token(&p.device_id, &p.role).await).map_err(
        |err| match err {
            DevicesError::Store(err) => unavailable(err),
            _ => RpcError::invalid("device token revocation denied"),
        },
    )?;
    call.state
        .broadcast(Broadcast::DeviceRemoved(p.device_id.clone()));
    Ok(json!({ "deviceId": p.device_id, "role": p.role, "revokedAtMs": revoked.0 }))
}
