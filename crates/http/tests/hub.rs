//! A courier hub behind the endpoint, driven by the crate's client over real WebSockets.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::serve;
use courier::Frame;
use courier::server::{Context, Hub, HubError};
use courier_http::{ClientTransport, EndpointOptions, HttpConnector, HubEndpoint};
use futures::{SinkExt, StreamExt};
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
