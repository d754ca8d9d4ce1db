//! A complete Molt channel of your own: line-based chat over TCP.
//!
//! Each TCP connection is one chat, each line it sends is a message, and each
//! reply is written back as a line. [`LineChannel`] is the receiving half (a
//! [`ChannelIngress`]) and [`LineEgress`] the sending half (a [`ChannelEgress`]).
//! [`host`] wires them to a real gateway.

pub mod host;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use host::TokioHost;
use molt_core::channel::{Ack, Capabilities, ChannelEgress, ChannelError, ChannelIngress};
use molt_core::channel::{Delivery, FormatDialect, LengthUnit};
use molt_core::message::{ChatKind, InboundMessage, OutboundMessage, Sender};
use molt_core::platform::{Clock, Entropy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs, tcp::OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// The channel's name: the key for its egress and its policy.
pub const CHANNEL: &str = "line";

type Writer = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;
type Chats = Arc<Mutex<HashMap<String, Writer>>>;
type Item = Result<Delivery, ChannelError>;

/// The receiving half: a listening socket whose connections are chats.
pub struct LineChannel {
    listener: TcpListener,
    chats: Chats,
}

/// The sending half: writes a reply to the connection its chat id names.
pub struct LineEgress(Chats);

impl LineChannel {
    /// Listens on `address`.
    pub async fn bind(address: impl ToSocketAddrs) -> std::io::Result<Self> {
        let (listener, chats) = (TcpListener::bind(address).await?, Chats::default());
        Ok(Self { listener, chats })
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The sending half; register it with the gateway under [`CHANNEL`].
    pub fn egress(&self) -> Arc<LineEgress> {
        Arc::new(LineEgress(self.chats.clone()))
    }

    /// Accepts connections until the deliveries stream is dropped.
    async fn accept(self, deliveries: mpsc::Sender<Item>) {
        // Chat ids start with a random run id, so message ids stay unique across restarts.
        let mut run = [0; 8];
        TokioHost.fill(&mut run);
        let run = u64::from_le_bytes(run);
        for number in 1u64.. {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = deliveries.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let (id, chats) = (format!("{run:016x}-{number}"), self.chats.clone());
                    tokio::spawn(serve(id, stream, chats, deliveries.clone()));
                }
                Err(err) => {
                    let _ = deliveries.send(Err(transport(err))).await;
                    tokio::time::sleep(Duration::from_millis(100)).await; // Out of file handles, say.
                }
            }
        }
    }
}

impl ChannelIngress for LineChannel {
    fn deliveries(self: Box<Self>) -> BoxStream<'static, Item> {
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(self.accept(sender));
        stream::unfold(receiver, |mut r| async { Some((r.recv().await?, r)) }).boxed()
    }
}

/// Serves one connection: each line becomes a delivery, and the next line is
/// read only once the gateway has acknowledged the last.
async fn serve(id: String, stream: TcpStream, chats: Chats, deliveries: mpsc::Sender<Item>) {
    let peer = stream.peer_addr().map(|address| address.to_string()).ok();
    let (reader, writer) = stream.into_split();
    let writer = Writer::new(tokio::sync::Mutex::new(writer));
    lock(&chats).insert(id.clone(), writer.clone());
    let mut lines = BufReader::new(reader).split(b'\n');
    let mut number = 0u64;
    while let Ok(Some(line)) = lines.next_segment().await {
        number += 1;
        let text = match String::from_utf8(line) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            _ => continue, // Not UTF-8, or blank: not a message.
        };
        let message = InboundMessage {
            channel: CHANNEL.into(),
            account: "default".into(), // One listener, one bot account.
            sender: Sender {
                id: id.clone(),
                name: peer.clone(),
            },
            chat_id: id.clone(),
            chat_kind: ChatKind::Direct,
            thread_id: None,
            message_id: format!("{id}:{number}"),
            text,
            attachments: Vec::new(),
            mentioned: false,
            sent_at: TokioHost.now(),
        };
        let (confirm, confirmed) = oneshot::channel();
        let ack = Ack::new(move || {
            let _ = confirm.send(());
        });
        let delivery = Delivery { message, ack };
        if deliveries.send(Ok(delivery)).await.is_err() {
            break; // The gateway stopped receiving.
        }
        if confirmed.await.is_err() {
            // Not acknowledged: the gateway could not take it, and TCP cannot deliver it again.
            let _ = write_line(&writer, "(busy: please send that again)").await;
        }
    }
    lock(&chats).remove(&id);
}

#[async_trait]
impl ChannelEgress for LineEgress {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: 4_000,
            length_unit: LengthUnit::Chars,
            format: FormatDialect::Plain,
            typing_refresh: None,
        }
    }

    async fn send(&self, message: OutboundMessage) -> Result<(), ChannelError> {
        let chat = &message.chat_id;
        let writer = lock(&self.0).get(chat).cloned();
        let writer = writer.ok_or_else(|| transport(format!("chat {chat} has disconnected")))?;
        write_line(&writer, &message.text).await.map_err(transport)
    }
}

async fn write_line(writer: &Writer, text: &str) -> std::io::Result<()> {
    let line = format!("{text}\n");
    writer.lock().await.write_all(line.as_bytes()).await
}

fn lock(chats: &Chats) -> std::sync::MutexGuard<'_, HashMap<String, Writer>> {
    chats.lock().unwrap_or_else(PoisonError::into_inner)
}

fn transport(reason: impl ToString) -> ChannelError {
    let (channel, reason) = (CHANNEL.into(), reason.to_string());
    ChannelError::Transport { channel, reason }
}
