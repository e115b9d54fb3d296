//! A courier hub behind the endpoint, driven by the crate's client over real WebSockets: calls, connection ids,
//! authentication before the upgrade, stateful reconnect.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::serve;
use courier::server::{ConnectionHandle, Context, Hub, HubError, HubOptions};
use courier::{Frame, TransportInfo};
use courier_http::{
    ClientTransport, ConnectError, ConnectionHandler, EndpointOptions, HttpConnector, HubEndpoint,
    NewConnection, Session, WebSocketTransport,
};
use futures::{SinkExt, StreamExt};
use hyper::StatusCode;
use serde_json::{Value, json};

fn hub() -> Hub {
    Hub::builder()
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(ctx.connection_id().to_string())
        })
        .build()
}

async fn send(transport: &mut ClientTransport, message: &Value) {
    transport
        .send(Frame::Text(Bytes::from(format!("{message}\u{1e}"))))
        .await
        .unwrap();
}

/// Reads hub messages until one satisfies `done`; returns all read (a frame may hold several).
async fn read_until(transport: &mut ClientTransport, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut messages = Vec::new();
    loop {
        let Frame::Text(text) = next_frame(transport).await else {
            panic!("JSON arrives in text frames")
        };
        for record in std::str::from_utf8(&text)
            .unwrap()
            .split_terminator('\u{1e}')
        {
            let message: Value = serde_json::from_str(record).unwrap();
            let finished = done(&message);
            messages.push(message);
            if finished {
                return messages;
            }
        }
    }
}

async fn handshake(transport: &mut ClientTransport, version: u32) {
    send(transport, &json!({"protocol": "json", "version": version})).await;
    assert_eq!(read_until(transport, |_| true).await, [json!({})]);
}

/// Invokes `target` and returns its completion's result.
async fn invoke(
    transport: &mut ClientTransport,
    id: &str,
    target: &str,
    arguments: Value,
) -> Value {
    send(
        transport,
        &json!({"type": 1, "invocationId": id, "target": target, "arguments": arguments}),
    )
    .await;
    let messages = read_until(transport, |m| m["type"] == 3 && m["invocationId"] == id).await;
    messages.last().unwrap()["result"].clone()
}

#[tokio::test]
async fn a_hub_answers_an_invocation_over_websockets() {
    let addr = serve(HubEndpoint::new(hub()).router("/hub")).await;
    let (mut transport, _) = HttpConnector::new(&format!("http://{addr}/hub"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    handshake(&mut transport, 1).await;
    assert_eq!(
        invoke(&mut transport, "1", "Add", json!([1, 2])).await,
        json!(3)
    );
    transport.close().await.unwrap();
}

#[tokio::test]
async fn a_hub_connection_survives_a_killed_websocket_with_stateful_reconnect() {
    let endpoint =
        HubEndpoint::new(hub()).options(EndpointOptions::new().allow_stateful_reconnects(true));
    let addr = serve(endpoint.router("/hub")).await;
    let connector = HttpConnector::new(&format!("http://{addr}/hub"))
        .unwrap()
        .stateful_reconnect(true);
    let (mut transport, session) = connector.connect().await.unwrap();
    assert!(session.stateful_reconnect());
    handshake(&mut transport, 2).await;
    let id = invoke(&mut transport, "1", "WhoAmI", json!([])).await;
    drop(transport);

    // One immediate attempt, as the JavaScript client makes.
    let mut transport = session.reopen().await.unwrap();
    // We received (and so processed) the server's first message; we sent one, which it answered.
    send(&mut transport, &json!({"type": 9, "sequenceId": 2})).await;
    let messages = read_until(&mut transport, |m| m["type"] == 9).await;
    assert_eq!(
        messages.last().unwrap()["type"],
        9,
        "the server resumes with Sequence: {messages:?}"
    );
    assert_eq!(invoke(&mut transport, "2", "WhoAmI", json!([])).await, id);
    assert_eq!(
        invoke(&mut transport, "3", "Add", json!([2, 3])).await,
        json!(5)
    );
}

#[tokio::test]
async fn messagepack_travels_in_binary_frames() {
    let addr = serve(HubEndpoint::new(hub()).router("/hub")).await;
    let (mut transport, _) = HttpConnector::new(&format!("http://{addr}/hub"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The handshake request is JSON text even for MessagePack; the answer comes in a binary frame.
    send(
        &mut transport,
        &json!({"protocol": "messagepack", "version": 1}),
    )
    .await;
    assert_eq!(
        next_frame(&mut transport).await,
        Frame::Binary(Bytes::from_static(b"{}\x1e"))
    );
    // Invocation [1, {}, "1", "Add", [1, 2], []] with its length prefix.
    let invocation = b"\x0d\x96\x01\x80\xa11\xa3Add\x92\x01\x02\x90";
    transport
        .send(Frame::Binary(Bytes::from_static(invocation)))
        .await
        .unwrap();
    // Completion [3, {}, "1", 3 (non-void result), 3].
    assert_eq!(
        next_frame(&mut transport).await,
        Frame::Binary(Bytes::from_static(b"\x07\x95\x03\x80\xa11\x03\x03"))
    );
}

async fn next_frame(transport: &mut ClientTransport) -> Frame {
    let frame = tokio::time::timeout(Duration::from_secs(5), transport.next()).await;
    frame.unwrap().unwrap().unwrap()
}

fn status(result: Result<impl std::fmt::Debug, ConnectError>) -> StatusCode {
    match result {
        Err(ConnectError::Status(status)) => status,
        other => panic!("expected an HTTP status, got {other:?}"),
    }
}

#[tokio::test]
async fn hub_methods_see_the_connection_id_that_negotiate_gave() {
    let addr = serve(HubEndpoint::new(hub()).router("/hub")).await;
    let connector = HttpConnector::new(&format!("http://{addr}/hub")).unwrap();
    let (mut transport, session) = connector.connect().await.unwrap();
    handshake(&mut transport, 1).await;
    let negotiated = session.connection_id().unwrap();
    assert_eq!(
        invoke(&mut transport, "1", "WhoAmI", json!([])).await,
        json!(negotiated)
    );

    // skipNegotiation: the client knows no id; the connection still gets one of its own.
    let (mut transport, _) = connector.skip_negotiation(true).connect().await.unwrap();
    handshake(&mut transport, 1).await;
    let id = invoke(&mut transport, "1", "WhoAmI", json!([])).await;
    assert_eq!(id.as_str().unwrap().len(), 22);
    assert_ne!(id, json!(negotiated));
}

/// A hub that admits only `alice-token` (as user `alice`), counting its auth hook's runs.
fn guarded_hub(runs: Arc<AtomicUsize>) -> Hub {
    Hub::builder()
        .authenticate(move |info: TransportInfo| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                match info.access_token.as_deref() {
                    Some("alice-token") => Ok(Some("alice".to_owned())),
                    _ => Err("a valid token is required".to_owned()),
                }
            }
        })
        .method("User", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(ctx.user_id().map(str::to_owned))
        })
        .build()
}

#[tokio::test]
async fn a_refusing_auth_hook_answers_401_at_negotiate_and_before_the_upgrade() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(HubEndpoint::new(guarded_hub(runs.clone())).router("/hub")).await;
    let connector = HttpConnector::new(&format!("http://{addr}/hub")).unwrap();
    assert_eq!(
        status(connector.clone().connect().await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(connector.clone().access_token("forged").connect().await),
        StatusCode::UNAUTHORIZED
    );
    // skipNegotiation: the WebSocket request itself is answered 401, with no upgrade.
    assert_eq!(
        status(connector.skip_negotiation(true).connect().await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_admitting_auth_hook_gives_methods_the_user_id() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(HubEndpoint::new(guarded_hub(runs.clone())).router("/hub")).await;
    let connector = HttpConnector::new(&format!("http://{addr}/hub"))
        .unwrap()
        .access_token("alice-token");
    let (mut transport, _) = connector.clone().connect().await.unwrap();
    handshake(&mut transport, 1).await;
    assert_eq!(
        invoke(&mut transport, "1", "User", json!([])).await,
        json!("alice")
    );
    // Once at negotiate, once before the upgrade; not again when the hub accepts the connection.
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let (mut transport, _) = connector.skip_negotiation(true).connect().await.unwrap();
    handshake(&mut transport, 1).await;
    assert_eq!(
        invoke(&mut transport, "1", "User", json!([])).await,
        json!("alice")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

/// A stateful endpoint whose hub gives up on a broken connection after 100 ms, long before the endpoint forgets
/// its id (15 s).
fn short_lived_hub() -> Hub {
    Hub::builder()
        .options(HubOptions::default().disconnect_timeout(Duration::from_millis(100)))
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .build()
}

/// Opens a stateful hub connection, then kills its WebSocket and waits for the hub to give it up.
async fn ended_stateful_connection(addr: SocketAddr) -> Session {
    let (mut transport, session) = HttpConnector::new(&format!("http://{addr}/hub"))
        .unwrap()
        .stateful_reconnect(true)
        .connect()
        .await
        .unwrap();
    handshake(&mut transport, 2).await;
    assert_eq!(
        invoke(&mut transport, "1", "Add", json!([1, 2])).await,
        json!(3)
    );
    drop(transport);
    tokio::time::sleep(Duration::from_millis(500)).await;
    session
}

#[tokio::test]
async fn a_reattach_to_a_hub_connection_that_ended_gets_404() {
    let endpoint = HubEndpoint::new(short_lived_hub())
        .options(EndpointOptions::new().allow_stateful_reconnects(true));
    let addr = serve(endpoint.router("/hub")).await;
    let session = ended_stateful_connection(addr).await;
    assert_eq!(status(session.reopen().await), StatusCode::NOT_FOUND);
}

/// A hub behind a handler that cannot tell whether a connection ended, so a re-attach is refused only after the
/// upgrade.
struct Unaware(Hub);

impl ConnectionHandler for Unaware {
    type Connection = ConnectionHandle;

    async fn connect(
        &self,
        transport: WebSocketTransport,
        connection: NewConnection,
    ) -> Option<ConnectionHandle> {
        self.0.connect(transport, connection).await
    }

    async fn reattach(
        &self,
        connection: &ConnectionHandle,
        transport: WebSocketTransport,
    ) -> Result<(), WebSocketTransport> {
        ConnectionHandler::reattach(&self.0, connection, transport).await
    }
}

#[tokio::test]
async fn a_reattach_refused_after_the_upgrade_closes_the_websocket_cleanly() {
    let endpoint = HubEndpoint::new(Unaware(short_lived_hub()))
        .options(EndpointOptions::new().allow_stateful_reconnects(true));
    let addr = serve(endpoint.router("/hub")).await;
    let session = ended_stateful_connection(addr).await;
    let mut transport = session.reopen().await.unwrap();
    // A close frame (the stream ends), not a dropped socket (which would be an error).
    let end = tokio::time::timeout(Duration::from_secs(5), transport.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    // The id is forgotten.
    assert_eq!(status(session.reopen().await), StatusCode::NOT_FOUND);
}
