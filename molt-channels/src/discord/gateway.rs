//! The gateway WebSocket: HELLO, heartbeats with jitter, IDENTIFY or RESUME,
//! dispatches in, and every kind of reconnect Discord asks for.
//!
//! Discord has no acknowledgement for events; the sequence number stands in
//! for one. The adapter counts an event as done only once the gateway has
//! acknowledged it, and keeps (in the optional session store) the session
//! and the highest sequence below which everything is done. A restarted
//! process RESUMEs from there, and Discord replays what came after: a
//! message received but not yet in the inbox when the process died is
//! delivered again instead of lost.

use super::inbound::{MessageCreate, User, normalize};
use super::{CHANNEL, DiscordConfig};
use crate::delivery::{Outbox, offer, receiver_stream};
use futures::stream::{BoxStream, SplitSink};
use futures::{SinkExt, StreamExt};
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Intents: guilds, guild messages, direct messages.
const BASE_INTENTS: u64 = (1 << 0) | (1 << 9) | (1 << 12);
/// The privileged intent that fills `content` in guild messages.
const MESSAGE_CONTENT: u64 = 1 << 15;
/// Where the session is kept in the session store.
pub(super) const SESSION_KEY: &str = "channels/discord/session";
/// Discord allows 120 gateway events per 60 s on one connection.
const SEND_LIMIT: usize = 120;
const SEND_WINDOW: Duration = Duration::from_secs(60);
/// The close code that keeps the session resumable (1000 and 1001 end it).
const RESUMABLE_CLOSE: u16 = 4000;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The session to resume, as persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct SessionState {
    pub session_id: String,
    pub resume_url: String,
    /// Every event up to this sequence number is done.
    pub seq: u64,
}

/// Discord's receiving half: the gateway connection, as a stream of
/// deliveries. It ends after a fatal close (a bad token, intents not
/// enabled); dropping it closes the connection, resumable.
pub struct DiscordIngress {
    pub(super) config: DiscordConfig,
    pub(super) bot: User,
    pub(super) gateway_url: String,
    pub(super) tls: Arc<rustls::ClientConfig>,
}

impl ChannelIngress for DiscordIngress {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>> {
        let (sender, receiver) = mpsc::channel(100);
        tokio::spawn(self.run(sender));
        receiver_stream(receiver)
    }
}

/// What to do once a connection ends.
enum Next {
    Resume,
    Identify,
    Stop,
    Fatal(ChannelError),
}

/// Which events are done: those at or below `highest` that are not pending.
#[derive(Default)]
struct Progress {
    pending: BTreeSet<u64>,
    highest: u64,
}

impl Progress {
    fn confirmed(&self) -> u64 {
        self.pending
            .first()
            .map_or(self.highest, |first| first.saturating_sub(1))
    }
}

/// An acknowledgement: which session, which sequence number.
type AckNote = (String, u64);

struct Connection<'a> {
    ingress: &'a DiscordIngress,
    session: Option<SessionState>,
    progress: Progress,
    saved: Option<SessionState>,
    out: Outbox,
    acks: mpsc::UnboundedSender<AckNote>,
}

impl DiscordIngress {
    async fn run(self: Box<Self>, out: Outbox) {
        let session = self.load_session().await;
        let (acks, mut acked) = mpsc::unbounded_channel();
        let mut state = Connection {
            ingress: &self,
            progress: Progress {
                highest: session.as_ref().map_or(0, |s| s.seq),
                ..Progress::default()
            },
            saved: session.clone(),
            session,
            out,
            acks,
        };
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let next = match state.connect().await {
                Ok(mut socket) => state.serve(&mut socket, &mut acked).await,
                Err(error) => {
                    tracing::warn!(%error, "discord: gateway connection failed");
                    if state.out.send(Err(error)).await.is_err() {
                        return;
                    }
                    Next::Resume
                }
            };
            match next {
                Next::Stop => return,
                Next::Fatal(error) => {
                    tracing::error!(%error, "discord: the gateway refused this bot; not reconnecting");
                    let _ = state.out.send(Err(error)).await;
                    return;
                }
                Next::Resume => {}
                Next::Identify => {
                    state.session = None;
                    state.progress = Progress::default();
                    state.save().await;
                }
            }
            // Quick after a healthy connection, slower while failing.
            failures = if started.elapsed() > Duration::from_secs(30) {
                0
            } else {
                failures + 1
            };
            let wait = Duration::from_millis(250 * 2u64.pow(failures.min(8))).min(SEND_WINDOW);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.out.closed() => return,
            }
        }
    }

    /// The stored session, unless it is unreadable or would resume somewhere
    /// other than Discord's gateway (a RESUME carries the bot token, and the
    /// file may come from a bucket anyone with its keys can write).
    async fn load_session(&self) -> Option<SessionState> {
        let store = self.config.session_store.as_ref()?;
        match store.get(SESSION_KEY).await {
            Ok(Some(bytes)) => serde_json::from_slice::<SessionState>(&bytes)
                .inspect_err(|err| tracing::warn!(%err, "discord: ignoring an unreadable session"))
                .ok()
                .filter(|session| {
                    let trusted = self.is_gateway_host(&session.resume_url);
                    if !trusted {
                        tracing::warn!(
                            "discord: the stored session resumes on a host that is not Discord's gateway; identifying anew"
                        );
                    }
                    trusted
                }),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(%err, "discord: could not read the session; identifying anew");
                None
            }
        }
    }

    /// Whether `url` is on Discord's gateway (`wss://*.discord.gg`) or on the
    /// host this ingress was configured with (its API base or the gateway URL
    /// that API gave), with the same scheme.
    fn is_gateway_host(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        let host = url.host_str().unwrap_or_default();
        let discord =
            url.scheme() == "wss" && (host == "discord.gg" || host.ends_with(".discord.gg"));
        let configured = [&self.gateway_url, &self.config.api_base]
            .into_iter()
            .filter_map(|known| url::Url::parse(known).ok())
            .any(|known| {
                let socket_scheme = match known.scheme() {
                    "https" => "wss",
                    "http" => "ws",
                    other => other,
                };
                socket_scheme == url.scheme()
                    && known.host_str() == Some(host)
                    && known.port_or_known_default() == url.port_or_known_default()
            });
        discord || configured
    }

    /// The IDENTIFY payload: the token, the intents, who we are.
    fn identify(&self) -> Value {
        let intents = if self.config.message_content {
            BASE_INTENTS | MESSAGE_CONTENT
        } else {
            BASE_INTENTS
        };
        json!({ "op": 2, "d": {
            "token": self.config.token.expose(),
            "intents": intents,
            "properties": { "os": std::env::consts::OS, "browser": "molt", "device": "molt" },
        }})
    }

    /// Opens a socket to `base` (the gateway URL, or a session's resume URL).
    async fn open(&self, base: &str) -> Result<Socket, ChannelError> {
        let url = format!("{}/?v=10&encoding=json", base.trim_end_matches('/'));
        let connector = Connector::Rustls(self.tls.clone());
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector));
        match tokio::time::timeout(self.config.request_timeout, connecting).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(err)) => Err(transport(format!("connecting: {err}"))),
            Err(_) => Err(transport("connecting: timed out".into())),
        }
    }
}

/// Opens one gateway connection and identifies, as the ingress would; says
/// whether Discord accepted it, then ends that session.
pub(super) async fn probe(ingress: &DiscordIngress) -> Result<(), ChannelError> {
    let mut socket = ingress.open(&ingress.gateway_url).await?;
    let timeout = ingress.config.request_timeout;
    let outcome = tokio::time::timeout(timeout, identify_once(ingress, &mut socket)).await;
    let _ = socket.close(None).await;
    outcome.unwrap_or_else(|_| Err(transport("no READY from the gateway in time".into())))
}

async fn identify_once(ingress: &DiscordIngress, socket: &mut Socket) -> Result<(), ChannelError> {
    socket
        .send(Message::text(ingress.identify().to_string()))
        .await
        .map_err(|err| transport(format!("sending IDENTIFY: {err}")))?;
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|err| transport(err.to_string()))?;
        if let Message::Close(close) = &frame {
            let (code, _) = close_code(close);
            return match after_close(code, "") {
                Next::Fatal(error) => Err(error),
                _ => Err(transport(format!("the gateway closed with {code}"))),
            };
        }
        if let Some(payload) = payload(frame)
            && payload.t.as_deref() == Some("READY")
        {
            return Ok(());
        }
    }
    Err(transport("the gateway closed the connection".into()))
}

impl Connection<'_> {
    /// Opens a socket to the resume URL (when resuming) or the gateway URL.
    async fn connect(&self) -> Result<Socket, ChannelError> {
        let base = self
            .session
            .as_ref()
            .map_or(&self.ingress.gateway_url, |s| &s.resume_url);
        self.ingress.open(base).await
    }

    /// Runs one connection until it ends; says what to do next.
    async fn serve(
        &mut self,
        socket: &mut Socket,
        acked: &mut mpsc::UnboundedReceiver<AckNote>,
    ) -> Next {
        let (sink, mut stream) = socket.split();
        let mut sender = Sender {
            sink,
            sent: VecDeque::new(),
        };
        // HELLO comes first (or a reconnect request in its place).
        let hello = tokio::time::timeout(self.ingress.config.request_timeout, stream.next()).await;
        let interval = match hello.ok().flatten().map(|frame| frame.map(payload)) {
            Some(Ok(Some(hello))) if hello.op == 10 => {
                match hello.d["heartbeat_interval"].as_u64() {
                    Some(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => return Next::Resume,
                }
            }
            Some(Ok(Some(other))) if other.op == 7 => return Next::Resume,
            _ => {
                tracing::warn!("discord: no HELLO from the gateway");
                return Next::Resume;
            }
        };
        let greeting = match &self.session {
            Some(session) => json!({ "op": 6, "d": {
                "token": self.ingress.config.token.expose(),
                "session_id": session.session_id,
                "seq": self.progress.confirmed(),
            }}),
            None => self.ingress.identify(),
        };
        if sender.send(&greeting).await.is_err() {
            return Next::Resume;
        }
        let mut last_seq = self.session.as_ref().map(|_| self.progress.confirmed());
        // The first heartbeat after interval × jitter, then every interval.
        let jitter = interval.mul_f64(random_fraction());
        let mut beat = tokio::time::interval_at(Instant::now() + jitter, interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat_acked = true;
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    if !heartbeat_acked {
                        tracing::warn!("discord: no heartbeat ACK; the connection is a zombie, resuming");
                        sender.close(RESUMABLE_CLOSE).await;
                        return Next::Resume;
                    }
                    heartbeat_acked = false;
                    if sender.send(&json!({ "op": 1, "d": last_seq })).await.is_err() {
                        return Next::Resume;
                    }
                }
                Some((session_id, seq)) = acked.recv() => self.acknowledged(&session_id, seq).await,
                () = self.out.closed() => {
                    sender.close(RESUMABLE_CLOSE).await;
                    self.save().await;
                    return Next::Stop;
                }
                frame = stream.next() => {
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(err)) => {
                            tracing::warn!(%err, "discord: gateway connection lost; resuming");
                            return Next::Resume;
                        }
                        None => return Next::Resume,
                    };
                    if let Message::Close(close) = &frame {
                        let (code, reason) = close_code(close);
                        return after_close(code, &reason);
                    }
                    let Some(payload) = payload(frame) else { continue };
                    if let Some(seq) = payload.s {
                        last_seq = Some(last_seq.map_or(seq, |last| last.max(seq)));
                    }
                    match payload.op {
                        0 => {
                            if let Some(next) = self.dispatch(payload).await {
                                return next;
                            }
                        }
                        1 => {
                            // Discord asks for a heartbeat now.
                            let sent = sender.send(&json!({ "op": 1, "d": last_seq })).await;
                            if sent.is_err() {
                                return Next::Resume;
                            }
                        }
                        7 => {
                            tracing::info!("discord: the gateway asked for a reconnect; resuming");
                            sender.close(RESUMABLE_CLOSE).await;
                            return Next::Resume;
                        }
                        9 => {
                            sender.close(RESUMABLE_CLOSE).await;
                            if payload.d.as_bool() == Some(true) {
                                return Next::Resume;
                            }
                            tracing::warn!("discord: session invalidated; identifying anew (events since the last connection may be missed)");
                            // Discord asks for a pause of 1 to 5 s before identifying again.
                            let pause = Duration::from_millis(1000 + (random_fraction() * 4000.0) as u64);
                            tokio::time::sleep(pause).await;
                            return Next::Identify;
                        }
                        11 => heartbeat_acked = true,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Handles an event; returns what to do when it ends the connection.
    async fn dispatch(&mut self, payload: Payload) -> Option<Next> {
        let seq = payload.s.unwrap_or(0);
        match payload.t.as_deref() {
            Some("READY") => {
                let (Some(session_id), Some(resume_url)) = (
                    payload.d["session_id"].as_str(),
                    payload.d["resume_gateway_url"].as_str(),
                ) else {
                    tracing::warn!("discord: READY without a session; identifying anew");
                    return Some(Next::Identify);
                };
                tracing::info!(bot = %self.ingress.bot.username, "discord: connected");
                self.progress = Progress {
                    pending: BTreeSet::new(),
                    highest: seq,
                };
                self.session = Some(SessionState {
                    session_id: session_id.to_owned(),
                    resume_url: resume_url.to_owned(),
                    seq,
                });
            }
            Some("RESUMED") => tracing::info!("discord: resumed"),
            Some("MESSAGE_CREATE") => {
                let message = serde_json::from_value::<MessageCreate>(payload.d)
                    .inspect_err(|err| tracing::warn!(%err, "discord: skipping a message that does not parse"))
                    .ok()
                    .and_then(|event| normalize(event, &self.ingress.bot));
                if let Some(message) = message
                    && let Some(session) = &self.session
                {
                    self.progress.pending.insert(seq);
                    let (acks, session_id) = (self.acks.clone(), session.session_id.clone());
                    let taken = move || drop(acks.send((session_id, seq)));
                    if !offer(&self.out, message, taken).await {
                        return Some(Next::Stop);
                    }
                }
            }
            _ => {}
        }
        self.progress.highest = self.progress.highest.max(seq);
        self.save().await;
        None
    }

    async fn acknowledged(&mut self, session_id: &str, seq: u64) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.session_id == session_id)
        {
            self.progress.pending.remove(&seq);
            self.save().await;
        }
    }

    /// Persists the session and the confirmed sequence, when they changed.
    async fn save(&mut self) {
        let Some(store) = &self.ingress.config.session_store else {
            return;
        };
        let current = self.session.clone().map(|mut session| {
            session.seq = self.progress.confirmed();
            session
        });
        if current == self.saved {
            return;
        }
        let result = match &current {
            Some(session) => {
                let bytes = serde_json::to_vec(session).unwrap_or_default();
                store.put(SESSION_KEY, bytes.into()).await
            }
            None => store.delete(SESSION_KEY).await,
        };
        match result {
            Ok(()) => self.saved = current,
            Err(err) => tracing::warn!(%err, "discord: could not save the session"),
        }
    }
}

/// Sends frames within Discord's limit of 120 per 60 s.
struct Sender<'a> {
    sink: SplitSink<&'a mut Socket, Message>,
    sent: VecDeque<Instant>,
}

impl Sender<'_> {
    async fn send(&mut self, value: &Value) -> Result<(), ()> {
        loop {
            let now = Instant::now();
            while self
                .sent
                .front()
                .is_some_and(|at| now.duration_since(*at) >= SEND_WINDOW)
            {
                self.sent.pop_front();
            }
            if self.sent.len() < SEND_LIMIT {
                self.sent.push_back(now);
                break;
            }
            let oldest = *self.sent.front().expect("the window is full");
            tokio::time::sleep_until(oldest + SEND_WINDOW).await;
        }
        let sent = self.sink.send(Message::text(value.to_string())).await;
        sent.map_err(|err| tracing::warn!(%err, "discord: sending to the gateway failed"))
    }

    async fn close(&mut self, code: u16) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "resuming later".into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

/// A gateway payload: `{op, d, s, t}`.
#[derive(Debug, Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
    s: Option<u64>,
    t: Option<String>,
}

/// The payload in a text frame; anything else (or bad JSON, logged) is `None`.
fn payload(frame: Message) -> Option<Payload> {
    let Message::Text(text) = frame else {
        return None;
    };
    serde_json::from_str(text.as_str())
        .inspect_err(|err| tracing::warn!(%err, "discord: skipping a payload that does not parse"))
        .ok()
}

/// A close frame's code (1005, "no status", when it has none) and reason.
fn close_code(close: &Option<CloseFrame>) -> (u16, String) {
    close.as_ref().map_or((1005, String::new()), |frame| {
        (u16::from(frame.code), frame.reason.to_string())
    })
}

/// What a close code from Discord means for this client.
fn after_close(code: u16, reason: &str) -> Next {
    let channel = CHANNEL.to_owned();
    let refused = |what: &str| {
        Next::Fatal(ChannelError::Rejected {
            channel: CHANNEL.into(),
            reason: format!("gateway closed with {code} ({what}); {reason}"),
        })
    };
    match code {
        4004 => Next::Fatal(ChannelError::Auth {
            channel,
            reason: "the gateway refused the token (4004); check DISCORD_BOT_TOKEN".into(),
        }),
        4010 => refused("invalid shard"),
        4011 => refused("sharding required: the bot is in too many guilds for one connection"),
        4012 => refused("invalid API version"),
        4013 => refused("invalid intents"),
        4014 => refused(
            "disallowed intents: enable the Message Content Intent in the Developer Portal \
             (Bot > Privileged Gateway Intents), or set message_content to false and mention the bot",
        ),
        4007 | 4009 => {
            tracing::warn!(
                code,
                "discord: the session cannot be resumed; identifying anew"
            );
            Next::Identify
        }
        _ => {
            tracing::info!(code, reason, "discord: gateway closed; resuming");
            Next::Resume
        }
    }
}

fn transport(reason: String) -> ChannelError {
    ChannelError::Transport {
        channel: CHANNEL.into(),
        reason,
    }
}

/// A random number in [0, 1).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
