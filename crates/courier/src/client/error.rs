//! The client's error types.

use courier_protocol::ProtocolError;

use super::ConnectorError;
use crate::TransportError;

/// Why [`HubConnectionBuilder::start`](super::HubConnectionBuilder::start) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The connector could not open a transport.
    #[error("connecting failed: {0}")]
    Connect(ConnectorError),
    /// The server refused the handshake, with its reason.
    #[error("Server returned handshake error: {0}")]
    Handshake(String),
    /// The server's handshake response is malformed.
    #[error("Error parsing handshake response: {0}")]
    InvalidHandshake(ProtocolError),
    /// No handshake response within the handshake timeout.
    #[error("Server timeout elapsed without receiving a handshake response.")]
    HandshakeTimeout,
    /// The transport failed during the handshake.
    #[error("the transport failed during the handshake: {0}")]
    Transport(#[from] TransportError),
    /// The server closed the transport before answering the handshake.
    #[error("the server closed the transport during the handshake")]
    Closed,
}

/// Why an invocation, send or stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The server answered with an error Completion; the text is the server's.
    #[error("{0}")]
    Hub(String),
    /// An argument could not be encoded, or the result could not be decoded into the requested type.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// The connection ended (or reconnected to a new connection) before the answer arrived.
    #[error("Invocation canceled due to the underlying connection being closed.")]
    ConnectionClosed,
    /// The connection was already closed (stopped, or closed for good) when the call was made.
    #[error("Cannot send data if the connection is not in the 'Connected' State.")]
    NotConnected,
}
