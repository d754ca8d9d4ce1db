//! End to end: TCP clients chat through the line channel with a real gateway.

use custom_channel::{CHANNEL, LineChannel, host};
use molt_core::gateway::ReceiveSummary;
use molt_core::store::MemoryStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// A chat client: one TCP connection.
struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(address: SocketAddr) -> Self {
        let stream = timeout(LIMIT, TcpStream::connect(address))
            .await
            .unwrap()
            .unwrap();
        let (reader, writer) = stream.into_split();
        Self {
            lines: BufReader::new(reader).lines(),
            writer,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        timeout(LIMIT, self.writer.write_all(bytes))
            .await
            .unwrap()
            .unwrap();
    }

    async fn read_line(&mut self) -> String {
        let line = timeout(LIMIT, self.lines.next_line()).await;
        line.expect("a reply in time")
            .unwrap()
            .expect("the connection stays open")
    }

    async fn say(&mut self, text: &str) -> String {
        self.write(format!("{text}\n").as_bytes()).await;
        self.read_line().await
    }
}

/// A gateway over `store`, receiving from a line channel on a free port.
async fn start(store: &Arc<MemoryStore>) -> (SocketAddr, JoinHandle<ReceiveSummary>) {
    let gateway = host::echo_gateway(store.clone());
    let channel = LineChannel::bind("127.0.0.1:0").await.unwrap();
    let address = channel.local_addr().unwrap();
    gateway.register_egress(CHANNEL, channel.egress());
    let receiving = tokio::spawn(async move { gateway.receive(Box::new(channel)).await });
    (address, receiving)
}

#[tokio::test]
async fn each_client_gets_its_own_replies() {
    let (address, _) = start(&Arc::default()).await;
    let (mut alice, mut bob) = (
        Client::connect(address).await,
        Client::connect(address).await,
    );
    assert_eq!(
        alice.say("hello from alice").await,
        "echo: hello from alice"
    );
    assert_eq!(bob.say("hello from bob").await, "echo: hello from bob");
    // Both at once: each reply goes back to the connection that asked.
    alice.write(b"second from alice\n").await;
    bob.write(b"second from bob\r\n").await;
    assert_eq!(bob.read_line().await, "echo: second from bob");
    assert_eq!(alice.read_line().await, "echo: second from alice");
}

#[tokio::test]
async fn bad_lines_are_skipped_and_the_chat_goes_on() {
    let (address, _) = start(&Arc::default()).await;
    let mut client = Client::connect(address).await;
    // A blank line, a whitespace-only line and a line that is not UTF-8 get no
    // reply; the next real line is the first to be answered.
    client.write(b"\n   \n\xff\xfe\n").await;
    assert_eq!(client.say("still here?").await, "echo: still here?");
    assert_eq!(client.say("and again").await, "echo: and again");
}

#[tokio::test]
async fn a_restarted_channel_is_not_mistaken_for_the_old_one() {
    // The same store across a restart: the inbox still holds the first run's
    // message ids, and the new run's must not collide with them.
    let store = Arc::default();
    let (address, receiving) = start(&store).await;
    let mut before = Client::connect(address).await;
    assert_eq!(before.say("hello").await, "echo: hello");
    receiving.abort();

    let (address, _) = start(&store).await;
    let mut after = Client::connect(address).await;
    assert_eq!(after.say("hello").await, "echo: hello");
}
