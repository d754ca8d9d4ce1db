//! Putting the gateway together from a state directory and the environment,
//! and serving it until asked to stop.
//!
//! [`App::start`] restores the state from the bucket when it is missing,
//! reads the configuration, connects the channels, answers what was left
//! unanswered, and binds the listener; [`App::serve`] serves the routes until
//! its shutdown future completes, then tells the clients, lets runs finish and
//! makes the last backup.

use crate::auth::{self, TokenSource};
use crate::browser::BrowserSetup;
use crate::channels::{ChannelBoard, ChannelRuntime};
use crate::config_view::ConfigView;
use crate::logs::LogRing;
use crate::metrics::GatewayMetrics;
use crate::platform::TokioPlatform;
use crate::protocol::{self, Broadcast};
use crate::server::{self, AppState};
use crate::settings::ServerSettings;
use crate::{backup, webchat};
use molt_ai_gateway::listen::{self, ServeLimits, TrustedProxies};
use molt_ai_gateway::{Gateway as AiGateway, GatewayConfig};
use molt_core::Secret;
use molt_core::agent::{Agent, AgentOptions};
use molt_core::config::{Config, ConfigError};
use molt_core::devices::DeviceBook;
use molt_core::echo::EchoModel;
use molt_core::gateway::{Gateway, GatewayParts};
use molt_core::model::LanguageModel;
use molt_core::reminders::CronTool;
use molt_core::skills::{load_skills, skills_prompt};
use molt_core::store::Store;
use molt_core::tool::{Tool, ToolRegistry};
use molt_core::transcript::CompactionPolicy;
use molt_core::workspace::Workspace;
use molt_core::workspace::bootstrap::{BootstrapLimits, WorkspacePrompt};
use molt_core::workspace::memory::{Memory, MemoryGetTool, MemorySearchTool};
use molt_core::workspace::tools::file_tools;
use molt_storage::{LocalFileStore, StateMirror};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long shutdown waits for runs in progress; unfinished ones resume on the next start.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for clients to hear `shutdown` and close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory cannot be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration file or variable is invalid.
    #[error("{path}: {source}")]
    Config {
        /// The file (or, for variables, the file the rest came from).
        path: PathBuf,
        /// What is wrong.
        source: ConfigError,
    },
    /// A part cannot be set up from its settings (the bucket, the browser,
    /// Cloudflare Access, the model providers, the trusted proxies).
    #[error("{part}: {reason}")]
    Setup {
        /// The part.
        part: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// There is no state on disk and the bucket cannot be read: starting empty
    /// would later back up nothing over the bucket's snapshots.
    #[error("cannot restore state from the bucket, and there is none on disk: {0}")]
    Restore(String),
    /// The state cannot be read (the gateway token, skills, the inbox).
    #[error("cannot read the state: {0}")]
    State(String),
    /// The listener cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn setup(part: &'static str) -> impl Fn(String) -> StartError {
    move |reason| StartError::Setup { part, reason }
}

/// A gateway ready to serve.
pub struct App {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    token_source: TokenSource,
    browser: BrowserSetup,
    limits: ServeLimits,
    /// Wakes the reminders' scheduler when a job changes.
    reminders: Arc<tokio::sync::Notify>,
}

impl App {
    /// Builds the gateway over `state_dir` from the environment (see the
    /// README), with `logs` as the lines `/debug/logs` shows.
    pub async fn start(state_dir: &Path, logs: LogRing) -> Result<App, StartError> {
        let started = Instant::now();
        let env = |name: &str| std::env::var(name).ok();
        std::fs::create_dir_all(state_dir).map_err(|source| StartError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        // Restore before anything reads the state: the config, the token, the inbox.
        let mirror = backup::mirror_from_env(state_dir, env).map_err(setup("the bucket"))?;
        if let Some(mirror) = &mirror {
            restore(mirror, state_dir).await?;
        }
        let (config, settings, config_view) = load_config(state_dir)?;
        let (token, token_source) = auth::load_or_create(settings.token.clone(), state_dir)
            .map_err(|err| StartError::State(format!("cannot store the gateway token: {err}")))?;

        let platform = TokioPlatform::platform();
        let store = Arc::new(LocalFileStore::new(state_dir));
        let (skills, skill_errors) = load_skills(store.as_ref(), "workspace/skills/")
            .await
            .map_err(|err| StartError::State(err.to_string()))?;
        for err in skill_errors {
            tracing::warn!(%err, "skipping a skill");
        }
        // A brand-new workspace starts with the default files and its first-run script.
        let workspace = Workspace::new(store.clone(), platform.clock.clone());
        (workspace.seed().await)
            .map_err(|err| StartError::State(format!("cannot seed the workspace: {err}")))?;
        let browser = BrowserSetup::from_env(env).map_err(setup("the browser"))?;
        let memory = Memory::new(workspace.clone());
        let reminders = Arc::new(tokio::sync::Notify::new());
        let changed = reminders.clone();
        let cron = CronTool::new(
            store.clone(),
            platform.clock.clone(),
            Arc::new(move || changed.notify_one()),
        );
        let mut tools = ToolRegistry::new();
        let assistant_tools: [Arc<dyn Tool>; 3] = [
            Arc::new(MemorySearchTool(memory.clone())),
            Arc::new(MemoryGetTool(memory.clone())),
            Arc::new(cron),
        ];
        for tool in file_tools(&workspace).into_iter().chain(assistant_tools) {
            (tools.register(tool)).map_err(|err| setup("the tools")(err.to_string()))?;
        }
        browser
            .register_tools(&mut tools)
            .map_err(setup("the tools"))?;
        let model = load_model(state_dir)?;
        if !model.configured {
            tracing::warn!(
                "no model provider is configured: answering with the offline echo model"
            );
        }
        let options = AgentOptions {
            max_steps: config.agent.max_steps,
            run_timeout: Duration::from_secs(config.agent.run_timeout_secs),
            ..AgentOptions::default()
        };
        let agent = Agent::new(
            model.model,
            Arc::new(tools),
            platform.timer.clone(),
            options,
        );
        let access =
            crate::access_gate::AccessGate::from_env(env).map_err(setup("Cloudflare Access"))?;
        if access.is_some() {
            tracing::info!("Cloudflare Access guards /_admin/, /api/ and /debug/");
        }
        let trusted_proxies =
            TrustedProxies::parse(&env("MOLT_TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|err| setup("MOLT_TRUSTED_PROXIES")(err.to_string()))?;

        // Run events feed the Control UI's chat, `session.message` and the metrics.
        let chat = webchat::ChatStream::new(config.session_scope);
        let broadcasts = tokio::sync::broadcast::channel(256).0;
        let metrics = Arc::new(GatewayMetrics::default());
        let (observer, feed, counted) = (chat.clone(), broadcasts.clone(), metrics.clone());
        let devices = DeviceBook::new(
            store.clone(),
            platform.clock.clone(),
            platform.entropy.clone(),
        );
        let shared: Arc<dyn Store> = store.clone();
        let gateway = Gateway::new(GatewayParts {
            store: store.clone(),
            logs: store,
            agent,
            platform,
            system_prompt: Arc::new(WorkspacePrompt {
                base: format!("{}{}", config.agent.system_prompt, skills_prompt(&skills)),
                workspace,
                limits: BootstrapLimits::default(),
            }),
            notebook: Some(Arc::new(memory)),
            scope: config.session_scope,
            compaction: CompactionPolicy {
                token_budget: config.agent.history_token_budget,
                keep_recent: config.agent.keep_recent_messages,
            },
            policies: config.channels.clone(),
            observer: Some(Arc::new(move |event| {
                if let Some(message) = protocol::session_message(&event) {
                    // Nobody listening is fine.
                    let _ = feed.send(message);
                }
                counted.on_run_event(&event);
                observer.on_run_event(event)
            })),
        });
        gateway.register_egress(webchat::CHANNEL, Arc::new(chat.clone()));
        let board = ChannelBoard::default();
        let webhooks = crate::channels::Webhooks::default();
        let connected = crate::channels::connect(&gateway, shared.clone(), &board, &webhooks).await;
        let channel_names: Vec<&str> = connected.iter().map(|c| c.name).collect();
        // Messages accepted before a crash are answered before new traffic arrives.
        let resumed = (gateway.resume_pending().await)
            .map_err(|err| StartError::State(format!("cannot read the inbox: {err}")))?;
        if resumed > 0 {
            tracing::info!(resumed, "resuming messages accepted before the last stop");
        }
        let channels = ChannelRuntime::start(
            &gateway,
            shared.clone(),
            board,
            metrics.clone(),
            connected,
            webhooks,
        );

        let listener = tokio::net::TcpListener::bind(settings.bind)
            .await
            .map_err(|source| StartError::Listen {
                address: settings.bind,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartError::Listen {
            address: settings.bind,
            source,
        })?;
        let state = Arc::new(AppState {
            gateway,
            chat,
            token,
            started,
            activity: Default::default(),
            model_configured: model.configured,
            mirror,
            throttle: Default::default(),
            handshakes: Default::default(),
            devices,
            store: shared,
            access,
            trusted_proxies,
            broadcasts,
            presence: Default::default(),
            channels,
            models: model.models,
            config: config_view,
            metrics,
            ai: model.ai,
            logs,
            debug_routes: settings.debug_routes,
        });
        tracing::info!(%address, state_dir = %state_dir.display(), skills = skills.len(), channels = ?channel_names, "moltworker is serving");
        let limits = ServeLimits {
            max_connections: settings.max_connections,
            header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs),
            ..ServeLimits::default()
        };
        Ok(App {
            state,
            listener,
            address,
            token_source,
            browser,
            limits,
            reminders,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The gateway token, and where it came from.
    pub fn token(&self) -> (&Secret, TokenSource) {
        (&self.state.token, self.token_source)
    }

    /// What the routes share.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes; then the clients hear `shutdown`,
    /// channels stop, runs in progress get [`DRAIN_TIMEOUT`] to finish, and the
    /// mirror makes its last backup.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let App {
            state,
            listener,
            browser,
            limits,
            reminders,
            ..
        } = self;
        let store: Arc<dyn Store> = state.store.clone();
        let clock = TokioPlatform::platform().clock;
        let scheduler = tokio::spawn(crate::reminders::run(
            state.gateway.clone(),
            store,
            clock,
            reminders,
        ));
        let (stop_mirror, mirror_stopped) = tokio::sync::oneshot::channel::<()>();
        let mirroring = state.mirror.clone().map(|mirror| {
            tokio::spawn(mirror.run(async move {
                let _ = mirror_stopped.await;
            }))
        });
        let routes = server::router(state.clone()).merge(browser.cdp_routes());
        let health = tokio::spawn(protocol::broadcast_health(state.clone()));
        let stopping = {
            let state = state.clone();
            async move {
                shutdown.await;
                // Connected clients hear why they are being closed.
                state.broadcast(Broadcast::Shutdown {
                    reason: "gateway stopping".to_owned(),
                    restart_expected_ms: None,
                });
                // Each connection sends it and closes; a stuck one is not waited for long.
                let closed = async {
                    while state.presence.connected() > 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, closed).await;
            }
        };
        listen::serve(listener, routes, limits, stopping).await;
        health.abort();
        scheduler.abort();

        // Channels stop taking messages first; what they delivered is in the inbox.
        state.channels.stop().await;
        tracing::info!("shutting down: waiting for runs in progress");
        if tokio::time::timeout(DRAIN_TIMEOUT, state.gateway.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                "runs still in progress after {DRAIN_TIMEOUT:?}; they resume on the next start"
            );
        }
        // Transcript records and inbox entries are fsynced as they are written; the
        // mirror makes one last backup of them.
        if let Some(mirroring) = mirroring {
            let _ = stop_mirror.send(());
            if tokio::time::timeout(DRAIN_TIMEOUT, mirroring)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the last backup did not finish in {DRAIN_TIMEOUT:?}; the next start restores the previous snapshot or keeps local state"
                );
            }
        }
        tracing::info!("stopped");
    }
}

/// Restores the state from the bucket when the state directory has none.
async fn restore(mirror: &StateMirror, state_dir: &Path) -> Result<(), StartError> {
    match mirror.restore_if_needed().await {
        Ok(Some(report)) => tracing::info!(
            snapshot = report.seq,
            files = report.files,
            bytes = report.bytes,
            "restored state from the bucket"
        ),
        Ok(None) => {}
        // With state on disk, serve it and let the mirror catch up later.
        Err(err) if has_local_state(state_dir) => {
            tracing::warn!(%err, "cannot reach the bucket at start; serving the local state");
        }
        Err(err) => return Err(StartError::Restore(err.to_string())),
    }
    Ok(())
}

/// The model that answers, and what the status routes say of it.
struct ModelSetup {
    model: Arc<dyn LanguageModel>,
    /// molt-ai-gateway, when a provider is configured.
    ai: Option<Arc<AiGateway>>,
    /// A real provider (not the offline echo model).
    configured: bool,
    /// The models it can answer with (`provider/model`).
    models: Vec<String>,
}

/// The model: molt-ai-gateway over the configured providers (`MOLT_AI_CONFIG`
/// or `<state>/ai-gateway.toml`, and the environment), or the offline echo
/// model when none is configured.
fn load_model(state_dir: &Path) -> Result<ModelSetup, StartError> {
    let path = std::env::var_os("MOLT_AI_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("ai-gateway.toml"));
    let mut config = match std::fs::read_to_string(&path) {
        Ok(text) => GatewayConfig::from_toml(&text)
            .map_err(|err| setup("the model providers")(format!("{}: {err}", path.display())))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => GatewayConfig::default(),
        Err(source) => return Err(StartError::Read { path, source }),
    };
    let env = |name: &str| std::env::var(name).ok();
    config.add_env(env);
    if !config.has_providers() {
        return Ok(ModelSetup {
            model: Arc::new(EchoModel),
            ai: None,
            configured: false,
            models: vec!["molt/echo".to_owned()],
        });
    }
    let gateway = AiGateway::from_config(&config, env)
        .map_err(|err| setup("the model providers")(err.to_string()))?;
    tracing::info!(model = %gateway.name(), models = ?gateway.models(), "model calls go through molt-ai-gateway");
    let models = gateway.models().to_vec();
    let gateway = Arc::new(gateway);
    Ok(ModelSetup {
        model: gateway.clone(),
        ai: Some(gateway),
        configured: true,
        models,
    })
}

/// Whether the state directory holds anything (the token, the inbox, transcripts, ...).
fn has_local_state(state_dir: &Path) -> bool {
    std::fs::read_dir(state_dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// The agent's configuration and the server's settings (`MOLT_CONFIG` or
/// `<state>/molt.toml`, and the environment), and the redacted view of both.
fn load_config(state_dir: &Path) -> Result<(Config, ServerSettings, ConfigView), StartError> {
    let path = std::env::var_os("MOLT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("molt.toml"));
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(StartError::Read { path, source }),
    };
    let env = |name: &str| std::env::var(name).ok();
    let invalid = |source| StartError::Config {
        path: path.clone(),
        source,
    };
    let config = Config::load(file.as_deref(), env).map_err(invalid)?;
    let settings = ServerSettings::load(file.as_deref(), env).map_err(invalid)?;
    let view = ConfigView::new(&config, &settings, &path, file.is_some());
    Ok((config, settings, view))
}
