//! How a client opens transports: the [`Connector`] trait, and [`InProcessConnector`] for a hub in the same process.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::Transport;
use crate::server::{ConnectionHandle, ConnectionOptions, Hub};
use crate::transport::memory;

/// Why a connector could not open a transport (its own error, boxed).
pub type ConnectorError = Box<dyn std::error::Error + Send + Sync>;

/// A transport just opened for a new connection, with what the connector learned about the connection.
#[non_exhaustive]
pub struct Opened {
    /// The transport; the client runs the handshake on it.
    pub transport: Box<dyn Transport>,
    /// The connection's public id, if the connector knows it (from negotiate, say).
    pub connection_id: Option<String>,
    /// Present when the server granted stateful reconnect: re-opens the same connection after its transport broke.
    pub reattach: Option<Box<dyn Reattach>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("connection_id", &self.connection_id)
            .field("stateful_reconnect", &self.reattach.is_some())
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// A transport with no known connection id and no stateful reconnect.
    pub fn new(transport: impl Transport) -> Self {
        Self {
            transport: Box::new(transport),
            connection_id: None,
            reattach: None,
        }
    }

    /// Sets the connection's public id.
    #[must_use]
    pub fn with_connection_id(mut self, id: impl Into<String>) -> Self {
        self.connection_id = Some(id.into());
        self
    }

    /// Grants stateful reconnect: `reattach` re-opens this same connection.
    #[must_use]
    pub fn with_reattach(mut self, reattach: impl Reattach) -> Self {
        self.reattach = Some(Box::new(reattach));
        self
    }
}

/// Opens transports to a hub for a [`HubConnection`](super::HubConnection): one per new connection (at start and
/// at every automatic reconnect).
///
/// When the client asks for stateful reconnect (`stateful_reconnect` is true) and the server grants it, the
/// connector returns an [`Opened`] with a [`Reattach`]; the client then speaks protocol version 2. A connector must
/// not grant what was not asked for. Options such as access tokens and headers belong to the connector.
pub trait Connector: Send + Sync + 'static {
    /// Opens a transport for a new connection.
    fn connect(&self, stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>>;
}

/// Re-opens the same connection after its transport broke (stateful reconnect, HUB-PROTOCOL.md §7), without a new
/// negotiate or handshake.
pub trait Reattach: Send + 'static {
    /// Opens a new transport to the same connection.
    fn reopen(&mut self) -> BoxFuture<'_, Result<Box<dyn Transport>, ConnectorError>>;
}

/// Connects to a [`Hub`] in the same process over in-memory transports ([`memory::pair`]); stateful reconnect is
/// granted when asked, through [`ConnectionHandle::reattach`].
#[derive(Debug, Clone)]
pub struct InProcessConnector {
    hub: Hub,
}

impl InProcessConnector {
    /// A connector to `hub`.
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

impl Connector for InProcessConnector {
    fn connect(&self, stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            let (server, client) = memory::pair();
            let options = ConnectionOptions::default().stateful_reconnect(stateful_reconnect);
            let handle = self.hub.accept(server, options).await?;
            let opened = Opened::new(client).with_connection_id(handle.id().to_string());
            Ok(if stateful_reconnect {
                opened.with_reattach(InProcessReattach { handle })
            } else {
                opened
            })
        }
        .boxed()
    }
}

/// Re-opens an in-process connection through its handle.
struct InProcessReattach {
    handle: ConnectionHandle,
}

impl Reattach for InProcessReattach {
    fn reopen(&mut self) -> BoxFuture<'_, Result<Box<dyn Transport>, ConnectorError>> {
        async move {
            let (server, client) = memory::pair();
            self.handle.reattach(server).await?;
            Ok(Box::new(client) as Box<dyn Transport>)
        }
        .boxed()
    }
}
