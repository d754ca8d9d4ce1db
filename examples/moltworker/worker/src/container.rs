//! The container a sandbox runs its gateway in: Cloudflare Containers in
//! production; in development and tests, a launcher on loopback that starts
//! the real `moltworker` binary (`MOLT_DEV_CONTAINER_LAUNCHER`), since the
//! local runtime has no containers.

use crate::net::within;
use crate::settings::GATEWAY_PORT;
use serde::Deserialize;
use serde_json::json;
use std::cell::Cell;
use std::time::Duration;
use worker::js_sys::{Function, Object, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Fetch, Method, Request, RequestInit, Response, Result};

/// SIGTERM: the gateway stops, making its last backup.
pub const SIGTERM: i32 = 15;
/// SIGUSR1: the gateway backs its state up now.
pub const SIGUSR1: i32 = 10;

/// How long a launcher call may take.
const LAUNCHER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a sandbox's gateway runs.
pub enum ContainerHost {
    /// Cloudflare Containers, through the Durable Object's `ctx.container`.
    Cloudflare(worker::Container),
    /// The development launcher.
    Launcher(Launcher),
}

/// A development stand-in for Cloudflare Containers: an HTTP service on
/// loopback that starts, signals and stops one gateway per sandbox name.
pub struct Launcher {
    base: String,
    name: String,
    port: Cell<Option<u16>>,
}

#[derive(Deserialize)]
struct LauncherStatus {
    running: bool,
    port: Option<u16>,
}

impl ContainerHost {
    /// The launcher at `base` for sandbox `name`.
    pub fn launcher(base: &str, name: &str) -> Self {
        Self::Launcher(Launcher {
            base: base.trim_end_matches('/').to_owned(),
            name: name.to_owned(),
            port: Cell::new(None),
        })
    }

    /// Whether the container is running (its gateway may still be starting).
    pub async fn running(&self) -> Result<bool> {
        match self {
            Self::Cloudflare(container) => Ok(container.running()),
            Self::Launcher(launcher) => Ok(launcher.status().await?.running),
        }
    }

    /// Starts the container with `env`, its internet reachable.
    pub async fn start(&self, env: &[(String, String)]) -> Result<()> {
        match self {
            Self::Cloudflare(container) => {
                // A plain object: worker's ContainerStartupOptions drops a
                // non-empty env when it converts.
                let vars = Object::new();
                for (name, value) in env {
                    Reflect::set(&vars, &name.into(), &value.into())?;
                }
                let options = Object::new();
                Reflect::set(&options, &"env".into(), &vars)?;
                Reflect::set(&options, &"enableInternet".into(), &JsValue::TRUE)?;
                let target: &JsValue = container.as_ref();
                let start: Function = Reflect::get(target, &"start".into())?.dyn_into()?;
                start.call1(target, &options)?;
                Ok(())
            }
            Self::Launcher(launcher) => {
                let env: serde_json::Map<_, _> = (env.iter())
                    .map(|(name, value)| (name.clone(), json!(value)))
                    .collect();
                launcher.call("start", json!({ "env": env })).await?;
                Ok(())
            }
        }
    }

    /// Sends `req` to the gateway's port.
    pub async fn fetch(&self, req: Request) -> Result<Response> {
        match self {
            Self::Cloudflare(container) => {
                container
                    .get_tcp_port(GATEWAY_PORT)?
                    .fetch_request(req)
                    .await
            }
            Self::Launcher(launcher) => {
                let port = match launcher.port.get() {
                    Some(port) => port,
                    None => launcher.status().await?.port.ok_or_else(|| {
                        worker::Error::RustError("the container is not running".into())
                    })?,
                };
                let url = req.url()?;
                let mut target = format!("http://127.0.0.1:{port}{}", url.path());
                if let Some(query) = url.query() {
                    target = format!("{target}?{query}");
                }
                let result = Fetch::Request(crate::proxy::retarget(&req, &target)?)
                    .send()
                    .await;
                if result.is_err() {
                    launcher.port.set(None);
                }
                result
            }
        }
    }

    /// Sends signal `signo` to the gateway.
    pub async fn signal(&self, signo: i32) -> Result<()> {
        match self {
            Self::Cloudflare(container) => container.signal(signo),
            Self::Launcher(launcher) => {
                launcher.call("signal", json!({ "signo": signo })).await?;
                Ok(())
            }
        }
    }

    /// Waits up to `limit` for the container to exit; whether it did.
    pub async fn wait_for_exit(&self, limit: Duration) -> bool {
        match self {
            Self::Cloudflare(container) => within(limit, container.wait_for_exit()).await.is_ok(),
            Self::Launcher(launcher) => within(limit, async {
                while launcher.status().await.is_ok_and(|status| status.running) {
                    worker::Delay::from(Duration::from_millis(100)).await;
                }
            })
            .await
            .is_ok(),
        }
    }

    /// Stops the container at once.
    pub async fn destroy(&self) -> Result<()> {
        match self {
            Self::Cloudflare(container) => container.destroy(None).await,
            Self::Launcher(launcher) => {
                launcher.call("destroy", json!({})).await?;
                Ok(())
            }
        }
    }
}

impl Launcher {
    fn url(&self, action: &str) -> String {
        format!("{}/containers/{}/{action}", self.base, self.name)
    }

    async fn status(&self) -> Result<LauncherStatus> {
        let mut response = self
            .send(Request::new(&self.url("status"), Method::Get)?)
            .await?;
        let status: LauncherStatus = response.json().await?;
        self.port.set(status.port.filter(|_| status.running));
        Ok(status)
    }

    async fn call(&self, action: &str, body: serde_json::Value) -> Result<()> {
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body.to_string())));
        self.send(Request::new_with_init(&self.url(action), &init)?)
            .await?;
        Ok(())
    }

    async fn send(&self, req: Request) -> Result<Response> {
        let response = within(LAUNCHER_TIMEOUT, Fetch::Request(req).send())
            .await
            .map_err(|err| worker::Error::RustError(format!("container launcher: {err}")))??;
        if response.status_code() >= 300 {
            return Err(worker::Error::RustError(format!(
                "container launcher answered {}",
                response.status_code()
            )));
        }
        Ok(response)
    }
}
