//! A Discord server on loopback that behaves as Discord's does for what the
//! adapter uses, from the API documentation: the gateway (HELLO, heartbeats
//! and their ACKs, IDENTIFY with intents, READY, RESUME with replay of what
//! the session missed, RESUMED, op 7 and op 9, the documented close codes,
//! the 120-per-60-s send limit) and the REST API (bot authentication, message
//! validation, rate-limit buckets announced in `X-RateLimit-*` headers, 429).

#![allow(dead_code)]

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const TOKEN: &str = "MTA5ODc2.fake.discord-token";
pub const BOT_ID: &str = "900000000000000001";
const MESSAGE_CONTENT: u64 = 1 << 15;

/// A gateway session: every dispatch it was sent, in order (`s` = index + 1).
#[derive(Default)]
pub struct Session {
    pub events: Vec<Value>,
}

/// What the test can send down the live connection.
pub enum Command {
    Frame(Value),
    Close(u16),
}

/// What the fake has seen and how it behaves.
pub struct Recorded {
    pub heartbeat_ms: u64,
    pub ack_heartbeats: bool,
    pub message_content_enabled: bool,
    /// Messages per channel per window, and the window.
    pub bucket_limit: u32,
    pub bucket_window: Duration,
    pub buckets: HashMap<String, (u32, Instant)>,
    pub sessions: HashMap<String, Session>,
    pub live: Option<(String, mpsc::UnboundedSender<Command>)>,
    pub connections: usize,
    pub identifies: usize,
    /// `seq` of every RESUME.
    pub resumes: Vec<u64>,
    /// `d` of every heartbeat.
    pub heartbeats: Vec<Value>,
    /// Close codes the fake sent.
    pub closes: Vec<u16>,
    /// Bodies of messages created, with `channel_id` added.
    pub sent: Vec<Value>,
    pub typing: Vec<String>,
    pub too_many_requests: usize,
    /// Messages created with `enforce_nonce`, by channel and nonce, and when.
    pub nonces: HashMap<(String, String), (Value, Instant)>,
    /// Sends answered with the message an earlier one created (same nonce).
    pub nonce_repeats: usize,
    /// Answers to give before any other, per REST route name.
    pub faults: HashMap<&'static str, VecDeque<Response>>,
    /// Attachments on the CDN, by path: the signature (`hm`) their URL carries, their type, their bytes.
    pub cdn: HashMap<String, (String, String, Vec<u8>)>,
    /// Every CDN request: its path and the `Authorization` header it carried.
    pub cdn_requests: Vec<(String, Option<String>)>,
    next_id: u64,
}

pub struct FakeDiscord {
    pub base: String,
    /// Where attachments are served (Discord's CDN).
    pub cdn_base: String,
    pub state: Arc<Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<Recorded>>,
    ws_base: String,
}

impl FakeDiscord {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorded {
            heartbeat_ms: 1_000,
            ack_heartbeats: true,
            message_content_enabled: true,
            bucket_limit: 5,
            bucket_window: Duration::from_millis(500),
            buckets: HashMap::new(),
            sessions: HashMap::new(),
            live: None,
            connections: 0,
            identifies: 0,
            resumes: Vec::new(),
            heartbeats: Vec::new(),
            closes: Vec::new(),
            sent: Vec::new(),
            typing: Vec::new(),
            too_many_requests: 0,
            nonces: HashMap::new(),
            nonce_repeats: 0,
            faults: HashMap::new(),
            cdn: HashMap::new(),
            cdn_requests: Vec::new(),
            next_id: 1_200_000_000_000_000_000,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App {
            state: state.clone(),
            ws_base: format!("ws://{addr}"),
        };
        let router = Router::new()
            .route("/api/v10/users/@me", axum::routing::get(me))
            .route("/api/v10/gateway/bot", axum::routing::get(gateway_bot))
            .route(
                "/api/v10/channels/{id}/messages",
                axum::routing::post(create_message),
            )
            .route("/api/v10/channels/{id}/typing", axum::routing::post(typing))
            .route(
                "/attachments/{channel}/{id}/{filename}",
                axum::routing::get(attachment),
            )
            .route("/gateway/", axum::routing::get(socket))
            .route("/resume/", axum::routing::get(socket))
            .with_state(app);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            base: format!("http://{addr}/api/v10"),
            cdn_base: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn recorded<T>(&self, read: impl FnOnce(&mut Recorded) -> T) -> T {
        read(&mut self.state.lock().unwrap())
    }

    /// Sends a dispatch in the current session (buffered for a resume when
    /// no connection is live); returns its sequence number.
    pub fn dispatch(&self, t: &str, d: Value) -> u64 {
        let mut recorded = self.state.lock().unwrap();
        let session_id = newest_session(&recorded).expect("a session exists");
        let session = recorded.sessions.get_mut(&session_id).unwrap();
        let s = session.events.len() as u64 + 1;
        let event = json!({ "op": 0, "t": t, "s": s, "d": d });
        session.events.push(event.clone());
        if let Some((live, commands)) = &recorded.live
            && *live == session_id
        {
            let _ = commands.send(Command::Frame(event));
        }
        s
    }

    /// A direct message from `user_id`; returns its message id.
    pub fn direct_message(&self, user_id: &str, text: &str) -> String {
        self.message(
            user_id,
            &format!("dm-{user_id}"),
            None,
            text,
            &[],
            Vec::new(),
        )
    }

    /// A direct message from `user_id` with `attachments` (from [`Self::upload`]).
    pub fn direct_message_with(
        &self,
        user_id: &str,
        text: &str,
        attachments: Vec<Value>,
    ) -> String {
        self.message(
            user_id,
            &format!("dm-{user_id}"),
            None,
            text,
            &[],
            attachments,
        )
    }

    /// A message in a guild channel, mentioning `mentions`.
    pub fn guild_message(&self, user_id: &str, channel: &str, text: &str, mentions: &[&str]) {
        self.message(user_id, channel, Some("500"), text, mentions, Vec::new());
    }

    /// Puts a file on the CDN, as a user's upload to `channel`; returns the
    /// attachment object a message carries, with a signed, expiring URL.
    pub fn upload(&self, channel: &str, filename: &str, content_type: &str, bytes: &[u8]) -> Value {
        let mut recorded = self.state.lock().unwrap();
        recorded.next_id += 1 << 22;
        let id = recorded.next_id.to_string();
        let path = format!("/attachments/{channel}/{id}/{filename}");
        let signature = format!("{:x}", recorded.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let file = (signature.clone(), content_type.to_owned(), bytes.to_vec());
        recorded.cdn.insert(path.clone(), file);
        drop(recorded);
        let url = format!(
            "{}{path}?ex=7fffffff&is=6a000000&hm={signature}&",
            self.cdn_base
        );
        json!({ "id": id, "filename": filename, "size": bytes.len(), "url": url,
                "proxy_url": url, "content_type": content_type, "width": 16, "height": 16 })
    }

    fn message(
        &self,
        user_id: &str,
        channel: &str,
        guild: Option<&str>,
        text: &str,
        mentions: &[&str],
        attachments: Vec<Value>,
    ) -> String {
        let id = {
            let mut recorded = self.state.lock().unwrap();
            recorded.next_id += 1 << 22;
            recorded.next_id.to_string()
        };
        let mut d = json!({
            "id": id, "channel_id": channel, "type": 0, "content": text,
            "author": { "id": user_id, "username": format!("user{user_id}"), "discriminator": "0",
                        "global_name": null, "avatar": null },
            "timestamp": "2026-11-22T12:00:00.000000+00:00", "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "mention_roles": [], "attachments": attachments,
            "embeds": [], "pinned": false, "flags": 0,
            "mentions": mentions.iter().map(|id| json!({ "id": id, "username": "molt", "bot": true })).collect::<Vec<_>>(),
        });
        if let Some(guild) = guild {
            d["guild_id"] = json!(guild);
        }
        self.dispatch("MESSAGE_CREATE", d);
        id
    }

    /// Sends `payload` down the live connection.
    pub fn send_frame(&self, payload: Value) {
        let recorded = self.state.lock().unwrap();
        let (_, commands) = recorded.live.as_ref().expect("a live connection");
        let _ = commands.send(Command::Frame(payload));
    }

    /// Closes the live connection with `code`.
    pub fn close(&self, code: u16) {
        let recorded = self.state.lock().unwrap();
        if let Some((_, commands)) = &recorded.live {
            let _ = commands.send(Command::Close(code));
        }
    }

    pub fn is_live(&self) -> bool {
        self.state.lock().unwrap().live.is_some()
    }

    /// The next call of `route` gets a 429: global or for its bucket.
    pub fn rate_limit_next(&self, route: &'static str, retry_after: f64, global: bool) {
        let body = json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": global });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("retry-after", HeaderValue::from(retry_after.ceil() as u64));
        let scope = if global { "global" } else { "user" };
        headers.insert("x-ratelimit-scope", HeaderValue::from_static(scope));
        if global {
            headers.insert("x-ratelimit-global", HeaderValue::from_static("true"));
        }
        let mut recorded = self.state.lock().unwrap();
        recorded
            .faults
            .entry(route)
            .or_default()
            .push_back(response);
    }
}

fn newest_session(recorded: &Recorded) -> Option<String> {
    if let Some((live, _)) = &recorded.live {
        return Some(live.clone());
    }
    recorded
        .sessions
        .keys()
        .max_by_key(|id| id[5..].parse::<u64>().unwrap_or(0))
        .cloned()
}

fn bot_user() -> Value {
    json!({ "id": BOT_ID, "username": "molt", "discriminator": "0", "global_name": "Molt",
            "avatar": null, "bot": true })
}

fn error(status: u16, code: u64, message: &str) -> Response {
    let body = json!({ "code": code, "message": message });
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {TOKEN}"))
}

/// The CDN: an attachment only with the signature its URL was issued with
/// (Discord's answer to anything else), streamed without a length. It needs
/// no token; the test checks none is sent.
async fn attachment(
    State(app): State<App>,
    Path((channel, id, filename)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/attachments/{channel}/{id}/{filename}");
    let mut recorded = app.state.lock().unwrap();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    recorded.cdn_requests.push((path.clone(), authorization));
    match recorded.cdn.get(&path) {
        Some((signature, content_type, bytes)) if query.get("hm") == Some(signature) => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(256).map(|chunk| Ok(chunk.to_vec())).collect();
            let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
            ([("content-type", content_type.clone())], body).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            "This content is no longer available.",
        )
            .into_response(),
    }
}

async fn me(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return error(401, 0, "401: Unauthorized");
    }
    axum::Json(bot_user()).into_response()
}

async fn gateway_bot(State(app): State<App>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return error(401, 0, "401: Unauthorized");
    }
    axum::Json(json!({
        "url": format!("{}/gateway", app.ws_base), "shards": 1,
        "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1 },
    }))
    .into_response()
}

async fn create_message(
    State(app): State<App>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers) {
        return error(401, 0, "401: Unauthorized");
    }
    let mut recorded = app.state.lock().unwrap();
    if let Some(fault) = recorded
        .faults
        .get_mut("create_message")
        .and_then(VecDeque::pop_front)
    {
        recorded.too_many_requests += 1;
        return fault;
    }
    // The bucket: `bucket_limit` messages per window, per channel.
    let (limit, window) = (recorded.bucket_limit, recorded.bucket_window);
    let now = Instant::now();
    let (used, reset) = recorded
        .buckets
        .entry(channel.clone())
        .or_insert((0, now + window));
    if *reset <= now {
        (*used, *reset) = (0, now + window);
    }
    let reset_after = reset.saturating_duration_since(now).as_secs_f64();
    if *used >= limit {
        recorded.too_many_requests += 1;
        let body = json!({ "message": "You are being rate limited.", "retry_after": reset_after, "global": false });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        rate_headers(response.headers_mut(), limit, 0, reset_after);
        response
            .headers_mut()
            .insert("x-ratelimit-scope", HeaderValue::from_static("user"));
        return response;
    }
    *used += 1;
    let remaining = limit - *used;
    let Ok(mut message) = serde_json::from_slice::<Value>(&body) else {
        return error(400, 50109, "The request body contains invalid JSON.");
    };
    let content = message["content"].as_str().unwrap_or_default().to_owned();
    if content.is_empty() {
        return error(400, 50006, "Cannot send an empty message");
    }
    if content.chars().count() > 2000 {
        let body = json!({ "code": 50035, "message": "Invalid Form Body", "errors": { "content": { "_errors": [
            { "code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length." } ] } } });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    // `enforce_nonce`: a nonce seen from this author in the past few minutes
    // returns the message it created, and creates none.
    let nonce = message["nonce"].as_str().map(str::to_owned);
    let enforced = message["enforce_nonce"] == json!(true);
    if let (Some(nonce), true) = (&nonce, enforced) {
        let key = (channel.clone(), nonce.clone());
        if let Some((created, at)) = recorded.nonces.get(&key)
            && at.elapsed() < Duration::from_secs(300)
        {
            let created = created.clone();
            recorded.nonce_repeats += 1;
            let mut response = axum::Json(created).into_response();
            rate_headers(response.headers_mut(), limit, remaining, reset_after);
            return response;
        }
    }
    message["channel_id"] = json!(channel);
    recorded.sent.push(message.clone());
    recorded.next_id += 1 << 22;
    let id = recorded.next_id.to_string();
    let created = json!({
        "id": id, "channel_id": channel, "content": content, "author": bot_user(), "type": 0,
        "nonce": nonce,
    });
    if let (Some(nonce), true) = (nonce, enforced) {
        recorded
            .nonces
            .insert((channel.clone(), nonce), (created.clone(), now));
    }
    let mut response = axum::Json(created).into_response();
    rate_headers(response.headers_mut(), limit, remaining, reset_after);
    response
}

fn rate_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset_after: f64) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert(
        "x-ratelimit-reset-after",
        HeaderValue::from_str(&format!("{reset_after:.3}")).unwrap(),
    );
    headers.insert(
        "x-ratelimit-bucket",
        HeaderValue::from_static("80c17d2f203122d936070c88c8d10f33"),
    );
}

async fn typing(
    State(app): State<App>,
    Path(channel): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return error(401, 0, "401: Unauthorized");
    }
    app.state.lock().unwrap().typing.push(channel);
    StatusCode::NO_CONTENT.into_response()
}

async fn socket(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| gateway(app, socket))
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    socket.send(Message::text(value.to_string())).await.is_ok()
}

async fn close(app: &App, socket: &mut WebSocket, code: u16, reason: &str) {
    app.state.lock().unwrap().closes.push(code);
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// One gateway connection, as Discord runs it.
async fn gateway(app: App, mut socket: WebSocket) {
    let (commands, mut queued) = mpsc::unbounded_channel();
    let heartbeat_ms = {
        let mut recorded = app.state.lock().unwrap();
        recorded.connections += 1;
        recorded.heartbeat_ms
    };
    if !send(
        &mut socket,
        json!({ "op": 10, "d": { "heartbeat_interval": heartbeat_ms }, "s": null, "t": null }),
    )
    .await
    {
        return;
    }
    let mut session: Option<String> = None;
    let mut received: VecDeque<Instant> = VecDeque::new();
    loop {
        tokio::select! {
            command = queued.recv() => match command {
                Some(Command::Frame(frame)) => if !send(&mut socket, frame).await { break },
                Some(Command::Close(code)) => {
                    close(&app, &mut socket, code, "closed by the test").await;
                    break;
                }
                None => break,
            },
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                // 120 events per 60 s per connection.
                let now = Instant::now();
                received.retain(|at| now.duration_since(*at) < Duration::from_secs(60));
                received.push_back(now);
                if received.len() > 120 {
                    close(&app, &mut socket, 4008, "Rate limited.").await;
                    break;
                }
                if text.len() > 4096 {
                    close(&app, &mut socket, 4002, "Decode error.").await;
                    break;
                }
                let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                    close(&app, &mut socket, 4002, "Decode error.").await;
                    break;
                };
                match payload["op"].as_u64() {
                    Some(1) => {
                        let ack = {
                            let mut recorded = app.state.lock().unwrap();
                            recorded.heartbeats.push(payload["d"].clone());
                            recorded.ack_heartbeats
                        };
                        if ack && !send(&mut socket, json!({ "op": 11, "d": null, "s": null, "t": null })).await {
                            break;
                        }
                    }
                    Some(2) if session.is_none() => match identify(&app, &payload["d"], &commands) {
                        Ok((id, ready)) => {
                            session = Some(id);
                            if !send(&mut socket, ready).await { break }
                        }
                        Err((code, reason)) => {
                            close(&app, &mut socket, code, reason).await;
                            break;
                        }
                    },
                    Some(2) => {
                        close(&app, &mut socket, 4005, "Already authenticated.").await;
                        break;
                    }
                    Some(6) if session.is_none() => match resume(&app, &payload["d"], &commands) {
                        Ok((id, replay)) => {
                            session = Some(id);
                            for frame in replay {
                                if !send(&mut socket, frame).await { break }
                            }
                        }
                        Err(None) => {
                            if !send(&mut socket, json!({ "op": 9, "d": false, "s": null, "t": null })).await { break }
                        }
                        Err(Some((code, reason))) => {
                            close(&app, &mut socket, code, reason).await;
                            break;
                        }
                    },
                    Some(_) if session.is_none() => {
                        close(&app, &mut socket, 4003, "Not authenticated.").await;
                        break;
                    }
                    Some(3 | 4 | 8) => {}
                    _ => {
                        close(&app, &mut socket, 4001, "Unknown opcode.").await;
                        break;
                    }
                }
            }
        }
    }
    // The session outlives the connection, for a resume.
    let mut recorded = app.state.lock().unwrap();
    if recorded
        .live
        .as_ref()
        .is_some_and(|(_, c)| c.same_channel(&commands))
    {
        recorded.live = None;
    }
}

type Refusal = (u16, &'static str);

fn identify(
    app: &App,
    d: &Value,
    commands: &mpsc::UnboundedSender<Command>,
) -> Result<(String, Value), Refusal> {
    if d["token"].as_str() != Some(TOKEN) {
        return Err((4004, "Authentication failed."));
    }
    let Some(intents) = d["intents"].as_u64() else {
        return Err((4013, "Invalid intent(s)."));
    };
    let mut recorded = app.state.lock().unwrap();
    if intents & MESSAGE_CONTENT != 0 && !recorded.message_content_enabled {
        return Err((4014, "Disallowed intent(s)."));
    }
    recorded.identifies += 1;
    let id = format!("sess-{}", recorded.identifies);
    let ready = json!({ "op": 0, "t": "READY", "s": 1, "d": {
        "v": 10, "user": bot_user(), "guilds": [], "session_id": id,
        "resume_gateway_url": format!("{}/resume", app.ws_base),
        "application": { "id": BOT_ID, "flags": 0 },
    }});
    recorded.sessions.insert(
        id.clone(),
        Session {
            events: vec![ready.clone()],
        },
    );
    recorded.live = Some((id.clone(), commands.clone()));
    Ok((id, ready))
}

/// The events after `seq` and RESUMED, or `Err(None)` for an unknown session.
fn resume(
    app: &App,
    d: &Value,
    commands: &mpsc::UnboundedSender<Command>,
) -> Result<(String, Vec<Value>), Option<Refusal>> {
    if d["token"].as_str() != Some(TOKEN) {
        return Err(Some((4004, "Authentication failed.")));
    }
    let seq = d["seq"].as_u64().unwrap_or(0);
    let id = d["session_id"].as_str().unwrap_or_default().to_owned();
    let mut recorded = app.state.lock().unwrap();
    recorded.resumes.push(seq);
    let session = recorded.sessions.get_mut(&id).ok_or(None)?;
    if seq > session.events.len() as u64 {
        return Err(Some((4007, "Invalid seq.")));
    }
    let mut replay: Vec<Value> = session.events[seq as usize..].to_vec();
    let s = session.events.len() as u64 + 1;
    let resumed = json!({ "op": 0, "t": "RESUMED", "s": s, "d": {} });
    session.events.push(resumed.clone());
    replay.push(resumed);
    recorded.live = Some((id.clone(), commands.clone()));
    Ok((id, replay))
}
