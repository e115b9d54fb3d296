//! What the server and client WebSocket adaptors share: how a WebSocket ending maps onto the `Transport` contract,
//! the text frame check, and the close handshake.
//!
//! A close frame with a clean code (1000 normal, 1001 going away, or no code at all, as browsers send on `close()`)
//! ends the frame stream; any other code is an error with the text the JavaScript client shows. A connection that
//! drops without a close frame is [`TransportError::Reset`]; stateful reconnect waits for a new WebSocket only then.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use courier::TransportError;
use futures::Sink;
use tokio_tungstenite::tungstenite;

/// The close code of a normal closure.
pub(crate) const NORMAL_CLOSURE: u16 = 1000;

/// What a received close message means, from its close frame's code and reason if it had one: `None` for a clean
/// close, else the error to report.
pub(crate) fn close_error(frame: Option<(u16, &str)>) -> Option<TransportError> {
    match frame {
        None | Some((1000 | 1001, _)) => None,
        Some((code, reason)) => Some(TransportError::Protocol(format!(
            "WebSocket closed with status code: {code} ({reason})."
        ))),
    }
}

/// A text frame's payload as the WebSocket library's text type (axum's or tungstenite's `Utf8Bytes`), which must
/// be valid UTF-8.
pub(crate) fn text<T: TryFrom<Bytes>>(payload: Bytes) -> Result<T, TransportError> {
    T::try_from(payload)
        .map_err(|_| TransportError::Protocol("a text frame must be valid UTF-8".into()))
}

/// Closes a socket politely: sends `close` (a close frame) unless `close_sent` says it went already, then waits for
/// the socket to close. Errors are the library's, for the adaptor to classify.
pub(crate) fn poll_close_handshake<S, M>(
    socket: &mut S,
    close_sent: &mut bool,
    close: impl FnOnce() -> M,
    cx: &mut Context<'_>,
) -> Poll<Result<(), S::Error>>
where
    S: Sink<M> + Unpin,
{
    if !*close_sent {
        ready!(Pin::new(&mut *socket).poll_ready(cx))?;
        Pin::new(&mut *socket).start_send(close())?;
        *close_sent = true;
    }
    Pin::new(socket).poll_close(cx)
}

/// What a WebSocket library error means for the transport.
pub(crate) enum Failure {
    /// The WebSocket is already closed after a close handshake: the stream has ended.
    Closed,
    /// The connection broke (I/O failure, reset without a close handshake).
    Broken(TransportError),
    /// The peer broke the WebSocket protocol or a limit (message too big, bad UTF-8).
    Protocol(TransportError),
}

impl Failure {
    /// Classifies a tungstenite error.
    pub(crate) fn from_tungstenite(error: tungstenite::Error) -> Self {
        use tungstenite::Error;
        use tungstenite::error::ProtocolError;
        match error {
            Error::ConnectionClosed | Error::AlreadyClosed => Self::Closed,
            Error::Io(error) => Self::Broken(TransportError::Io(error)),
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Self::Broken(TransportError::Reset)
            }
            other => Self::Protocol(TransportError::Protocol(other.to_string())),
        }
    }
}
