//! Starts the real `moltworker` binary and talks to it over HTTP and WebSocket.
#![allow(dead_code)]

pub mod device;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const WAIT: Duration = Duration::from_secs(20);

/// Model provider variables, cleared so a developer's own keys never reach the tests.
const MODEL_VARIABLES: [&str; 11] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AI_GATEWAY_API_KEY",
    "AI_GATEWAY_BASE_URL",
    "CLOUDFLARE_AI_GATEWAY_API_KEY",
    "CF_AI_GATEWAY_ACCOUNT_ID",
    "CF_AI_GATEWAY_GATEWAY_ID",
    "CF_AI_GATEWAY_MODEL",
    "MOLT_MODEL",
];

/// A running gateway process, killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub address: String,
    pub token: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts the binary on a free loopback port with `state_dir`, and reads the
    /// Control UI URL it prints to learn the address and token.
    pub fn start(state_dir: &Path, envs: &[(&str, &str)]) -> Gateway {
        Self::start_logging(state_dir, envs, Stdio::inherit())
    }

    /// [`Gateway::start`], with the process's log (stderr) going to `log`.
    pub fn start_logging(
        state_dir: &Path,
        envs: &[(&str, &str)],
        log: impl Into<Stdio>,
    ) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moltworker"))
            .env("MOLT_STATE_DIR", state_dir)
            .env("MOLT_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env_remove("MOLTBOT_GATEWAY_TOKEN")
            .env_remove("MOLT_AI_CONFIG")
            .env_remove("CF_ACCESS_TEAM_DOMAIN")
            .env_remove("CF_ACCESS_AUD")
            .env_remove("MOLT_ACCESS_CERTS_URL")
            .envs(MODEL_VARIABLES.iter().map(|name| (*name, "")))
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the moltworker binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("Control UI: http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (address, rest) = url.split_once('/').unwrap();
        let token = rest
            .split_once("?token=")
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default();
        Gateway {
            child,
            address: address.to_owned(),
            token,
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A plain HTTP GET with the gateway token (when known); returns the
    /// status code and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let token = (!self.token.is_empty()).then_some(self.token.as_str());
        self.get_with(path, token).await
    }

    /// A plain HTTP GET with `bearer` as the token, or none.
    pub async fn get_with(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let authorization = bearer.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        self.http("GET", path, &headers).await
    }

    /// A plain HTTP request with no body and `headers`; returns the status
    /// code and body.
    pub async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(&self.address).await.unwrap();
        let headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.address
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Opens the WebSocket, optionally with `?token=` and/or a Bearer header.
    pub async fn socket(&self, query_token: Option<&str>, header_token: Option<&str>) -> Client {
        let url = match query_token {
            Some(token) => format!("ws://{}/ws?token={token}", self.address),
            None => format!("ws://{}/ws", self.address),
        };
        let mut request = url.into_client_request().unwrap();
        if let Some(token) = header_token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket upgrade");
        let mut client = Client {
            socket,
            next_id: 0,
            nonce: String::new(),
        };
        let challenge = client.next_frame().await.expect("a challenge frame");
        assert_eq!(challenge["event"], "connect.challenge", "{challenge}");
        client.nonce = challenge["payload"]["nonce"].as_str().unwrap().to_owned();
        client
    }

    /// A connected client (token in the connect frame).
    pub async fn connected(&self) -> Client {
        let mut client = self.socket(None, None).await;
        let hello = client.connect(Some(&self.token)).await;
        assert_eq!(hello["ok"], true, "{hello}");
        client
    }
}

pub struct Client {
    pub socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    /// The nonce of the server's `connect.challenge`.
    pub nonce: String,
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Client {
    /// The next JSON frame, or `None` once the socket closed.
    pub async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a frame in time")?;
            match message.ok()? {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next response frame (events before it are skipped), or `None` once the socket closed.
    pub async fn next_response(&mut self) -> Option<Value> {
        loop {
            let frame = self.next_frame().await?;
            if frame["type"] == "res" {
                return Some(frame);
            }
        }
    }

    /// Waits for the close frame and returns its code and reason.
    pub async fn closed(&mut self) -> Closed {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed {
                        code: frame.code.into(),
                        reason: frame.reason.to_string(),
                    };
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    panic!("closed without a reason")
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a request and returns its response, collecting events that arrive first.
    pub async fn request(&mut self, method: &str, params: Value) -> (Value, Vec<Value>) {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        self.send_text(
            &json!({ "type": "req", "id": id, "method": method, "params": params }).to_string(),
        )
        .await;
        let mut events = Vec::new();
        loop {
            let frame = self.next_frame().await.expect("a response before close");
            if frame["type"] == "res" && frame["id"] == id.as_str() {
                return (frame, events);
            }
            events.push(frame);
        }
    }

    pub async fn connect(&mut self, token: Option<&str>) -> Value {
        let mut params = json!({ "minProtocol": 3, "maxProtocol": 3, "client": { "id": "test", "version": "0", "platform": "test", "mode": "test" } });
        if let Some(token) = token {
            params["auth"] = json!({ "token": token });
        }
        self.request("connect", params).await.0
    }

    /// Sends a chat message and returns the streamed chat events up to the final one.
    pub async fn chat(&mut self, text: &str, key: &str) -> Vec<Value> {
        let (response, mut events) = self
            .request(
                "chat.send",
                json!({ "sessionKey": "main", "message": text, "idempotencyKey": key }),
            )
            .await;
        assert_eq!(response["ok"], true, "{response}");
        events.retain(|e| e["payload"]["runId"] == key);
        while !events.iter().any(|e| e["payload"]["state"] == "final") {
            let frame = self.next_frame().await.expect("chat events");
            if frame["event"] == "chat" && frame["payload"]["runId"] == key {
                events.push(frame);
            }
        }
        events
    }

    /// The texts of the session's history.
    pub async fn history(&mut self) -> Vec<(String, String)> {
        let (response, _) = self
            .request("chat.history", json!({ "sessionKey": "main" }))
            .await;
        response["payload"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"][0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }
}

/// Waits (up to 20 s) until `condition` holds, else fails saying `what`.
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    until_for(what, std::time::Duration::from_secs(20), condition).await;
}

/// Waits up to `limit` for `condition`, failing with `what`.
pub async fn until_for(what: &str, limit: std::time::Duration, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
