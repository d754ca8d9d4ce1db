//! A Bot API server on loopback that behaves as Telegram's does for what the
//! adapter uses (payloads and errors as the Bot API documents them): long
//! polling with offset confirmation, a second poller displacing the first
//! (409), flood control (429 with `retry_after` and `Retry-After`), group
//! migration, MarkdownV2 checking, and the 4,096-character limit.

#![allow(dead_code)]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const TOKEN: &str = "123456:TEST-token_for-the-fake";
pub const BOT_ID: i64 = 123456;
pub const BOT_USERNAME: &str = "molt_test_bot";

/// What the fake has seen and holds.
#[derive(Default)]
pub struct Recorded {
    /// Updates not yet confirmed.
    pub queue: Vec<Value>,
    pub next_update_id: i64,
    /// Every `offset` getUpdates was called with.
    pub offsets: Vec<Option<i64>>,
    /// Messages sent: the request parameters.
    pub sent: Vec<Value>,
    /// Chat actions sent.
    pub actions: Vec<Value>,
    /// Groups that became supergroups.
    pub migrated: HashMap<i64, i64>,
    /// Answers to give before any other, per method.
    pub faults: HashMap<String, VecDeque<(u16, Value)>>,
    /// Counts getUpdates calls, so a newer poll can displace an older one.
    pub poll_generation: u64,
    /// The webhook URL and secret, when one is set.
    pub webhook: Option<(String, String)>,
    /// Every webhook delivery: the update id and the status our endpoint answered.
    pub webhook_answers: Vec<(i64, u16)>,
    /// Whether the delivery loop runs (one at a time, as Telegram delivers
    /// one update at a time, to whichever URL is set now).
    pub delivering: bool,
    /// Files bots may fetch, by file id.
    pub files: HashMap<String, Vec<u8>>,
    /// The `file_path` getFile gave for each file id.
    pub file_paths: HashMap<String, String>,
    /// The path of every file download that was served.
    pub downloads: Vec<String>,
}

/// The largest file the Bot API lets a bot download.
pub const MAX_BOT_DOWNLOAD: usize = 20 * 1024 * 1024;

/// The fake, served until dropped.
pub struct FakeTelegram {
    pub base: String,
    pub state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Shared {
    pub recorded: Mutex<Recorded>,
    changed: Notify,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let state = Arc::new(Shared {
            recorded: Mutex::new(Recorded {
                next_update_id: 700_000_001,
                ..Recorded::default()
            }),
            changed: Notify::new(),
        });
        let app = Router::new()
            .route("/{bot}/{method}", axum::routing::post(call))
            .route("/file/{bot}/{*path}", axum::routing::get(file))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state, task }
    }

    /// Queues a private message from `user_id`; returns its update id.
    pub fn private_message(&self, user_id: i64, message_id: i64, text: &str) -> i64 {
        self.push_message(json!({
            "message_id": message_id,
            "from": { "id": user_id, "is_bot": false, "first_name": "Ada", "username": "ada" },
            "chat": { "id": user_id, "type": "private", "first_name": "Ada", "username": "ada" },
            "date": 1_760_000_000,
            "text": text,
        }))
    }

    /// Queues an update holding `message`; returns its id.
    pub fn push_message(&self, message: Value) -> i64 {
        self.push_update(|id| json!({ "update_id": id, "message": message }))
    }

    /// Queues any update, made from its id.
    pub fn push_update(&self, make: impl FnOnce(i64) -> Value) -> i64 {
        let mut recorded = self.state.recorded.lock().unwrap();
        let id = recorded.next_update_id;
        recorded.next_update_id += 1;
        recorded.queue.push(make(id));
        drop(recorded);
        self.state.changed.notify_waiters();
        id
    }

    /// The next call of `method` gets this error (`parameters` as given).
    pub fn fail_next(&self, method: &str, code: u16, description: &str, parameters: Value) {
        let mut body = json!({ "ok": false, "error_code": code, "description": description });
        if !parameters.is_null() {
            body["parameters"] = parameters;
        }
        self.state
            .recorded
            .lock()
            .unwrap()
            .faults
            .entry(method.to_lowercase())
            .or_default()
            .push_back((code, body));
    }

    /// A file a bot may fetch by `file_id`, as a photo or document it was sent.
    pub fn add_file(&self, file_id: &str, bytes: &[u8]) {
        let mut recorded = self.state.recorded.lock().unwrap();
        recorded.files.insert(file_id.to_owned(), bytes.to_vec());
    }

    pub fn recorded<T>(&self, read: impl FnOnce(&Recorded) -> T) -> T {
        read(&self.state.recorded.lock().unwrap())
    }

    pub fn migrate(&self, from: i64, to: i64) {
        self.state
            .recorded
            .lock()
            .unwrap()
            .migrated
            .insert(from, to);
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

fn error(code: u16, body: Value) -> Response {
    let mut response = (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(body.clone()),
    )
        .into_response();
    if let Some(wait) = body["parameters"]["retry_after"].as_u64() {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(wait));
    }
    response
}

fn refuse(code: u16, description: &str) -> Response {
    error(
        code,
        json!({ "ok": false, "error_code": code, "description": description }),
    )
}

async fn call(
    State(state): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        return refuse(401, "Unauthorized");
    }
    let params: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let method = method.to_lowercase();
    let fault = {
        let mut recorded = state.recorded.lock().unwrap();
        recorded
            .faults
            .get_mut(&method)
            .and_then(VecDeque::pop_front)
    };
    if let Some((code, body)) = fault {
        return error(code, body);
    }
    match method.as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Molt", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false,
        })),
        "deletewebhook" => {
            state.recorded.lock().unwrap().webhook = None;
            state.changed.notify_waiters();
            ok(json!(true))
        }
        "getupdates" => get_updates(&state, &params).await,
        "setwebhook" => set_webhook(&state, &params),
        "getwebhookinfo" => {
            let recorded = state.recorded.lock().unwrap();
            let url = recorded
                .webhook
                .as_ref()
                .map_or("", |(url, _)| url.as_str());
            ok(json!({ "url": url, "has_custom_certificate": false,
                       "pending_update_count": recorded.queue.len() }))
        }
        "sendmessage" => send_message(&state, params),
        "getfile" => get_file(&state, &params),
        "sendchataction" => {
            state.recorded.lock().unwrap().actions.push(params);
            ok(json!(true))
        }
        _ => refuse(404, "Not Found: method not found"),
    }
}

/// `getFile`: a `file_path` valid for the download URL, or Telegram's refusals.
fn get_file(state: &Shared, params: &Value) -> Response {
    let file_id = params["file_id"].as_str().unwrap_or_default();
    let mut recorded = state.recorded.lock().unwrap();
    let Some(size) = recorded.files.get(file_id).map(Vec::len) else {
        return refuse(400, "Bad Request: invalid file_id");
    };
    if size > MAX_BOT_DOWNLOAD {
        return refuse(400, "Bad Request: file is too big");
    }
    let path = format!("photos/file_{}.jpg", recorded.file_paths.len());
    recorded.file_paths.insert(file_id.to_owned(), path.clone());
    ok(
        json!({ "file_id": file_id, "file_unique_id": format!("u{file_id}"),
               "file_size": size, "file_path": path }),
    )
}

/// `https://api.telegram.org/file/bot<token>/<file_path>`: the file, or a 404
/// (as Telegram answers a wrong token or an unknown path alike).
async fn file(
    State(state): State<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    let mut recorded = state.recorded.lock().unwrap();
    let file_id = (recorded.file_paths.iter())
        .find(|(_, known)| **known == path)
        .map(|(id, _)| id.clone());
    let bytes = file_id.and_then(|id| recorded.files.get(&id).cloned());
    match bytes {
        Some(bytes) if bot == format!("bot{TOKEN}") => {
            recorded.downloads.push(path);
            ([("content-type", "application/octet-stream")], bytes).into_response()
        }
        _ => refuse(404, "Not Found"),
    }
}

/// Like Telegram: checks the secret, then delivers queued updates to the URL
/// one at a time, dropping one only on a 2xx answer and retrying otherwise.
/// (Telegram itself wants HTTPS on port 443, 80, 88 or 8443; the fake takes
/// plain HTTP on loopback.)
fn set_webhook(state: &Arc<Shared>, params: &Value) -> Response {
    let (Some(url), secret) = (params["url"].as_str(), params["secret_token"].as_str()) else {
        return refuse(400, "Bad Request: bad webhook: URL must not be empty");
    };
    let secret = secret.unwrap_or_default().to_owned();
    let valid = secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid || secret.len() > 256 {
        return refuse(
            400,
            "Bad Request: secret token contains unallowed characters",
        );
    }
    let start = {
        let mut recorded = state.recorded.lock().unwrap();
        recorded.webhook = Some((url.to_owned(), secret));
        !std::mem::replace(&mut recorded.delivering, true)
    };
    if start {
        tokio::spawn(deliver_to_webhook(state.clone()));
    }
    state.changed.notify_waiters();
    ok(json!(true))
}

async fn deliver_to_webhook(state: Arc<Shared>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    loop {
        let changed = state.changed.notified();
        let next = {
            let mut recorded = state.recorded.lock().unwrap();
            let Some((url, secret)) = recorded.webhook.clone() else {
                recorded.delivering = false;
                return;
            };
            recorded.queue.first().cloned().map(|u| (url, secret, u))
        };
        let Some((url, secret, update)) = next else {
            changed.await;
            continue;
        };
        let id = update["update_id"].as_i64().unwrap();
        let status = http
            .post(&url)
            .header("x-telegram-bot-api-secret-token", &secret)
            .header("content-type", "application/json")
            .body(update.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        let delivered = (200..300).contains(&status);
        {
            let mut recorded = state.recorded.lock().unwrap();
            recorded.webhook_answers.push((id, status));
            if delivered {
                recorded
                    .queue
                    .retain(|u| u["update_id"].as_i64() != Some(id));
            }
        }
        if !delivered {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn get_updates(state: &Shared, params: &Value) -> Response {
    let offset = params["offset"].as_i64();
    let timeout = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
    let generation = {
        let mut recorded = state.recorded.lock().unwrap();
        if recorded.webhook.is_some() {
            return refuse(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            );
        }
        recorded.offsets.push(offset);
        // An offset confirms every update before it.
        if let Some(offset) = offset {
            recorded
                .queue
                .retain(|update| update["update_id"].as_i64().unwrap() >= offset);
        }
        recorded.poll_generation += 1;
        recorded.poll_generation
    };
    state.changed.notify_waiters();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let changed = state.changed.notified();
        {
            let recorded = state.recorded.lock().unwrap();
            if recorded.poll_generation != generation {
                return refuse(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                );
            }
            if !recorded.queue.is_empty() {
                let batch: Vec<Value> = recorded.queue.iter().take(100).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send_message(state: &Shared, params: Value) -> Response {
    let mut recorded = state.recorded.lock().unwrap();
    let chat_id = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|id| id.parse().ok()));
    let Some(chat_id) = chat_id else {
        return refuse(400, "Bad Request: chat not found");
    };
    if let Some(&to) = recorded.migrated.get(&chat_id) {
        return error(
            400,
            json!({
                "ok": false, "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": { "migrate_to_chat_id": to },
            }),
        );
    }
    let text = params["text"].as_str().unwrap_or_default();
    let visible = match params["parse_mode"].as_str() {
        Some("MarkdownV2") => match markdown_v2_visible_text(text) {
            Ok(visible) => visible,
            Err(reason) => {
                return refuse(400, &format!("Bad Request: can't parse entities: {reason}"));
            }
        },
        _ => text.to_string(),
    };
    if visible.trim().is_empty() {
        return refuse(400, "Bad Request: message text is empty");
    }
    if visible.encode_utf16().count() > 4096 {
        return refuse(400, "Bad Request: message is too long");
    }
    let mut stored = params.clone();
    stored["visible_text"] = json!(visible);
    recorded.sent.push(stored);
    let message_id = recorded.sent.len() as i64;
    ok(json!({
        "message_id": message_id,
        "chat": { "id": chat_id, "type": "private" },
        "date": 1_760_000_000,
        "text": visible,
    }))
}

/// The text a MarkdownV2 message shows, or why Telegram refuses it: a
/// reserved character outside markup that is not escaped, or markup left open.
pub fn markdown_v2_visible_text(text: &str) -> Result<String, String> {
    const RESERVED: &str = "_*[]()~`>#+-=|{}.!";
    let mut visible = String::new();
    let mut chars = text.chars().peekable();
    let mut open: Vec<char> = Vec::new();
    let mut in_link_url = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(escaped) if in_link_url || (escaped as u32) < 127 => {
                    if !in_link_url {
                        visible.push(escaped);
                    }
                }
                _ => return Err("Character '\\' is reserved and must be escaped".into()),
            }
            continue;
        }
        if in_link_url {
            if c == ')' {
                in_link_url = false;
            }
            continue;
        }
        if c == '`' {
            // Code: a block (```lang\n...```) or a span; only ` and \ escaped inside.
            let fence = chars.peek() == Some(&'`');
            if fence {
                chars.next();
                if chars.next() != Some('`') {
                    return Err("Can't find end of the entity".into());
                }
                let mut first_line = true;
                let mut body = String::new();
                loop {
                    match chars.next() {
                        None => return Err("Can't find end of pre entity".into()),
                        Some('\\') => body.push(chars.next().unwrap_or('\\')),
                        Some('`') => {
                            if chars.next() == Some('`') && chars.next() == Some('`') {
                                break;
                            }
                            return Err("Character '`' is reserved and must be escaped".into());
                        }
                        Some('\n') if first_line => {
                            first_line = false;
                            body.clear(); // the language line
                        }
                        Some(other) => body.push(other),
                    }
                }
                visible.push_str(&body);
            } else {
                loop {
                    match chars.next() {
                        None => return Err("Can't find end of code entity".into()),
                        Some('\\') => visible.push(chars.next().unwrap_or('\\')),
                        Some('`') => break,
                        Some(other) => visible.push(other),
                    }
                }
            }
            continue;
        }
        match c {
            '*' | '_' | '~' | '|' => {
                if open.last() == Some(&c) {
                    open.pop();
                } else {
                    open.push(c);
                }
            }
            '[' => open.push('['),
            ']' if open.last() == Some(&'[') && chars.peek() == Some(&'(') => {
                open.pop();
                chars.next();
                in_link_url = true;
            }
            c if RESERVED.contains(c) => {
                return Err(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ));
            }
            c => visible.push(c),
        }
    }
    if !open.is_empty() || in_link_url {
        return Err("Can't find end of the entity".into());
    }
    Ok(visible)
}
