//! Invocations: binding, results, the error texts of HUB-PROTOCOL.md §9, and the parallel invocation limit.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{PROTOCOLS, Peer, expect_completion, invocation};
use courier::server::{Context, Hub, HubError, HubOptions, UploadStream};
use courier_protocol::{CompletionResult, HubMessage, Protocol};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

fn hub(options: HubOptions) -> Hub {
    Hub::builder()
        .options(options)
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("Flip", |_ctx: Context, (p,): (Point,)| async move {
            Ok::<_, HubError>(Point { x: p.y, y: p.x })
        })
        .method("Nothing", |_ctx: Context, ()| async move {
            Ok::<_, HubError>(())
        })
        .method("Null", |_ctx: Context, ()| async move {
            Ok::<Option<i32>, HubError>(None)
        })
        .method("Refuse", |_ctx: Context, ()| async move {
            Err::<(), _>(HubError::new("Not today."))
        })
        .method("Crash", |_ctx: Context, ()| async move {
            Err::<(), _>(HubError::internal("disk on fire"))
        })
        .method("Panic", |_ctx: Context, (fail,): (bool,)| async move {
            assert!(!fail, "boom");
            Ok::<(), HubError>(())
        })
        .method(
            "Upload",
            |_ctx: Context, (_s,): (UploadStream<i32>,)| async move { Ok::<_, HubError>(()) },
        )
        .stream_method("Count", |_ctx: Context, (n,): (u32,)| {
            futures::stream::iter((1..=n).map(Ok::<_, HubError>))
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn typed_arguments_and_results_bind_in_both_protocols_and_names_ignore_case() {
    let hub = hub(HubOptions::default());
    for protocol in PROTOCOLS {
        let (mut peer, _handle) = Peer::connect(&hub, protocol).await;
        assert_eq!(
            peer.call_ok::<i64>("1", "Add", &[json!(2), json!(40)])
                .await,
            42
        );
        assert_eq!(
            peer.call_ok::<i64>("2", "aDD", &[json!(1), json!(1)]).await,
            2
        );
        let flipped: Point = peer.call_ok("3", "Flip", &[json!({"x": 1, "y": 2})]).await;
        assert_eq!(flipped, Point { x: 2, y: 1 });
        // `()` is a void completion; `None` is a null result.
        assert_eq!(
            peer.call("4", "Nothing", &[]).await.result,
            CompletionResult::Void
        );
        assert_eq!(peer.call_ok::<Option<i32>>("5", "Null", &[]).await, None);
    }
}

#[tokio::test(start_paused = true)]
async fn failures_are_answered_with_the_aspnet_core_texts() {
    let hub = hub(HubOptions::default());
    for protocol in PROTOCOLS {
        let (mut peer, _handle) = Peer::connect(&hub, protocol).await;
        let cases: [(&str, Vec<serde_json::Value>, &str); 9] = [
            (
                "Missing",
                vec![],
                "Failed to invoke 'Missing' due to an error on the server. HubException: Method does not exist.",
            ),
            (
                "Add",
                vec![json!(1)],
                "Failed to invoke 'Add' due to an error on the server.",
            ),
            (
                "Add",
                vec![json!("a"), json!(1)],
                "Failed to invoke 'Add' due to an error on the server.",
            ),
            (
                "Refuse",
                vec![],
                "An unexpected error occurred invoking 'Refuse' on the server. HubException: Not today.",
            ),
            (
                "Crash",
                vec![],
                "An unexpected error occurred invoking 'Crash' on the server.",
            ),
            (
                "Panic",
                vec![json!(true)],
                "An unexpected error occurred invoking 'Panic' on the server.",
            ),
            (
                "Count",
                vec![json!(1)],
                "The client attempted to invoke the streaming 'Count' method with a non-streaming invocation.",
            ),
            (
                "Upload",
                vec![],
                "An unexpected error occurred invoking 'Upload' on the server. HubException: Client sent 0 stream(s), \
                 Hub method expects 1.",
            ),
            (
                "Add",
                vec![json!(1), json!(2), json!(3)],
                "Failed to invoke 'Add' due to an error on the server.",
            ),
        ];
        for (i, (target, args, expected)) in cases.iter().enumerate() {
            assert_eq!(
                peer.call_err(&i.to_string(), target, args).await,
                *expected,
                "{protocol}: {target}"
            );
        }
        // The connection survives all of them.
        assert_eq!(
            peer.call_ok::<i64>("last", "Add", &[json!(1), json!(2)])
                .await,
            3
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_answer_goes_out_at_once() {
    let (mut peer, _handle) = Peer::connect(&hub(HubOptions::default()), Protocol::Json).await;
    let start = tokio::time::Instant::now();
    peer.send(invocation(Protocol::Json, Some("1"), "Nope", &[]))
        .await;
    assert!(matches!(peer.recv().await, HubMessage::Completion(_)));
    // Not with the next keep-alive Ping: paused time would have jumped.
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn detailed_errors_add_the_cause() {
    let hub = hub(HubOptions::default().enable_detailed_errors(true));
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    assert_eq!(
        peer.call_err("1", "Add", &[]).await,
        "Failed to invoke 'Add' due to an error on the server. InvalidDataException: Invocation provides 0 \
         argument(s) but target expects 2."
    );
    assert_eq!(
        peer.call_err("2", "Crash", &[]).await,
        "An unexpected error occurred invoking 'Crash' on the server. Exception: disk on fire"
    );
}

#[tokio::test(start_paused = true)]
async fn non_blocking_invocations_get_no_reply() {
    let hub = hub(HubOptions::default());
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    peer.send(invocation(Protocol::Json, None, "Missing", &[]))
        .await;
    peer.send(invocation(
        Protocol::Json,
        None,
        "Add",
        &[json!(1), json!(2)],
    ))
    .await;
    let completion = peer.call("x", "Add", &[json!(2), json!(2)]).await;
    assert_eq!(completion.invocation_id, "x");
    assert_eq!(common::result::<i64>(&completion), 4);
}

/// A hub whose `Hold` method waits for a permit of `gate`, counting how many run at once.
fn holding_hub(limit: usize, gate: Arc<Semaphore>, running: Arc<AtomicUsize>) -> Hub {
    Hub::builder()
        .options(HubOptions::default().maximum_parallel_invocations_per_client(limit))
        .method("Hold", move |_ctx: Context, (n,): (u32,)| {
            let (gate, running) = (gate.clone(), running.clone());
            async move {
                running.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("open").forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, HubError>(n)
            }
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn invocations_beyond_the_parallel_limit_wait_for_a_free_slot() {
    for limit in [1, 2] {
        let gate = Arc::new(Semaphore::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let hub = holding_hub(limit, gate.clone(), running.clone());
        let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
        for id in ["1", "2", "3"] {
            peer.send(invocation(
                Protocol::Json,
                Some(id),
                "Hold",
                &[json!(id.parse::<u32>().unwrap())],
            ))
            .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(running.load(Ordering::SeqCst), limit, "limit {limit}");
        gate.add_permits(3);
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                expect_completion(peer.recv().await)
                    .invocation_id
                    .to_string(),
            );
        }
        ids.sort();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn the_client_timeout_does_not_run_while_the_server_is_not_reading() {
    let gate = Arc::new(Semaphore::new(0));
    let hub = holding_hub(1, gate.clone(), Arc::new(AtomicUsize::new(0)));
    let (mut peer, handle) = Peer::connect(&hub, Protocol::Json).await;
    peer.send(HubMessage::Ping).await;
    peer.send(invocation(Protocol::Json, Some("1"), "Hold", &[json!(1)]))
        .await;
    peer.send(invocation(Protocol::Json, Some("2"), "Hold", &[json!(2)]))
        .await;
    // The second call waits for the first, and nothing is read meanwhile: a minute passes.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!handle.is_closed());
    gate.add_permits(2);
    assert_eq!(expect_completion(peer.recv().await).invocation_id, "1");
    assert_eq!(expect_completion(peer.recv().await).invocation_id, "2");
    // Reading resumed: now the client's silence counts again.
    assert!(peer.expect_end().await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_method_still_running_when_its_client_leaves_runs_to_its_end() {
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let hub = holding_hub(1, gate.clone(), running.clone());
    let (mut peer, handle) = Peer::connect(&hub, Protocol::Json).await;
    peer.send(invocation(Protocol::Json, Some("1"), "Hold", &[json!(1)]))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(running.load(Ordering::SeqCst), 1);
    peer.close().await;
    handle.closed().await;
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "the method was cut short"
    );
}
