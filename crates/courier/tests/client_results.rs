//! Client results: the server invokes a client method and awaits its Completion.

mod common;

use std::time::Duration;

use common::{Peer, arg, completion, completion_error, completion_value, expect_invocation};
use courier::server::{ClientResultError, Context, Hub, HubError, HubOptions};
use courier_protocol::{CompletionResult, Protocol};
use serde_json::json;
use tokio::time::Instant;

fn hub() -> Hub {
    Hub::builder()
        .options(HubOptions::default().maximum_parallel_invocations_per_client(2))
        .method("AskMe", |ctx: Context, (question,): (String,)| async move {
            let answer: String = ctx
                .caller()
                .invoke("Answer", (question,))
                .await
                .map_err(HubError::internal)?;
            Ok::<_, HubError>(format!("you said {answer}"))
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn the_app_invokes_a_client_and_gets_its_result_or_error() {
    let hub = hub();
    for protocol in common::PROTOCOLS {
        let (mut peer, handle) = Peer::connect(&hub, protocol).await;
        let client = hub.context().clients().client(handle.id().clone());
        let asking = tokio::spawn({
            let client = client.clone();
            async move { client.invoke::<i32>("GetNumber", (20, 22)).await }
        });
        let request = expect_invocation(peer.recv().await);
        assert_eq!(request.invocation_id.as_deref(), Some("s1"));
        assert_eq!(request.target, "GetNumber");
        assert_eq!((arg::<i32>(&request, 0), arg::<i32>(&request, 1)), (20, 22));
        peer.send(completion_value(protocol, "s1", &json!(42)))
            .await;
        assert_eq!(asking.await.unwrap().unwrap(), 42);

        let asking = tokio::spawn({
            let client = client.clone();
            async move { client.invoke::<i32>("GetNumber", ()).await }
        });
        let request = expect_invocation(peer.recv().await);
        assert_eq!(request.invocation_id.as_deref(), Some("s2"));
        peer.send(completion_error("s2", "Client didn't provide a result."))
            .await;
        let error = asking.await.unwrap().unwrap_err();
        assert!(
            matches!(&error, ClientResultError::Client(text) if text == "Client didn't provide a result.")
        );

        // A void answer reads as null.
        let asking = tokio::spawn(async move { client.invoke::<Option<i32>>("Poke", ()).await });
        let request = expect_invocation(peer.recv().await);
        peer.send(completion(
            request.invocation_id.as_deref().unwrap(),
            CompletionResult::Void,
        ))
        .await;
        assert_eq!(asking.await.unwrap().unwrap(), None);
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_invocation_times_out_and_a_gone_connection_fails() {
    let hub = hub();
    let (mut peer, handle) = Peer::connect(&hub, Protocol::Json).await;
    let client = hub.context().clients().client(handle.id().clone());
    let start = Instant::now();
    let asking = tokio::spawn({
        let client = client.clone();
        async move { client.invoke::<i32>("GetNumber", ()).await }
    });
    expect_invocation(peer.recv().await);
    assert!(matches!(
        asking.await.unwrap(),
        Err(ClientResultError::Timeout)
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(30));

    let asking = tokio::spawn({
        let client = client.clone();
        async move { client.invoke::<i32>("GetNumber", ()).await }
    });
    expect_invocation(peer.recv().await);
    peer.close().await;
    assert!(matches!(
        asking.await.unwrap(),
        Err(ClientResultError::ConnectionGone)
    ));
    handle.closed().await;
    assert!(matches!(
        client.invoke::<i32>("GetNumber", ()).await,
        Err(ClientResultError::ConnectionGone)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_method_can_ask_its_caller() {
    let hub = hub();
    let (mut peer, _handle) = Peer::connect(&hub, Protocol::Json).await;
    peer.send(common::invocation(
        Protocol::Json,
        Some("1"),
        "AskMe",
        &[json!("why?")],
    ))
    .await;
    let request = expect_invocation(peer.recv().await);
    assert_eq!(arg::<String>(&request, 0), "why?");
    peer.send(completion_value(Protocol::Json, "s1", &json!("because")))
        .await;
    let done = common::expect_completion(peer.recv().await);
    assert_eq!(common::result::<String>(&done), "you said because");
}
