//! [`HttpConnector`] as a [`courier::client::Connector`]: a [`HubConnection`](courier::client::HubConnection) over
//! WebSockets, with negotiate and stateful reconnect.

use courier::Transport;
use courier::client::{
    Connector, ConnectorError, HubConnection, HubConnectionBuilder, Opened, Reattach,
};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::{ConnectError, HttpConnector, Session};

/// Each new connection negotiates and opens a WebSocket. Whether stateful reconnect is asked for is the hub
/// connection's choice ([`HubConnectionBuilder::stateful_reconnect`]), which overrides the connector's own
/// setting; when the server grants it, a broken WebSocket is re-opened with [`Session::reopen`]. The access token
/// and extra headers are the connector's options.
impl Connector for HttpConnector {
    fn connect(&self, stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            let connector = self.clone().stateful_reconnect(stateful_reconnect);
            let (transport, session) = connector.connect().await?;
            let mut opened = Opened::new(transport);
            if let Some(id) = session.connection_id() {
                opened = opened.with_connection_id(id);
            }
            if session.stateful_reconnect() {
                opened = opened.with_reattach(SessionReattach { session });
            }
            Ok(opened)
        }
        .boxed()
    }
}

/// Re-opens the WebSocket of a stateful connection.
struct SessionReattach {
    session: Session,
}

impl Reattach for SessionReattach {
    fn reopen(&mut self) -> BoxFuture<'_, Result<Box<dyn Transport>, ConnectorError>> {
        async move {
            let transport = self.session.reopen().await?;
            Ok(Box::new(transport) as Box<dyn Transport>)
        }
        .boxed()
    }
}

/// A [`HubConnectionBuilder`] for the hub at `url` (`http`, `https`, `ws` or `wss`) with a default
/// [`HttpConnector`]; build the connector yourself for an access token, headers or TLS settings.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connection = courier_http::hub_connection("https://example.com/hub")?
///     .automatic_reconnect()
///     .stateful_reconnect(true)
///     .start()
///     .await?;
/// let sum: i64 = connection.invoke("Add", (1, 2)).await?;
/// # drop(sum); Ok(()) }
/// ```
pub fn hub_connection(url: &str) -> Result<HubConnectionBuilder, ConnectError> {
    Ok(HubConnection::builder(HttpConnector::new(url)?))
}
