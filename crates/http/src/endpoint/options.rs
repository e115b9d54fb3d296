//! The endpoint's settings.

use std::time::Duration;

/// Settings of a [`HubEndpoint`](crate::HubEndpoint), with ASP.NET Core's defaults where it has them.
///
/// ```
/// use std::time::Duration;
/// use courier_http::EndpointOptions;
///
/// let options = EndpointOptions::new()
///     .allow_stateful_reconnects(true)
///     .disconnect_timeout(Duration::from_secs(30))
///     .max_message_size(256 * 1024);
/// assert!(options.stateful_reconnects_allowed());
/// ```
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    pub(crate) allow_stateful_reconnects: bool,
    pub(crate) disconnect_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) read_buffer_size: usize,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointOptions {
    /// The defaults: no stateful reconnect, a 15 s disconnect timeout, 64 KiB WebSocket messages, a 4 KiB read
    /// buffer.
    pub fn new() -> Self {
        Self {
            allow_stateful_reconnects: false,
            disconnect_timeout: Duration::from_secs(15),
            max_message_size: 65_536,
            read_buffer_size: 4096,
        }
    }

    /// Whether a client that asks for stateful reconnect (`useStatefulReconnect=true` on negotiate) gets it
    /// (`AllowStatefulReconnects`). Default: false.
    #[must_use]
    pub fn allow_stateful_reconnects(mut self, allow: bool) -> Self {
        self.allow_stateful_reconnects = allow;
        self
    }

    /// Whether stateful reconnect is granted to clients that ask for it.
    pub fn stateful_reconnects_allowed(&self) -> bool {
        self.allow_stateful_reconnects
    }

    /// How long a negotiated connection waits for its first WebSocket, and a stateful connection whose WebSocket
    /// broke waits for a new one, before its id is forgotten (`DisconnectTimeout`). Default: 15 s.
    #[must_use]
    pub fn disconnect_timeout(mut self, timeout: Duration) -> Self {
        self.disconnect_timeout = timeout;
        self
    }

    /// The largest WebSocket message (and frame) accepted from a client, in bytes. A larger one fails the
    /// transport (the WebSocket closes with 1009, Message Too Big) and so ends its connection. One WebSocket
    /// message may hold several hub messages, so keep this above the hub's maximum receive message size (32 KiB
    /// by default). Default: 64 KiB, ASP.NET Core's transport buffer size.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many bytes each WebSocket reads from its socket at once (tungstenite's `read_buffer_size`). Each
    /// connection holds a buffer this large for its whole life, zero-filled and resident, so it sets most of an idle
    /// connection's memory; a larger message is still accepted (up to [`max_message_size`](Self::max_message_size)),
    /// read in several chunks. Default: 4 KiB (tungstenite's own default is 128 KiB).
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes;
        self
    }
}
