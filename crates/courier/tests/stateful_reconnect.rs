//! Stateful reconnect (HUB-PROTOCOL.md §7): numbering, acks, the replay after a reattach, and its failures.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Peer, stream_invocation};
use courier::TransportInfo;
use courier::server::{
    ConnectionHandle, ConnectionOptions, Context, Hub, HubError, HubOptions, ReattachError,
};
use courier::transport::memory;
use courier_protocol::{Ack, Close, CompletionResult, HubMessage, Protocol, Sequence};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;

fn hub(options: HubOptions, disconnects: Arc<Mutex<Vec<Option<String>>>>) -> Hub {
    Hub::builder()
        .options(options)
        .method("WhoAmI", |ctx: Context, ()| async move {
            Ok::<_, HubError>(ctx.connection_id().to_string())
        })
        .stream_method("Tick", |_ctx: Context, (count,): (u64,)| {
            futures::stream::unfold(0u64, move |n| async move {
                if n == count {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, HubError>(n), n + 1))
            })
        })
        .on_disconnected(move |_ctx, error| {
            let disconnects = disconnects.clone();
            async move { disconnects.lock().unwrap().push(error) }
        })
        .build()
}

async fn connect_stateful(hub: &Hub, protocol: Protocol) -> (Peer, ConnectionHandle) {
    let options = ConnectionOptions::default().stateful_reconnect(true);
    let (mut peer, handle) = Peer::open_with(hub, protocol, TransportInfo::new(), options).await;
    peer.handshake(2).await;
    (peer, handle)
}

/// The client's receive side of §7: ids counted from 1, duplicates after a `Sequence` dropped.
#[derive(Default)]
struct Receiver {
    next: u64,
    latest: u64,
}

impl Receiver {
    /// Whether to keep a received message (trackable ones are numbered).
    fn keep(&mut self, message: &HubMessage) -> bool {
        match message {
            HubMessage::Sequence(Sequence { sequence_id }) => {
                assert!(
                    u64::try_from(*sequence_id).unwrap() <= self.next + 1,
                    "the server replays from what we lack"
                );
                self.next = u64::try_from(*sequence_id).unwrap();
                false
            }
            message if message.is_trackable() => {
                if self.next == 0 {
                    self.next = 1;
                }
                let id = self.next;
                self.next += 1;
                if id <= self.latest {
                    return false;
                }
                self.latest = id;
                true
            }
            _ => false,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_mid_way_resumes_on_a_new_transport_without_loss_or_duplicates() {
    for protocol in common::PROTOCOLS {
        let disconnects = Arc::new(Mutex::new(Vec::new()));
        let hub = hub(HubOptions::default(), disconnects.clone());
        let (mut peer, handle) = connect_stateful(&hub, protocol).await;
        let mut numbering = Receiver::default();
        let mut items = Vec::new();
        peer.send(stream_invocation(protocol, "t", "Tick", &[json!(8)]))
            .await;
        while items.len() < 3 {
            let message = peer.recv().await;
            if numbering.keep(&message)
                && let HubMessage::StreamItem(item) = message
            {
                items.push(item.item.deserialize::<u64>().unwrap());
            }
        }
        peer.transport.break_link();
        tokio::time::sleep(Duration::from_millis(3500)).await;

        let (server, client) = memory::pair();
        handle.reattach(server).await.unwrap();
        let mut peer = Peer::over(client, protocol);
        // The server acked our StreamInvocation before the cut, so we replay nothing.
        peer.send(HubMessage::Sequence(Sequence { sequence_id: 2 }))
            .await;
        let first = peer.recv().await;
        assert!(matches!(first, HubMessage::Sequence(_)), "{first:?}");
        numbering.keep(&first);
        loop {
            let message = peer.recv().await;
            if !numbering.keep(&message) {
                continue;
            }
            match message {
                HubMessage::StreamItem(item) => items.push(item.item.deserialize::<u64>().unwrap()),
                HubMessage::Completion(done) => {
                    assert_eq!(done.result, CompletionResult::Void);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(items, (0..8).collect::<Vec<_>>(), "{protocol}");
        let id: String = peer.call_ok("w", "WhoAmI", &[]).await;
        assert_eq!(id, handle.id().as_str());
        assert!(!handle.is_closed());
        assert_eq!(*disconnects.lock().unwrap(), [], "{protocol}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_server_acks_received_messages_every_second_only_when_stateful() {
    let hub = hub(HubOptions::default(), Arc::default());
    let (mut peer, _handle) = connect_stateful(&hub, Protocol::Json).await;
    let start = Instant::now();
    for _ in 0..3 {
        peer.send(common::invocation(Protocol::Json, None, "WhoAmI", &[]))
            .await;
    }
    assert_eq!(peer.recv().await, HubMessage::Ack(Ack { sequence_id: 3 }));
    assert_eq!(start.elapsed(), Duration::from_secs(1));

    // Version 1 despite the grant: no stateful reconnect, so no acks, and no reattach.
    let options = ConnectionOptions::default().stateful_reconnect(true);
    let (mut plain, handle) =
        Peer::open_with(&hub, Protocol::Json, TransportInfo::new(), options).await;
    plain.handshake(1).await;
    plain
        .send(common::invocation(Protocol::Json, None, "WhoAmI", &[]))
        .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), plain.recv())
            .await
            .is_err()
    );
    let (server, _client) = memory::pair();
    let refused = handle.reattach(server).await.unwrap_err();
    assert!(matches!(refused.reason(), ReattachError::ConnectionGone));
}

#[tokio::test(start_paused = true)]
async fn a_full_buffer_holds_sends_until_the_client_acks() {
    let hub = hub(
        HubOptions::default().stateful_reconnect_buffer_size(60),
        Arc::default(),
    );
    let (mut peer, _handle) = connect_stateful(&hub, Protocol::Json).await;
    peer.send(stream_invocation(Protocol::Json, "t", "Tick", &[json!(20)]))
        .await;
    let mut received = 0;
    let mut count_items = async |peer: &mut Peer, seconds| {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while let Ok(message) = tokio::time::timeout_at(deadline, peer.recv()).await {
            if matches!(message, HubMessage::StreamItem(_)) {
                received += 1;
            }
        }
        received
    };
    // Each item is 39 bytes of JSON: the second one fills the buffer, the third waits.
    assert_eq!(count_items(&mut peer, 10).await, 2);
    peer.send(HubMessage::Ack(Ack { sequence_id: 2 })).await;
    assert_eq!(count_items(&mut peer, 10).await, 4);
}

/// The trackable messages that arrive within `seconds` (the server's Pings and Acks left out).
async fn received_within(peer: &mut Peer, seconds: u64) -> Vec<HubMessage> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut messages = Vec::new();
    while let Ok(message) = tokio::time::timeout_at(deadline, peer.recv()).await {
        if message.is_trackable() {
            messages.push(message);
        }
    }
    messages
}

#[tokio::test(start_paused = true)]
async fn a_message_larger_than_the_buffer_goes_once_the_buffer_is_empty() {
    let hub = hub(
        HubOptions::default().stateful_reconnect_buffer_size(10),
        Arc::default(),
    );
    let (mut peer, _handle) = connect_stateful(&hub, Protocol::Json).await;
    peer.send(stream_invocation(Protocol::Json, "t", "Tick", &[json!(3)]))
        .await;
    // Each 39-byte item is larger than the whole buffer: one goes, the next waits for its ack.
    let items = |messages: &[HubMessage]| {
        messages
            .iter()
            .filter(|m| matches!(m, HubMessage::StreamItem(_)))
            .count()
    };
    assert_eq!(items(&received_within(&mut peer, 10).await), 1);
    peer.send(HubMessage::Ack(Ack { sequence_id: 1 })).await;
    assert_eq!(items(&received_within(&mut peer, 10).await), 1);
    peer.send(HubMessage::Ack(Ack { sequence_id: 2 })).await;
    assert_eq!(items(&received_within(&mut peer, 10).await), 1);
}

#[tokio::test(start_paused = true)]
async fn replies_to_the_client_wait_in_order_while_the_buffer_is_over_its_bound() {
    let hub = hub(
        HubOptions::default().stateful_reconnect_buffer_size(60),
        Arc::default(),
    );
    let (mut peer, _handle) = connect_stateful(&hub, Protocol::Json).await;
    peer.send(stream_invocation(Protocol::Json, "t", "Tick", &[json!(20)]))
        .await;
    let first = received_within(&mut peer, 10).await;
    assert_eq!(first.len(), 2, "{first:?}");
    // The buffer is over its bound: the error answer to an unknown method waits too, while acks are still read.
    peer.send(common::invocation(Protocol::Json, Some("x"), "Nope", &[]))
        .await;
    assert_eq!(received_within(&mut peer, 10).await, []);
    peer.send(HubMessage::Ack(Ack { sequence_id: 2 })).await;
    // The held reply goes first, and alone: it takes the buffer over its bound again.
    let after = received_within(&mut peer, 10).await;
    assert!(
        matches!(&after[..], [HubMessage::Completion(c)] if &*c.invocation_id == "x"),
        "{after:?}"
    );
    peer.send(HubMessage::Ack(Ack { sequence_id: 3 })).await;
    let after = received_within(&mut peer, 10).await;
    assert!(
        matches!(
            &after[..],
            [HubMessage::StreamItem(_), HubMessage::StreamItem(_)]
        ),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_floods_without_acknowledging_is_disconnected() {
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let hub = hub(
        HubOptions::default().stateful_reconnect_buffer_size(60),
        disconnects.clone(),
    );
    let (mut peer, handle) = connect_stateful(&hub, Protocol::Json).await;
    peer.send(stream_invocation(Protocol::Json, "t", "Tick", &[json!(20)]))
        .await;
    assert_eq!(received_within(&mut peer, 10).await.len(), 2);
    // Each answer is over 100 bytes: the second one no longer fits in what the link holds for replies.
    for id in ["a", "b"] {
        peer.send(common::invocation(Protocol::Json, Some(id), "Nope", &[]))
            .await;
    }
    assert_eq!(
        peer.expect_end().await,
        Some(Close {
            error: Some("Connection closed with an error.".into()),
            allow_reconnect: true
        })
    );
    handle.closed().await;
    assert_eq!(
        *disconnects.lock().unwrap(),
        [Some("Connection closed with an error.".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_sequence_ahead_of_what_the_server_received_is_fatal() {
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let hub = hub(HubOptions::default(), disconnects.clone());
    let (peer, handle) = connect_stateful(&hub, Protocol::Json).await;
    peer.transport.break_link();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (server, client) = memory::pair();
    handle.reattach(server).await.unwrap();
    let mut peer = Peer::over(client, Protocol::Json);
    peer.send(HubMessage::Sequence(Sequence { sequence_id: 5 }))
        .await;
    assert_eq!(
        peer.recv().await,
        HubMessage::Sequence(Sequence { sequence_id: 1 })
    );
    assert_eq!(
        peer.expect_end().await,
        Some(Close {
            error: Some("Connection closed with an error.".into()),
            allow_reconnect: false
        })
    );
    handle.closed().await;
    assert_eq!(
        *disconnects.lock().unwrap(),
        [Some("Connection closed with an error.".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_reattach_within_the_disconnect_timeout_the_connection_ends() {
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let hub = hub(HubOptions::default(), disconnects.clone());
    let (peer, handle) = connect_stateful(&hub, Protocol::MessagePack).await;
    let start = Instant::now();
    peer.transport.break_link();
    handle.closed().await;
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(disconnects.lock().unwrap().len(), 1);
    assert!(
        disconnects.lock().unwrap()[0].is_some(),
        "the disconnect hook hears why"
    );
    let (server, mut client) = memory::pair();
    let refused = handle.reattach(server).await.unwrap_err();
    assert!(matches!(refused.reason(), ReattachError::ConnectionGone));
    // The transport comes back still open, so that its owner can close it properly.
    let mut server = refused.into_transport();
    server.close().await.unwrap();
    assert!(client.next().await.is_none());
}
