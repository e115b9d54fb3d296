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

/// Why an invocation, send, stream or reliable call failed.
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
    /// [`invoke_reliable`](super::HubConnection::invoke_reliable): the reliable outbox is full (the
    /// connection's [`reliable_outbox_capacity`](super::HubConnectionBuilder::reliable_outbox_capacity), or the
    /// method's policy capacity). Nothing was sent; try again once earlier calls have finished.
    #[error("the reliable outbox is full")]
    OutboxFull,
    /// [`invoke_reliable`](super::HubConnection::invoke_reliable): the call's time to live passed before a
    /// Completion arrived. The server may or may not have run it.
    #[error("the reliable call expired before the server answered")]
    Expired,
    /// [`invoke_reliable`](super::HubConnection::invoke_reliable): the policy's `max_attempts` attempts all failed
    /// (no Completion before the ack timeout, or the connection dropped). The server may or may not have run it.
    #[error("the reliable call got no answer in {attempts} attempts")]
    AttemptsExhausted {
        /// The attempts made.
        attempts: u32,
    },
    /// [`invoke_reliable`](super::HubConnection::invoke_reliable) was given upload streams: a stream cannot be
    /// sent again, so a reliable call takes plain arguments only.
    #[error("a reliable call cannot carry upload streams")]
    UploadInReliableCall,
}
