//! The sandbox: one Durable Object per user, owning that user's container.
//! It starts the container with the deployment's secrets, waits for the
//! gateway to answer, passes requests (WebSockets included) through, and
//! puts an idle container to sleep after `SANDBOX_SLEEP_AFTER`, telling the
//! gateway first so it makes its last backup.

use crate::container::{ContainerHost, SIGTERM, SIGUSR1};
use crate::net::{now_ms, within};
use crate::settings::{self, CONTAINER_ENV, Settings, value};
use molt_core::config::SleepAfter;
use serde::Deserialize;
use serde_json::json;
use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::time::Duration;
use worker::{
    DurableObject, Env, Method, Request, Response, Result, State, console_log, durable_object,
};

/// The header naming a control operation for the sandbox (absent: pass the
/// request through). The Worker removes it from every client request.
pub const OP_HEADER: &str = "x-molt-sandbox";
/// The header naming the sandbox's user, set by the Worker.
pub const USER_HEADER: &str = "x-molt-user";
/// The header on a response the sandbox made itself because the gateway
/// could not be reached.
pub const FAILED_HEADER: &str = "x-molt-sandbox-failed";

/// How long a request waits for a starting gateway.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first pause between readiness probes; it doubles up to [`PROBE_INTERVAL_MAX`].
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between readiness probes.
const PROBE_INTERVAL_MAX: Duration = Duration::from_millis(250);
/// How long a stopping gateway gets to drain and make its last backup.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// How often the alarm comes back while the container runs.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// Where the gateway is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayState {
    /// Answering.
    Running,
    /// The container runs; the gateway does not answer yet.
    Starting,
    /// No container.
    NotRunning,
}

impl GatewayState {
    /// The name `/health` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Starting => "starting",
            Self::NotRunning => "not_running",
        }
    }
}

/// What the gateway's `/health` says about its activity.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Activity {
    /// Seconds without a request, a connected client or a run in progress.
    idle_seconds: u64,
}

/// A user's sandbox.
#[durable_object]
pub struct Sandbox {
    state: State,
    env: Env,
    alarm_set: Cell<bool>,
    stopping: Cell<bool>,
    /// The gateway answered, and no request has failed since: requests go
    /// straight through, without a probe.
    ready: Cell<bool>,
    host: OnceCell<Rc<ContainerHost>>,
}

impl DurableObject for Sandbox {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            alarm_set: Cell::new(false),
            stopping: Cell::new(false),
            ready: Cell::new(false),
            host: OnceCell::new(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let user = req.headers().get(USER_HEADER)?.unwrap_or_default();
        let op = req.headers().get(OP_HEADER)?;
        let settings = Settings::from_env(&self.env)
            .map_err(|err| worker::Error::RustError(err.to_string()))?;
        let host = self.host(&settings, &user)?;
        match op.as_deref() {
            Some("status") => {
                let state = self.gateway_state(&host).await?;
                Response::from_json(&json!({ "gateway": state.as_str() }))
            }
            Some("wake") => {
                if let Err(details) = self.ensure_ready(&host, &settings, &user).await {
                    console_log!("sandbox {user}: {details}");
                }
                Response::from_json(
                    &json!({ "gateway": self.gateway_state(&host).await?.as_str() }),
                )
            }
            Some("backup") => {
                let asked = host.running().await? && host.signal(SIGUSR1).await.is_ok();
                Response::from_json(
                    &json!({ "backup": if asked { "requested" } else { "not_running" } }),
                )
            }
            Some(other) => Response::error(format!("unknown sandbox operation {other:?}"), 400),
            None => self.pass_through(req, &host, &settings, &user).await,
        }
    }

    /// The heartbeat of a running container: a container lives only while
    /// its Durable Object does, so the alarm comes back every minute while it
    /// runs; and after `SANDBOX_SLEEP_AFTER` of quiet, the gateway is told to
    /// stop (its last backup) and the container goes.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_set.set(false);
        let settings = Settings::from_env(&self.env)
            .map_err(|err| worker::Error::RustError(err.to_string()))?;
        let user: String = self.state.storage().get("user").await?.unwrap_or_default();
        let host = self.host(&settings, &user)?;
        if !host.running().await? {
            self.ready.set(false);
            return Response::ok("not running");
        }
        let storage = self.state.storage();
        let channels = user == settings.users.default_user();
        let sleep_after = match settings.sleep_after {
            SleepAfter::Idle(after) if !channels || keeps_awake(&self.env).is_none() => after,
            _ => {
                storage.set_alarm(HEARTBEAT).await?;
                self.alarm_set.set(true);
                return Response::ok("awake");
            }
        };
        // A gateway that does not answer (still starting, or busy) is not idle.
        let idle = (self.activity(&host).await).map_or(Duration::ZERO, |activity| {
            Duration::from_secs(activity.idle_seconds)
        });
        if idle < sleep_after {
            storage.set_alarm(HEARTBEAT.min(sleep_after - idle)).await?;
            self.alarm_set.set(true);
            return Response::ok("awake");
        }
        console_log!(
            "sandbox {user}: idle for {}s, going to sleep",
            idle.as_secs()
        );
        self.stopping.set(true);
        self.ready.set(false);
        let stopped = self.stop(&host).await;
        self.stopping.set(false);
        stopped?;
        Response::ok("asleep")
    }
}

impl Sandbox {
    fn host(&self, settings: &Settings, user: &str) -> Result<Rc<ContainerHost>> {
        if let Some(host) = self.host.get() {
            return Ok(host.clone());
        }
        let host = Rc::new(
            match (self.state.container(), &settings.container_launcher) {
                (Some(container), _) => ContainerHost::Cloudflare(container),
                (None, Some(base)) => ContainerHost::launcher(base, user),
                (None, None) => {
                    return Err(worker::Error::RustError(
                    "this runtime has no containers (for local development, set MOLT_DEV_CONTAINER_LAUNCHER)".into(),
                ));
                }
            },
        );
        Ok(self.host.get_or_init(|| host).clone())
    }

    async fn gateway_state(&self, host: &ContainerHost) -> Result<GatewayState> {
        if !host.running().await? {
            return Ok(GatewayState::NotRunning);
        }
        Ok(match self.activity(host).await {
            Some(_) => GatewayState::Running,
            None => GatewayState::Starting,
        })
    }

    /// The gateway's `/health`, when it answers.
    async fn activity(&self, host: &ContainerHost) -> Option<Activity> {
        let probe = Request::new("http://container/health", Method::Get).ok()?;
        let mut response = within(PROBE_TIMEOUT, host.fetch(probe)).await.ok()?.ok()?;
        if response.status_code() != 200 {
            return None;
        }
        Some(response.json().await.unwrap_or_default())
    }

    /// Starts the container when it is not running and waits for its
    /// gateway; a container going to sleep is let go first, then started again.
    async fn ensure_ready(
        &self,
        host: &ContainerHost,
        settings: &Settings,
        user: &str,
    ) -> std::result::Result<(), String> {
        let deadline = now_ms() + START_TIMEOUT.as_millis() as u64;
        let mut pause = PROBE_INTERVAL;
        loop {
            if !self.stopping.get() {
                // A probe answered by a gateway that began to stop meanwhile does not count.
                if self.activity(host).await.is_some() && !self.stopping.get() {
                    self.ready.set(true);
                    return Ok(());
                }
                if !host.running().await.map_err(|err| err.to_string())? {
                    self.start(host, settings, user).await?;
                }
            }
            if now_ms() > deadline {
                return Err(format!(
                    "the gateway did not answer within {}s of starting",
                    START_TIMEOUT.as_secs()
                ));
            }
            worker::Delay::from(pause).await;
            pause = (pause * 2).min(PROBE_INTERVAL_MAX);
        }
    }

    async fn start(
        &self,
        host: &ContainerHost,
        settings: &Settings,
        user: &str,
    ) -> std::result::Result<(), String> {
        console_log!("sandbox {user}: starting the container");
        let storage = self.state.storage();
        storage
            .put("user", user)
            .await
            .map_err(|err| err.to_string())?;
        if let Err(err) = host.start(&container_env(&self.env, settings, user)).await {
            // Another request of this object may have started it meanwhile.
            if !host.running().await.unwrap_or(false) {
                return Err(format!("the container did not start: {err}"));
            }
        }
        self.arm(settings).await.map_err(|err| err.to_string())
    }

    async fn pass_through(
        &self,
        req: Request,
        host: &ContainerHost,
        settings: &Settings,
        user: &str,
    ) -> Result<Response> {
        // With readiness cached, a request without a body may meet a gateway
        // that has died since: it is sent once more, after a start.
        let retry = self.ready.get() && matches!(req.method(), Method::Get | Method::Head);
        if let Some(refusal) = self.ready_or_start(host, settings, user).await? {
            return Ok(refusal);
        }
        if !self.alarm_set.get() {
            self.arm(settings).await?;
        }
        let url = req.url()?;
        let mut target = format!("http://container{}", url.path());
        if let Some(query) = url.query() {
            target = format!("{target}?{query}");
        }
        let send = || async {
            let forwarded = crate::proxy::retarget(&req, &target)?;
            forwarded.headers().delete(USER_HEADER)?;
            host.fetch(forwarded).await
        };
        let mut result = send().await;
        if result.is_err() && retry {
            self.ready.set(false);
            if let Some(refusal) = self.ready_or_start(host, settings, user).await? {
                return Ok(refusal);
            }
            result = send().await;
        }
        match result {
            Ok(response) => Ok(response),
            Err(err) => {
                self.ready.set(false);
                let secrets = settings::secret_values(&self.env);
                failure(
                    "The gateway is unreachable",
                    &settings::redact(&err.to_string(), &secrets),
                    "It may be restarting; try again in a few seconds.",
                )
            }
        }
    }

    /// `None` when the gateway is ready (or made ready now); else the 503
    /// that says why it did not start.
    async fn ready_or_start(
        &self,
        host: &ContainerHost,
        settings: &Settings,
        user: &str,
    ) -> Result<Option<Response>> {
        if self.ready.get() {
            return Ok(None);
        }
        let Err(details) = self.ensure_ready(host, settings, user).await else {
            return Ok(None);
        };
        let secrets = settings::secret_values(&self.env);
        failure(
            "The gateway did not start",
            &settings::redact(&details, &secrets),
            "Check the container's logs with `npx wrangler tail`; the gateway prints why it stopped.",
        )
        .map(Some)
    }

    /// Sets the alarm for the next check (unless one is already set sooner):
    /// a minute away, or sooner when the sandbox may sleep before then.
    async fn arm(&self, settings: &Settings) -> Result<()> {
        let after = match settings.sleep_after {
            SleepAfter::Idle(sleep_after) => HEARTBEAT.min(sleep_after),
            SleepAfter::Never => HEARTBEAT,
        };
        let storage = self.state.storage();
        let at = now_ms() + after.as_millis() as u64;
        let sooner = (storage.get_alarm().await?).is_some_and(|set| set > 0 && (set as u64) <= at);
        if !sooner {
            storage.set_alarm(after).await?;
        }
        self.alarm_set.set(true);
        Ok(())
    }

    /// SIGTERM, so the gateway drains and makes its last backup; the
    /// container is destroyed only if it has not exited by then.
    async fn stop(&self, host: &ContainerHost) -> Result<()> {
        host.signal(SIGTERM).await?;
        if !host.wait_for_exit(STOP_TIMEOUT).await {
            console_log!(
                "the gateway did not stop within {STOP_TIMEOUT:?}; destroying its container"
            );
            host.destroy().await?;
        }
        Ok(())
    }
}

/// Why the default sandbox (the one running the chat channels) may not
/// sleep: a channel that holds a live connection.
fn keeps_awake(env: &Env) -> Option<&'static str> {
    if value(env, "DISCORD_BOT_TOKEN").is_some() {
        return Some("Discord needs a live gateway connection");
    }
    if value(env, "SLACK_APP_TOKEN").is_some() {
        return Some("Slack's Socket Mode needs a live connection");
    }
    if value(env, "TELEGRAM_BOT_TOKEN").is_some() && value(env, "WORKER_URL").is_none() {
        return Some("Telegram is polled (set WORKER_URL for webhook mode)");
    }
    None
}

/// The environment the gateway's container starts with.
fn container_env(env: &Env, settings: &Settings, user: &str) -> Vec<(String, String)> {
    // The chat channels run in the default sandbox only: two gateways on one
    // bot would take each other's updates.
    let default = user == settings.users.default_user();
    let mut vars: Vec<(String, String)> = (CONTAINER_ENV.iter())
        .filter(|name| default || !settings::is_channel_var(name))
        .filter_map(|name| value(env, name).map(|value| (name.to_string(), value)))
        .collect();
    if let (Some(worker_url), Some(secret)) = (&settings.worker_url, &settings.cdp_secret) {
        let ws = worker_url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let secret: String =
            worker::url::form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect();
        vars.push(("MOLT_BROWSER".into(), format!("{ws}/cdp?secret={secret}")));
    }
    if let Some(prefix) = settings.users.backup_prefix(user) {
        vars.push(("MOLT_BACKUP_PREFIX".into(), prefix));
    }
    // Only the Worker reaches the container: its forwarded addresses are the clients'.
    vars.push(("MOLT_TRUSTED_PROXIES".into(), "0.0.0.0/0,::/0".into()));
    vars.push(("MOLT_SANDBOX".into(), user.to_owned()));
    vars
}

/// A 503 the sandbox makes itself, marked so the Worker can tell a
/// WebSocket client with a close frame.
fn failure(error: &str, details: &str, hint: &str) -> Result<Response> {
    let mut response =
        Response::from_json(&json!({ "error": error, "details": details, "hint": hint }))?
            .with_status(503);
    response.headers_mut().set(FAILED_HEADER, error)?;
    Ok(response)
}
