//! The client side: negotiate with a Courier or ASP.NET Core server, then open the WebSocket.

mod negotiate;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use courier::TransportInfo;
use courier_protocol::ProtocolError;
use courier_protocol::negotiate::{NegotiateResponse, TransportKind};
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

use crate::ClientTransport;

/// The most negotiate redirects followed, as the official clients do.
const MAX_REDIRECTS: usize = 100;

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL cannot be used: not `http`, `https`, `ws` or `wss`, no host, or not a URL at all.
    #[error("invalid hub URL: {0}")]
    InvalidUrl(String),
    /// A header (an extra one, or the access token) is not a valid header value.
    #[error("invalid header: {0}")]
    InvalidHeader(#[from] hyper::header::InvalidHeaderValue),
    /// Connecting to the server failed (TCP or TLS).
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    /// The negotiate request failed.
    #[error("negotiate request failed: {0}")]
    Http(#[from] hyper::Error),
    /// The negotiate request or WebSocket upgrade was answered with this status (401: refused by auth; 404: the
    /// connection id is unknown or expired; 409: a WebSocket is already open for it).
    #[error("the server answered with status {0}")]
    Status(StatusCode),
    /// Negotiate failed with the server's `error` text.
    #[error("{0}")]
    Negotiate(String),
    /// The negotiate response is malformed (or comes from the old ASP.NET SignalR).
    #[error(transparent)]
    InvalidNegotiate(#[from] ProtocolError),
    /// The negotiate response exceeded 64 KiB.
    #[error("the negotiate response is larger than 64 KiB")]
    ResponseTooLarge,
    /// The server redirected negotiate more than 100 times.
    #[error("Negotiate redirection limit exceeded.")]
    TooManyRedirects,
    /// The server does not offer WebSockets.
    #[error("the server does not offer the WebSockets transport")]
    WebSocketsUnavailable,
    /// The server granted stateful reconnect though the client did not ask for it.
    #[error("the server granted stateful reconnect, which was not requested")]
    UnrequestedStatefulReconnect,
    /// Opening the WebSocket failed.
    #[error("WebSocket connection failed: {0}")]
    WebSocket(String),
    /// Negotiate and the WebSocket upgrade together took longer than the connector's timeout.
    #[error("connecting timed out")]
    Timeout,
}

impl From<hyper::http::Error> for ConnectError {
    fn from(error: hyper::http::Error) -> Self {
        Self::InvalidUrl(error.to_string())
    }
}

/// Connects to a hub over WebSockets: negotiate (unless skipped), then the WebSocket on `?id={connectionToken}`.
///
/// `http(s)` and `ws(s)` URLs are both accepted; negotiate goes over `http(s)`, the WebSocket over `ws(s)`.
/// Negotiate follows `url` + `accessToken` redirects (at most 100), sends the access token as
/// `Authorization: Bearer` on every request, and surfaces the server's `error` text as
/// [`ConnectError::Negotiate`].
///
/// ```no_run
/// # async fn run() -> Result<(), courier_http::ConnectError> {
/// use courier_http::HttpConnector;
///
/// let (transport, session) =
///     HttpConnector::new("https://example.com/hub")?.access_token("token").stateful_reconnect(true).connect().await?;
/// println!("connection {:?}, stateful reconnect: {}", session.connection_id(), session.stateful_reconnect());
/// // ... the hub connection runs over `transport`; when its WebSocket drops:
/// let transport = session.reopen().await?;
/// # drop(transport); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpConnector {
    url: Url,
    headers: HeaderMap,
    access_token: Option<String>,
    skip_negotiation: bool,
    stateful_reconnect: bool,
    max_message_size: usize,
    read_buffer_size: usize,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
}

impl HttpConnector {
    /// A connector for the hub at `url`, with no access token or extra headers, negotiate on, stateful reconnect
    /// off, 1 MiB WebSocket messages, a 4 KiB read buffer, a 100 s timeout and the Mozilla root certificates.
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let url = hub_url(url)?;
        Ok(Self {
            url,
            headers: HeaderMap::new(),
            access_token: None,
            skip_negotiation: false,
            stateful_reconnect: false,
            max_message_size: 1024 * 1024,
            read_buffer_size: 4096,
            timeout: Duration::from_secs(100),
            tls: stream::default_tls_config(),
        })
    }

    /// Adds a header to the negotiate request and the WebSocket request.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sends `Authorization: Bearer {token}`. Default: no token.
    #[must_use]
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// Opens the WebSocket on the URL directly, without negotiate (`skipNegotiation`): no connection id is
    /// known and stateful reconnect is impossible. Default: false.
    #[must_use]
    pub fn skip_negotiation(mut self, skip: bool) -> Self {
        self.skip_negotiation = skip;
        self
    }

    /// Asks for stateful reconnect (`useStatefulReconnect=true`); the server may refuse. Default: false.
    #[must_use]
    pub fn stateful_reconnect(mut self, ask: bool) -> Self {
        self.stateful_reconnect = ask;
        self
    }

    /// The largest WebSocket message (and frame) accepted from the server, in bytes; a larger one fails the
    /// transport. Default: 1 MiB (servers may batch several hub messages in one WebSocket message).
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many bytes the WebSocket reads from its socket at once (tungstenite's `read_buffer_size`). The
    /// connection holds a buffer this large for its whole life, zero-filled and resident; a larger message is still
    /// accepted (up to [`max_message_size`](Self::max_message_size)), read in several chunks. Default: 4 KiB
    /// (tungstenite's own default is 128 KiB).
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes;
        self
    }

    /// How long negotiate plus the WebSocket upgrade may take. Default: 100 s (.NET's HTTP client timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this TLS configuration for `https` and `wss` (custom roots, client certificates). Default: rustls
    /// with the ring provider and the Mozilla roots.
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = config;
        self
    }

    /// Negotiates (unless skipped) and opens the WebSocket.
    pub async fn connect(&self) -> Result<(ClientTransport, Session), ConnectError> {
        tokio::time::timeout(self.timeout, async {
            let session = if self.skip_negotiation {
                Session {
                    websocket_url: websocket_url(&self.url, None),
                    connection_id: None,
                    connection_token: None,
                    stateful_reconnect: false,
                    access_token: self.access_token.clone(),
                    connector: self.clone(),
                }
            } else {
                self.negotiate().await?
            };
            let transport = session.open().await?;
            Ok((transport, session))
        })
        .await
        .map_err(|_| ConnectError::Timeout)?
    }

    /// Negotiates, following redirects.
    async fn negotiate(&self) -> Result<Session, ConnectError> {
        let mut url = self.url.clone();
        let mut access_token = self.access_token.clone();
        for _ in 0..MAX_REDIRECTS {
            let negotiate_url = negotiate::negotiate_url(&url, self.stateful_reconnect);
            let body = negotiate::post(
                &negotiate_url,
                &self.headers,
                access_token.as_deref(),
                &self.tls,
            )
            .await?;
            let response = NegotiateResponse::parse(&body)?;
            if let Some(error) = response.error {
                return Err(ConnectError::Negotiate(error));
            }
            if let Some(redirect) = response.url {
                url = hub_url(&redirect)?;
                if response.access_token.is_some() {
                    access_token = response.access_token;
                }
                continue;
            }
            return self.session(&url, access_token, response);
        }
        Err(ConnectError::TooManyRedirects)
    }

    /// The session a (non-redirect) negotiate response describes.
    fn session(
        &self,
        url: &Url,
        access_token: Option<String>,
        response: NegotiateResponse,
    ) -> Result<Session, ConnectError> {
        let offers_websockets = response
            .available_transports
            .iter()
            .flatten()
            .any(|transport| transport.transport == TransportKind::WebSockets);
        if !offers_websockets {
            return Err(ConnectError::WebSocketsUnavailable);
        }
        if response.use_stateful_reconnect && !self.stateful_reconnect {
            return Err(ConnectError::UnrequestedStatefulReconnect);
        }
        // Version 0 servers have no separate token: the connection id goes in `id=`.
        let token = response
            .connection_token
            .or_else(|| response.connection_id.clone());
        Ok(Session {
            websocket_url: websocket_url(url, token.as_deref()),
            connection_id: response.connection_id,
            connection_token: token,
            stateful_reconnect: response.use_stateful_reconnect,
            access_token,
            connector: self.clone(),
        })
    }
}

/// Parses a hub URL: `http`, `https`, `ws` or `wss`, with a host.
fn hub_url(url: &str) -> Result<Url, ConnectError> {
    let parsed = Url::parse(url).map_err(|e| ConnectError::InvalidUrl(format!("{url}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") || parsed.host().is_none() {
        return Err(ConnectError::InvalidUrl(format!(
            "{url}: needs http, https, ws or wss and a host"
        )));
    }
    Ok(parsed)
}

/// The WebSocket URL: `ws(s)` for `http(s)`, with `id={token}` appended to the query.
fn websocket_url(url: &Url, token: Option<&str>) -> Url {
    let mut url = url.clone();
    let scheme = if stream::is_secure(&url) { "wss" } else { "ws" };
    // Every http(s) and ws(s) URL may change to another of those schemes.
    let _ = url.set_scheme(scheme);
    if let Some(token) = token {
        url.query_pairs_mut().append_pair("id", token);
    }
    url
}

/// What negotiate established for one connection, and how to open its WebSocket again.
#[derive(Debug, Clone)]
pub struct Session {
    websocket_url: Url,
    connection_id: Option<String>,
    connection_token: Option<String>,
    stateful_reconnect: bool,
    access_token: Option<String>,
    connector: HttpConnector,
}

impl Session {
    /// The public connection id; `None` when negotiate was skipped.
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    /// The secret the WebSocket URL carries as `id=`; `None` when negotiate was skipped.
    pub fn connection_token(&self) -> Option<&str> {
        self.connection_token.as_deref()
    }

    /// Whether the server granted stateful reconnect.
    pub fn stateful_reconnect(&self) -> bool {
        self.stateful_reconnect
    }

    /// Replaces the access token sent by [`reopen`](Self::reopen) (a fresh one from a token factory, say).
    pub fn set_access_token(&mut self, token: impl Into<String>) {
        self.access_token = Some(token.into());
    }

    /// The WebSocket URL, `ws(s)://...?id={connectionToken}`.
    pub fn websocket_url(&self) -> &Url {
        &self.websocket_url
    }

    /// Opens a new WebSocket to the same connection, without negotiate: the stateful reconnect re-attach. The
    /// server answers 404 ([`ConnectError::Status`]) once the connection has expired.
    pub async fn reopen(&self) -> Result<ClientTransport, ConnectError> {
        tokio::time::timeout(self.connector.timeout, self.open())
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    /// Opens the WebSocket.
    async fn open(&self) -> Result<ClientTransport, ConnectError> {
        let connector = &self.connector;
        let mut request = self
            .websocket_url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
        let headers = request.headers_mut();
        for (name, value) in &connector.headers {
            headers.append(name, value.clone());
        }
        if let Some(token) = &self.access_token {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        let size = connector.max_message_size;
        let config = WebSocketConfig::default()
            .max_message_size(Some(size))
            .max_frame_size(Some(size))
            .read_buffer_size(connector.read_buffer_size);
        let stream = stream::open(&self.websocket_url, &connector.tls).await?;
        let (socket, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|error| match error {
                    tokio_tungstenite::tungstenite::Error::Http(response) => {
                        ConnectError::Status(response.status())
                    }
                    tokio_tungstenite::tungstenite::Error::Io(error) => ConnectError::Io(error),
                    other => ConnectError::WebSocket(other.to_string()),
                })?;
        let mut info = TransportInfo::new();
        if let Some(token) = &self.access_token {
            info = info.with_access_token(token.clone());
        }
        Ok(ClientTransport::new(socket, info))
    }
}
