//! The handshake (HUB-PROTOCOL.md §3): protocols, versions, errors and the timeout.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{PROTOCOLS, Peer};
use courier::server::{ConnectionOptions, Hub, HubError, HubOptions};
use courier::{Frame, TransportInfo};
use courier_protocol::Protocol;
use courier_protocol::handshake::HandshakeResponse;
use serde_json::json;

fn hub(options: HubOptions) -> Hub {
    Hub::builder()
        .options(options)
        .method("Echo", |_ctx, (text,): (String,)| async move {
            Ok::<_, HubError>(text)
        })
        .build()
}

async fn answer_to(hub: &Hub, info: TransportInfo, request: &'static [u8]) -> (Peer, HubResponse) {
    let (mut peer, _handle) =
        Peer::open_with(hub, Protocol::Json, info, ConnectionOptions::default()).await;
    peer.send_frame(Frame::Text(Bytes::from_static(request)))
        .await;
    let response = peer.handshake_response().await;
    (peer, response)
}

type HubResponse = HandshakeResponse;

#[tokio::test(start_paused = true)]
async fn both_protocols_at_versions_1_and_2_are_accepted_and_answered_in_their_frame_kind() {
    let hub = hub(HubOptions::default());
    for protocol in PROTOCOLS {
        for version in [1, 2] {
            let (mut peer, _handle) = Peer::open(&hub, protocol).await;
            peer.handshake(version).await;
            let echoed: String = peer.call_ok("1", "Echo", &[json!("hi")]).await;
            assert_eq!(echoed, "hi");
            let text = protocol == Protocol::Json;
            assert!(
                peer.text_frames.iter().all(|t| *t == text),
                "{protocol}: {:?}",
                peer.text_frames
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn hub_messages_in_the_handshake_frame_are_processed() {
    let hub = hub(HubOptions::default());
    let (mut peer, _handle) = Peer::open(&hub, Protocol::Json).await;
    peer.send_frame(Frame::Text(Bytes::from_static(
        b"{\"protocol\":\"json\",\"version\":1}\x1e{\"type\":1,\"invocationId\":\"7\",\"target\":\"echo\",\"arguments\":[\"x\"]}\x1e",
    )))
    .await;
    assert_eq!(
        peer.handshake_response().await,
        HandshakeResponse::success()
    );
    let completion = common::expect_completion(peer.recv().await);
    assert_eq!(completion.invocation_id, "7");
    assert_eq!(common::result::<String>(&completion), "x");
}

#[tokio::test(start_paused = true)]
async fn refusals_use_the_aspnet_core_texts_and_end_the_connection() {
    let hub = hub(HubOptions::default());
    let cases: [(TransportInfo, &'static [u8], &str); 4] = [
        (
            TransportInfo::new(),
            b"{\"protocol\":\"foo\",\"version\":1}\x1e",
            "The protocol 'foo' is not supported.",
        ),
        (
            TransportInfo::new(),
            b"{\"protocol\":\"json\",\"version\":3}\x1e",
            "The server does not support version 3 of the 'json' protocol.",
        ),
        (
            TransportInfo::new().with_binary(false),
            b"{\"protocol\":\"messagepack\",\"version\":1}\x1e",
            "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' \
             transfer format.",
        ),
        (
            TransportInfo::new(),
            b"{}\x1e",
            "An unexpected error occurred during connection handshake.",
        ),
    ];
    for (info, request, expected) in cases {
        let (mut peer, response) = answer_to(&hub, info, request).await;
        assert_eq!(response.error.as_deref(), Some(expected));
        assert_eq!(peer.expect_end().await, None);
    }
}

#[tokio::test(start_paused = true)]
async fn detailed_errors_explain_a_malformed_request() {
    let hub = hub(HubOptions::default().enable_detailed_errors(true));
    let (_peer, response) = answer_to(&hub, TransportInfo::new(), b"{}\x1e").await;
    assert_eq!(
        response.error.as_deref(),
        Some(
            "An unexpected error occurred during connection handshake. InvalidDataException: Missing required \
             property 'protocol'. Message content: {}"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_handshake_not_completed_in_15_seconds_is_canceled() {
    let hub = hub(HubOptions::default());
    let (mut peer, handle) = Peer::open(&hub, Protocol::Json).await;
    let start = tokio::time::Instant::now();
    peer.send_frame(Frame::Text(Bytes::from_static(b"{\"protocol\":")))
        .await;
    let response = peer.handshake_response().await;
    assert_eq!(response.error.as_deref(), Some("Handshake was canceled."));
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    handle.closed().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_message_limit_is_canceled() {
    let hub = hub(HubOptions::default().maximum_receive_message_size(Some(64)));
    let (mut peer, _handle) = Peer::open(&hub, Protocol::Json).await;
    peer.send_frame(Frame::Text(Bytes::from(format!(
        "{{\"protocol\":\"json\",\"x\":\"{}\"",
        "a".repeat(100)
    ))))
    .await;
    assert_eq!(
        peer.handshake_response().await.error.as_deref(),
        Some("Handshake was canceled.")
    );
}
