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

/// Hands `message` to the gateway (waiting for room, so order is kept) and
/// leaves a task that offers it again every `retry` until the gateway takes
/// it, then runs `taken`. Returns `false` once the stream is gone.
pub(crate) async fn offer(
    out: &Outbox,
    message: InboundMessage,
    retry: std::time::Duration,
    taken: impl FnOnce() + Send + 'static,
) -> bool {
    let (delivery, mut confirmation) = awaited_delivery(message.clone());
    if out.send(Ok(delivery)).await.is_err() {
        return false;
    }
    let out = out.clone();
    tokio::spawn(async move {
        while confirmation.await.is_err() {
            tokio::time::sleep(retry).await;
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
