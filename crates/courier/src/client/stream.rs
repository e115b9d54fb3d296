//! The items of a server-to-client stream, as a [`Stream`].

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use courier_protocol::{ByteString, Payload};
use futures::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::InvokeError;

/// The items of a stream started with [`HubConnection::stream`](super::HubConnection::stream).
///
/// Yields each item bound to `T`, then ends when the server completes the stream; a failed stream yields one
/// `Err` (the server's error text, or [`InvokeError::ConnectionClosed`]) and ends. Items are buffered up to a
/// bound; while the buffer is full the connection stops reading from the server, so a slow reader slows the
/// connection instead of growing memory. Dropping the stream before it ended cancels it on the server
/// (CancelInvocation).
pub struct HubStream<T> {
    id: ByteString,
    items: mpsc::Receiver<Result<Payload, InvokeError>>,
    cancel: mpsc::UnboundedSender<ByteString>,
    done: bool,
    item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for HubStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubStream")
            .field("id", &self.id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> HubStream<T> {
    pub(super) fn new(
        id: ByteString,
        items: mpsc::Receiver<Result<Payload, InvokeError>>,
        cancel: mpsc::UnboundedSender<ByteString>,
    ) -> Self {
        Self {
            id,
            items,
            cancel,
            done: false,
            item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Stream for HubStream<T> {
    type Item = Result<T, InvokeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.items.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(item))) => {
                Poll::Ready(Some(item.deserialize().map_err(InvokeError::from)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
        }
    }
}

impl<T> Drop for HubStream<T> {
    fn drop(&mut self) {
        if !self.done {
            // One message per stream at most, so this queue is bounded by the number of live streams. A driver
            // that has ended is not listening, and then there is nothing to cancel.
            let _ = self.cancel.send(self.id.clone());
        }
    }
}
