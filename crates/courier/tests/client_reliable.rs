//! The Courier client's side of reliable delivery (docs/delivery.md, "The Courier client's side"), against a
//! scripted server: the test plays the server, sends exact frames and checks the exact frames the client answers.

mod client_common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_common::{ScriptedConnector, accept_handshake, next_text};
use courier::Frame;
use courier::client::{
    Backoff, HubConnection, HubConnectionBuilder, InvokeError, Policy, ReconnectDelays,
};
use courier::transport::memory::MemoryTransport;
use futures::SinkExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

const MAILBOX: &str = "user/Deliver:alice";
const PING: &str = r#"{"type":6}"#;

/// The server's end of one connection, read record by record (a frame may carry several).
struct Server {
    transport: MemoryTransport,
    records: VecDeque<String>,
}

impl Server {
    /// Accepts the next connection: answers the handshake, then reads the Ping and the hello.
    async fn accept(servers: &mut mpsc::Receiver<MemoryTransport>) -> (Self, serde_json::Value) {
        let mut transport = servers.recv().await.expect("a connection");
        accept_handshake(&mut transport, "{}").await;
        let mut server = Self {
            transport,
            records: VecDeque::new(),
        };
        assert_eq!(server.next().await.as_deref(), Some(PING));
        let hello: serde_json::Value =
            serde_json::from_str(&server.next().await.expect("the hello")).unwrap();
        assert_eq!(hello["type"], 1);
        assert_eq!(hello["target"], "courier.hello");
        assert!(
            hello.get("invocationId").is_none(),
            "the hello wants no answer"
        );
        (server, hello["arguments"][0].clone())
    }

    /// The next record from the client, without its separator; `None` once the client closed.
    async fn next(&mut self) -> Option<String> {
        while self.records.is_empty() {
            let text = next_text(&mut self.transport).await?;
            self.records
                .extend(text.split_terminator('\u{1e}').map(str::to_owned));
        }
        self.records.pop_front()
    }

    /// The next `count` records.
    async fn take(&mut self, count: usize) -> Vec<String> {
        let mut records = Vec::new();
        for _ in 0..count {
            records.push(self.next().await.expect("the client is connected"));
        }
        records
    }

    /// What the client sends in the next `period`, keep-alive Pings left out.
    async fn during(&mut self, period: Duration) -> Vec<String> {
        let mut records = Vec::new();
        let _ = tokio::time::timeout(period, async {
            while let Some(record) = self.next().await {
                if record != PING {
                    records.push(record);
                }
            }
        })
        .await;
        records
    }

    async fn send(&mut self, records: &[String]) {
        let text: String = records
            .iter()
            .flat_map(|r| [r.as_str(), "\u{1e}"])
            .collect();
        self.transport.send(Frame::Text(text.into())).await.unwrap();
    }

    /// Ends the connection with a Close that allows reconnecting.
    async fn close(mut self) {
        self.send(&[r#"{"type":7,"allowReconnect":true}"#.to_owned()])
            .await;
        while self.next().await.is_some() {}
    }
}

/// A reliable message of [`MAILBOX`] for the client method `Deliver`.
fn message(id: &str, seq: u64, floor: u64, attempt: u32, text: &str) -> String {
    let headers = json!({
        "courier-id": format!("m{seq}"),
        "courier-mailbox": MAILBOX,
        "courier-seq": seq.to_string(),
        "courier-floor": floor.to_string(),
        "courier-attempt": attempt.to_string(),
    });
    with_headers(id, &headers, text)
}

/// A client-result invocation of `Deliver` with these headers.
fn with_headers(id: &str, headers: &serde_json::Value, text: &str) -> String {
    json!({
        "type": 1,
        "headers": headers,
        "invocationId": id,
        "target": "Deliver",
        "arguments": [text],
    })
    .to_string()
}

fn acked(id: &str, result: &str) -> String {
    format!(r#"{{"type":3,"invocationId":"{id}","result":{result}}}"#)
}

fn nacked(id: &str, error: &str) -> String {
    format!(
        r#"{{"type":3,"invocationId":"{id}","error":{}}}"#,
        json!(error)
    )
}

/// What the application's `Deliver` handler was handed, in order.
type Handed = Arc<Mutex<Vec<String>>>;

/// A client whose `Deliver` handler records its argument and answers `"got <text>"`; a text starting with
/// `fail` fails the first time it is handed over, one starting with `slow` takes 10 s.
fn client(connector: ScriptedConnector) -> (HubConnectionBuilder, Handed) {
    let handed = Handed::default();
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let builder = HubConnection::builder(connector)
        .reconnect_policy(ReconnectDelays::new([Duration::ZERO; 4]))
        .on("Deliver", {
            let handed = handed.clone();
            move |(text,): (String,)| {
                let handed = handed.clone();
                let failed = failed.clone();
                async move {
                    if text.starts_with("slow") {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                    if text.starts_with("fail") && !failed.lock().unwrap().contains(&text) {
                        failed.lock().unwrap().push(text.clone());
                        return Err(format!("cannot take {text} yet"));
                    }
                    handed.lock().unwrap().push(text.clone());
                    Ok(format!("got {text}"))
                }
            }
        });
    (builder, handed)
}

fn handed_over(handed: &Handed) -> Vec<String> {
    handed.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn the_hello_carries_the_window_and_where_each_mailbox_resumes_after_every_handshake() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, hello) = Server::accept(&mut servers).await;
        let first = hello.clone();
        server
            .send(&[message("s1", 1, 1, 1, "a"), message("s2", 2, 1, 1, "b")])
            .await;
        let answers = server.take(2).await;
        assert_eq!(
            answers,
            [acked("s1", r#""got a""#), acked("s2", r#""got b""#)]
        );
        server.close().await;
        let (_server, second) = Server::accept(&mut servers).await;
        (first, second)
    });
    let connection = builder.receive_window(8).start().await.unwrap();
    let (first, second) = script.await.unwrap();
    assert_eq!(first, json!({"window": 8, "resume": {}}));
    assert_eq!(second, json!({"window": 8, "resume": {MAILBOX: 2}}));
    assert_eq!(handed_over(&handed), ["a", "b"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_resent_after_a_reconnect_is_acked_at_once_and_not_handed_twice() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        server.send(&[message("s1", 1, 1, 1, "a")]).await;
        assert_eq!(server.next().await, Some(acked("s1", r#""got a""#)));
        // The ack was lost with the connection, as far as the server knows: it resends seq 1 on the next one.
        server.close().await;
        let (mut server, hello) = Server::accept(&mut servers).await;
        assert_eq!(hello["resume"][MAILBOX], 1);
        server
            .send(&[message("s1", 1, 1, 2, "a"), message("s2", 2, 1, 1, "b")])
            .await;
        server.take(2).await
    });
    let connection = builder.start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(answers, [acked("s1", "null"), acked("s2", r#""got b""#)]);
    assert_eq!(handed_over(&handed), ["a", "b"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_resend_while_the_handler_runs_takes_over_the_answer() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        server.send(&[message("s1", 1, 1, 1, "slow-a")]).await;
        // The server's ack timeout passed: attempt 2, while the handler still runs.
        tokio::time::sleep(Duration::from_secs(5)).await;
        server.send(&[message("s2", 1, 1, 2, "slow-a")]).await;
        server.take(2).await
    });
    let connection = builder.start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [
            nacked(
                "s1",
                "courier: superseded by a later attempt of the same message"
            ),
            acked("s2", r#""got slow-a""#),
        ]
    );
    assert_eq!(handed_over(&handed), ["slow-a"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_handler_still_running_when_the_connection_drops_answers_the_resend_on_the_next_one() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        server
            .send(&[
                message("s1", 1, 1, 1, "slow-a"),
                message("s2", 2, 1, 1, "b"),
            ])
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.close().await;
        let (mut server, hello) = Server::accept(&mut servers).await;
        // Not handed over yet, as far as the client knows: resend from 1.
        assert_eq!(hello["resume"][MAILBOX], 0);
        server
            .send(&[
                message("s1", 1, 1, 2, "slow-a"),
                message("s2", 2, 1, 2, "b"),
            ])
            .await;
        server.take(2).await
    });
    let connection = builder.start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [acked("s1", r#""got slow-a""#), acked("s2", r#""got b""#)]
    );
    assert_eq!(handed_over(&handed), ["slow-a", "b"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_mailbox_has_its_own_order_and_their_number_is_bounded() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        let other = |id: &str, mailbox: &str, seq: u64, text: &str| {
            let headers = json!({
                "courier-mailbox": mailbox,
                "courier-seq": seq.to_string(),
                "courier-floor": "1",
            });
            with_headers(id, &headers, text)
        };
        server
            .send(&[
                // Mailbox 1 waits for its seq 1; mailbox 2 does not wait for it.
                message("s1", 2, 1, 1, "b"),
                other("s2", "user:alice", 1, "x"),
                other("s3", "user/Other:alice", 1, "y"),
            ])
            .await;
        server.take(2).await
    });
    let connection = builder.maximum_mailboxes(2).start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [
            // In the order they came: x's handler finishes on its first poll, so its answer is ready at once.
            acked("s2", r#""got x""#),
            nacked("s3", "courier: too many mailboxes"),
        ]
    );
    assert_eq!(handed_over(&handed), ["x"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn early_messages_wait_for_the_earlier_ones_and_go_to_the_handler_in_order() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn({
        let handed = handed.clone();
        async move {
            let (mut server, _) = Server::accept(&mut servers).await;
            server
                .send(&[message("s3", 3, 1, 1, "c"), message("s2", 2, 1, 1, "b")])
                .await;
            // Held, not answered: the handler has not had them.
            assert_eq!(
                server.during(Duration::from_secs(1)).await,
                Vec::<String>::new()
            );
            assert_eq!(handed_over(&handed), Vec::<String>::new());
            server.send(&[message("s1", 1, 1, 1, "a")]).await;
            server.take(3).await
        }
    });
    let connection = builder.start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [
            acked("s1", r#""got a""#),
            acked("s2", r#""got b""#),
            acked("s3", r#""got c""#)
        ]
    );
    assert_eq!(handed_over(&handed), ["a", "b", "c"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_floor_says_which_earlier_messages_not_to_wait_for() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        // 1 and 2 are settled at the server (expired, say): 3 goes to the handler at once.
        server.send(&[message("s1", 3, 3, 1, "c")]).await;
        let mut answers = server.take(1).await;
        // 5 waits for 4; then 6 says everything below it is settled, so 5 will not come: its copy is answered
        // with an error and not handed over, and 6 is.
        server
            .send(&[message("s2", 5, 4, 1, "e"), message("s3", 6, 6, 1, "f")])
            .await;
        answers.extend(server.take(2).await);
        // A stale copy of a settled message is acked, not handed over.
        server.send(&[message("s4", 4, 4, 2, "d")]).await;
        answers.extend(server.take(1).await);
        answers
    });
    let connection = builder.start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [
            acked("s1", r#""got c""#),
            nacked(
                "s2",
                "courier: the message was settled at the server before its handler ran"
            ),
            acked("s3", r#""got f""#),
            acked("s4", "null"),
        ]
    );
    assert_eq!(handed_over(&handed), ["c", "f"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_handler_error_is_a_nack_and_the_resend_is_handed_over_again_before_what_follows() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        server
            .send(&[
                message("s1", 1, 1, 1, "fail-a"),
                message("s2", 2, 1, 1, "b"),
            ])
            .await;
        let mut answers = server.take(1).await;
        // The server retries after its backoff, with a new invocation.
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.send(&[message("s3", 1, 1, 2, "fail-a")]).await;
        answers.extend(server.take(2).await);
        answers
    });
    let connection = builder.start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [
            nacked("s1", "cannot take fail-a yet"),
            acked("s3", r#""got fail-a""#),
            acked("s2", r#""got b""#),
        ]
    );
    assert_eq!(handed_over(&handed), ["fail-a", "b"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn messages_beyond_the_window_and_invalid_headers_are_nacked_without_being_held() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, handed) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, hello) = Server::accept(&mut servers).await;
        assert_eq!(hello["window"], 2);
        let bad_floor =
            json!({"courier-mailbox": MAILBOX, "courier-seq": "1", "courier-floor": "2"});
        let no_seq = json!({"courier-mailbox": MAILBOX, "courier-floor": "1"});
        server
            .send(&[
                message("s1", 3, 1, 1, "c"),
                message("s2", 2, 1, 1, "b"),
                with_headers("s3", &bad_floor, "x"),
                with_headers("s4", &no_seq, "x"),
                message("s5", u64::MAX, 1, 1, "x"),
            ])
            .await;
        server.take(4).await
    });
    let connection = builder.receive_window(2).start().await.unwrap();
    let answers = script.await.unwrap();
    assert_eq!(
        answers,
        [
            nacked(
                "s1",
                "courier: the message is beyond the receive window; send the earlier ones first"
            ),
            nacked("s3", "courier: invalid sequence numbers: seq 1, floor 2"),
            nacked("s4", "courier: invalid header courier-seq"),
            nacked(
                "s5",
                "courier: invalid sequence numbers: seq 18446744073709551615, floor 1"
            ),
        ]
    );
    assert_eq!(handed_over(&handed), Vec::<String>::new());
    connection.stop().await;
}

/// The idempotency key of a reliable call's invocation, checking its shape.
fn key_of(invocation: &serde_json::Value) -> String {
    let key = invocation["headers"]["courier-idempotency-key"]
        .as_str()
        .expect("an idempotency key")
        .to_owned();
    assert!(key.len() <= 64);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    key
}

#[tokio::test(start_paused = true)]
async fn a_reliable_call_is_resent_with_the_same_key_after_the_connection_dropped() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, _) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        let first: serde_json::Value = serde_json::from_str(&server.next().await.unwrap()).unwrap();
        assert_eq!(first["target"], "PlaceOrder");
        assert_eq!(first["arguments"], json!(["tea", 2]));
        server.close().await;
        let (mut server, _) = Server::accept(&mut servers).await;
        let second: serde_json::Value =
            serde_json::from_str(&server.next().await.unwrap()).unwrap();
        assert_eq!(second["arguments"], json!(["tea", 2]));
        let id = second["invocationId"].as_str().unwrap().to_owned();
        server.send(&[acked(&id, r#""placed""#)]).await;
        (first, second, server)
    });
    let connection = builder.start().await.unwrap();
    let placed: String = connection
        .invoke_reliable("PlaceOrder", ("tea", 2))
        .await
        .unwrap();
    assert_eq!(placed, "placed");
    let (first, second, _server) = script.await.unwrap();
    assert_eq!(key_of(&first), key_of(&second));
    assert_ne!(first["invocationId"], second["invocationId"]);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reliable_call_is_resent_after_its_ack_timeout_and_backoff_until_its_attempts_run_out() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, _) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        let start = Instant::now();
        let mut attempts = Vec::new();
        for _ in 0..3 {
            let invocation: serde_json::Value =
                serde_json::from_str(&server.next().await.unwrap()).unwrap();
            attempts.push((start.elapsed(), key_of(&invocation)));
        }
        (attempts, server)
    });
    let policy = Policy::default()
        .ack_timeout(Some(Duration::from_secs(2)))
        .backoff(Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(60)).jitter(0.0))
        .max_attempts(Some(3));
    let connection = builder
        .reliable_method_policy("slow", policy)
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let error = connection
        .invoke_reliable::<String>("Slow", ())
        .await
        .unwrap_err();
    assert_eq!(error, InvokeError::AttemptsExhausted { attempts: 3 });
    let (attempts, _server) = script.await.unwrap();
    let times: Vec<_> = attempts.iter().map(|(at, _)| at.as_secs()).collect();
    // Sent at 0; no answer by 2 s, backoff 1 s: again at 3; no answer by 5, backoff 2 s: again at 7; given up at 9.
    assert_eq!(times, [0, 3, 7]);
    assert!(attempts.iter().all(|(_, key)| *key == attempts[0].1));
    assert_eq!(started.elapsed(), Duration::from_secs(9));
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reliable_call_expires_on_time_while_the_client_reconnects() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, _) = client(connector);
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        server.next().await.expect("the call");
        server.close().await;
        // The first reconnect attempt fails; the next one comes after 10 s.
        drop(servers.recv().await);
        Server::accept(&mut servers).await
    });
    let connection = builder
        .reconnect_policy(ReconnectDelays::new([
            Duration::ZERO,
            Duration::from_secs(10),
        ]))
        .reliable_method_policy("Order", Policy::default().ttl(Some(Duration::from_secs(5))))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        connection.invoke_reliable::<i32>("Order", ()).await,
        Err(InvokeError::Expired)
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    let (mut server, _) = script.await.unwrap();
    // Nothing is sent again on the next connection.
    assert_eq!(
        server.during(Duration::from_secs(60)).await,
        Vec::<String>::new()
    );
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_outbox_refuses_a_call_at_once_and_a_hub_error_is_final() {
    let (connector, mut servers) = ScriptedConnector::new();
    let (builder, _) = client(connector);
    let (sent_tx, sent) = tokio::sync::oneshot::channel();
    let (answer_tx, answer) = tokio::sync::oneshot::channel();
    let script = tokio::spawn(async move {
        let (mut server, _) = Server::accept(&mut servers).await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let invocation: serde_json::Value =
                serde_json::from_str(&server.next().await.unwrap()).unwrap();
            ids.push(invocation["invocationId"].as_str().unwrap().to_owned());
        }
        sent_tx.send(()).unwrap();
        answer.await.unwrap();
        server
            .send(&[nacked(
                &ids[0],
                "An unexpected error occurred invoking 'Pay' on the server.",
            )])
            .await;
        server.send(&[acked(&ids[1], "1")]).await;
        // A place is free again: a new call goes out.
        let invocation: serde_json::Value =
            serde_json::from_str(&server.next().await.unwrap()).unwrap();
        let id = invocation["invocationId"].as_str().unwrap().to_owned();
        server.send(&[acked(&id, "2")]).await;
        // Nothing is sent again: every call was answered.
        assert_eq!(
            server.during(Duration::from_secs(60)).await,
            Vec::<String>::new()
        );
    });
    let connection = builder.reliable_outbox_capacity(2).start().await.unwrap();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let connection = connection.clone();
            tokio::spawn(async move { connection.invoke_reliable::<i32>("Pay", ()).await })
        })
        .collect();
    sent.await.unwrap();
    let refused_at = Instant::now();
    assert_eq!(
        connection.invoke_reliable::<i32>("Pay", ()).await,
        Err(InvokeError::OutboxFull)
    );
    assert_eq!(refused_at.elapsed(), Duration::ZERO);
    answer_tx.send(()).unwrap();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    assert_eq!(
        results,
        [
            Err(InvokeError::Hub(
                "An unexpected error occurred invoking 'Pay' on the server.".into()
            )),
            Ok(1)
        ]
    );
    assert_eq!(connection.invoke_reliable::<i32>("Pay", ()).await, Ok(2));
    script.await.unwrap();
    connection.stop().await;
}
