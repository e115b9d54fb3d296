//! Courier's hub server behind the endpoint.

use courier::server::{ConnectionHandle, ConnectionOptions, Hub};

use super::{ConnectionHandler, NewConnection};
use crate::WebSocketTransport;

/// A [`Hub`] takes the endpoint's connections through [`Hub::accept`], and re-attached WebSockets through
/// [`ConnectionHandle::reattach`].
///
/// The hub's own `authenticate` hook runs after the WebSocket upgrade: a refusal there drops the WebSocket. To
/// answer HTTP 401 instead, refuse in [`HubEndpoint::authorize`](crate::HubEndpoint::authorize). The hub gives its
/// connections ids of its own, so `Context::connection_id` differs from negotiate's `connectionId` for now.
impl ConnectionHandler for Hub {
    type Connection = ConnectionHandle;

    async fn connect(
        &self,
        transport: WebSocketTransport,
        connection: NewConnection,
    ) -> Option<ConnectionHandle> {
        let options =
            ConnectionOptions::default().stateful_reconnect(connection.stateful_reconnect);
        self.accept(transport, options).await.ok()
    }

    async fn reattach(&self, connection: &ConnectionHandle, transport: WebSocketTransport) -> bool {
        connection.reattach(transport).await.is_ok()
    }
}
