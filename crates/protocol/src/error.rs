//! The error type of every fallible operation in this crate.

use crate::Protocol;

/// Why bytes could not be read as (or a value could not be written as) SignalR protocol data.
///
/// Every decoding error is fatal for the connection it came from: the official server closes the
/// connection after any parser error (HUB-PROTOCOL.md §9). Where the .NET implementation has a
/// well-known text, the message matches it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A single message (including its framing) is larger than the configured limit.
    #[error(
        "The maximum message size of {limit}B was exceeded. The message size can be configured in AddHubOptions."
    )]
    MessageTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The input ended in the middle of a message (a partial record or length prefix was left).
    #[error("Connection terminated while reading a message.")]
    ConnectionTerminated,
    /// A MessagePack length prefix is malformed or announces a message of 2 GiB or more.
    #[error("Messages over 2GB in size are not supported.")]
    LengthPrefixTooLarge,
    /// A message is malformed: bad JSON or MessagePack, a missing or mistyped field, an invalid value.
    /// The text says which field and what is wrong.
    #[error("{0}")]
    InvalidMessage(String),
    /// A handshake request or response is malformed.
    #[error("{0}")]
    InvalidHandshake(String),
    /// The server sent something that is not a handshake response where one was expected.
    #[error("Expected a handshake response from the server.")]
    NotAHandshakeResponse,
    /// A negotiate request or response is malformed.
    #[error("{0}")]
    InvalidNegotiate(String),
    /// A payload encoded for one protocol was put into a message written with the other one.
    #[error("cannot write a {payload:?} payload into a {message:?} message")]
    PayloadProtocolMismatch {
        /// The protocol the message is being written with.
        message: Protocol,
        /// The protocol the payload was encoded with.
        payload: Protocol,
    },
    /// A payload could not be converted from or to a Rust value (serde error text included).
    #[error("Error binding payload: {0}")]
    Binding(String),
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::InvalidMessage`].
    pub(crate) fn invalid(text: impl Into<String>) -> Self {
        Self::InvalidMessage(text.into())
    }
}
