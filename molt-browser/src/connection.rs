//! One WebSocket to a browser: commands matched to their answers by id, with
//! a timeout each, and events delivered to whoever subscribed to them.
//!
//! Commands for a page carry the page's flattened `sessionId`, so a single
//! socket drives the browser and all of its pages.

use crate::error::{CdpError, ProtocolErrorCode};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The largest message accepted from the browser: a full-page screenshot of
/// a long page is tens of megabytes once base64-encoded.
const MAX_MESSAGE_BYTES: usize = 512 << 20;

/// An event the browser sent.
#[derive(Clone, Debug)]
pub struct Event {
    /// The CDP method, such as `Page.lifecycleEvent`.
    pub method: String,
    /// Its parameters, as sent (unknown fields kept).
    pub params: Value,
    /// The flattened session it belongs to; `None` for browser-level events.
    pub session_id: Option<String>,
}

/// Events one subscriber asked for, in the order the browser sent them.
/// Ends (yields `None`) when the connection closes.
pub struct EventStream {
    events: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

struct Listener {
    session_id: Option<String>,
    methods: Vec<String>,
    events: mpsc::UnboundedSender<Event>,
}

impl Listener {
    fn wants(&self, event: &Event) -> bool {
        self.session_id == event.session_id && self.methods.contains(&event.method)
    }
}

type Answer = oneshot::Sender<Result<Value, CdpError>>;

#[derive(Default)]
struct State {
    pending: HashMap<u64, (String, Answer)>,
    listeners: Vec<Listener>,
    /// Why the connection closed, once it has.
    closed: Option<String>,
}

/// A CDP connection over one WebSocket.
pub struct Connection {
    url: String,
    outgoing: mpsc::UnboundedSender<Message>,
    state: Arc<Mutex<State>>,
    next_id: AtomicU64,
    command_timeout: Duration,
    tasks: [AbortHandle; 2],
}

/// Removes a command from the pending ones when dropped.
struct Forget<'a> {
    connection: &'a Connection,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.connection.lock().pending.remove(&self.id);
    }
}

#[derive(Deserialize)]
struct Incoming {
    id: Option<u64>,
    result: Option<Value>,
    error: Option<RpcError>,
    method: Option<String>,
    params: Option<Value>,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: String,
}

impl Connection {
    /// Opens a WebSocket to a browser (`ws://` or `wss://`), giving up after
    /// `connect_timeout`; each command then waits at most `command_timeout`.
    pub async fn connect(
        url: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, CdpError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connector = tokio_tungstenite::Connector::Rustls(Arc::new(
            crate::http::tls_config().map_err(CdpError::WebSocket)?,
        ));
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(config),
            true,
            Some(connector),
        );
        let (socket, _) = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| CdpError::WebSocket(format!("no connection within {connect_timeout:?}")))?
            .map_err(|err| CdpError::WebSocket(err.to_string()))?;
        let (mut sink, mut stream) = socket.split();
        let state = Arc::new(Mutex::new(State::default()));
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();

        let writer_state = state.clone();
        let writer = tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                if let Err(err) = sink.send(message).await {
                    close(&writer_state, format!("sending failed: {err}"));
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let reader_state = state.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => dispatch(&reader_state, text.as_str()),
                    Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                        Ok(text) => dispatch(&reader_state, text),
                        Err(_) => tracing::warn!("ignoring a binary CDP message that is not UTF-8"),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(frame) => format!("closed by the browser ({})", frame.code),
                            None => "closed by the browser".to_owned(),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => break format!("read failed: {err}"),
                    None => break "the browser hung up".to_owned(),
                }
            };
            close(&reader_state, reason);
        });
        Ok(Self {
            url: url.to_owned(),
            outgoing,
            state,
            next_id: AtomicU64::new(1),
            command_timeout,
            tasks: [writer.abort_handle(), reader.abort_handle()],
        })
    }

    /// The WebSocket URL this connection was opened to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.lock().closed.is_none()
    }

    /// How many commands were sent and are still waiting for their answer.
    pub fn pending_commands(&self) -> usize {
        self.lock().pending.len()
    }

    /// The error calls get now that the connection is closed (or would get).
    pub fn closed_error(&self) -> CdpError {
        let reason = self.lock().closed.clone();
        CdpError::Closed {
            reason: reason.unwrap_or_else(|| "closed".into()),
        }
    }

    /// Sends a command and waits for its answer, at most the command timeout.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        session_id: Option<&str>,
    ) -> Result<Value, CdpError> {
        self.call_within(method, params, session_id, self.command_timeout)
            .await
    }

    /// Sends a command and waits for its answer, at most `timeout`.
    pub async fn call_within(
        &self,
        method: &str,
        params: Value,
        session_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            let mut state = self.lock();
            if let Some(reason) = &state.closed {
                return Err(CdpError::Closed {
                    reason: reason.clone(),
                });
            }
            state.pending.insert(id, (method.to_owned(), answer));
        }
        // Forgets the command however this call ends: answered, timed out,
        // or dropped by its caller.
        let _forget = Forget {
            connection: self,
            id,
        };
        self.send(id, method, params, session_id);
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(CdpError::Timeout {
                method: method.to_owned(),
                after: timeout,
            }),
        }
    }

    /// Sends a command without waiting for its answer (used where nobody can
    /// wait, such as closing a page from `Drop`).
    pub fn notify(&self, method: &str, params: Value, session_id: Option<&str>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(id, method, params, session_id);
    }

    /// Subscribes to some events of one session (`None`: browser-level
    /// events). Subscribe before sending the command that causes them, so
    /// none is missed.
    pub fn subscribe(&self, session_id: Option<&str>, methods: &[&str]) -> EventStream {
        let (events, receiver) = mpsc::unbounded_channel();
        let mut state = self.lock();
        // Once closed, the sender is dropped at once and the stream ends.
        if state.closed.is_none() {
            state.listeners.push(Listener {
                session_id: session_id.map(str::to_owned),
                methods: methods.iter().map(|m| (*m).to_owned()).collect(),
                events,
            });
        }
        EventStream { events: receiver }
    }

    fn send(&self, id: u64, method: &str, params: Value, session_id: Option<&str>) {
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session_id) = session_id {
            message["sessionId"] = json!(session_id);
        }
        // A closed writer means a closed connection; the caller learns it
        // from the answer it never gets (the pending entry is failed on close).
        let _ = self.outgoing.send(Message::text(message.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        close(&self.state, "the connection was dropped".into());
    }
}

/// Routes one message from the browser: an answer to its caller, an event to
/// its subscribers. Anything unreadable is logged and skipped.
fn dispatch(state: &Mutex<State>, text: &str) {
    let parsed = serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&replace_lone_surrogates(text)));
    let incoming: Incoming = match parsed {
        Ok(incoming) => incoming,
        Err(err) => {
            tracing::warn!(%err, "ignoring an unreadable CDP message");
            return;
        }
    };
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = incoming.id {
        let Some((method, answer)) = state.pending.remove(&id) else {
            return; // a notify, or a command that timed out
        };
        let result = match (incoming.error, incoming.result) {
            (Some(error), _) => Err(CdpError::Protocol {
                method,
                code: ProtocolErrorCode::from(error.code),
                message: error.message,
            }),
            (None, result) => Ok(result.unwrap_or(Value::Null)),
        };
        let _ = answer.send(result);
    } else if let Some(method) = incoming.method {
        let event = Event {
            method,
            params: incoming.params.unwrap_or(Value::Null),
            session_id: incoming.session_id,
        };
        state.listeners.retain(|listener| {
            !listener.events.is_closed()
                && (!listener.wants(&event) || listener.events.send(event.clone()).is_ok())
        });
    }
}

/// JSON text with every escaped lone UTF-16 surrogate (`\ud800` without its
/// pair) replaced by `\ufffd`. Chromium sends JavaScript strings as they
/// are, a page can build one that is not valid Unicode, and serde_json
/// refuses such text whole.
fn replace_lone_surrogates(text: &str) -> String {
    let bytes = text.as_bytes();
    let unit_at = |at: usize| -> Option<u16> {
        let digits = text.get(at..at + 4)?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut fixed = String::with_capacity(text.len());
    let (mut at, mut copied) = (0, 0);
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        if bytes.get(at + 1) != Some(&b'u') {
            at += 2; // an escaped character, such as \\ or \"
            continue;
        }
        let paired = |unit: u16| {
            (0xD800..=0xDBFF).contains(&unit)
                && text.get(at + 6..at + 8) == Some("\\u")
                && unit_at(at + 8).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low))
        };
        match unit_at(at + 2) {
            Some(unit) if paired(unit) => at += 12,
            Some(0xD800..=0xDFFF) => {
                fixed.push_str(&text[copied..at]);
                fixed.push_str("\\ufffd");
                at += 6;
                copied = at;
            }
            _ => at += 6,
        }
    }
    fixed.push_str(&text[copied..]);
    fixed
}

/// Marks the connection closed: every waiting command fails and every event
/// stream ends. The first reason given is kept.
fn close(state: &Mutex<State>, reason: String) {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if state.closed.is_none() {
        tracing::debug!(%reason, "CDP connection closed");
        state.closed = Some(reason.clone());
    }
    let reason = state.closed.clone().unwrap_or(reason);
    for (_, (_, answer)) in state.pending.drain() {
        let _ = answer.send(Err(CdpError::Closed {
            reason: reason.clone(),
        }));
    }
    state.listeners.clear();
}

#[cfg(test)]
mod tests {
    use super::replace_lone_surrogates;

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let fix = |text: &str| replace_lone_surrogates(text);
        assert_eq!(fix(r#""a\ud800b""#), r#""a\ufffdb""#);
        assert_eq!(fix(r#""\udc00\ud83d""#), r#""\ufffd\ufffd""#);
        // A pair, an escaped backslash before "u", and plain text stay.
        for kept in [r#""\ud83d\ude00""#, r#""\\ud800""#, r#""é \" \n""#] {
            assert_eq!(fix(kept), kept);
        }
        let value: String = serde_json::from_str(&fix(r#""x\ud800""#)).unwrap();
        assert_eq!(value, "x\u{FFFD}");
    }
}

/// Entry points for fuzzing (feature `fuzzing`, used by the `fuzz/` crate).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses one message as it comes from a browser, as the connection does
    /// (lone surrogates replaced when the text does not parse as is).
    pub fn browser_message(text: &str) {
        let parsed = serde_json::from_str::<super::Incoming>(text)
            .or_else(|_| serde_json::from_str(&super::replace_lone_surrogates(text)));
        let _ = parsed;
    }
}
