//! Fakes of the three platforms, a real gateway, and what every test waits with.
#![allow(dead_code)]

pub mod discord;
pub mod gateway;
pub mod slack;
pub mod telegram;

use futures::StreamExt;
use molt_core::channel::{ChannelError, Delivery};
use std::time::{Duration, Instant};

/// An ingress's deliveries.
pub type Deliveries = futures::stream::BoxStream<'static, Result<Delivery, ChannelError>>;

/// The next delivery (or error); fails the test after 10 s or when the stream ends.
pub async fn next(deliveries: &mut Deliveries) -> Result<Delivery, ChannelError> {
    tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the stream goes on")
}

/// Polls `check` until it holds; fails the test after 15 s.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A real JPEG and a real PNG (16×16 pixels), as users send them.
pub const JPEG: &[u8] = include_bytes!("files/pixel.jpg");
pub const PNG: &[u8] = include_bytes!("files/pixel.png");

/// A server on another loopback port, standing for a host that is not the
/// platform's: it counts the connections it gets.
pub struct Elsewhere {
    pub base: String,
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Elsewhere {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        Self {
            base,
            connections,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}
