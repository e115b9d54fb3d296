//! The server side adaptor: an axum [`WebSocket`] as a courier [`Transport`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use courier::{Frame, Transport, TransportError, TransportInfo};
use futures::{Sink, Stream};
use tokio::sync::oneshot;

use crate::websocket::{Failure, NORMAL_CLOSURE, close_error, poll_close_handshake, text};

/// How a server WebSocket transport ended, reported to the endpoint when the transport is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A close frame went one way or the other: the connection ended on purpose.
    Closed,
    /// The connection broke without a close handshake: a stateful connection may be re-attached.
    Broken,
    /// The transport was dropped while the WebSocket was still open: its connection is done with it.
    Dropped,
}

/// A WebSocket accepted by a [`HubEndpoint`](crate::HubEndpoint), carrying hub frames.
///
/// Text frames carry JSON, binary frames MessagePack; pings are answered by the WebSocket library. The stream ends
/// on a clean close (codes 1000, 1001 or none) and fails on any other close code or when the connection drops
/// ([`TransportError::Reset`]). Closing the sink sends a close frame with code 1000. A received message larger
/// than the endpoint's [`max_message_size`](crate::EndpointOptions::max_message_size) fails the stream.
///
/// Sends are buffered by the WebSocket library up to 128 KiB (plus the frame being written); while the buffer is
/// full, `poll_ready` waits for the socket to drain it, so a slow peer slows the sender instead of growing memory.
pub struct WebSocketTransport {
    socket: WebSocket,
    info: TransportInfo,
    ending: Option<Ending>,
    close_sent: bool,
    on_drop: Option<oneshot::Sender<Ending>>,
    /// Fires when a newer WebSocket took the connection over (stateful reconnect).
    superseded: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for WebSocketTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketTransport")
            .field("info", &self.info)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

impl WebSocketTransport {
    /// Wraps an upgraded socket; the receiver learns how the transport ended once it is dropped. When
    /// `superseded` fires, the transport fails as if its connection had dropped.
    pub(crate) fn new(
        socket: WebSocket,
        info: TransportInfo,
        superseded: Option<oneshot::Receiver<()>>,
    ) -> (Self, oneshot::Receiver<Ending>) {
        let (on_drop, ended) = oneshot::channel();
        let transport = Self {
            socket,
            info,
            ending: None,
            close_sent: false,
            on_drop: Some(on_drop),
            superseded,
        };
        (transport, ended)
    }

    /// Whether a newer WebSocket took the connection over; the transport is then broken.
    fn poll_superseded(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(superseded) = &mut self.superseded else {
            return false;
        };
        match Pin::new(superseded).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.superseded = None;
                self.ending.get_or_insert(Ending::Broken);
                true
            }
            // The registry forgot the token: nothing can take this WebSocket over any more.
            Poll::Ready(Err(_)) => {
                self.superseded = None;
                false
            }
            Poll::Pending => false,
        }
    }

    /// The error for a send on a transport that broke.
    fn broken(&self) -> Option<TransportError> {
        (self.ending == Some(Ending::Broken)).then_some(TransportError::Reset)
    }

    /// Records a failure and turns it into what the caller reports.
    fn fail(&mut self, error: axum::Error) -> Option<TransportError> {
        let failure = match error
            .into_inner()
            .downcast::<tokio_tungstenite::tungstenite::Error>()
        {
            Ok(error) => Failure::from_tungstenite(*error),
            Err(other) => Failure::Protocol(TransportError::Protocol(other.to_string())),
        };
        match failure {
            Failure::Closed => {
                self.ending.get_or_insert(Ending::Closed);
                None
            }
            Failure::Broken(error) => {
                self.ending.get_or_insert(Ending::Broken);
                Some(error)
            }
            Failure::Protocol(error) => {
                self.ending.get_or_insert(Ending::Closed);
                Some(error)
            }
        }
    }
}

impl Drop for WebSocketTransport {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            // The endpoint may have stopped listening (it is shutting down); nothing to tell then.
            let _ = on_drop.send(self.ending.unwrap_or(Ending::Dropped));
        }
    }
}

impl Stream for WebSocketTransport {
    type Item = Result<Frame, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.poll_superseded(cx) {
            return Poll::Ready(Some(Err(TransportError::Reset)));
        }
        loop {
            if this.ending.is_some() {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    return Poll::Ready(Some(Ok(Frame::Text(Bytes::from(text)))));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Poll::Ready(Some(Ok(Frame::Binary(bytes))));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    this.ending = Some(Ending::Closed);
                    let frame = frame.as_ref();
                    let error = close_error(frame.map(|f| (f.code, f.reason.as_str())));
                    return Poll::Ready(error.map(Err));
                }
                Some(Err(error)) => return Poll::Ready(this.fail(error).map(Err)),
                None => {
                    // The socket ended without a close frame reaching us.
                    this.ending = Some(Ending::Broken);
                    return Poll::Ready(Some(Err(TransportError::Reset)));
                }
            }
        }
    }
}

impl Sink<Frame> for WebSocketTransport {
    type Error = TransportError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        let result = ready!(Pin::new(&mut self.socket).poll_ready(cx));
        Poll::Ready(result.map_err(|error| self.fail(error).unwrap_or(TransportError::Reset)))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), TransportError> {
        let message = match frame {
            Frame::Text(bytes) => Message::Text(text(bytes)?),
            Frame::Binary(bytes) => Message::Binary(bytes),
        };
        if let Some(error) = self.broken() {
            return Err(error);
        }
        let result = Pin::new(&mut self.socket).start_send(message);
        result.map_err(|error| self.fail(error).unwrap_or(TransportError::Reset))
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        let result = ready!(Pin::new(&mut self.socket).poll_flush(cx));
        Poll::Ready(result.map_err(|error| self.fail(error).unwrap_or(TransportError::Reset)))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        let this = &mut *self;
        if this.broken().is_some() {
            // Superseded or dropped: there is no peer to say goodbye to.
            return Poll::Ready(Ok(()));
        }
        let close = || {
            Message::Close(Some(CloseFrame {
                code: NORMAL_CLOSURE,
                reason: Utf8Bytes::from_static(""),
            }))
        };
        let poll = poll_close_handshake(&mut this.socket, &mut this.close_sent, close, cx);
        if this.close_sent {
            // The close frame went: the connection ends on purpose, whatever the closing does.
            this.ending.get_or_insert(Ending::Closed);
        }
        let result = ready!(poll);
        Poll::Ready(result.or_else(|error| this.fail(error).map_or(Ok(()), Err)))
    }
}

impl Transport for WebSocketTransport {
    fn info(&self) -> &TransportInfo {
        &self.info
    }
}
