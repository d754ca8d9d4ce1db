//! A cancellation signal that any number of tasks can wait on.

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};
use std::sync::{Arc, Mutex};

/// Cancels a run. Clones share one signal.
#[derive(Clone)]
pub struct CancelToken {
    trigger: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    signal: Shared<oneshot::Receiver<()>>,
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A token that is not cancelled yet.
    pub fn new() -> Self {
        let (sender, receiver) = oneshot::channel();
        Self {
            trigger: Arc::new(Mutex::new(Some(sender))),
            signal: receiver.shared(),
        }
    }

    /// Cancels every run holding a clone of this token.
    pub fn cancel(&self) {
        if let Some(sender) = self
            .trigger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = sender.send(());
        }
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.trigger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Completes once the token is cancelled.
    pub fn cancelled(&self) -> BoxFuture<'static, ()> {
        // The sender lives as long as the token does, so the receiver only
        // resolves through `cancel`.
        self.signal.clone().map(|_| ()).boxed()
    }
}
