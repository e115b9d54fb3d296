//! The client side adaptor: a tokio-tungstenite WebSocket as a courier [`Transport`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use courier::{Frame, Transport, TransportError, TransportInfo};
use futures::{Sink, Stream};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::websocket::{Failure, NORMAL_CLOSURE, close_error, poll_close_handshake, text};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client WebSocket to a hub, carrying hub frames; made by [`HttpConnector`](crate::HttpConnector).
///
/// Text frames carry JSON, binary frames MessagePack; pings are answered by the WebSocket library. The stream ends
/// on a clean close (codes 1000, 1001 or none) and fails on any other close code (`WebSocket closed with status
/// code: 1011 (...).`) or when the connection drops ([`TransportError::Reset`]). Closing the sink sends a close
/// frame with code 1000. A received message larger than the connector's
/// [`max_message_size`](crate::HttpConnector::max_message_size) fails the stream.
///
/// Sends are buffered by the WebSocket library up to 128 KiB (plus the frame being written); while the buffer is
/// full, `poll_ready` waits for the socket to drain it, so a slow peer slows the sender instead of growing memory.
pub struct ClientTransport {
    socket: Socket,
    info: TransportInfo,
    ended: bool,
    close_sent: bool,
}

impl std::fmt::Debug for ClientTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTransport")
            .field("info", &self.info)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl ClientTransport {
    pub(crate) fn new(socket: Socket, info: TransportInfo) -> Self {
        Self {
            socket,
            info,
            ended: false,
            close_sent: false,
        }
    }

    /// Records a failure; `None` when the socket had simply finished closing.
    fn fail(&mut self, error: tungstenite::Error) -> Option<TransportError> {
        self.ended = true;
        match Failure::from_tungstenite(error) {
            Failure::Closed => None,
            Failure::Broken(error) | Failure::Protocol(error) => Some(error),
        }
    }
}

impl Stream for ClientTransport {
    type Item = Result<Frame, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    return Poll::Ready(Some(Ok(Frame::Text(Bytes::from(text)))));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Poll::Ready(Some(Ok(Frame::Binary(bytes))));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    this.ended = true;
                    let frame = frame.as_ref();
                    let error = close_error(frame.map(|f| (u16::from(f.code), f.reason.as_str())));
                    return Poll::Ready(error.map(Err));
                }
                Some(Err(error)) => return Poll::Ready(this.fail(error).map(Err)),
                None => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(TransportError::Reset)));
                }
            }
        }
    }
}

impl Sink<Frame> for ClientTransport {
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
        let close = || {
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(NORMAL_CLOSURE),
                reason: "".into(),
            }))
        };
        let poll = poll_close_handshake(&mut this.socket, &mut this.close_sent, close, cx);
        let result = ready!(poll);
        Poll::Ready(result.or_else(|error| this.fail(error).map_or(Ok(()), Err)))
    }
}

impl Transport for ClientTransport {
    fn info(&self) -> &TransportInfo {
        &self.info
    }
}
