//! The Molt Worker: Cloudflare's edge in front of the `moltworker` gateway,
//! which runs in a container, one per user, behind a Durable Object.
//!
//! A request meets, in this order (Moltworker's, with Molt's route table
//! from [`molt_core::routes`]):
//! 1. the public routes: `/sandbox-health`, and `/health` (whether the
//!    caller's gateway is up);
//! 2. `/cdp*`, behind `CDP_SECRET`, relayed to Browser Rendering ([`cdp`]);
//! 3. the required-environment check ([`env_check`]);
//! 4. Cloudflare Access on the operator's routes (`/_admin/*`, `/api/*`,
//!    `/debug/*`, `/metrics`), the container's own check in wasm32;
//! 5. the caller's sandbox ([`users`]), to which everything else is passed,
//!    HTTP and WebSocket, with the loading page while it starts ([`proxy`]);
//!    chat platforms' webhooks (`/hooks/*`) go to the default sandbox, where
//!    the channels live, waking it, once they carry their platform's proof
//!    ([`hooks`]).
//!
//! A cron trigger asks every named sandbox's running gateway to back up now.

pub mod access;
pub mod cdp;
pub mod container;
pub mod env_check;
pub mod hooks;
pub mod net;
pub mod pages;
pub mod proxy;
mod sandbox;
pub mod settings;
pub mod users;

use molt_core::access::AccessError;
use molt_core::routes::{Guard, guard};
use serde_json::json;
use settings::{GATEWAY_PORT, SANDBOX_BINDING, Settings};
use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = net::now_ms();
    let request_id = request_id(&req);
    let (method, path) = (req.method(), req.path());
    let outcome = route(req, &env, &ctx, &request_id).await;
    let response = match outcome {
        Ok(response) => response,
        Err(err) => {
            let details = settings::redact(&err.to_string(), &settings::secret_values(&env));
            worker::console_error!("{request_id} {method} {path}: {details}");
            Response::from_json(&json!({
                "error": "The Worker failed",
                "details": details,
                "requestId": request_id,
            }))?
            .with_status(500)
        }
    };
    let status = response.status_code();
    let response = proxy::with_header(response, "x-request-id", &request_id)?;
    // The path only: a query can carry a token or the /cdp secret.
    worker::console_log!(
        "{request_id} {method} {path} {status} {}ms",
        net::now_ms().saturating_sub(started)
    );
    Ok(response)
}

async fn route(req: Request, env: &Env, ctx: &Context, request_id: &str) -> Result<Response> {
    let path = req.path();
    if path == "/sandbox-health" {
        return Response::from_json(
            &json!({ "status": "ok", "service": "moltbot-sandbox", "gateway_port": GATEWAY_PORT }),
        );
    }
    let settings = Settings::from_env(env);
    let guarded = guard(&path);
    if guarded == Guard::CdpSecret {
        return match &settings {
            Ok(settings) => cdp::handle(req, env, settings).await,
            Err(_) => env_check::refusal(&env_check::check(env, settings.as_ref()), false),
        };
    }
    let report = env_check::check(env, settings.as_ref());
    let settings = match settings {
        Ok(settings) if report.is_complete() => settings,
        _ if path == "/health" => {
            return Response::from_json(&json!({ "status": "ok", "gateway": "not_configured" }));
        }
        _ => return env_check::refusal(&report, proxy::wants_html(&req)),
    };

    // A platform's delivery without its proof does not wake anything.
    if guarded == Guard::Webhook
        && let Some(refusal) = hooks::refusal(&req, env, &path).await?
    {
        return Ok(refusal);
    }

    // Who is asking: an Access identity when one verifies (required on the
    // operator's routes, unless DEV_MODE runs without Access).
    let identity = match &settings.access {
        Some(config) if guarded != Guard::Webhook => {
            Some(access::identity(&req, config, &settings).await)
        }
        _ => None,
    };
    if guarded == Guard::Operator {
        match &identity {
            Some(Ok(_)) => {}
            Some(Err(err)) => return access_refusal(&req, err, &settings),
            None if settings.dev_mode => {}
            None => return access_refusal(&req, &AccessError::Missing, &settings),
        }
    }
    let identity = identity.and_then(|result| result.ok());
    // The chat channels live in the default sandbox; their platforms carry no identity.
    let user = match guarded {
        Guard::Webhook => Ok(settings.users.default_user().to_owned()),
        _ => settings.users.sandbox_of(identity.as_ref()),
    };
    let user = match user {
        Ok(user) => user,
        Err(err) => {
            return Ok(Response::from_json(
                &json!({ "error": "Forbidden", "message": err.to_string() }),
            )?
            .with_status(403));
        }
    };
    let stub = env.durable_object(SANDBOX_BINDING)?.get_by_name(&user)?;

    if path == "/health" {
        let gateway = proxy::gateway_state(&stub, &user).await?;
        return Response::from_json(&json!({ "status": "ok", "gateway": gateway }));
    }
    if proxy::wants_html(&req) && !proxy::is_websocket(&req) {
        let gateway = proxy::gateway_state(&stub, &user).await?;
        if gateway != "running" {
            ctx.wait_until(async move {
                if let Err(err) = proxy::sandbox_op(&stub, &user, "wake").await {
                    worker::console_error!("sandbox {user}: cannot wake: {err}");
                }
            });
            return proxy::loading_page();
        }
    }
    let client_ip = req.headers().get("cf-connecting-ip")?;
    proxy::pass_through(req, &stub, &user, client_ip.as_deref(), request_id).await
}

/// Refuses a request that did not pass Access: a browser is sent to the
/// team's login, an API client gets 401 with the reason.
fn access_refusal(req: &Request, err: &AccessError, settings: &Settings) -> Result<Response> {
    if let (true, Some(config)) = (proxy::wants_html(req), &settings.access)
        && matches!(err, AccessError::Missing)
    {
        let login = worker::Url::parse(&config.issuer())?;
        return Response::redirect(login);
    }
    let status = if matches!(err, AccessError::Keys(_)) {
        503
    } else {
        401
    };
    Ok(
        Response::from_json(&json!({ "error": "Unauthorized", "message": err.to_string() }))?
            .with_status(status),
    )
}

/// The request's id: Cloudflare's ray id, else a random one.
fn request_id(req: &Request) -> String {
    if let Ok(Some(ray)) = req.headers().get("cf-ray") {
        return ray;
    }
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let Ok(settings) = Settings::from_env(&env) else {
        worker::console_error!("scheduled backup: the Worker's settings are invalid");
        return;
    };
    let Ok(namespace) = env.durable_object(SANDBOX_BINDING) else {
        worker::console_error!("scheduled backup: no {SANDBOX_BINDING} binding");
        return;
    };
    for user in settings.users.named() {
        let outcome = match namespace.get_by_name(user) {
            Ok(stub) => proxy::sandbox_op(&stub, user, "backup").await.map(|_| ()),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => worker::console_log!("scheduled backup: asked sandbox {user}"),
            Err(err) => worker::console_error!("scheduled backup: sandbox {user}: {err}"),
        }
    }
}
