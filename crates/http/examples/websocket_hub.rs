//! A courier hub served over negotiate + WebSockets on 127.0.0.1, and a client of this crate calling it.
//!
//! Run with `cargo run -p courier-http --example websocket_hub`. The server half is what an application mounts;
//! the official SignalR clients connect to it unchanged (`new HubConnectionBuilder().withUrl("http://.../hub")`).

// An example reports what it does on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

use bytes::Bytes;
use courier::Frame;
use courier::server::{Context, Hub, HubError};
use courier_http::{EndpointOptions, HttpConnector, HubEndpoint};
use futures::{SinkExt, StreamExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder()
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .build();
    let app = HubEndpoint::new(hub)
        .options(EndpointOptions::new().allow_stateful_reconnects(true))
        .router("/hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (mut transport, session) = HttpConnector::new(&format!("http://{addr}/hub"))?
        .stateful_reconnect(true)
        .connect()
        .await?;
    println!(
        "negotiated {:?}, stateful reconnect: {}",
        session.connection_id(),
        session.stateful_reconnect()
    );

    // Raw hub protocol frames: the JSON handshake, then one invocation.
    let send = |text: &'static str| Frame::Text(Bytes::from_static(text.as_bytes()));
    transport
        .send(send("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await?;
    transport
        .send(send(
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Add\",\"arguments\":[40,2]}\u{1e}",
        ))
        .await?;
    let mut received = String::new();
    while !received.contains("\"type\":3") {
        match transport.next().await {
            Some(frame) => received.push_str(&String::from_utf8_lossy(frame?.payload())),
            None => break,
        }
    }
    for message in received.split_terminator('\u{1e}') {
        println!("received {message}");
    }
    transport.close().await?;
    Ok(())
}
