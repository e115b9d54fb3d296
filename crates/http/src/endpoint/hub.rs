//! Courier's hub server behind the endpoint.

use courier::TransportInfo;
use courier::server::{ConnectionHandle, ConnectionOptions, Hub, Identity};

use super::{ConnectionHandler, NewConnection};
use crate::WebSocketTransport;

/// A [`Hub`] authenticates requests with its own auth hook ([`Hub::authenticate`]), before the WebSocket upgrade,
/// so a refusal is an HTTP 401; takes the endpoint's connections through [`Hub::accept`] with negotiate's
/// `connectionId` (so `Context::connection_id` is the id the client was given) and the identity the hook gave,
/// without running the hook again; and takes re-attached WebSockets through [`ConnectionHandle::reattach`].
impl ConnectionHandler for Hub {
    type Connection = ConnectionHandle;

    async fn authenticate(&self, info: &TransportInfo) -> Option<Identity> {
        Hub::authenticate(self, info).await.ok()
    }

    async fn connect(
        &self,
        transport: WebSocketTransport,
        connection: NewConnection,
    ) -> Option<ConnectionHandle> {
        let options = ConnectionOptions::default()
            .stateful_reconnect(connection.stateful_reconnect)
            .connection_id(connection.connection_id)
            .identity(connection.identity);
        self.accept(transport, options).await.ok()
    }

    async fn reattach(
        &self,
        connection: &ConnectionHandle,
        transport: WebSocketTransport,
    ) -> Result<(), WebSocketTransport> {
        connection
            .reattach(transport)
            .await
            .map_err(courier::server::ReattachFailed::into_transport)
    }

    fn has_ended(&self, connection: &ConnectionHandle) -> bool {
        connection.is_closed()
    }
}
