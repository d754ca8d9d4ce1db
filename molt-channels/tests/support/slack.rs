//! A Slack server on loopback that behaves as Slack's does for what the
//! adapter uses, from the API documentation: `apps.connections.open` with an
//! app-level token and single-use WebSocket URLs; `hello`; `events_api`
//! envelopes redelivered (new envelope id, `retry_attempt`, `retry_reason`)
//! when not acknowledged in time, up to three times; `disconnect` frames;
//! `auth.test`; `chat.postMessage`; errors as HTTP 200 with `ok: false`, and
//! 429 with `Retry-After`.
//!
//! With a Request URL set ([`FakeSlack::set_request_url`], which passes only
//! once the URL answers Slack's signed `url_verification` with its challenge
//! within 3 s), events go there instead, as the Events API sends them: a
//! JSON POST signed `v0` with the signing secret; any answer but a 2xx within
//! 3 s is a failure, and Slack retries (`X-Slack-Retry-Num` 1 to 3,
//! `X-Slack-Retry-Reason`) at once, after a minute and after five, without
//! waiting for an answer it stopped waiting for; an error answered with
//! `X-Slack-No-Retry: 1` is not retried.

#![allow(dead_code)]

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub const BOT_TOKEN: &str = "xoxb-1111-2222-fakebot";
pub const APP_TOKEN: &str = "xapp-1-A111-3333-fakeapp";
pub const BOT_USER: &str = "UBOT0001";
pub const SIGNING_SECRET: &str = "5ec0e7f1a2b3c4d5e6f708192a3b4c5d";

/// How long Slack waits for an answer to an events request.
pub const EVENTS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long Slack waits before each retry of an events request: at once,
/// after a minute, after five.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// One POST of an event to the Request URL.
#[derive(Clone, Debug)]
pub struct EventsAttempt {
    pub event_id: String,
    /// 0 for the first delivery, then `X-Slack-Retry-Num`.
    pub retry_num: u64,
    /// The status answered, or why there was none (`http_timeout`, `connection_failed`).
    pub outcome: Result<u16, &'static str>,
}

pub enum Command {
    Frame(Value),
    /// Stop reading and writing: a half-open socket.
    Silence,
}

/// An envelope sent and not yet acknowledged.
pub struct Sent {
    pub event_id: String,
    pub connection: u64,
}

pub struct Recorded {
    pub ack_timeout: Duration,
    pub connections_opened: u64,
    /// Live connections, oldest first.
    pub live: Vec<(u64, mpsc::UnboundedSender<Command>)>,
    /// The most connections live at once.
    pub max_live: usize,
    pub tickets: HashSet<String>,
    pub unacked: HashMap<String, Sent>,
    /// (envelope id, event id) of every acknowledgement.
    pub acks: Vec<(String, String)>,
    /// Envelopes sent, with `retry_attempt`.
    pub envelopes: Vec<(String, String, u64)>,
    pub pings: usize,
    pub posted: Vec<Value>,
    /// Every message in every conversation (users' and the bot's), as
    /// `conversations.history` shows them, plus their `channel`.
    pub messages: Vec<Value>,
    /// `conversations.history` and `conversations.replies` calls.
    pub history_reads: usize,
    pub faults: VecDeque<Response>,
    /// Files shared in the workspace, by `url_private` path: type and bytes.
    pub files: HashMap<String, (String, Vec<u8>)>,
    /// Every request for a file: its path and the bearer token it carried.
    pub file_requests: Vec<(String, String)>,
    /// Whether the bot token has the `files:read` scope.
    pub files_read: bool,
    /// The verified Request URL: events are POSTed there, not to sockets.
    pub request_url: Option<String>,
    /// Every POST of an event to the Request URL.
    pub events_attempts: Vec<EventsAttempt>,
    next: u64,
}

pub struct FakeSlack {
    pub base: String,
    /// Where files are served (Slack's `files.slack.com`).
    pub files_base: String,
    pub state: Arc<Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<Recorded>>,
    ws_base: String,
}

impl FakeSlack {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorded {
            ack_timeout: Duration::from_secs(3),
            connections_opened: 0,
            live: Vec::new(),
            max_live: 0,
            tickets: HashSet::new(),
            unacked: HashMap::new(),
            acks: Vec::new(),
            envelopes: Vec::new(),
            pings: 0,
            posted: Vec::new(),
            messages: Vec::new(),
            history_reads: 0,
            faults: VecDeque::new(),
            files: HashMap::new(),
            file_requests: Vec::new(),
            files_read: true,
            request_url: None,
            events_attempts: Vec::new(),
            next: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App {
            state: state.clone(),
            ws_base: format!("ws://{addr}"),
        };
        let router = Router::new()
            .route("/api/apps.connections.open", axum::routing::post(open))
            .route("/api/auth.test", axum::routing::post(auth_test))
            .route("/api/chat.postMessage", axum::routing::post(post_message))
            .route("/api/conversations.history", axum::routing::post(history))
            .route("/api/conversations.replies", axum::routing::post(replies))
            .route("/link/", axum::routing::get(link))
            .route("/files-pri/{id}/{name}", axum::routing::get(file))
            .with_state(app);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            base: format!("http://{addr}/api"),
            files_base: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn recorded<T>(&self, read: impl FnOnce(&mut Recorded) -> T) -> T {
        read(&mut self.state.lock().unwrap())
    }

    pub fn live(&self) -> usize {
        self.state.lock().unwrap().live.len()
    }

    /// A direct message from `user`; returns its event id.
    pub fn direct_message(&self, user: &str, text: &str) -> String {
        self.event(|ts| {
            json!({ "type": "message", "channel": format!("D{user}"), "channel_type": "im",
                    "user": user, "text": text, "ts": ts, "event_ts": ts,
                    "client_msg_id": format!("c-{ts}"), "team": "T111" })
        })
    }

    /// A direct message from `user` sharing `files` (from [`Self::upload`]),
    /// as the `file_share` message Slack sends; returns its event id.
    pub fn direct_message_with_files(&self, user: &str, text: &str, files: Vec<Value>) -> String {
        self.event(|ts| {
            json!({ "type": "message", "subtype": "file_share", "channel": format!("D{user}"),
                    "channel_type": "im", "user": user, "text": text, "ts": ts, "event_ts": ts,
                    "files": files, "upload": false, "display_as_bot": false, "team": "T111" })
        })
    }

    /// Shares a file in the workspace; returns the file object events carry.
    pub fn upload(&self, name: &str, mimetype: &str, bytes: &[u8]) -> Value {
        let mut recorded = self.state.lock().unwrap();
        recorded.next += 1;
        let id = format!("F{:09}", recorded.next);
        let path = format!("/files-pri/T111-{id}/{name}");
        let file = (mimetype.to_owned(), bytes.to_vec());
        recorded.files.insert(path.clone(), file);
        let url = format!("{}{path}", self.files_base);
        json!({ "id": id, "created": 1_700_000_000u64, "timestamp": 1_700_000_000u64,
                "name": name, "title": name, "mimetype": mimetype,
                "filetype": name.rsplit('.').next(), "pretty_type": "PNG", "user": "U42",
                "mode": "hosted", "editable": false, "is_external": false, "is_public": false,
                "size": bytes.len(), "url_private": url,
                "url_private_download": format!("{}/download/{name}", url.rsplit_once('/').unwrap().0) })
    }

    /// A mention of the bot in a channel thread; returns its event id.
    pub fn mention_in_thread(
        &self,
        user: &str,
        channel: &str,
        thread_ts: &str,
        text: &str,
    ) -> String {
        self.event(|ts| {
            json!({ "type": "app_mention", "channel": channel, "user": user,
                    "text": format!("<@{BOT_USER}> {text}"), "ts": ts, "event_ts": ts,
                    "thread_ts": thread_ts, "team": "T111" })
        })
    }

    fn event(&self, make: impl FnOnce(&str) -> Value) -> String {
        let n = {
            let mut recorded = self.state.lock().unwrap();
            recorded.next += 1;
            recorded.next
        };
        let ts = format!("1700000000.{n:06}");
        let event_id = format!("Ev{n:08}");
        let event = make(&ts);
        let mut message = json!({ "type": "message", "channel": event["channel"],
            "user": event["user"], "text": event["text"], "ts": ts });
        if event["thread_ts"].is_string() {
            message["thread_ts"] = event["thread_ts"].clone();
        }
        self.state.lock().unwrap().messages.push(message);
        let payload = json!({
            "token": "verification-token", "team_id": "T111", "api_app_id": "A111",
            "event": event, "type": "event_callback", "event_id": event_id,
            "event_time": 1_700_000_000u64 + n, "is_ext_shared_channel": false,
            "authorizations": [{ "enterprise_id": null, "team_id": "T111", "user_id": BOT_USER,
                                 "is_bot": true, "is_enterprise_install": false }],
            "event_context": format!("4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMTExIn0{n}"),
        });
        let request_url = self.state.lock().unwrap().request_url.clone();
        match request_url {
            Some(url) => tokio::spawn(deliver_over_http(self.state.clone(), url, payload)),
            None => tokio::spawn(deliver(self.state.clone(), payload, 0)),
        };
        event_id
    }

    /// Saves `url` as the app's Request URL, as the app settings do: Slack
    /// first sends a signed `url_verification`, and refuses the URL unless
    /// it answers 200 with the challenge (as plain text, JSON or a form)
    /// within 3 s.
    pub async fn set_request_url(&self, url: &str) -> Result<(), String> {
        let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
        let body = json!({ "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge,
                           "type": "url_verification" });
        let response = signed_post(url, &body.to_string(), None)
            .await
            .map_err(|reason| format!("Your URL didn't respond ({reason})"))?;
        let status = response.status();
        let kind = (response.headers().get("content-type"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap_or_default();
        // Each way of answering goes with its content type.
        let echoed = if kind.starts_with("application/json") {
            serde_json::from_str::<Value>(&text).is_ok_and(|v| v["challenge"] == challenge)
        } else if kind.starts_with("application/x-www-form-urlencoded") {
            text == format!("challenge={challenge}")
        } else {
            kind.starts_with("text/plain") && text == challenge
        };
        if status != StatusCode::OK || !echoed {
            return Err(format!(
                "Your URL didn't respond with the value of the challenge parameter (HTTP {status})"
            ));
        }
        self.state.lock().unwrap().request_url = Some(url.to_owned());
        Ok(())
    }

    /// Sends a `disconnect` with `reason` on the newest connection.
    pub fn disconnect(&self, reason: &str) {
        self.send_newest(Command::Frame(json!({
            "type": "disconnect", "reason": reason, "debug_info": { "host": "wss-111.slack.com" },
        })));
    }

    /// Makes the newest connection half-open.
    pub fn silence(&self) {
        self.send_newest(Command::Silence);
    }

    fn send_newest(&self, command: Command) {
        let recorded = self.state.lock().unwrap();
        let (_, commands) = recorded.live.last().expect("a live connection");
        let _ = commands.send(command);
    }

    /// The next `chat.postMessage` gets a 429 with `Retry-After: seconds`.
    pub fn rate_limit_next(&self, seconds: u64) {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({ "ok": false, "error": "ratelimited" })),
        )
            .into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
        self.state.lock().unwrap().faults.push_back(response);
    }
}

/// Sends the payload to the newest live connection, then redelivers it
/// (as Slack does) when it is not acknowledged within the ack timeout.
async fn deliver(state: Arc<Mutex<Recorded>>, payload: Value, first_attempt: u64) {
    let event_id = payload["event_id"].as_str().unwrap().to_owned();
    for attempt in first_attempt..=3 {
        let (envelope_id, timeout) = loop {
            {
                let mut recorded = state.lock().unwrap();
                if let Some((connection, commands)) =
                    recorded.live.last().map(|(c, s)| (*c, s.clone()))
                {
                    recorded.next += 1;
                    let envelope_id = format!("{:08x}-d933-402e-a5c1-79e135afaae4", recorded.next);
                    let envelope = json!({
                        "envelope_id": envelope_id, "payload": payload, "type": "events_api",
                        "accepts_response_payload": false, "retry_attempt": attempt,
                        "retry_reason": if attempt == 0 { "" } else { "timeout" },
                    });
                    if commands.send(Command::Frame(envelope)).is_ok() {
                        recorded.unacked.insert(
                            envelope_id.clone(),
                            Sent {
                                event_id: event_id.clone(),
                                connection,
                            },
                        );
                        recorded
                            .envelopes
                            .push((envelope_id.clone(), event_id.clone(), attempt));
                        break (envelope_id, recorded.ack_timeout);
                    }
                }
            }
            // No connection: Slack holds the event until one is open.
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(timeout).await;
        if !state.lock().unwrap().unacked.contains_key(&envelope_id) {
            return;
        }
    }
}

/// Sends the payload to the Request URL until a 2xx answers it, retrying as
/// the Events API does.
async fn deliver_over_http(state: Arc<Mutex<Recorded>>, url: String, payload: Value) {
    let event_id = payload["event_id"].as_str().unwrap().to_owned();
    let body = payload.to_string();
    let mut reason = "";
    for retry_num in 0..=3u64 {
        if retry_num > 0 {
            tokio::time::sleep(RETRY_DELAYS[retry_num as usize - 1]).await;
        }
        let retry = (retry_num > 0).then_some((retry_num, reason));
        let outcome = signed_post(&url, &body, retry).await;
        let (recorded, done) = match &outcome {
            Ok(response) => {
                let no_retry = response
                    .headers()
                    .get("x-slack-no-retry")
                    .is_some_and(|v| v == "1");
                let status = response.status();
                (Ok(status.as_u16()), status.is_success() || no_retry)
            }
            Err(failure) => (Err(*failure), false),
        };
        reason = match recorded {
            Ok(_) => "http_error",
            Err(failure) => failure,
        };
        state.lock().unwrap().events_attempts.push(EventsAttempt {
            event_id: event_id.clone(),
            retry_num,
            outcome: recorded,
        });
        if done {
            return;
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">` under `secret`.
pub fn sign(secret: &str, timestamp: u64, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// One POST as Slack signs it: `X-Slack-Signature: v0=<hex HMAC-SHA256 of
/// "v0:<timestamp>:<body>">` under the signing secret; with a retry's number
/// and reason. Gives up after 3 s, dropping the connection.
async fn signed_post(
    url: &str,
    body: &str,
    retry: Option<(u64, &str)>,
) -> Result<reqwest::Response, &'static str> {
    let timestamp = unix_now();
    let signature = sign(SIGNING_SECRET, timestamp, body);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(2))
        .timeout(EVENTS_TIMEOUT)
        .build()
        .unwrap();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", signature)
        .body(body.to_owned());
    if let Some((number, reason)) = retry {
        request = request
            .header("x-slack-retry-num", number.to_string())
            .header("x-slack-retry-reason", reason);
    }
    request.send().await.map_err(|err| {
        if err.is_timeout() {
            "http_timeout"
        } else if err.is_connect() {
            "connection_failed"
        } else if err.is_redirect() {
            "too_many_redirects"
        } else {
            "unknown_error"
        }
    })
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

/// `url_private`: the file for a token with `files:read`; anything else is
/// sent to the sign-in page, as Slack does.
async fn file(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/files-pri/{id}/{name}");
    let mut recorded = app.state.lock().unwrap();
    recorded
        .file_requests
        .push((path.clone(), bearer(&headers).to_owned()));
    let allowed = bearer(&headers) == BOT_TOKEN && recorded.files_read;
    match recorded.files.get(&path) {
        Some((mimetype, bytes)) if allowed => {
            ([("content-type", mimetype.clone())], bytes.clone()).into_response()
        }
        _ => {
            let login =
                format!("https://fake-workspace.slack.com/?redir=%2Ffiles-pri%2F{id}%2F{name}");
            (StatusCode::FOUND, [("location", login)]).into_response()
        }
    }
}

fn refused(error: &str) -> Response {
    axum::Json(json!({ "ok": false, "error": error })).into_response()
}

/// The refusal for a request without the bot token, if it lacks it.
fn bot_refusal(headers: &HeaderMap) -> Option<Response> {
    match bearer(headers) {
        BOT_TOKEN => None,
        "" => Some(refused("not_authed")),
        _ => Some(refused("invalid_auth")),
    }
}

async fn open(State(app): State<App>, headers: HeaderMap) -> Response {
    match bearer(&headers) {
        APP_TOKEN => {}
        "" => return refused("not_authed"),
        token if token.starts_with("xoxb-") => return refused("not_allowed_token_type"),
        _ => return refused("invalid_auth"),
    }
    let mut recorded = app.state.lock().unwrap();
    recorded.next += 1;
    let ticket = format!("ticket-{}", recorded.next);
    recorded.tickets.insert(ticket.clone());
    axum::Json(
        json!({ "ok": true, "url": format!("{}/link/?ticket={ticket}&app_id=A111", app.ws_base) }),
    )
    .into_response()
}

async fn auth_test(headers: HeaderMap) -> Response {
    if let Some(refusal) = bot_refusal(&headers) {
        return refusal;
    }
    axum::Json(
        json!({ "ok": true, "url": "https://molt-test.slack.com/", "team": "Molt Test",
        "user": "molt", "team_id": "T111", "user_id": BOT_USER, "bot_id": "B111",
        "is_enterprise_install": false }),
    )
    .into_response()
}

async fn post_message(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = bot_refusal(&headers) {
        return refusal;
    }
    let mut recorded = app.state.lock().unwrap();
    if let Some(fault) = recorded.faults.pop_front() {
        return fault;
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return refused("invalid_json");
    };
    let Some(channel) = message["channel"].as_str().map(str::to_owned) else {
        return refused("channel_not_found");
    };
    let text = message["text"].as_str().unwrap_or_default().to_owned();
    if text.trim().is_empty() {
        return refused("no_text");
    }
    if text.chars().count() > 40_000 {
        return refused("msg_too_long");
    }
    recorded.next += 1;
    let ts = format!("1700000001.{:06}", recorded.next);
    let mut shown = json!({ "type": "message", "channel": channel, "user": BOT_USER,
        "bot_id": "B111", "text": text, "ts": ts });
    for field in ["thread_ts", "metadata"] {
        if !message[field].is_null() {
            shown[field] = message[field].clone();
        }
    }
    recorded.messages.push(shown);
    recorded.posted.push(message);
    axum::Json(json!({ "ok": true, "channel": channel, "ts": ts,
        "message": { "type": "message", "text": text, "user": BOT_USER, "bot_id": "B111", "ts": ts } }))
    .into_response()
}

type Form = axum::Form<HashMap<String, String>>;

async fn history(app: State<App>, headers: HeaderMap, form: Form) -> Response {
    read(app, headers, form, false)
}

async fn replies(app: State<App>, headers: HeaderMap, form: Form) -> Response {
    read(app, headers, form, true)
}

/// `conversations.history` (a conversation's messages outside threads, newest
/// first) or `conversations.replies` (a thread, parent first), after
/// `oldest`, paged by `limit` and `cursor`; metadata only with
/// `include_all_metadata`.
fn read(
    State(app): State<App>,
    headers: HeaderMap,
    axum::Form(form): Form,
    thread: bool,
) -> Response {
    if let Some(refusal) = bot_refusal(&headers) {
        return refusal;
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let (channel, parent) = (field("channel"), field("ts"));
    if channel.is_empty() {
        return refused("channel_not_found");
    }
    if thread && parent.is_empty() {
        return refused("invalid_arguments");
    }
    let time = |ts: &Value| {
        ts.as_str()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let oldest = match field("oldest") {
        "" => 0.0,
        ts => match ts.parse::<f64>() {
            Ok(oldest) => oldest,
            Err(_) => return refused("invalid_ts_oldest"),
        },
    };
    let limit = field("limit").parse::<usize>().unwrap_or(100).clamp(1, 999);
    let start = field("cursor")
        .strip_prefix("bmV4dF90czo")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let metadata = field("include_all_metadata") == "true";
    let mut recorded = app.state.lock().unwrap();
    recorded.history_reads += 1;
    let mut found: Vec<Value> = recorded
        .messages
        .iter()
        .filter(|m| m["channel"] == channel && time(&m["ts"]) > oldest)
        .filter(|m| match thread {
            true => m["ts"] == parent || m["thread_ts"] == parent,
            false => m["thread_ts"].is_null() || m["thread_ts"] == m["ts"],
        })
        .cloned()
        .collect();
    if !thread {
        found.reverse();
    }
    let more = found.len() > start + limit;
    let page: Vec<Value> = found
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|mut m| {
            m.as_object_mut().map(|m| m.remove("channel"));
            if !metadata {
                m.as_object_mut().map(|m| m.remove("metadata"));
            }
            m
        })
        .collect();
    let next = if more {
        format!("bmV4dF90czo{}", start + limit)
    } else {
        String::new()
    };
    axum::Json(json!({ "ok": true, "messages": page, "has_more": more,
        "response_metadata": { "next_cursor": next } }))
    .into_response()
}

async fn link(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ticket = query.get("ticket").cloned().unwrap_or_default();
    // A URL is good for one connection.
    if !app.state.lock().unwrap().tickets.remove(&ticket) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    upgrade.on_upgrade(move |socket| connection(app, socket))
}

async fn connection(app: App, mut socket: WebSocket) {
    let (commands, mut queued) = mpsc::unbounded_channel();
    let id = {
        let mut recorded = app.state.lock().unwrap();
        recorded.connections_opened += 1;
        let id = recorded.connections_opened;
        recorded.live.push((id, commands));
        recorded.max_live = recorded.max_live.max(recorded.live.len());
        id
    };
    let hello = json!({ "type": "hello", "num_connections": id,
        "debug_info": { "host": "applink-7fc4fdbb64-4x5xq", "build_number": 10, "approximate_connection_time": 18060 },
        "connection_info": { "app_id": "A111" } });
    if socket.send(Message::text(hello.to_string())).await.is_ok() {
        loop {
            tokio::select! {
                command = queued.recv() => match command {
                    Some(Command::Frame(frame)) => {
                        if socket.send(Message::text(frame.to_string())).await.is_err() { break }
                    }
                    Some(Command::Silence) => {
                        // Neither read nor write until the client gives up.
                        app.state.lock().unwrap().live.retain(|(c, _)| *c != id);
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        break;
                    }
                    None => break,
                },
                frame = socket.recv() => match frame {
                    Some(Ok(Message::Text(text))) => acknowledge(&app, text.as_str()),
                    Some(Ok(Message::Ping(_))) => app.state.lock().unwrap().pings += 1,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    app.state.lock().unwrap().live.retain(|(c, _)| *c != id);
}

fn acknowledge(app: &App, text: &str) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(envelope_id) = frame["envelope_id"].as_str() else {
        return;
    };
    let mut recorded = app.state.lock().unwrap();
    if let Some(sent) = recorded.unacked.remove(envelope_id) {
        recorded.acks.push((envelope_id.to_owned(), sent.event_id));
    }
}
