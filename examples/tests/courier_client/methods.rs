//! Every conformance hub method through the Courier client (interop/test/methods.test.mjs).

use std::time::Duration;

use courier::client::{Args, InvokeError, StartError};
use courier::protocol::Protocol;
use courier_http::ConnectError;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::client::{builder, connect};
use crate::each_protocol;
use crate::server::Server;

each_protocol!(
    echo_returns_each_kind_of_value_unchanged,
    add_adds_64_bit_integers,
    fail_completes_with_the_hub_exception_text,
    who_am_i_is_the_access_token_or_null,
    get_connection_id_is_the_client_connection_id,
    counter_streams_0_to_count,
    counter_stops_when_the_client_cancels,
    sum_adds_an_upload_stream_once_it_completes,
    ask_returns_the_caller_answer,
    ask_fails_when_the_answer_handler_fails_or_is_missing,
    unknown_methods_and_wrong_argument_counts_get_aspnet_texts,
    a_token_that_is_not_a_user_id_is_refused_with_401,
);

/// Values every protocol carries unchanged: those of the Node test, and 64-bit integers a JavaScript client cannot
/// express.
fn echo_values() -> Vec<Value> {
    vec![
        json!("hello"),
        json!(""),
        json!("unicode ✓ 漢字 🚀 and a record separator \u{1e} inside"),
        json!("x".repeat(10_000)),
        json!(0),
        json!(42),
        json!(-7),
        json!(9_007_199_254_740_991_i64),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!(-0.25),
        json!(true),
        json!(false),
        json!(null),
        json!([]),
        json!([1, "two", [3], {"four": 4}]),
        json!({}),
        json!({"name": "alice", "nested": {"list": [true, null], "n": 3.5}}),
    ]
}

async fn echo_returns_each_kind_of_value_unchanged(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    for value in echo_values() {
        let echoed: Value = alice.invoke("Echo", (value.clone(),)).await.unwrap();
        assert_eq!(echoed, value);
    }
    if protocol == Protocol::MessagePack {
        // Binary data, and a timestamp extension (-1) as the JavaScript client encodes a Date: 1 700 000 000 s and
        // 123 ms in the 64-bit form (nanoseconds in the upper 30 bits, seconds in the lower 34).
        let bytes = rmpv::Value::Binary(vec![0, 1, 2, 254, 255]);
        let when = (123_000_000_u64 << 34) + 1_700_000_000;
        let when = rmpv::Value::Ext(-1, when.to_be_bytes().to_vec());
        let both = rmpv::Value::Map(vec![
            ("when".into(), when.clone()),
            ("bytes".into(), bytes.clone()),
        ]);
        for value in [bytes, when, both] {
            let echoed: rmpv::Value = alice.invoke("Echo", (value.clone(),)).await.unwrap();
            assert_eq!(echoed, value);
        }
    }
    alice.stop().await;
    server.stop().await;
}

async fn add_adds_64_bit_integers(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    for ((a, b), sum) in [
        ((40_i64, 2_i64), 42_i64),
        ((-5, 3), -2),
        ((1 << 52, 1 << 52), 1 << 53),
        ((i64::MAX - 1, 1), i64::MAX),
        ((i64::MIN + 1, -1), i64::MIN),
    ] {
        assert_eq!(
            alice.invoke::<i64>("Add", (a, b)).await,
            Ok(sum),
            "{a} + {b}"
        );
    }
    alice.stop().await;
    server.stop().await;
}

async fn fail_completes_with_the_hub_exception_text(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    assert_eq!(
        alice.invoke::<Value>("Fail", ("the reason",)).await,
        Err(InvokeError::Hub(
            "An unexpected error occurred invoking 'Fail' on the server. HubException: the reason"
                .to_owned()
        ))
    );
    alice.stop().await;
    server.stop().await;
}

async fn who_am_i_is_the_access_token_or_null(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    let anonymous = connect(&server.hub_url(), protocol, None).await;
    assert_eq!(
        alice.invoke::<Option<String>>("WhoAmI", ()).await,
        Ok(Some("alice".to_owned()))
    );
    assert_eq!(
        anonymous.invoke::<Option<String>>("WhoAmI", ()).await,
        Ok(None)
    );
    alice.stop().await;
    anonymous.stop().await;
    server.stop().await;
}

async fn get_connection_id_is_the_client_connection_id(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    let anonymous = connect(&server.hub_url(), protocol, None).await;
    let id: String = alice.invoke("GetConnectionId", ()).await.unwrap();
    assert_eq!(alice.connection_id().as_deref(), Some(id.as_str()));
    assert_eq!(
        alice.invoke::<String>("GetConnectionId", ()).await,
        Ok(id.clone())
    );
    let other: String = anonymous.invoke("GetConnectionId", ()).await.unwrap();
    assert_ne!(other, id);
    assert_eq!(anonymous.connection_id(), Some(other));
    alice.stop().await;
    anonymous.stop().await;
    server.stop().await;
}

async fn counter_streams_0_to_count(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    let items: Vec<i32> = alice
        .stream::<i32>("Counter", (5, 10))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [0, 1, 2, 3, 4]);
    let mut empty = alice.stream::<i32>("Counter", (0, 10)).await.unwrap();
    assert!(empty.next().await.is_none(), "no items");
    alice.stop().await;
    server.stop().await;
}

async fn counter_stops_when_the_client_cancels(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    let mut stream = alice.stream::<i32>("Counter", (1_000, 20)).await.unwrap();
    let mut items = Vec::new();
    while items.len() < 3 {
        items.push(stream.next().await.expect("an item").unwrap());
    }
    // Dropping the stream cancels it on the server.
    drop(stream);
    assert_eq!(items, [0, 1, 2]);
    assert_eq!(alice.invoke::<i64>("Add", (1, 1)).await, Ok(2));
    // A second stream runs after the cancelled one.
    let items: Vec<i32> = alice
        .stream::<i32>("Counter", (2, 0))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [0, 1]);
    alice.stop().await;
    server.stop().await;
}

async fn sum_adds_an_upload_stream_once_it_completes(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    let numbers = futures::stream::iter([1_i64, 2, 3, -4, 1_000_000_000_000]);
    let sum = alice
        .invoke::<i64>("Sum", Args::new().upload(numbers))
        .await;
    assert_eq!(sum, Ok(1_000_000_000_002));

    let empty = futures::stream::empty::<i64>();
    assert_eq!(
        alice.invoke::<i64>("Sum", Args::new().upload(empty)).await,
        Ok(0)
    );

    // Items written while the invocation waits, the stream completed later: the server sums as they come.
    let (tx, numbers) = futures::channel::mpsc::unbounded::<i64>();
    let feed = async move {
        for n in [i64::MAX - 10, 4, 6] {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.unbounded_send(n).unwrap();
        }
    };
    let (sum, ()) = tokio::join!(
        alice.invoke::<i64>("Sum", Args::new().upload(numbers)),
        feed
    );
    assert_eq!(sum, Ok(i64::MAX));
    alice.stop().await;
    server.stop().await;
}

async fn ask_returns_the_caller_answer(protocol: Protocol) {
    let server = Server::start();
    let alice = builder(&server.hub_url(), protocol, Some("alice"))
        .on("Answer", |(question,): (String,)| async move {
            Ok::<_, String>(format!("answer to {question}"))
        })
        .start()
        .await
        .unwrap();
    assert_eq!(
        alice.invoke::<String>("Ask", ("what time is it?",)).await,
        Ok("answer to what time is it?".to_owned())
    );
    alice.stop().await;
    server.stop().await;
}

async fn ask_fails_when_the_answer_handler_fails_or_is_missing(protocol: Protocol) {
    let server = Server::start();
    let bob = builder(&server.hub_url(), protocol, Some("bob"))
        .on("Answer", |(_question,): (String,)| async move {
            Err::<String, _>("no idea")
        })
        .start()
        .await
        .unwrap();
    assert_eq!(
        bob.invoke::<String>("Ask", ("why?",)).await,
        Err(InvokeError::Hub(
            "An unexpected error occurred invoking 'Ask' on the server. HubException: no idea"
                .to_owned()
        ))
    );
    assert_eq!(bob.invoke::<i64>("Add", (2, 2)).await, Ok(4));

    // Without an Answer handler the client answers as the JavaScript client does.
    let carol = connect(&server.hub_url(), protocol, Some("carol")).await;
    assert_eq!(
        carol.invoke::<String>("Ask", ("anyone?",)).await,
        Err(InvokeError::Hub(
            "An unexpected error occurred invoking 'Ask' on the server. HubException: Client didn't provide a \
             result."
                .to_owned()
        ))
    );
    assert_eq!(carol.invoke::<i64>("Add", (2, 3)).await, Ok(5));
    bob.stop().await;
    carol.stop().await;
    server.stop().await;
}

/// Each error must arrive on its own, with no later traffic to carry it: hence the deadline (the server's next
/// write of its own would be a keep-alive Ping 15 s later).
async fn unknown_methods_and_wrong_argument_counts_get_aspnet_texts(protocol: Protocol) {
    let server = Server::start();
    let alice = connect(&server.hub_url(), protocol, Some("alice")).await;
    let failures: [(&str, Args, &str); 4] = [
        (
            "NoSuchMethod",
            (1,).into(),
            "Failed to invoke 'NoSuchMethod' due to an error on the server. HubException: Method does not exist.",
        ),
        (
            "Add",
            (1,).into(),
            "Failed to invoke 'Add' due to an error on the server.",
        ),
        (
            "Echo",
            ().into(),
            "Failed to invoke 'Echo' due to an error on the server.",
        ),
        (
            "WhoAmI",
            ("extra",).into(),
            "Failed to invoke 'WhoAmI' due to an error on the server.",
        ),
    ];
    for (method, args, message) in failures {
        let result =
            tokio::time::timeout(Duration::from_secs(5), alice.invoke::<Value>(method, args))
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 5 s"));
        assert_eq!(
            result,
            Err(InvokeError::Hub(message.to_owned())),
            "{method}"
        );
    }
    assert_eq!(alice.invoke::<i64>("Add", (1, 2)).await, Ok(3));
    alice.stop().await;
    server.stop().await;
}

async fn a_token_that_is_not_a_user_id_is_refused_with_401(protocol: Protocol) {
    let server = Server::start();
    for token in ["not a user!", &"u".repeat(65)] {
        let refused = builder(&server.hub_url(), protocol, Some(token))
            .start()
            .await;
        let Err(StartError::Connect(error)) = refused else {
            panic!("{token:?} was not refused: {refused:?}");
        };
        assert!(
            matches!(
                error.downcast_ref::<ConnectError>(),
                Some(ConnectError::Status(status)) if status.as_u16() == 401
            ),
            "{token:?}: {error}"
        );
    }
    server.stop().await;
}
