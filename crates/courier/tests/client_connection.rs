//! The client's connection lifecycle: keep-alive, server timeout, Close messages, automatic reconnect with its
//! events, and stateful reconnect with the transport cut mid-stream.

mod client_common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use client_common::{CuttableConnector, HELLO, ScriptedConnector, accept_handshake, next_text};
use courier::Frame;
use courier::client::{ConnectionEvent, ConnectionState, HubConnection, ReconnectDelays};
use courier::protocol::Protocol;
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn pings_when_idle_and_closes_when_the_server_is_silent() {
    let (connector, mut servers) = ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        accept_handshake(&mut server, "{}").await;
        let start = Instant::now();
        let mut pings = Vec::new();
        while let Some(text) = next_text(&mut server).await {
            if text == HELLO {
                continue;
            }
            assert_eq!(text, "{\"type\":6}\u{1e}");
            pings.push(start.elapsed().as_secs());
        }
        (pings, start.elapsed().as_secs())
    });
    let connection = HubConnection::builder(connector).start().await.unwrap();
    let mut events = connection.events();
    assert_eq!(
        connection.closed().await.as_deref(),
        Some("Server timeout elapsed without receiving a message from the server.")
    );
    assert_eq!(connection.state(), ConnectionState::Disconnected);
    let (pings, closed_at) = server.await.unwrap();
    // A Ping right after the handshake, then one after 15 s of silence; closed at 30 s.
    assert_eq!(pings, [0, 15]);
    assert_eq!(closed_at, 30);
    assert_eq!(
        events.recv().await.unwrap(),
        ConnectionEvent::Closed {
            error: Some(
                "Server timeout elapsed without receiving a message from the server.".into()
            )
        }
    );
}

#[tokio::test(start_paused = true)]
async fn messages_from_the_server_keep_the_connection_alive() {
    let (connector, mut servers) = ScriptedConnector::new();
    tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        accept_handshake(&mut server, "{}").await;
        loop {
            tokio::time::sleep(Duration::from_secs(20)).await;
            if server
                .send(Frame::Text("{\"type\":6}\u{1e}".into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let connection = HubConnection::builder(connector).start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(connection.state(), ConnectionState::Connected);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn close_with_allow_reconnect_reconnects_and_reports_events() {
    let (connector, mut servers) = ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut first = servers.recv().await.unwrap();
        accept_handshake(&mut first, "{}").await;
        let close = "{\"type\":7,\"error\":\"Connection closed with an error.\",\"allowReconnect\":true}\u{1e}";
        first.send(Frame::Text(close.into())).await.unwrap();
        let mut second = servers.recv().await.unwrap();
        let reconnected_at = Instant::now();
        accept_handshake(&mut second, "{}").await;
        assert_eq!(
            next_text(&mut second).await.as_deref(),
            Some("{\"type\":6}\u{1e}")
        );
        assert_eq!(next_text(&mut second).await.as_deref(), Some(HELLO));
        let close = "{\"type\":7,\"error\":\"Go away.\"}\u{1e}";
        second.send(Frame::Text(close.into())).await.unwrap();
        // The client closes its side.
        assert_eq!(next_text(&mut second).await, None);
        reconnected_at
    });
    let closed_at = Instant::now();
    let connection = HubConnection::builder(connector)
        .automatic_reconnect()
        .start()
        .await
        .unwrap();
    let mut events = connection.events();
    assert_eq!(
        events.recv().await.unwrap(),
        ConnectionEvent::Reconnecting {
            error: Some(
                "Server returned an error on close: Connection closed with an error.".into()
            )
        }
    );
    assert_eq!(
        events.recv().await.unwrap(),
        ConnectionEvent::Reconnected {
            connection_id: None
        }
    );
    // The first delay of the default policy is zero.
    assert!(server.await.unwrap() - closed_at < Duration::from_millis(10));
    assert_eq!(
        events.recv().await.unwrap(),
        ConnectionEvent::Closed {
            error: Some("Server returned an error on close: Go away.".into())
        }
    );
}

#[tokio::test(start_paused = true)]
async fn reconnect_follows_the_policy_then_gives_up() {
    let (connector, mut servers) = ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut first = servers.recv().await.unwrap();
        accept_handshake(&mut first, "{}").await;
        assert_eq!(
            next_text(&mut first).await.as_deref(),
            Some("{\"type\":6}\u{1e}")
        );
        let lost_at = Instant::now();
        first.break_link();
        let mut attempts = Vec::new();
        while let Some(mut server) = servers.recv().await {
            attempts.push(lost_at.elapsed().as_secs());
            accept_handshake(&mut server, r#"{"error":"Not now."}"#).await;
        }
        attempts
    });
    let connection = HubConnection::builder(connector)
        .reconnect_policy(ReconnectDelays::new([1, 5].map(Duration::from_secs)))
        .start()
        .await
        .unwrap();
    let mut events = connection.events();
    assert!(matches!(
        events.recv().await.unwrap(),
        ConnectionEvent::Reconnecting { error: Some(_) }
    ));
    assert_eq!(
        connection.closed().await.as_deref(),
        Some("Server returned handshake error: Not now.")
    );
    drop(connection);
    assert_eq!(server.await.unwrap(), [1, 6]);
}

#[tokio::test(start_paused = true)]
async fn without_a_policy_a_lost_connection_closes() {
    let (connector, mut servers) = ScriptedConnector::new();
    tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        accept_handshake(&mut server, "{}").await;
        let close = "{\"type\":7,\"allowReconnect\":true}\u{1e}";
        server.send(Frame::Text(close.into())).await.unwrap();
        // Keep the scripted server alive so that only the Close ends the connection.
        std::future::pending::<()>().await;
    });
    let connection = HubConnection::builder(connector).start().await.unwrap();
    assert_eq!(connection.closed().await, None);
}

#[tokio::test(start_paused = true)]
async fn stateful_reconnect_survives_a_cut_mid_stream() {
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        stateful_cut_mid_stream(protocol).await;
    }
}

async fn stateful_cut_mid_stream(protocol: Protocol) {
    let connector = CuttableConnector::new(client_common::hub(Arc::default()));
    let connection = HubConnection::builder(connector.clone())
        .protocol(protocol)
        .stateful_reconnect(true)
        .automatic_reconnect()
        .start()
        .await
        .unwrap();
    let mut events = connection.events();
    let id = connection.connection_id().expect("an id");
    let mut stream = connection.stream::<u64>("Count", (30,)).await.unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.unwrap());
        if items.len() % 10 == 5 {
            connector.cut();
        }
    }
    assert_eq!(
        items,
        (0..30).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    let who: String = connection.invoke("WhoAmI", ()).await.unwrap();
    assert_eq!(who, id, "the same connection");
    assert_eq!(connection.connection_id(), Some(id));
    assert!(events.try_recv().is_err(), "a re-attach is no reconnect");
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_reattach_falls_back_to_automatic_reconnect() {
    let connector = CuttableConnector::new(client_common::hub(Arc::default()));
    let connection = HubConnection::builder(connector.clone())
        .stateful_reconnect(true)
        .automatic_reconnect()
        .start()
        .await
        .unwrap();
    let mut events = connection.events();
    let first_id = connection.connection_id().expect("an id");
    let pending = {
        let connection = connection.clone();
        tokio::spawn(async move {
            connection
                .stream::<u64>("Count", (1000,))
                .await
                .unwrap()
                .collect::<Vec<_>>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(350)).await;
    connector.refuse_reattach.store(true, Ordering::SeqCst);
    connector.cut();
    assert!(matches!(
        events.recv().await.unwrap(),
        ConnectionEvent::Reconnecting { error: Some(_) }
    ));
    let ConnectionEvent::Reconnected {
        connection_id: Some(second_id),
    } = events.recv().await.unwrap()
    else {
        panic!("reconnected with an id");
    };
    assert_ne!(second_id, first_id, "a new connection");
    let items = pending.await.unwrap();
    assert_eq!(
        items.last(),
        Some(&Err(courier::client::InvokeError::ConnectionClosed)),
        "a stream of the lost connection fails"
    );
    let who: String = connection.invoke("WhoAmI", ()).await.unwrap();
    assert_eq!(who, second_id);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stateful_reconnect_speaks_version_2_and_acks_a_second_after_a_receipt() {
    let (connector, mut servers) = ScriptedConnector::granting_stateful();
    let server = tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        let request = accept_handshake(&mut server, "{}").await;
        assert_eq!(
            next_text(&mut server).await.as_deref(),
            Some("{\"type\":6}\u{1e}")
        );
        assert_eq!(next_text(&mut server).await.as_deref(), Some(HELLO));
        let notes = "{\"type\":1,\"target\":\"Note\",\"arguments\":[\"a\"]}\u{1e}\
                     {\"type\":1,\"target\":\"Note\",\"arguments\":[\"b\"]}\u{1e}";
        server.send(Frame::Text(notes.into())).await.unwrap();
        let sent_at = Instant::now();
        let ack = next_text(&mut server).await;
        (request, ack, sent_at.elapsed())
    });
    let (notes_tx, mut notes) = tokio::sync::mpsc::channel(4);
    let connection = HubConnection::builder(connector)
        .stateful_reconnect(true)
        .on("note", move |(text,): (String,)| {
            let notes = notes_tx.clone();
            async move { notes.send(text).await.map_err(|e| e.to_string()) }
        })
        .start()
        .await
        .unwrap();
    assert_eq!(notes.recv().await.as_deref(), Some("a"));
    assert_eq!(notes.recv().await.as_deref(), Some("b"));
    let (request, ack, after) = server.await.unwrap();
    assert_eq!(request, "{\"protocol\":\"json\",\"version\":2}\u{1e}");
    assert_eq!(ack.as_deref(), Some("{\"type\":8,\"sequenceId\":2}\u{1e}"));
    assert_eq!(after, Duration::from_secs(1));
    drop(connection);
}

#[tokio::test(start_paused = true)]
async fn a_full_stateful_buffer_makes_calls_wait_for_the_servers_ack() {
    for (buffer, waits) in [(100_000, false), (1, true)] {
        let connector = CuttableConnector::new(client_common::hub(Arc::default()));
        let connection = HubConnection::builder(connector)
            .stateful_reconnect(true)
            .stateful_reconnect_buffer_size(buffer)
            .start()
            .await
            .unwrap();
        let start = Instant::now();
        assert_eq!(connection.invoke::<i64>("Add", (1, 2)).await, Ok(3));
        assert_eq!(connection.invoke::<i64>("Add", (3, 4)).await, Ok(7));
        // The server acknowledges on a 1 s timer; only then is there room for the second call.
        assert_eq!(
            start.elapsed() >= Duration::from_millis(900),
            waits,
            "buffer of {buffer} bytes"
        );
        connection.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn stop_sends_a_close_message_then_closes_the_transport() {
    let (connector, mut servers) = ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        accept_handshake(&mut server, "{}").await;
        let mut seen = Vec::new();
        while let Some(text) = next_text(&mut server).await {
            seen.push(text);
        }
        seen
    });
    let connection = HubConnection::builder(connector).start().await.unwrap();
    let mut events = connection.events();
    connection.stop().await;
    assert_eq!(
        server.await.unwrap(),
        ["{\"type\":6}\u{1e}", HELLO, "{\"type\":7}\u{1e}"]
    );
    assert_eq!(
        events.recv().await.unwrap(),
        ConnectionEvent::Closed { error: None }
    );
    assert_eq!(connection.closed().await, None);
}

#[tokio::test(start_paused = true)]
async fn bad_input_from_the_server_closes_the_connection_with_the_parser_error() {
    for (input, error) in [
        (
            "{\"type\":1,\"arguments\":[]}\u{1e}".to_owned(),
            "Missing required property 'target'.",
        ),
        (
            format!("{{\"type\":1,\"target\":\"{}\"", "x".repeat(2048)),
            "The maximum message size of 1024B was exceeded. The message size can be configured in AddHubOptions.",
        ),
    ] {
        let (connector, mut servers) = ScriptedConnector::new();
        tokio::spawn(async move {
            let mut server = servers.recv().await.unwrap();
            accept_handshake(&mut server, "{}").await;
            server.send(Frame::Text(input.into())).await.unwrap();
            while next_text(&mut server).await.is_some() {}
        });
        let connection = HubConnection::builder(connector)
            .maximum_receive_message_size(Some(1024))
            .start()
            .await
            .unwrap();
        assert_eq!(connection.closed().await.as_deref(), Some(error));
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_the_connection() {
    let (connector, mut servers) = ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        accept_handshake(&mut server, "{}").await;
        let mut seen = Vec::new();
        while let Some(text) = next_text(&mut server).await {
            seen.push(text);
        }
        seen
    });
    let connection = HubConnection::builder(connector)
        .automatic_reconnect()
        .start()
        .await
        .unwrap();
    let clone = connection.clone();
    drop(connection);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        clone.state(),
        ConnectionState::Connected,
        "a clone keeps it open"
    );
    drop(clone);
    assert_eq!(
        server.await.unwrap(),
        ["{\"type\":6}\u{1e}", HELLO, "{\"type\":7}\u{1e}"]
    );
}
