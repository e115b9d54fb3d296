//! [`HttpConnector`] as a [`courier::client::Connector`]: a [`HubConnection`](courier::client::HubConnection) over
//! WebSockets, with negotiate and stateful reconnect.

use std::future::Future;
use std::sync::Arc;

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
        open(self.clone(), stateful_reconnect, None).boxed()
    }
}

/// Negotiates and opens the WebSocket with `connector`, asking for stateful reconnect as told.
async fn open(
    connector: HttpConnector,
    stateful_reconnect: bool,
    tokens: Option<TokenFactory>,
) -> Result<Opened, ConnectorError> {
    let (transport, session) = connector
        .stateful_reconnect(stateful_reconnect)
        .connect()
        .await?;
    let mut opened = Opened::new(transport);
    if let Some(id) = session.connection_id() {
        opened = opened.with_connection_id(id);
    }
    if session.stateful_reconnect() {
        opened = opened.with_reattach(SessionReattach { session, tokens });
    }
    Ok(opened)
}

/// Re-opens the WebSocket of a stateful connection, with a fresh access token when there is a factory.
struct SessionReattach {
    session: Session,
    tokens: Option<TokenFactory>,
}

impl Reattach for SessionReattach {
    fn reopen(&mut self) -> BoxFuture<'_, Result<Box<dyn Transport>, ConnectorError>> {
        async move {
            if let Some(tokens) = &self.tokens {
                self.session.set_access_token(tokens().await?);
            }
            let transport = self.session.reopen().await?;
            Ok(Box::new(transport) as Box<dyn Transport>)
        }
        .boxed()
    }
}

type TokenFactory =
    Arc<dyn Fn() -> BoxFuture<'static, Result<String, ConnectorError>> + Send + Sync>;

impl HttpConnector {
    /// A connector that asks `factory` for a fresh access token before every negotiate and every stateful
    /// re-attach (the JavaScript client's `accessTokenFactory`); a factory error fails that attempt. The token
    /// replaces the one set with [`access_token`](Self::access_token).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use courier::client::HubConnection;
    /// use courier_http::HttpConnector;
    ///
    /// let connector = HttpConnector::new("https://example.com/hub")?
    ///     .access_token_factory(|| async { Ok::<_, std::io::Error>("fresh-token".to_owned()) });
    /// let connection = HubConnection::builder(connector).automatic_reconnect().start().await?;
    /// # drop(connection); Ok(()) }
    /// ```
    pub fn access_token_factory<F, Fut, E>(self, factory: F) -> TokenConnector
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<ConnectorError> + 'static,
    {
        TokenConnector {
            connector: self,
            tokens: Arc::new(move || factory().map(|token| token.map_err(Into::into)).boxed()),
        }
    }
}

/// An [`HttpConnector`] that takes a fresh access token from a factory for every connection and re-attach; made by
/// [`HttpConnector::access_token_factory`].
#[derive(Clone)]
pub struct TokenConnector {
    connector: HttpConnector,
    tokens: TokenFactory,
}

impl std::fmt::Debug for TokenConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConnector")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl Connector for TokenConnector {
    fn connect(&self, stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            let token = (self.tokens)().await?;
            let connector = self.connector.clone().access_token(token);
            open(connector, stateful_reconnect, Some(self.tokens.clone())).await
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
