//! Handing messages to the gateway and learning whether it took them.

use futures::stream::BoxStream;
use molt_core::channel::{Ack, ChannelError, Delivery};
use molt_core::message::InboundMessage;
use tokio::sync::{mpsc, oneshot};

/// Where an adapter's background task puts what it receives.
pub(crate) type Outbox = mpsc::Sender<Result<Delivery, ChannelError>>;

/// A delivery, and the receiver that completes when the gateway acknowledges
/// it (or fails when the acknowledgement is dropped unconfirmed).
pub(crate) fn awaited_delivery(message: InboundMessage) -> (Delivery, oneshot::Receiver<()>) {
    let (confirmed, confirmation) = oneshot::channel();
    let ack = Ack::new(move || {
        let _ = confirmed.send(());
    });
    (Delivery { message, ack }, confirmation)
}

/// The items of `receiver` as a stream, ending when every sender is gone.
pub(crate) fn receiver_stream(
    receiver: mpsc::Receiver<Result<Delivery, ChannelError>>,
) -> BoxStream<'static, Result<Delivery, ChannelError>> {
    Box::pin(futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|item| (item, receiver))
    }))
}

/// A message the gateway did not take is offered again after this long.
const REDELIVERY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Hands `message` to the gateway (waiting for room, so order is kept) and
/// leaves a task that offers it again every [`REDELIVERY_DELAY`] until the
/// gateway takes it, then runs `taken` (dropped unrun if the stream goes).
/// Returns `false` once the stream is gone.
pub(crate) async fn offer(
    out: &Outbox,
    message: InboundMessage,
    taken: impl FnOnce() + Send + 'static,
) -> bool {
    let (delivery, mut confirmation) = awaited_delivery(message.clone());
    if out.send(Ok(delivery)).await.is_err() {
        return false;
    }
    let out = out.clone();
    tokio::spawn(async move {
        while confirmation.await.is_err() {
            tokio::time::sleep(REDELIVERY_DELAY).await;
            let (delivery, next) = awaited_delivery(message.clone());
            if out.send(Ok(delivery)).await.is_err() {
                return;
            }
            confirmation = next;
        }
        taken();
    });
    true
}

/// The most recent ids seen, up to a bound: how redeliveries of something
/// already taken are recognised without growing forever.
pub(crate) struct RecentIds {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    /// An empty set that remembers up to `capacity` ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ids: Default::default(),
            order: Default::default(),
            capacity,
        }
    }

    /// Remembers `id`, forgetting the oldest one beyond the bound.
    pub(crate) fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
    }

    /// Whether `id` is remembered.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn recent_ids_forget_the_oldest_beyond_the_bound() {
        let mut ids = RecentIds::new(2);
        for id in ["a", "b", "b", "c"] {
            ids.insert(id.into());
        }
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
    }
}
