//! The seam between the endpoint and whatever runs hub connections.

use std::future::Future;

use courier::TransportInfo;
use courier::server::Identity;

use crate::WebSocketTransport;

/// Runs the connections an endpoint accepts: implemented for courier's [`Hub`](courier::server::Hub), or by
/// anything else that speaks over a [`WebSocketTransport`].
///
/// The endpoint keeps the returned [`Connection`](Self::Connection) while its id may still be used: while the
/// WebSocket is open and, for a stateful connection, while it waits to be re-attached.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// A running connection, as the endpoint keeps it.
    type Connection: Send + Sync + 'static;

    /// Decides who the client of a request is, before anything else is done for it: on every negotiate and every
    /// WebSocket request (a re-attach too), before the upgrade. `None` refuses the request with HTTP 401. The
    /// identity of the request that opens a connection reaches [`connect`](Self::connect) in
    /// [`NewConnection::identity`].
    ///
    /// The default admits every request as anonymous.
    fn authenticate(&self, info: &TransportInfo) -> impl Future<Output = Option<Identity>> + Send {
        let _ = info;
        std::future::ready(Some(Identity::anonymous()))
    }

    /// Starts a connection on its first WebSocket; `None` when the handler refused it (it then drops or closes
    /// the transport) and the endpoint forgets the id.
    fn connect(
        &self,
        transport: WebSocketTransport,
        connection: NewConnection,
    ) -> impl Future<Output = Option<Self::Connection>> + Send;

    /// Hands a stateful connection whose WebSocket broke the client's new one (no negotiate and no handshake
    /// come first; the hub resumes with Sequence and replays). Fails, handing the transport back, when the
    /// connection has ended meanwhile: the endpoint then closes the WebSocket and forgets the id.
    fn reattach(
        &self,
        connection: &Self::Connection,
        transport: WebSocketTransport,
    ) -> impl Future<Output = Result<(), WebSocketTransport>> + Send;

    /// Whether the connection has ended, so that a WebSocket request for it gets 404 before any upgrade. The
    /// default says no: such a request is then upgraded and [`reattach`](Self::reattach) refuses it.
    fn has_ended(&self, connection: &Self::Connection) -> bool {
        let _ = connection;
        false
    }
}

/// What the endpoint knows of a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewConnection {
    /// The public connection id (`connectionId` of negotiate, or a new one for skipNegotiation).
    pub connection_id: String,
    /// Stateful reconnect was granted on negotiate: the connection may be handed new WebSockets.
    pub stateful_reconnect: bool,
    /// Who the client is, as [`ConnectionHandler::authenticate`] admitted the WebSocket request.
    pub identity: Identity,
}
