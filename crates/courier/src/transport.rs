//! The contract between a hub connection and whatever carries its frames.
//!
//! A transport is an ordered, reliable duplex of [`Frame`]s: WebSockets, an in-memory pair, a length-prefixed TCP
//! stream, QUIC. It is a [`Stream`] of received frames and a [`Sink`] of frames to send. The hub protocol rides on
//! it unchanged: JSON in text frames, MessagePack in binary frames; one frame may hold several whole hub messages,
//! and a sender never splits one message over two frames.

pub mod memory;

use std::net::SocketAddr;

use bytes::Bytes;
use futures::{Sink, Stream};

/// One transport frame.
///
/// SignalR sends JSON hub messages in text frames and MessagePack hub messages in binary frames. The payload of a
/// text frame is UTF-8 (the transport checks it where its wire demands it, as WebSockets does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (JSON hub protocol, and every handshake request).
    Text(Bytes),
    /// A binary frame (MessagePack hub protocol).
    Binary(Bytes),
}

impl Frame {
    /// The frame's payload, whatever its kind.
    pub fn payload(&self) -> &Bytes {
        match self {
            Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
        }
    }

    /// The frame's payload, taken out of the frame.
    pub fn into_payload(self) -> Bytes {
        match self {
            Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
        }
    }
}

/// What a transport knows about its connection, handed to the hub when the connection starts.
///
/// The default is [`TransportInfo::new`]: binary frames supported, nothing else known.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportInfo {
    /// The peer's address, where the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// The access token the client presented (`Authorization: Bearer` or `access_token`), for the auth hook.
    pub access_token: Option<String>,
    /// Whether the transport carries binary frames (MessagePack needs them).
    pub supports_binary: bool,
    /// Request headers (name, value) where the transport has them (e.g. the WebSocket upgrade request), for the
    /// auth hook. Names as received; compare them ignoring ASCII case.
    pub headers: Vec<(String, String)>,
    /// Query parameters (name, value) of the request that opened the transport, where it has one.
    pub query: Vec<(String, String)>,
}

impl Default for TransportInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl TransportInfo {
    /// Info for a transport that carries text and binary frames, with no address and no token.
    pub fn new() -> Self {
        Self {
            remote_addr: None,
            access_token: None,
            supports_binary: true,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    /// Adds a request header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a query parameter.
    #[must_use]
    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// The value of the first header called `name` (compared ignoring ASCII case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets the peer's address.
    #[must_use]
    pub fn with_remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }

    /// Sets the access token the client presented.
    #[must_use]
    pub fn with_access_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// Sets whether binary frames can be carried.
    #[must_use]
    pub fn with_binary(mut self, supported: bool) -> Self {
        self.supports_binary = supported;
        self
    }
}

/// Why a transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The underlying I/O failed.
    #[error("transport I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer went away without closing cleanly.
    #[error("the transport was closed by the peer without a clean close")]
    Reset,
    /// The transport's own protocol was violated (a WebSocket protocol error, a bad length prefix).
    #[error("transport protocol error: {0}")]
    Protocol(String),
}

/// An ordered duplex of frames plus what it knows of its connection.
///
/// The stream yields received frames in order and ends (`None`) when the peer closed the transport cleanly; an
/// `Err` item means it broke (a stateful-reconnect connection then waits for a new transport, while a clean end is
/// final). The sink sends frames in order; closing it closes the transport cleanly.
///
/// A transport bounds the size of the frames it accepts: the hub limits each hub message
/// ([`maximum_receive_message_size`](crate::server::HubOptions::maximum_receive_message_size)), but a frame
/// reaches it whole.
pub trait Transport:
    Stream<Item = Result<Frame, TransportError>>
    + Sink<Frame, Error = TransportError>
    + Send
    + Unpin
    + 'static
{
    /// What the transport knows of the connection.
    fn info(&self) -> &TransportInfo;
}
