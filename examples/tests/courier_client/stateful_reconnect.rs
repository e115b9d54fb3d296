//! Stateful reconnect with the Courier client: the WebSocket is killed mid-stream (by dropping the sockets of a
//! TCP proxy in between) and the client re-attaches to the same connection
//! (interop/test/stateful-reconnect.test.mjs).

use std::time::Duration;

use courier::client::Args;
use courier::protocol::Protocol;
use futures::StreamExt;

use crate::client::{Inbox, builder, call};
use crate::each_protocol;
use crate::proxy::Proxy;
use crate::server::Server;

each_protocol!(
    a_counter_stream_survives_a_broken_websocket,
    an_upload_stream_survives_a_broken_websocket,
);

async fn a_counter_stream_survives_a_broken_websocket(protocol: Protocol) {
    let server = Server::start();
    let proxy = Proxy::start(server.addr()).await;
    let (builder, mut inbox) = Inbox::on(builder(&proxy.hub_url(), protocol, Some("reconnecting")));
    let connection = builder.stateful_reconnect(true).start().await.unwrap();
    let mut events = connection.events();

    let id_before: String = connection.invoke("GetConnectionId", ()).await.unwrap();
    let accepted_before = proxy.accepted();
    let count = 60;
    let mut stream = connection
        .stream::<i32>("Counter", (count, 15))
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.unwrap());
        if items.len() == 10 {
            proxy.break_all();
        }
    }
    assert_eq!(
        items,
        (0..count).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    assert_eq!(
        proxy.accepted(),
        accepted_before + 1,
        "one new WebSocket re-attached"
    );
    assert!(events.try_recv().is_err(), "no reconnect and no close");
    assert_eq!(
        connection.connection_id().as_deref(),
        Some(id_before.as_str())
    );
    assert_eq!(
        connection.invoke::<String>("GetConnectionId", ()).await,
        Ok(id_before)
    );

    // Messages sent while the WebSocket is down arrive once it is back, in order, once each.
    proxy.break_all();
    connection
        .invoke::<()>("SendToUser", ("reconnecting", "after the break"))
        .await
        .unwrap();
    assert_eq!(
        inbox.next().await,
        call(Some("reconnecting"), "after the break")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(inbox.pending(), []);
    assert!(events.try_recv().is_err(), "no reconnect and no close");

    connection.stop().await;
    server.stop().await;
}

/// The other direction: the client's own messages (upload stream items) sent around the break are replayed from
/// its buffer, so the server's sum counts each exactly once.
async fn an_upload_stream_survives_a_broken_websocket(protocol: Protocol) {
    let server = Server::start();
    let proxy = Proxy::start(server.addr()).await;
    let connection = builder(&proxy.hub_url(), protocol, Some("uploader"))
        .stateful_reconnect(true)
        .start()
        .await
        .unwrap();
    let mut events = connection.events();
    let id_before = connection.connection_id();
    let accepted_before = proxy.accepted();

    let (tx, numbers) = futures::channel::mpsc::unbounded::<i64>();
    let feed = async {
        for n in 1..=200 {
            tx.unbounded_send(n).unwrap();
            if n == 50 {
                proxy.break_all();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(tx);
    };
    let (sum, ()) = tokio::join!(
        connection.invoke::<i64>("Sum", Args::new().upload(numbers)),
        feed
    );
    assert_eq!(sum, Ok(200 * 201 / 2), "every item once");
    assert_eq!(
        proxy.accepted(),
        accepted_before + 1,
        "one new WebSocket re-attached"
    );
    assert!(events.try_recv().is_err(), "no reconnect and no close");
    assert_eq!(connection.connection_id(), id_before);

    connection.stop().await;
    server.stop().await;
}
