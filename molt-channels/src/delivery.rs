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
