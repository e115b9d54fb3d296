//! An in-memory transport pair: two connected ends, for tests and for hubs inside one process.
//!
//! ```
//! use courier::transport::memory;
//! use courier::Frame;
//! use futures::{SinkExt, StreamExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (mut a, mut b) = memory::pair();
//! a.send(Frame::Text("hi".into())).await?;
//! assert_eq!(b.next().await.transpose()?, Some(Frame::Text("hi".into())));
//! a.close().await?; // a clean close ends the other side's stream
//! assert!(b.next().await.is_none());
//! # Ok::<(), courier::TransportError>(())
//! # }).unwrap();
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{Sink, Stream};

use crate::{Frame, Transport, TransportError, TransportInfo};

/// How many frames one direction of a [`pair`] holds before a sender waits.
pub const DEFAULT_CAPACITY: usize = 64;

/// One end of an in-memory transport: frames sent here come out of the other end, in order.
///
/// Each direction is a bounded queue ([`DEFAULT_CAPACITY`] frames unless made with [`pair_with`]); when it is
/// full, sending waits until the other end reads. Closing the sink is a clean close (the other end's stream ends);
/// [`MemoryTransport::break_link`] simulates a transport that breaks (the other end reads an error).
#[derive(Debug)]
pub struct MemoryTransport {
    info: TransportInfo,
    outgoing: mpsc::Sender<Result<Frame, TransportError>>,
    incoming: mpsc::Receiver<Result<Frame, TransportError>>,
}

/// Two connected ends with default [`TransportInfo`] (binary supported) and [`DEFAULT_CAPACITY`].
pub fn pair() -> (MemoryTransport, MemoryTransport) {
    pair_with(TransportInfo::new(), DEFAULT_CAPACITY)
}

/// Two connected ends; the first one (the server's end, by convention) reports `info`, and each direction holds
/// up to `capacity` frames (at least 1).
pub fn pair_with(info: TransportInfo, capacity: usize) -> (MemoryTransport, MemoryTransport) {
    // A futures channel holds `buffer + 1` items per sender.
    let buffer = capacity.max(1) - 1;
    let (a_tx, a_rx) = mpsc::channel(buffer);
    let (b_tx, b_rx) = mpsc::channel(buffer);
    (
        MemoryTransport {
            info,
            outgoing: a_tx,
            incoming: b_rx,
        },
        MemoryTransport {
            info: TransportInfo::new(),
            outgoing: b_tx,
            incoming: a_rx,
        },
    )
}

impl MemoryTransport {
    /// Breaks the transport without a clean close: the other end reads [`TransportError::Reset`] and then
    /// nothing more. This end's stream ends.
    pub fn break_link(mut self) {
        // With the queue full the error cannot be queued, and the other end then sees a clean end instead: tests
        // that break a link keep its queue from filling up.
        let _ = self.outgoing.try_send(Err(TransportError::Reset));
        self.outgoing.close_channel();
        self.incoming.close();
    }
}

impl Stream for MemoryTransport {
    type Item = Result<Frame, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.incoming).poll_next(cx)
    }
}

impl Sink<Frame> for MemoryTransport {
    type Error = TransportError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        self.outgoing
            .poll_ready(cx)
            .map_err(|_| TransportError::Reset)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), TransportError> {
        self.outgoing
            .start_send(Ok(frame))
            .map_err(|_| TransportError::Reset)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        self.outgoing.close_channel();
        Poll::Ready(Ok(()))
    }
}

impl Transport for MemoryTransport {
    fn info(&self) -> &TransportInfo {
        &self.info
    }
}
