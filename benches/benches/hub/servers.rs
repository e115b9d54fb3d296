//! The two servers compared, each on 127.0.0.1 with a port the system picks: the Courier hub with an `Echo`
//! method behind courier-http's endpoint, and a bare tokio-tungstenite server that echoes every data message.

use std::net::SocketAddr;

use courier::server::{Context, Hub, HubError};
use courier_http::HubEndpoint;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The path the hub is served on.
pub(crate) const HUB_PATH: &str = "/hub";

/// The read buffer of [`Server::BareSmallReadBuffer`].
pub(crate) const SMALL_READ_BUFFER: usize = 4096;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    /// tokio-tungstenite alone with its default settings, echoing each message: the ceiling.
    Bare,
    /// [`Bare`](Self::Bare) with a [`SMALL_READ_BUFFER`] read buffer instead of tungstenite's default 128 KiB: what
    /// that one setting costs an idle connection.
    BareSmallReadBuffer,
    /// courier + courier-http: negotiate, WebSocket, hub protocol, the `Echo` method.
    Courier,
}

impl Server {
    /// The name used on the command line and in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::BareSmallReadBuffer => "bare-4k-read-buffer",
            Self::Courier => "courier",
        }
    }

    /// The server called `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [Self::Bare, Self::BareSmallReadBuffer, Self::Courier]
            .into_iter()
            .find(|server| server.name() == name)
    }

    /// Starts the server on the current runtime; it runs until the runtime shuts down.
    pub(crate) async fn start(self) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        match self {
            Self::Bare => {
                tokio::spawn(accept_bare(listener, WebSocketConfig::default()));
            }
            Self::BareSmallReadBuffer => {
                let config = WebSocketConfig::default().read_buffer_size(SMALL_READ_BUFFER);
                tokio::spawn(accept_bare(listener, config));
            }
            Self::Courier => {
                let app = HubEndpoint::new(echo_hub()).router(HUB_PATH);
                tokio::spawn(async move {
                    axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .await
                });
            }
        }
        Ok(addr)
    }
}

/// The hub: `Echo(text)` returns `text`.
fn echo_hub() -> Hub {
    Hub::builder()
        .method("Echo", |_ctx: Context, (text,): (String,)| async move {
            Ok::<_, HubError>(text)
        })
        .build()
}

/// Accepts WebSockets until the runtime stops, each echoed by its own task.
async fn accept_bare(listener: TcpListener, config: WebSocketConfig) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(socket) =
                tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
            {
                let _ = echo(socket).await;
            }
        });
    }
}

/// Sends back every text and binary message as it came. Replies to everything that has already arrived are
/// written before one flush, as the hub writes its replies, so a pipelining client is not held to one write per
/// message. Pings are answered and closes completed by tokio-tungstenite itself.
async fn echo(mut socket: WebSocketStream<TcpStream>) -> Result<(), Error> {
    while let Some(message) = socket.next().await {
        let mut message = message?;
        loop {
            if message.is_text() || message.is_binary() {
                socket.feed(message).await?;
            }
            match socket.next().now_or_never() {
                Some(Some(next)) => message = next?,
                Some(None) => return socket.flush().await,
                None => break,
            }
        }
        socket.flush().await?;
    }
    Ok(())
}
