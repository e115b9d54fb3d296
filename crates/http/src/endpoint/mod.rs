//! The server side: negotiate and the WebSocket transport for a hub, as an axum [`Router`].

mod handler;
mod hub;
mod negotiate;
mod options;
mod registry;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::any;
use courier::TransportInfo;
use tower_http::cors::CorsLayer;

pub use handler::{ConnectionHandler, NewConnection};
pub use options::EndpointOptions;
use registry::Registry;

/// A hub's HTTP endpoint: `POST {path}/negotiate` and the WebSocket transport on `{path}`, as ASP.NET Core's
/// connection dispatcher serves them (HUB-PROTOCOL.md §2).
///
/// - Negotiate answers versions 0 and 1 (absent ⇒ 0, above 1 ⇒ 1) with new random ids, offers WebSockets only,
///   and grants stateful reconnect when the client asks and [`EndpointOptions::allow_stateful_reconnects`] is on.
///   Errors are HTTP 200 with `{"error":"..."}`; a method other than POST gets 405.
/// - `GET {path}?id={token}` with a WebSocket upgrade starts the negotiated connection, or hands a stateful
///   connection its new WebSocket. A dropped WebSocket (no close handshake) leaves a stateful connection waiting
///   [`disconnect_timeout`](EndpointOptions::disconnect_timeout) for a new one; a new one arriving while the old
///   still looks open takes over (the old transport fails as if dropped), as in ASP.NET Core, since the client
///   often notices a dead network first. An unknown or expired id gets 404 `No Connection with that ID`; a second
///   WebSocket for a connection without stateful reconnect 409. Without `id` the connection is made on the spot
///   (skipNegotiation; never stateful). Other requests on `{path}` get the dispatcher's codes for the transports
///   not served here (400 `Connection ID required`, 404, 405 for POST, 400 for DELETE).
/// - Every negotiate and WebSocket request is first authenticated by the handler
///   ([`ConnectionHandler::authenticate`]: for a [`Hub`](courier::server::Hub), its own auth hook), which sees the
///   access token (`Authorization: Bearer`, else the `access_token` query), headers, query and peer address (when
///   served with `into_make_service_with_connect_info::<SocketAddr>()`) as a [`TransportInfo`]. A refusal is HTTP
///   401, before any WebSocket upgrade. The same [`TransportInfo`] is the transport's. The hook is the one place
///   for authentication: the endpoint has none of its own.
/// - CORS is off unless a [`cors`] layer is given.
///
/// [`cors`]: HubEndpoint::cors
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use std::net::SocketAddr;
///
/// use courier::server::{Context, Hub, HubError};
/// use courier_http::{EndpointOptions, HubEndpoint};
///
/// let hub = Hub::builder()
///     .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
///     // Runs before negotiate and before the WebSocket upgrade: a refusal is HTTP 401.
///     .authenticate(|info| async move {
///         match info.access_token.as_deref() {
///             Some("secret") => Ok(Some("alice".to_owned())),
///             _ => Err("a valid token is required".to_owned()),
///         }
///     })
///     .build();
/// let app = HubEndpoint::new(hub)
///     .options(EndpointOptions::new().allow_stateful_reconnects(true))
///     .router("/hub");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
/// # }
/// ```
pub struct HubEndpoint<H: ConnectionHandler> {
    handler: H,
    options: EndpointOptions,
    cors: Option<CorsLayer>,
}

impl<H: ConnectionHandler> std::fmt::Debug for HubEndpoint<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubEndpoint")
            .field("options", &self.options)
            .field("cors", &self.cors)
            .finish_non_exhaustive()
    }
}

/// What the request handlers share.
pub(crate) struct Shared<H: ConnectionHandler> {
    handler: H,
    options: EndpointOptions,
    registry: Arc<Registry<H::Connection>>,
}

impl<H: ConnectionHandler> HubEndpoint<H> {
    /// An endpoint that hands its connections to `handler`, with default options and no CORS.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            options: EndpointOptions::new(),
            cors: None,
        }
    }

    /// Sets the options.
    #[must_use]
    pub fn options(mut self, options: EndpointOptions) -> Self {
        self.options = options;
        self
    }

    /// Answers cross-origin requests as `layer` says (browsers on another origin need it; remember
    /// `allow_credentials` if they send cookies). Default: no CORS headers.
    #[must_use]
    pub fn cors(mut self, layer: CorsLayer) -> Self {
        self.cors = Some(layer);
        self
    }

    /// The routes, `{path}/negotiate` and `{path}`, to serve or merge into an application's router.
    ///
    /// # Panics
    ///
    /// When `path` is not a valid axum route path (it must start with `/`), as [`Router::route`] does.
    pub fn router<S: Clone + Send + Sync + 'static>(self, path: &str) -> Router<S> {
        let path = path.trim_end_matches('/');
        let registry = Registry::new(self.options.disconnect_timeout);
        let shared = Arc::new(Shared {
            handler: self.handler,
            options: self.options,
            registry,
        });
        let router = Router::new()
            .route(&format!("{path}/negotiate"), any(negotiate::negotiate::<H>))
            .route(
                if path.is_empty() { "/" } else { path },
                any(websocket::connection::<H>),
            )
            .with_state(shared);
        match self.cors {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }
}

impl<H: ConnectionHandler> Shared<H> {
    /// What the request says of its client, for the handler's auth check and the transport: peer address, access token
    /// (`Authorization: Bearer`, else the `access_token` query), headers and query.
    fn transport_info(parts: &Parts) -> TransportInfo {
        let mut info = TransportInfo::new();
        if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            info = info.with_remote_addr(*addr);
        }
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                info = info.with_header(name.as_str(), value);
            }
        }
        let query = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes());
        for (name, value) in query {
            info = info.with_query(name, value);
        }
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let token = bearer.or_else(|| {
            info.query
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("access_token"))
                .map(|(_, v)| v.clone())
        });
        if let Some(token) = token {
            info = info.with_access_token(token);
        }
        info
    }
}
