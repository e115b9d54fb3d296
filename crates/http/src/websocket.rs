//! What the server and client WebSocket adaptors share: how a WebSocket ending maps onto the `Transport` contract.
//!
//! A close frame with a clean code (1000 normal, 1001 going away, or no code at all, as browsers send on `close()`)
//! ends the frame stream; any other code is an error with the text the JavaScript client shows. A connection that
//! drops without a close frame is [`TransportError::Reset`]; stateful reconnect waits for a new WebSocket only then.

use courier::TransportError;
use tokio_tungstenite::tungstenite;

/// The close code of a normal closure.
pub(crate) const NORMAL_CLOSURE: u16 = 1000;

/// What a received close frame means: `None` for a clean close, else the error to report.
pub(crate) fn close_error(code: Option<u16>, reason: &str) -> Option<TransportError> {
    match code {
        None | Some(1000 | 1001) => None,
        Some(code) => Some(TransportError::Protocol(format!(
            "WebSocket closed with status code: {code} ({reason})."
        ))),
    }
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
