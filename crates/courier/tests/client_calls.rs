//! The client against the courier server over in-memory transports: invoke, send, errors, client results and
//! streams both ways, in both protocols.
//!
//! A server bug makes replies to some requests wait for the next event (up to the 15 s keep-alive); paused time
//! keeps these tests fast meanwhile.

mod client_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use courier::client::{
    Args, HubConnection, HubConnectionBuilder, InProcessConnector, InvokeError, StartError,
};
use courier::protocol::Protocol;
use futures::StreamExt;
use tokio::sync::mpsc;

const PROTOCOLS: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

fn builder(protocol: Protocol, cancelled: &Arc<AtomicBool>) -> HubConnectionBuilder {
    HubConnection::builder(InProcessConnector::new(client_common::hub(
        cancelled.clone(),
    )))
    .protocol(protocol)
}

#[tokio::test(start_paused = true)]
async fn invoke_returns_results_and_server_errors() {
    for protocol in PROTOCOLS {
        let cancelled = Arc::default();
        let connection = builder(protocol, &cancelled).start().await.unwrap();
        assert_eq!(
            connection.invoke::<i64>("add", (40, 2)).await.unwrap(),
            42,
            "{protocol}"
        );
        assert_eq!(
            connection.invoke::<i64>("ADD", (1, 2)).await.unwrap(),
            3,
            "names ignore case"
        );
        let id: String = connection.invoke("WhoAmI", ()).await.unwrap();
        assert_eq!(Some(id), connection.connection_id());
        assert_eq!(
            connection.invoke::<()>("Missing", ()).await,
            Err(InvokeError::Hub(
                "Failed to invoke 'Missing' due to an error on the server. HubException: Method does not exist."
                    .into()
            ))
        );
        assert_eq!(
            connection.invoke::<()>("Fail", ()).await,
            Err(InvokeError::Hub(
                "An unexpected error occurred invoking 'Fail' on the server. HubException: nope"
                    .into()
            ))
        );
        assert_eq!(
            connection.invoke::<i64>("Add", (1,)).await,
            Err(InvokeError::Hub(
                "Failed to invoke 'Add' due to an error on the server.".into()
            ))
        );
        assert!(matches!(
            connection.invoke::<String>("Add", (1, 2)).await,
            Err(InvokeError::Protocol(_))
        ));
        connection.stop().await;
        assert_eq!(
            connection.invoke::<i64>("Add", (1, 2)).await,
            Err(InvokeError::NotConnected)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn send_reaches_the_server_and_the_server_calls_handlers() {
    for protocol in PROTOCOLS {
        let cancelled = Arc::default();
        let (notes_tx, mut notes) = mpsc::channel(4);
        let connection = builder(protocol, &cancelled)
            .on("note", move |(text,): (String,)| {
                let notes = notes_tx.clone();
                async move { notes.send(text).await.map_err(|e| e.to_string()) }
            })
            .start()
            .await
            .unwrap();
        connection
            .send("Notify", ("hello".to_owned(),))
            .await
            .unwrap();
        assert_eq!(notes.recv().await.as_deref(), Some("hello"), "{protocol}");
        connection.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn client_results_answer_the_server() {
    for protocol in PROTOCOLS {
        let cancelled = Arc::default();
        let connection = builder(protocol, &cancelled)
            .on("Ask", |(question,): (String,)| async move {
                if question == "bad" {
                    Err("I refuse")
                } else {
                    Ok(format!("{question}: yes"))
                }
            })
            .start()
            .await
            .unwrap();
        let answer: String = connection.invoke("AskClient", ("ready?",)).await.unwrap();
        assert_eq!(answer, "ready?: yes", "{protocol}");
        let refused = connection.invoke::<String>("AskClient", ("bad",)).await;
        assert_eq!(
            refused,
            Err(InvokeError::Hub(
                "An unexpected error occurred invoking 'AskClient' on the server. HubException: I refuse".into()
            ))
        );
        connection.stop().await;

        // Without a handler the client answers as the JavaScript client does.
        let connection = builder(protocol, &cancelled).start().await.unwrap();
        let refused = connection.invoke::<String>("AskClient", ("anyone?",)).await;
        assert_eq!(
            refused,
            Err(InvokeError::Hub(
                "An unexpected error occurred invoking 'AskClient' on the server. HubException: Client didn't \
                 provide a result."
                    .into()
            ))
        );
        connection.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn streams_from_the_server_end_and_can_be_cancelled() {
    for protocol in PROTOCOLS {
        let cancelled = Arc::new(AtomicBool::new(false));
        let connection = builder(protocol, &cancelled).start().await.unwrap();
        let items: Vec<u64> = connection
            .stream::<u64>("Count", (5,))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items, [0, 1, 2, 3, 4], "{protocol}");

        let mut forever = connection.stream::<u8>("Forever", ()).await.unwrap();
        assert_eq!(forever.next().await, Some(Ok(1)));
        assert!(!cancelled.load(Ordering::SeqCst));
        drop(forever);
        for _ in 0..50 {
            if cancelled.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            cancelled.load(Ordering::SeqCst),
            "dropping the stream cancels it on the server"
        );

        let mut wrong = connection.stream::<u8>("Add", (1, 2)).await.unwrap();
        assert_eq!(
            wrong.next().await,
            Some(Err(InvokeError::Hub(
                "The client attempted to invoke the non-streaming 'Add' method with a streaming invocation.".into()
            )))
        );
        assert_eq!(wrong.next().await, None);
        // The connection still works after all that.
        assert_eq!(connection.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);
        connection.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn upload_streams_reach_the_server() {
    for protocol in PROTOCOLS {
        let cancelled = Arc::default();
        let connection = builder(protocol, &cancelled).start().await.unwrap();
        let numbers = futures::stream::iter(1..=100i64);
        let sum: i64 = connection
            .invoke("Sum", Args::new().upload(numbers))
            .await
            .unwrap();
        assert_eq!(sum, 5050, "{protocol}");
        let sum: i64 = connection
            .invoke("Sum", Args::new().upload(futures::stream::empty::<i64>()))
            .await
            .unwrap();
        assert_eq!(sum, 0);
        connection.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_handshake_fails_start() {
    let (connector, mut servers) = client_common::ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        client_common::accept_handshake(
            &mut server,
            r#"{"error":"Requested protocol 'json' is not available."}"#,
        )
        .await
    });
    let error = HubConnection::builder(connector).start().await.unwrap_err();
    assert!(matches!(error, StartError::Handshake(_)));
    assert_eq!(
        error.to_string(),
        "Server returned handshake error: Requested protocol 'json' is not available."
    );
    assert_eq!(
        server.await.unwrap(),
        "{\"protocol\":\"json\",\"version\":1}\u{1e}"
    );
}

/// Reads records (JSON text without the separator) until `count` have arrived; frames may hold several.
async fn records(
    server: &mut courier::transport::memory::MemoryTransport,
    count: usize,
) -> Vec<String> {
    let mut records = Vec::new();
    while records.len() < count {
        let text = client_common::next_text(server)
            .await
            .expect("the client is connected");
        records.extend(text.split_terminator('\u{1e}').map(str::to_owned));
    }
    records
}

#[tokio::test(start_paused = true)]
async fn the_wire_carries_what_the_javascript_client_sends() {
    use courier::Frame;
    use futures::SinkExt;

    let (connector, mut servers) = client_common::ScriptedConnector::new();
    let server = tokio::spawn(async move {
        let mut server = servers.recv().await.unwrap();
        client_common::accept_handshake(&mut server, "{}").await;
        let mut seen = records(&mut server, 6).await;
        let done = "{\"type\":3,\"invocationId\":\"1\",\"result\":3}\u{1e}\
                    {\"type\":1,\"invocationId\":\"s1\",\"target\":\"Unknown\",\"arguments\":[]}\u{1e}";
        server.send(Frame::Text(done.into())).await.unwrap();
        seen.extend(records(&mut server, 1).await);
        seen
    });
    let connection = HubConnection::builder(connector).start().await.unwrap();
    let sum: i64 = connection
        .invoke(
            "Sum",
            Args::new().arg(0).upload(futures::stream::iter([1, 2])),
        )
        .await
        .unwrap();
    assert_eq!(sum, 3);
    assert_eq!(
        server.await.unwrap(),
        [
            r#"{"type":6}"#,
            r#"{"type":1,"target":"courier.hello","arguments":[{"window":64,"resume":{}}]}"#,
            // Upload streams take their ids before the invocation, as in the JavaScript client.
            r#"{"type":1,"invocationId":"1","target":"Sum","arguments":[0],"streamIds":["0"]}"#,
            r#"{"type":2,"invocationId":"0","item":1}"#,
            r#"{"type":2,"invocationId":"0","item":2}"#,
            r#"{"type":3,"invocationId":"0"}"#,
            r#"{"type":3,"invocationId":"s1","error":"Client didn't provide a result."}"#,
        ]
    );
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_stream_reader_slows_the_connection_without_timing_it_out() {
    let cancelled = Arc::default();
    let connection = builder(Protocol::Json, &cancelled).start().await.unwrap();
    let mut events = connection.events();
    let mut stream = connection.stream::<u64>("Count", (40,)).await.unwrap();
    let mut items = vec![stream.next().await.unwrap().unwrap()];
    // Far longer than the server timeout: the connection stops reading meanwhile, and the silence is not held
    // against the server.
    tokio::time::sleep(Duration::from_secs(90)).await;
    while let Some(item) = stream.next().await {
        items.push(item.unwrap());
    }
    assert_eq!(items, (0..40).collect::<Vec<_>>());
    assert_eq!(connection.invoke::<i64>("Add", (1, 1)).await, Ok(2));
    assert!(events.try_recv().is_err(), "still the same connection");
    connection.stop().await;
}
