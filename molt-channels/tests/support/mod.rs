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
