//! Streaming both ways: server-to-client streams with cancellation and errors, client-to-server upload streams.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    PROTOCOLS, Peer, cancel, completion, completion_error, expect_completion, stream_invocation,
    stream_item,
};
use courier::server::{Context, Hub, HubError, HubOptions, UploadStream};
use courier_protocol::{CompletionResult, HubMessage, Protocol};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;

fn hub(options: HubOptions, gate: Arc<Semaphore>) -> Hub {
    Hub::builder()
        .options(options)
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .stream_method("Count", |_ctx: Context, (n,): (u32,)| {
            futures::stream::iter((1..=n).map(Ok::<_, HubError>))
        })
        .stream_method("Forever", |_ctx: Context, ()| {
            futures::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, HubError>(n), n + 1))
            })
        })
        .stream_method("Flood", |_ctx: Context, ()| {
            futures::stream::iter(0u64..).map(Ok::<_, HubError>)
        })
        .stream_method("Fail", |_ctx: Context, (public,): (bool,)| {
            let error = if public {
                HubError::new("out of items")
            } else {
                HubError::internal("secret")
            };
            futures::stream::iter([Ok(1), Err(error)])
        })
        .method(
            "Sum",
            move |_ctx: Context, (mut numbers,): (UploadStream<i64>,)| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.expect("open").forget();
                    let mut sum = 0;
                    while let Some(n) = numbers.next().await {
                        sum += n?;
                    }
                    Ok::<_, HubError>(sum)
                }
            },
        )
        .build()
}

fn open_gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
}

fn item<T: serde::de::DeserializeOwned>(message: HubMessage, id: &str) -> T {
    match message {
        HubMessage::StreamItem(item) => {
            assert_eq!(item.invocation_id, id);
            item.item
                .deserialize()
                .expect("an item of the expected type")
        }
        other => panic!("expected a stream item, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_sends_its_items_then_a_completion() {
    let hub = hub(HubOptions::default(), open_gate());
    for protocol in PROTOCOLS {
        let (mut peer, _handle) = Peer::connect(&hub, protocol).await;
        peer.send(stream_invocation(protocol, "s", "count", &[json!(3)]))
            .await;
        for expected in 1..=3 {
            assert_eq!(item::<u32>(peer.recv().await, "s"), expected);
        }
        assert_eq!(
            expect_completion(peer.recv().await).result,
            CompletionResult::Void
        );
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_invocation_ends_a_stream_with_a_plain_completion() {
    let hub = hub(HubOptions::default(), open_gate());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    peer.send(stream_invocation(Protocol::Json, "7", "Forever", &[]))
        .await;
    assert_eq!(item::<u64>(peer.recv().await, "7"), 0);
    assert_eq!(item::<u64>(peer.recv().await, "7"), 1);
    peer.send(cancel("7")).await;
    let done = expect_completion(peer.recv().await);
    assert_eq!(
        (done.invocation_id.as_ref(), done.result),
        ("7", CompletionResult::Void)
    );
    // Nothing more arrives for it, and the id may be used again.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), peer.recv())
            .await
            .is_err()
    );
    peer.send(stream_invocation(Protocol::Json, "7", "Count", &[json!(1)]))
        .await;
    assert_eq!(item::<u32>(peer.recv().await, "7"), 1);
}

#[tokio::test(start_paused = true)]
async fn stream_errors_and_misuse_use_the_aspnet_core_texts() {
    let hub = hub(HubOptions::default(), open_gate());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::MessagePack).await;
    let protocol = Protocol::MessagePack;
    for (public, expected) in [
        (
            true,
            "An error occurred on the server while streaming results. HubException: out of items",
        ),
        (
            false,
            "An error occurred on the server while streaming results.",
        ),
    ] {
        peer.send(stream_invocation(protocol, "f", "Fail", &[json!(public)]))
            .await;
        assert_eq!(item::<i32>(peer.recv().await, "f"), 1);
        assert_eq!(
            common::error(&expect_completion(peer.recv().await)),
            expected
        );
    }
    peer.send(stream_invocation(
        protocol,
        "a",
        "Add",
        &[json!(1), json!(2)],
    ))
    .await;
    assert_eq!(
        common::error(&expect_completion(peer.recv().await)),
        "The client attempted to invoke the non-streaming 'Add' method with a streaming invocation."
    );
    peer.send(stream_invocation(protocol, "dup", "Forever", &[]))
        .await;
    peer.send(stream_invocation(protocol, "dup", "Forever", &[]))
        .await;
    let refused = expect_completion(peer.recv().await);
    assert_eq!(
        common::error(&refused),
        "Invocation ID 'dup' is already in use."
    );
}

#[tokio::test(start_paused = true)]
async fn upload_streams_feed_a_method_and_carry_the_clients_error() {
    let hub = hub(HubOptions::default(), open_gate());
    for protocol in PROTOCOLS {
        let (mut peer, _handle) = Peer::connect(&hub, protocol).await;
        peer.send(common::invocation_with_streams(
            protocol,
            Some("1"),
            "Sum",
            &[],
            &["u"],
        ))
        .await;
        for n in 1..=4 {
            peer.send(stream_item(protocol, "u", &json!(n))).await;
        }
        peer.send(completion("u", CompletionResult::Void)).await;
        assert_eq!(
            common::result::<i64>(&expect_completion(peer.recv().await)),
            10
        );

        peer.send(common::invocation_with_streams(
            protocol,
            Some("2"),
            "Sum",
            &[],
            &["v"],
        ))
        .await;
        peer.send(stream_item(protocol, "v", &json!(1))).await;
        peer.send(completion_error("v", "client gave up")).await;
        assert_eq!(
            common::error(&expect_completion(peer.recv().await)),
            "An unexpected error occurred invoking 'Sum' on the server. HubException: client gave up"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_with_an_open_upload_does_not_hold_back_other_calls() {
    // As .NET: calls with upload streams do not count against the parallel-invocation limit (default 1), or the
    // call below would wait for `Sum`, and `Sum` for items the server would no longer read.
    let hub = hub(HubOptions::default(), open_gate());
    for protocol in PROTOCOLS {
        let (mut peer, _handle) = Peer::connect(&hub, protocol).await;
        peer.send(common::invocation_with_streams(
            protocol,
            Some("1"),
            "Sum",
            &[],
            &["u"],
        ))
        .await;
        peer.send(stream_item(protocol, "u", &json!(5))).await;
        peer.send(common::invocation(
            protocol,
            Some("2"),
            "Add",
            &[json!(1), json!(2)],
        ))
        .await;
        let added = expect_completion(peer.recv().await);
        assert_eq!(added.invocation_id, "2");
        assert_eq!(common::result::<i64>(&added), 3);
        peer.send(stream_item(protocol, "u", &json!(6))).await;
        peer.send(completion("u", CompletionResult::Void)).await;
        let summed = expect_completion(peer.recv().await);
        assert_eq!(summed.invocation_id, "1");
        assert_eq!(common::result::<i64>(&summed), 11);
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_upload_buffer_pauses_reading_until_the_method_takes_items() {
    let gate = Arc::new(Semaphore::new(0));
    let options = HubOptions::default()
        .stream_buffer_capacity(2)
        .maximum_parallel_invocations_per_client(2);
    let hub = hub(options, gate.clone());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    let protocol = Protocol::Json;
    peer.send(common::invocation_with_streams(
        protocol,
        Some("sum"),
        "Sum",
        &[],
        &["u"],
    ))
    .await;
    for n in 1..=5 {
        peer.send(stream_item(protocol, "u", &json!(n))).await;
    }
    peer.send(completion("u", CompletionResult::Void)).await;
    peer.send(common::invocation(
        protocol,
        Some("add"),
        "Add",
        &[json!(1), json!(1)],
    ))
    .await;
    // The third item does not fit, so the Add behind it is not read yet.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), peer.recv())
            .await
            .is_err()
    );
    gate.add_permits(1);
    let first = expect_completion(peer.recv().await);
    let second = expect_completion(peer.recv().await);
    let (sum, add) = if first.invocation_id == "sum" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(common::result::<i64>(&sum), 15);
    assert_eq!(common::result::<i64>(&add), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_never_waits_can_still_be_canceled() {
    let hub = hub(HubOptions::default(), open_gate());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::MessagePack).await;
    peer.send(stream_invocation(Protocol::MessagePack, "f", "Flood", &[]))
        .await;
    assert_eq!(item::<u64>(peer.recv().await, "f"), 0);
    peer.send(cancel("f")).await;
    loop {
        match peer.recv().await {
            HubMessage::StreamItem(_) => {}
            HubMessage::Completion(done) => {
                assert_eq!(
                    (done.invocation_id.as_ref(), done.result),
                    ("f", CompletionResult::Void)
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
