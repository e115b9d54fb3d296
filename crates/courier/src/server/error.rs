//! The server's error types.

use courier_protocol::ProtocolError;

/// How a hub method fails.
///
/// A [`HubError::Hub`] reaches the caller with its message (ASP.NET Core's `HubException`); an
/// [`HubError::Internal`] is masked behind a generic text unless detailed errors are on.
///
/// ```
/// use courier::server::HubError;
///
/// let error = HubError::new("Not enough credit.");
/// assert_eq!(error.to_string(), "Not enough credit.");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A failure meant for the caller: its message is sent as is.
    #[error("{0}")]
    Hub(String),
    /// Any other failure: the caller sees only that the method failed (the detail only with
    /// [`enable_detailed_errors`](crate::server::HubOptions::enable_detailed_errors)).
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl HubError {
    /// A failure whose message reaches the caller.
    pub fn new(message: impl Into<String>) -> Self {
        Self::Hub(message.into())
    }

    /// Any other failure (masked unless detailed errors are on).
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    /// The detail appended to an error text: always for [`HubError::Hub`], for others only when `detailed`.
    pub(crate) fn detail(&self, detailed: bool) -> Option<String> {
        match self {
            Self::Hub(message) => Some(format!("HubException: {message}")),
            Self::Internal(error) if detailed => Some(format!("Exception: {error}")),
            Self::Internal(_) => None,
        }
    }
}

/// Why [`Hub::accept`](crate::server::Hub::accept) refused a transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The auth hook refused the connection, with its reason.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The hub is shutting down and accepts no new connections.
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// Why a send to clients failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The arguments could not be encoded.
    #[error("cannot encode the arguments: {0}")]
    Encode(#[from] ProtocolError),
}

/// Why a client-result invocation did not produce a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientResultError {
    /// The client answered with an error; its text as sent.
    #[error("{0}")]
    Client(String),
    /// No answer within the timeout.
    #[error("the client did not answer within the timeout")]
    Timeout,
    /// The connection ended (or does not exist) before the answer arrived.
    #[error("the connection is gone")]
    ConnectionGone,
    /// The connection already has its maximum of pending client results.
    #[error("too many pending client results on this connection")]
    TooManyPending,
    /// The arguments could not be encoded, or the result could not be read as the expected type.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
}

/// Why [`ConnectionHandle::reattach`](crate::server::ConnectionHandle::reattach) refused a transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReattachError {
    /// The connection does not use stateful reconnect.
    #[error("the connection does not use stateful reconnect")]
    NotStateful,
    /// The connection has ended (closed, or the disconnect timeout passed).
    #[error("the connection is gone")]
    ConnectionGone,
}

/// A refused [`ConnectionHandle::reattach`](crate::server::ConnectionHandle::reattach): why, and the transport that
/// was not taken (close it, or answer the client otherwise).
pub struct ReattachFailed<T> {
    reason: ReattachError,
    transport: T,
}

impl<T> ReattachFailed<T> {
    pub(crate) fn new(reason: ReattachError, transport: T) -> Self {
        Self { reason, transport }
    }

    /// Why the transport was refused.
    pub fn reason(&self) -> &ReattachError {
        &self.reason
    }

    /// The transport that was not taken.
    pub fn into_transport(self) -> T {
        self.transport
    }
}

impl<T> std::fmt::Debug for ReattachFailed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReattachFailed")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Display for ReattachFailed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.reason.fmt(f)
    }
}

impl<T> std::error::Error for ReattachFailed<T> {}

/// A failed send inside a hub method fails the method (masked unless detailed errors are on), so `?` works.
impl From<SendError> for HubError {
    fn from(error: SendError) -> Self {
        Self::internal(error)
    }
}

/// A failed client result inside a hub method fails the method (masked unless detailed errors are on), so `?`
/// works. Map [`ClientResultError::Client`] to [`HubError::new`] yourself to pass the client's text on.
impl From<ClientResultError> for HubError {
    fn from(error: ClientResultError) -> Self {
        Self::internal(error)
    }
}

/// A reliable send that was not accepted fails the method (masked unless detailed errors are on), so `?` works in
/// hub methods; map [`ReliableSendError::MailboxFull`](crate::server::ReliableSendError::MailboxFull) to a
/// [`HubError::new`] first to let the caller know.
impl From<crate::server::ReliableSendError> for HubError {
    fn from(error: crate::server::ReliableSendError) -> Self {
        Self::internal(error)
    }
}
