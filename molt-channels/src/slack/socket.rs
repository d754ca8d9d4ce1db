//! Socket Mode: events arrive over a WebSocket opened with the app token,
//! and each envelope is acknowledged right after the gateway has durably
//! taken its message (well within Slack's 3 s), not after the answer.
//!
//! Slack redelivers an envelope it saw no acknowledgement for, under a new
//! envelope id; redeliveries are recognised by `event_id`. When Slack asks
//! for a refresh (`warning`, `refresh_requested`) the replacement connection
//! is opened before the old one is closed, so nothing arrives on a dead
//! socket. `link_disabled` stops the stream with a typed error. Pings, and
//! an idle limit on what is heard back, catch half-open sockets.

use super::api::{SlackApiError, WebApi};
use super::inbound::{BotIdentity, Event, normalize};
use super::{CHANNEL, REMEMBERED_EVENTS, SlackConfig, api_error};
use crate::delivery::{Outbox, RecentIds, offer, receiver_stream};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use molt_core::Secret;
use molt_core::channel::{ChannelError, ChannelIngress, Delivery};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Slack's receiving half: Socket Mode, as a stream of deliveries. The
/// stream ends when Socket Mode is turned off for the app or the app token
/// is refused; dropping it closes the connection.
pub struct SlackIngress {
    pub(super) api: WebApi,
    pub(super) config: SlackConfig,
    pub(super) app_token: Secret,
    pub(super) bot: BotIdentity,
    pub(super) tls: Arc<rustls::ClientConfig>,
}

impl ChannelIngress for SlackIngress {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Result<Delivery, ChannelError>> {
        let (sender, receiver) = mpsc::channel(100);
        tokio::spawn(self.run(sender));
        receiver_stream(receiver)
    }
}

/// One open Socket Mode connection.
struct Connection {
    generation: u64,
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
}

/// How a connection ended.
enum End {
    /// Replaced by this newer connection, already open.
    Replaced(Connection),
    /// Lost; open a new one.
    Lost,
    Fatal(ChannelError),
    Stop,
}

/// Envelopes waiting for their message to be taken, and events already taken.
struct Acks {
    waiting: HashMap<String, Vec<(u64, String)>>,
    taken: RecentIds,
}

impl Default for Acks {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
            taken: RecentIds::new(REMEMBERED_EVENTS),
        }
    }
}

impl SlackIngress {
    async fn run(self: Box<Self>, out: Outbox) {
        let (taken_sender, mut taken) = mpsc::unbounded_channel::<String>();
        let mut acks = Acks::default();
        let mut next: Option<Connection> = None;
        let mut generation = 0;
        let mut failures = 0u32;
        loop {
            let connection = match next.take() {
                Some(connection) => connection,
                None => {
                    generation += 1;
                    match self.opener(generation).await {
                        Ok(connection) => connection,
                        Err(OpenError::Fatal(error)) => {
                            let _ = out.send(Err(error)).await;
                            return;
                        }
                        Err(OpenError::Retry(error)) => {
                            tracing::warn!(%error, "slack: could not open a Socket Mode connection");
                            if out.send(Err(error)).await.is_err() {
                                return;
                            }
                            failures += 1;
                            let wait = Duration::from_secs(2u64.pow(failures.min(5)));
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                }
            };
            failures = 0;
            generation = generation.max(connection.generation);
            match self
                .serve(connection, &out, &mut acks, &taken_sender, &mut taken)
                .await
            {
                End::Replaced(connection) => next = Some(connection),
                End::Lost => tokio::time::sleep(Duration::from_millis(500)).await,
                End::Fatal(error) => {
                    tracing::error!(%error, "slack: Socket Mode stopped");
                    let _ = out.send(Err(error)).await;
                    return;
                }
                End::Stop => return,
            }
        }
    }

    /// Opens one Socket Mode connection (through hello) and closes it.
    pub(super) async fn probe(&self) -> Result<(), ChannelError> {
        match self.opener(0).await {
            Ok(mut connection) => {
                let _ = connection.sink.send(Message::Close(None)).await;
                Ok(())
            }
            Err(OpenError::Fatal(error) | OpenError::Retry(error)) => Err(error),
        }
    }

    /// A future that opens connection number `generation` (owning what it needs).
    fn opener(&self, generation: u64) -> BoxFuture<'static, Result<Connection, OpenError>> {
        let api = self.api.clone();
        let token = self.app_token.clone();
        let tls = self.tls.clone();
        let timeout = self.config.request_timeout;
        async move {
            let answer = api
                .call("apps.connections.open", &token, &json!({}))
                .await
                .map_err(|error| match &error {
                    SlackApiError::Refused { error: code, .. } if is_auth_error(code) => {
                        OpenError::Fatal(ChannelError::Auth {
                            channel: CHANNEL.into(),
                            reason: format!("{error} (check SLACK_APP_TOKEN: an xapp- token with connections:write)"),
                        })
                    }
                    _ => OpenError::Retry(api_error(error)),
                })?;
            let url = answer["url"].as_str().unwrap_or_default().to_owned();
            let connecting = tokio_tungstenite::connect_async_tls_with_config(
                url,
                None,
                true,
                Some(Connector::Rustls(tls)),
            );
            let retry = |reason: String| {
                OpenError::Retry(ChannelError::Transport {
                    channel: CHANNEL.into(),
                    reason,
                })
            };
            let (socket, _) = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| retry("connecting: timed out".into()))?
                .map_err(|err| retry(format!("connecting: {err}")))?;
            let (sink, mut stream) = socket.split();
            // Slack says hello first.
            let hello = tokio::time::timeout(timeout, stream.next()).await;
            match hello.ok().flatten() {
                Some(Ok(Message::Text(text))) if text.as_str().contains("\"hello\"") => {}
                _ => return Err(retry("no hello from Slack".into())),
            }
            tracing::info!(generation, "slack: Socket Mode connected");
            Ok(Connection {
                generation,
                sink,
                stream,
            })
        }
        .boxed()
    }

    async fn serve(
        &self,
        mut connection: Connection,
        out: &Outbox,
        acks: &mut Acks,
        taken_sender: &mpsc::UnboundedSender<String>,
        taken: &mut mpsc::UnboundedReceiver<String>,
    ) -> End {
        let mut replacement: Option<BoxFuture<'static, Result<Connection, OpenError>>> = None;
        let mut ping = tokio::time::interval(self.config.ping_interval);
        let mut last_heard = Instant::now();
        loop {
            let replacing = async {
                match &mut replacement {
                    Some(opening) => opening.await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                opened = replacing => {
                    match opened {
                        Ok(new) => {
                            let _ = connection.sink.send(Message::Close(None)).await;
                            tracing::info!("slack: switched to the refreshed connection");
                            return End::Replaced(new);
                        }
                        Err(OpenError::Fatal(error)) => return End::Fatal(error),
                        Err(OpenError::Retry(error)) => {
                            tracing::warn!(%error, "slack: the replacement connection failed; reconnecting");
                            return End::Lost;
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.config.idle_timeout {
                        tracing::warn!("slack: nothing heard on the socket; it is half-open, reconnecting");
                        return End::Lost;
                    }
                    if connection.sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return End::Lost;
                    }
                }
                Some(event_id) = taken.recv() => {
                    for (generation, envelope_id) in acks.waiting.remove(&event_id).unwrap_or_default() {
                        // An envelope from a closed connection is sent again by Slack.
                        if generation == connection.generation {
                            ack(&mut connection.sink, &envelope_id).await;
                        }
                    }
                    acks.taken.insert(event_id);
                }
                () = out.closed() => {
                    let _ = connection.sink.send(Message::Close(None)).await;
                    return End::Stop;
                }
                frame = connection.stream.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None => return End::Lost,
                        Some(Err(err)) => {
                            tracing::warn!(%err, "slack: socket error; reconnecting");
                            return End::Lost;
                        }
                        Some(Ok(_)) => continue,
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        tracing::warn!("slack: skipping a frame that is not JSON");
                        continue;
                    };
                    match frame["type"].as_str().unwrap_or_default() {
                        "hello" => {}
                        "disconnect" => {
                            let reason = frame["reason"].as_str().unwrap_or_default();
                            match reason {
                                "link_disabled" => return End::Fatal(ChannelError::Rejected {
                                    channel: CHANNEL.into(),
                                    reason: "Socket Mode is turned off for this app (link_disabled): turn it on in the app settings".into(),
                                }),
                                "too_many_websockets" => {
                                    tracing::warn!("slack: too many connections for this app; backing off");
                                    let _ = connection.sink.send(Message::Close(None)).await;
                                    tokio::time::sleep(Duration::from_secs(5)).await;
                                    return End::Lost;
                                }
                                _ => {
                                    tracing::info!(reason, "slack: refresh asked; opening the replacement first");
                                    if replacement.is_none() {
                                        replacement = Some(self.opener(connection.generation + 1));
                                    }
                                }
                            }
                        }
                        "events_api" => {
                            let alive = self
                                .envelope(&frame, &mut connection, out, acks, taken_sender)
                                .await;
                            if !alive {
                                return End::Stop;
                            }
                        }
                        kind => {
                            // Slash commands, interactivity: not handled here; acknowledged
                            // so Slack does not send them again.
                            tracing::debug!(kind, "slack: envelope not handled");
                            if let Some(envelope_id) = frame["envelope_id"].as_str() {
                                ack(&mut connection.sink, envelope_id).await;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Handles one `events_api` envelope; `false` once the stream is gone.
    async fn envelope(
        &self,
        frame: &Value,
        connection: &mut Connection,
        out: &Outbox,
        acks: &mut Acks,
        taken_sender: &mpsc::UnboundedSender<String>,
    ) -> bool {
        let Some(envelope_id) = frame["envelope_id"].as_str() else {
            tracing::warn!("slack: skipping an envelope without an id");
            return true;
        };
        let payload = &frame["payload"];
        let event_id = payload["event_id"]
            .as_str()
            .unwrap_or(envelope_id)
            .to_owned();
        if acks.taken.contains(&event_id) {
            ack(&mut connection.sink, envelope_id).await;
            return true;
        }
        if let Some(waiting) = acks.waiting.get_mut(&event_id) {
            waiting.push((connection.generation, envelope_id.to_owned()));
            return true;
        }
        let message = serde_json::from_value::<Event>(payload["event"].clone())
            .inspect_err(|err| tracing::warn!(%err, "slack: skipping an event that does not parse"))
            .ok()
            .and_then(|event| normalize(event, &self.bot));
        let Some(message) = message else {
            ack(&mut connection.sink, envelope_id).await;
            return true;
        };
        acks.waiting.insert(
            event_id.clone(),
            vec![(connection.generation, envelope_id.to_owned())],
        );
        let taken_sender = taken_sender.clone();
        offer(out, message, move || {
            let _ = taken_sender.send(event_id);
        })
        .await
    }
}

enum OpenError {
    Fatal(ChannelError),
    Retry(ChannelError),
}

async fn ack(sink: &mut SplitSink<Socket, Message>, envelope_id: &str) {
    let frame = json!({ "envelope_id": envelope_id }).to_string();
    if let Err(err) = sink.send(Message::text(frame)).await {
        tracing::warn!(%err, "slack: an acknowledgement could not be sent; Slack will send the envelope again");
    }
}

/// Errors that no retry can mend.
pub(super) fn is_auth_error(code: &str) -> bool {
    matches!(
        code,
        "invalid_auth"
            | "not_authed"
            | "not_allowed_token_type"
            | "account_inactive"
            | "token_revoked"
            | "token_expired"
            | "missing_scope"
    )
}
