//! A courier hub served over negotiate + WebSockets on 127.0.0.1, and the Courier client calling it.
//!
//! Run with `cargo run -p courier-http --example websocket_hub`. The server half is what an application mounts;
//! the official SignalR clients connect to it unchanged (`new HubConnectionBuilder().withUrl("http://.../hub")`).

// An example reports what it does on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

use courier::server::{Context, Hub, HubError};
use courier_http::{EndpointOptions, HubEndpoint};

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

    // The Courier client: negotiate, WebSocket, handshake, then typed calls.
    let connection = courier_http::hub_connection(&format!("http://{addr}/hub"))?
        .stateful_reconnect(true)
        .start()
        .await?;
    println!(
        "connected to http://{addr}/hub as {:?}",
        connection.connection_id()
    );
    let sum: i64 = connection.invoke("Add", (40, 2)).await?;
    println!("Add(40, 2) = {sum}");
    connection.stop().await;
    Ok(())
}
