//! Connection lifetime: keep-alive, client timeout, fatal protocol errors, Close, hooks and shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{PROTOCOLS, Peer};
use courier::Frame;
use courier::server::{
    AcceptError, ConnectionOptions, Context, Hub, HubError, HubOptions, Identity,
};
use courier::transport::memory;
use courier_protocol::{Close, HubMessage, Protocol};
use serde_json::json;
use tokio::time::Instant;

fn hub(options: HubOptions) -> Hub {
    Hub::builder()
        .options(options)
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("Sleep", |_ctx: Context, (secs,): (u64,)| async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok::<_, HubError>(secs)
        })
        .build()
}

fn closed_with_error() -> Close {
    Close {
        error: Some("Connection closed with an error.".into()),
        allow_reconnect: true,
    }
}

#[tokio::test(start_paused = true)]
async fn a_ping_is_sent_after_15_seconds_without_sending() {
    let hub = hub(HubOptions::default());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    let start = Instant::now();
    assert_eq!(peer.recv_any().await, Some(HubMessage::Ping));
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    // Sending resets the interval.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        peer.call_ok::<i64>("1", "Add", &[json!(1), json!(1)]).await,
        2
    );
    let answered = Instant::now();
    assert_eq!(peer.recv_any().await, Some(HubMessage::Ping));
    assert_eq!(answered.elapsed(), Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn the_client_timeout_is_armed_by_the_first_ping() {
    let hub = hub(HubOptions::default());
    let (mut peer, handle) = Peer::connect(&hub, Protocol::Json).await;
    // No Ping from the client: a minute of silence is fine.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!handle.is_closed());
    peer.send(HubMessage::Ping).await;
    let pinged = Instant::now();
    assert_eq!(peer.expect_end().await, Some(closed_with_error()));
    assert_eq!(pinged.elapsed(), Duration::from_secs(30));
    handle.closed().await;
}

#[tokio::test(start_paused = true)]
async fn an_oversized_message_closes_only_its_connection() {
    let hub = hub(HubOptions::default().maximum_receive_message_size(Some(100)));
    for protocol in PROTOCOLS {
        let (mut bad, bad_handle) = Peer::connect(&hub, protocol).await;
        let (mut good, _good_handle) = Peer::connect(&hub, protocol).await;
        let big = "x".repeat(200);
        bad.send(common::invocation(
            protocol,
            Some("1"),
            "Add",
            &[json!(big), json!(1)],
        ))
        .await;
        assert_eq!(bad.expect_end().await, Some(closed_with_error()));
        bad_handle.closed().await;
        assert_eq!(
            good.call_ok::<i64>("1", "Add", &[json!(1), json!(2)]).await,
            3
        );
    }
}

#[tokio::test(start_paused = true)]
async fn malformed_input_closes_with_detail_only_when_detailed_errors_are_on() {
    for (detailed, expected) in [
        (false, "Connection closed with an error.".to_owned()),
        (
            true,
            "Connection closed with an error. InvalidDataException: Missing required property 'type'.".to_owned(),
        ),
    ] {
        let hub = hub(HubOptions::default().enable_detailed_errors(detailed));
        let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
        peer.send_frame(Frame::Text(Bytes::from_static(b"{}\x1e"))).await;
        let close = peer.expect_end().await.expect("a Close");
        assert_eq!(close.error.as_deref(), Some(expected.as_str()));
        assert!(close.allow_reconnect);
    }
}

#[tokio::test(start_paused = true)]
async fn a_close_from_the_client_is_answered_and_ends_the_connection() {
    let hub = hub(HubOptions::default());
    let (mut peer, handle) = Peer::connect(&hub, Protocol::MessagePack).await;
    peer.send(HubMessage::Close(Close::default())).await;
    assert_eq!(peer.expect_end().await, Some(Close::default()));
    handle.closed().await;
}

#[tokio::test(start_paused = true)]
async fn hooks_see_connects_and_disconnects_and_a_failing_connect_closes() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (connected, disconnected) = (log.clone(), log.clone());
    let hub = Hub::builder()
        .authenticate(|info| async move { Ok(info.access_token) })
        .on_connected(move |ctx: Context| {
            let log = connected.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(format!("connected {:?}", ctx.user_id()));
                if ctx.user_id() == Some("mallory") {
                    return Err(HubError::new("go away"));
                }
                Ok(())
            }
        })
        .on_disconnected(move |ctx: Context, error| {
            let log = disconnected.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(format!("disconnected {:?} {error:?}", ctx.user_id()));
            }
        })
        .build();
    let info = courier::TransportInfo::new().with_access_token("alice");
    let (mut alice, handle) =
        Peer::open_with(&hub, Protocol::Json, info, ConnectionOptions::default()).await;
    alice.handshake(1).await;
    alice.close().await;
    handle.closed().await;

    let info = courier::TransportInfo::new().with_access_token("mallory");
    let (mut mallory, handle) =
        Peer::open_with(&hub, Protocol::Json, info, ConnectionOptions::default()).await;
    mallory.handshake(1).await;
    assert_eq!(
        mallory.expect_end().await,
        Some(Close {
            error: Some("Connection closed with an error. HubException: go away".into()),
            allow_reconnect: false
        })
    );
    handle.closed().await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "connected Some(\"alice\")",
            "disconnected Some(\"alice\") None",
            "connected Some(\"mallory\")",
            "disconnected Some(\"mallory\") Some(\"Connection closed with an error. HubException: go away\")",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_auth_hook_can_refuse_a_connection() {
    let hub = Hub::builder()
        .authenticate(|info| async move {
            info.access_token
                .map(Some)
                .ok_or_else(|| "no token".to_owned())
        })
        .build();
    let (server, _client) = memory::pair();
    let refused = hub.accept(server, ConnectionOptions::default()).await;
    assert!(matches!(refused, Err(AcceptError::Unauthorized(reason)) if reason == "no token"));
}

#[tokio::test(start_paused = true)]
async fn an_identity_from_authenticate_is_taken_without_running_the_hook_again() {
    let runs = Arc::new(Mutex::new(0));
    let counted = runs.clone();
    let hub = Hub::builder()
        .authenticate(move |info| {
            *counted.lock().unwrap() += 1;
            async move {
                info.access_token
                    .map(Some)
                    .ok_or_else(|| "no token".to_owned())
            }
        })
        .method("WhoAmI", |ctx: Context, ()| async move {
            Ok::<_, HubError>((
                ctx.connection_id().to_string(),
                ctx.user_id().map(str::to_owned),
            ))
        })
        .build();
    let info = courier::TransportInfo::new().with_access_token("alice");
    assert_eq!(
        hub.authenticate(&info).await.unwrap(),
        Identity::user("alice")
    );
    assert!(matches!(
        hub.authenticate(&courier::TransportInfo::new()).await,
        Err(AcceptError::Unauthorized(reason)) if reason == "no token"
    ));
    assert_eq!(*runs.lock().unwrap(), 2);

    // The transport layer's connection id and identity: `accept` runs no hook, and methods see both.
    let options = ConnectionOptions::default()
        .connection_id("from-negotiate")
        .identity(Identity::user("alice"));
    let (mut peer, handle) = Peer::open_with(&hub, Protocol::Json, info, options).await;
    peer.handshake(1).await;
    assert_eq!(handle.id().as_str(), "from-negotiate");
    let (id, user): (String, Option<String>) = peer.call_ok("1", "WhoAmI", &[]).await;
    assert_eq!(
        (id.as_str(), user.as_deref()),
        ("from-negotiate", Some("alice"))
    );
    assert_eq!(*runs.lock().unwrap(), 2);

    // Without them, `accept` runs the hook and makes an id.
    let info = courier::TransportInfo::new().with_access_token("bob");
    let (mut peer, handle) =
        Peer::open_with(&hub, Protocol::Json, info, ConnectionOptions::default()).await;
    peer.handshake(1).await;
    let (id, user): (String, Option<String>) = peer.call_ok("1", "WhoAmI", &[]).await;
    assert_eq!(
        (id.as_str(), user.as_deref()),
        (handle.id().as_str(), Some("bob"))
    );
    assert_eq!(id.len(), 22);
    assert_eq!(*runs.lock().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn abort_ends_the_connection_with_a_plain_close() {
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let log = disconnects.clone();
    let hub = Hub::builder()
        .method("Leave", |ctx: Context, ()| async move {
            ctx.abort();
            Ok::<_, HubError>(())
        })
        .on_disconnected(move |_ctx: Context, error| {
            let log = log.clone();
            async move { log.lock().unwrap().push(error) }
        })
        .build();
    for protocol in PROTOCOLS {
        let (mut peer, handle) = Peer::connect(&hub, protocol).await;
        peer.send(common::invocation(protocol, Some("1"), "Leave", &[]))
            .await;
        // A plain Close: no error, no allowReconnect (`{"type":7}`).
        let close = loop {
            match peer.recv_any().await {
                Some(HubMessage::Close(close)) => break close,
                Some(HubMessage::Completion(_)) => {}
                other => panic!("expected a Close, got {other:?}"),
            }
        };
        assert_eq!(close, Close::default());
        handle.closed().await;
    }
    assert_eq!(*disconnects.lock().unwrap(), [None, None]);

    // Under stateful reconnect too, the connection ends for good at once: it waits for no new transport.
    let options = ConnectionOptions::default().stateful_reconnect(true);
    let (mut peer, handle) =
        Peer::open_with(&hub, Protocol::Json, courier::TransportInfo::new(), options).await;
    peer.handshake(2).await;
    let start = Instant::now();
    peer.send(common::invocation(Protocol::Json, Some("1"), "Leave", &[]))
        .await;
    let close = loop {
        match peer.recv_any().await {
            Some(HubMessage::Close(close)) => break close,
            Some(_) => {}
            None => panic!("expected a Close"),
        }
    };
    assert_eq!(close, Close::default());
    handle.closed().await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    let (server, _client) = memory::pair();
    assert!(handle.reattach(server).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_running_invocations_then_closes_every_connection() {
    let hub = hub(HubOptions::default());
    let (mut busy, busy_handle) = Peer::connect(&hub, Protocol::Json).await;
    let (mut idle, idle_handle) = Peer::connect(&hub, Protocol::MessagePack).await;
    busy.send(common::invocation(
        Protocol::Json,
        Some("1"),
        "Sleep",
        &[json!(5)],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let shutdown = tokio::spawn({
        let hub = hub.clone();
        async move { hub.shutdown(Duration::from_secs(30)).await }
    });
    let reconnect = Close {
        error: None,
        allow_reconnect: true,
    };
    assert_eq!(idle.expect_end().await, Some(reconnect.clone()));
    let completion = common::expect_completion(busy.recv().await);
    assert_eq!(common::result::<u64>(&completion), 5);
    assert_eq!(busy.expect_end().await, Some(reconnect));
    assert!(shutdown.await.unwrap(), "graceful");
    assert!(busy_handle.is_closed() && idle_handle.is_closed());
    let (server, _client) = memory::pair();
    assert!(matches!(
        hub.accept(server, ConnectionOptions::default()).await,
        Err(AcceptError::ShuttingDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_what_outlives_its_deadline() {
    let hub = hub(HubOptions::default());
    let (mut busy, handle) = Peer::connect(&hub, Protocol::Json).await;
    busy.send(common::invocation(
        Protocol::Json,
        Some("1"),
        "Sleep",
        &[json!(3600)],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = Instant::now();
    assert!(!hub.shutdown(Duration::from_secs(5)).await);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(handle.is_closed());
}

#[test]
fn options_default_to_aspnet_core_values() {
    let options = HubOptions::default();
    assert_eq!(options.maximum_receive_message_size, Some(32 * 1024));
    assert_eq!(options.keep_alive_interval, Duration::from_secs(15));
    assert_eq!(options.client_timeout_interval, Duration::from_secs(30));
    assert_eq!(options.handshake_timeout, Duration::from_secs(15));
    assert_eq!(options.maximum_parallel_invocations_per_client, 1);
    assert_eq!(options.stream_buffer_capacity, 10);
    assert_eq!(options.stateful_reconnect_buffer_size, 100_000);
    assert!(!options.enable_detailed_errors);
    assert_eq!(options.send_timeout, Duration::from_secs(10));
    assert_eq!(options.disconnect_timeout, Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn replies_ready_before_a_fatal_error_are_sent_before_the_close() {
    let hub = hub(HubOptions::default());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    let mut frame =
        b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Missing\",\"arguments\":[]}\x1e".to_vec();
    frame.extend_from_slice(b"not json\x1e");
    peer.send_frame(Frame::Text(frame.into())).await;
    let refused = common::expect_completion(peer.recv().await);
    assert_eq!(refused.invocation_id, "1");
    assert_eq!(peer.expect_end().await, Some(closed_with_error()));
}
