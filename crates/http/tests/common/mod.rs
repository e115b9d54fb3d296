//! Test servers and a raw HTTP client for the endpoint tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use axum::Router;
use courier::server::Identity;
use courier::{Frame, TransportError, TransportInfo};
use courier_http::{ConnectionHandler, NewConnection, WebSocketTransport};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Serves `router` on 127.0.0.1 at a free port, with peer addresses, until the test ends.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// Sends one HTTP/1.1 request and reads the whole response (the server closes after it).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra_headers: &str,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    RawResponse {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A handler whose connections echo every frame back, answer the text `id` with their connection id and `token`
/// with the access token they were opened with, close cleanly on `bye`, and wait for a re-attached WebSocket when
/// theirs breaks.
#[derive(Debug, Default)]
pub struct Echo;

/// An echo connection as the endpoint keeps it.
pub struct EchoConnection {
    reattach: mpsc::UnboundedSender<WebSocketTransport>,
}

impl ConnectionHandler for Echo {
    type Connection = EchoConnection;

    async fn connect(
        &self,
        transport: WebSocketTransport,
        connection: NewConnection,
    ) -> Option<EchoConnection> {
        let (reattach, replacements) = mpsc::unbounded_channel();
        tokio::spawn(echo(transport, connection, replacements));
        Some(EchoConnection { reattach })
    }

    async fn reattach(
        &self,
        connection: &EchoConnection,
        transport: WebSocketTransport,
    ) -> Result<(), WebSocketTransport> {
        connection
            .reattach
            .send(transport)
            .map_err(|refused| refused.0)
    }
}

/// An [`Echo`] that admits only requests carrying this access token.
#[derive(Debug)]
pub struct Guarded(pub &'static str);

impl ConnectionHandler for Guarded {
    type Connection = EchoConnection;

    async fn authenticate(&self, info: &TransportInfo) -> Option<Identity> {
        (info.access_token.as_deref() == Some(self.0)).then(|| Identity::user(self.0))
    }

    async fn connect(
        &self,
        transport: WebSocketTransport,
        connection: NewConnection,
    ) -> Option<EchoConnection> {
        Echo.connect(transport, connection).await
    }

    async fn reattach(
        &self,
        connection: &EchoConnection,
        transport: WebSocketTransport,
    ) -> Result<(), WebSocketTransport> {
        Echo.reattach(connection, transport).await
    }
}

async fn echo(
    mut transport: WebSocketTransport,
    connection: NewConnection,
    mut replacements: mpsc::UnboundedReceiver<WebSocketTransport>,
) {
    loop {
        match transport.next().await {
            Some(Ok(Frame::Text(text))) if &text[..] == b"id" => {
                let reply = Frame::Text(connection.connection_id.clone().into());
                if transport.send(reply).await.is_err() {
                    return;
                }
            }
            Some(Ok(Frame::Text(text))) if &text[..] == b"token" => {
                let token = courier::Transport::info(&transport)
                    .access_token
                    .clone()
                    .unwrap_or_default();
                if transport.send(Frame::Text(token.into())).await.is_err() {
                    return;
                }
            }
            Some(Ok(Frame::Text(text))) if &text[..] == b"bye" => {
                let _ = transport.close().await;
                return;
            }
            Some(Ok(frame)) => {
                if transport.send(frame).await.is_err() {
                    return;
                }
            }
            Some(Err(TransportError::Reset | TransportError::Io(_)))
                if connection.stateful_reconnect =>
            {
                drop(transport);
                match replacements.recv().await {
                    Some(next) => transport = next,
                    None => return,
                }
            }
            Some(Err(_)) | None => return,
        }
    }
}
