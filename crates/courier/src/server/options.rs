//! Hub options, named and defaulted as ASP.NET Core's `HubOptions` (HUB-PROTOCOL.md §8).

use std::time::Duration;

use crate::server::{ConnectionId, Identity};

/// Limits and timeouts of every connection of a hub. Names and defaults follow ASP.NET Core's `HubOptions`.
///
/// ```
/// use std::time::Duration;
/// use courier::server::HubOptions;
///
/// let options = HubOptions::default().keep_alive_interval(Duration::from_secs(5)).enable_detailed_errors(true);
/// assert_eq!(options.maximum_receive_message_size, Some(32 * 1024));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubOptions {
    /// Largest hub message accepted from a client, framing included; `None` is unlimited. A larger one ends the
    /// connection with a Close error. Default 32 KiB.
    pub maximum_receive_message_size: Option<usize>,
    /// A Ping is sent when nothing was sent for this long. Default 15 s.
    pub keep_alive_interval: Duration,
    /// The connection is closed when nothing was received for this long, counted once the client sent its first
    /// Ping (as .NET does). Default 30 s.
    pub client_timeout_interval: Duration,
    /// How long a client has to complete the handshake. Default 15 s.
    pub handshake_timeout: Duration,
    /// Invocations of one connection that run at once, at least 1. A further invocation waits for one to finish,
    /// and the connection reads nothing more from its client meanwhile (as .NET). Server-to-client streams and calls
    /// with upload streams do not count (as .NET: such a call must go on reading its own items). Default 1.
    pub maximum_parallel_invocations_per_client: usize,
    /// Items buffered per client-to-server (upload) stream. When a stream's buffer is full, the connection reads
    /// nothing more from its client until the method takes an item (backpressure). Default 10.
    pub stream_buffer_capacity: usize,
    /// Bytes of sent, unacknowledged messages kept for stateful reconnect. When more are buffered, further sends
    /// wait for the client's acks; as in .NET, the message that takes the buffer over the bound is still sent, and
    /// so is a larger message once the buffer is empty. Replies the client's own messages call for at once (error
    /// Completions, say) are held meanwhile, up to as many bytes again; a client that keeps sending without
    /// acknowledging beyond that is disconnected with `Connection closed with an error.`. Default 100 000.
    pub stateful_reconnect_buffer_size: usize,
    /// Whether error texts sent to clients include details of the failure. Default false.
    pub enable_detailed_errors: bool,
    /// Messages waiting in one connection's outbound queue: sends from other connections and the app, and the
    /// connection's own completions and stream items. It is one FIFO queue, so what a method sends to its caller
    /// before returning reaches the client before the method's Completion. Default 64.
    pub outbound_queue_capacity: usize,
    /// How long a send to a connection whose outbound queue is full (or whose transport does not accept a frame)
    /// may wait; then that connection is aborted, as .NET's `TransportSendTimeout`. Default 10 s.
    pub send_timeout: Duration,
    /// How long the server waits for a client's answer to a client-result invocation. Default 30 s.
    pub client_result_timeout: Duration,
    /// Client-result invocations one connection may have pending at once; a further one fails at once with
    /// [`ClientResultError::TooManyPending`](crate::server::ClientResultError::TooManyPending). Default 100.
    pub maximum_pending_client_results: usize,
    /// How long a connection whose transport broke waits for
    /// [`ConnectionHandle::reattach`](crate::server::ConnectionHandle::reattach) under stateful reconnect, as .NET's `DisconnectTimeout`.
    /// Default 15 s.
    pub disconnect_timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            maximum_receive_message_size: Some(32 * 1024),
            keep_alive_interval: Duration::from_secs(15),
            client_timeout_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(15),
            maximum_parallel_invocations_per_client: 1,
            stream_buffer_capacity: 10,
            stateful_reconnect_buffer_size: 100_000,
            enable_detailed_errors: false,
            outbound_queue_capacity: 64,
            send_timeout: Duration::from_secs(10),
            client_result_timeout: Duration::from_secs(30),
            maximum_pending_client_results: 100,
            disconnect_timeout: Duration::from_secs(15),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl HubOptions {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`HubOptions::maximum_receive_message_size`].
    maximum_receive_message_size: Option<usize>,
    /// Sets [`HubOptions::keep_alive_interval`].
    keep_alive_interval: Duration,
    /// Sets [`HubOptions::client_timeout_interval`].
    client_timeout_interval: Duration,
    /// Sets [`HubOptions::handshake_timeout`].
    handshake_timeout: Duration,
    /// Sets [`HubOptions::maximum_parallel_invocations_per_client`] (0 counts as 1).
    maximum_parallel_invocations_per_client: usize,
    /// Sets [`HubOptions::stream_buffer_capacity`] (0 counts as 1).
    stream_buffer_capacity: usize,
    /// Sets [`HubOptions::stateful_reconnect_buffer_size`].
    stateful_reconnect_buffer_size: usize,
    /// Sets [`HubOptions::enable_detailed_errors`].
    enable_detailed_errors: bool,
    /// Sets [`HubOptions::outbound_queue_capacity`] (0 counts as 1).
    outbound_queue_capacity: usize,
    /// Sets [`HubOptions::send_timeout`].
    send_timeout: Duration,
    /// Sets [`HubOptions::client_result_timeout`].
    client_result_timeout: Duration,
    /// Sets [`HubOptions::maximum_pending_client_results`].
    maximum_pending_client_results: usize,
    /// Sets [`HubOptions::disconnect_timeout`].
    disconnect_timeout: Duration,
}

/// What the transport layer decided for one connection, given to [`Hub::accept`](crate::server::Hub::accept).
///
/// ```
/// use courier::server::{ConnectionOptions, Identity};
///
/// // What an HTTP layer passes after negotiate and an auth check before the WebSocket upgrade.
/// let options = ConnectionOptions::default()
///     .connection_id("LdMdGk4kHpivAW6lhZoC3g")
///     .identity(Identity::user("alice"))
///     .stateful_reconnect(true);
/// assert_eq!(options.connection_id.as_ref().map(|id| id.as_str()), Some("LdMdGk4kHpivAW6lhZoC3g"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectionOptions {
    /// Stateful reconnect was granted (negotiate's `useStatefulReconnect`). It takes effect only if the client's
    /// handshake asks for protocol version 2. Default false.
    pub stateful_reconnect: bool,
    /// The connection's public id, as the transport layer already told the client (negotiate's `connectionId`).
    /// It must be unique among the hub's live connections (random ids are). Default `None`: the hub makes one.
    pub connection_id: Option<ConnectionId>,
    /// Who the client is, when the transport layer already ran the hub's auth hook through
    /// [`Hub::authenticate`](crate::server::Hub::authenticate) (say, before a WebSocket upgrade, to answer a refusal
    /// with HTTP 401): `accept` then does not run the hook again. Default `None`: `accept` runs the hook.
    pub identity: Option<Identity>,
}

impl ConnectionOptions {
    /// Sets [`ConnectionOptions::stateful_reconnect`].
    #[must_use]
    pub fn stateful_reconnect(mut self, granted: bool) -> Self {
        self.stateful_reconnect = granted;
        self
    }

    /// Sets [`ConnectionOptions::connection_id`].
    #[must_use]
    pub fn connection_id(mut self, id: impl Into<ConnectionId>) -> Self {
        self.connection_id = Some(id.into());
        self
    }

    /// Sets [`ConnectionOptions::identity`].
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }
}
