//! Reliable delivery through the server: mailboxes, client-result delivery, acks and nacks, receipts, expiry,
//! overflow, dead letters, resync, isolation and restarts on the same store. The client side is a scripted peer
//! speaking raw hub messages, so every header and answer is checked as a stock client would see it.

mod common;

use std::time::Duration;

use common::{Peer, arg, completion_error, completion_value, expect_invocation, invocation};
use courier::TransportInfo;
use courier::server::{
    ConnectionOptions, Context, Hub, HubError, Identity, Outcome, ReliableSendError,
};
use courier::store::{MailboxId, MemoryStore};
use courier_delivery::{Backoff, Capacity, DeadLetterReason, Overflow, Policy};
use courier_protocol::{HubMessage, Invocation, Protocol};
use serde_json::{Value, json};

/// The conformance server's policy for `Deliver` and `Receipt`.
fn deliver_policy() -> Policy {
    Policy::default()
        .ack_timeout(Some(Duration::from_secs(5)))
        .backoff(Backoff::new(
            Duration::from_millis(500),
            2.0,
            Duration::from_secs(5),
        ))
        .ttl(Some(Duration::from_secs(600)))
}

fn hub_on(store: MemoryStore, deliver: Policy) -> Hub {
    Hub::builder()
        .store(store)
        .client_method("Deliver", deliver)
        .client_method("Receipt", deliver_policy())
        .method(
            "Tell",
            |ctx: Context, (user, text): (String, String)| async move {
                let sent = ctx
                    .reliable()
                    .user(&user)
                    .with_receipt()
                    .send("Deliver", (text,))
                    .await
                    .map_err(HubError::internal)?;
                Ok::<_, HubError>(sent.id().to_string())
            },
        )
        .method(
            "TellTtl",
            |ctx: Context, (user, text, ttl_ms): (String, String, u64)| async move {
                let sent = ctx
                    .reliable()
                    .user(&user)
                    .with_receipt()
                    .ttl(Duration::from_millis(ttl_ms))
                    .send("Deliver", (text,))
                    .await
                    .map_err(HubError::internal)?;
                Ok::<_, HubError>(sent.id().to_string())
            },
        )
        .method("Pending", |ctx: Context, (): ()| async move {
            let me = MailboxId::user(ctx.user_id().unwrap_or_default());
            ctx.reliable()
                .pending(&me)
                .await
                .map_err(HubError::internal)
        })
        .build()
}

async fn connect_as(hub: &Hub, user: &str, protocol: Protocol) -> Peer {
    let options = ConnectionOptions::default().identity(Identity::user(user));
    let (mut peer, _handle) = Peer::open_with(hub, protocol, TransportInfo::new(), options).await;
    peer.handshake(1).await;
    peer
}

fn header<'a>(invocation: &'a Invocation, name: &str) -> &'a str {
    invocation
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} in {invocation:?}"))
}

/// The next reliable message: its invocation, checked to be a client-result invocation of `target`.
async fn next_delivery(peer: &mut Peer, target: &str) -> Invocation {
    let invocation = expect_invocation(peer.recv().await);
    assert_eq!(invocation.target, target);
    assert!(
        invocation.invocation_id.is_some(),
        "a reliable message expects an answer"
    );
    invocation
}

async fn ack(peer: &mut Peer, invocation: &Invocation) {
    let id = invocation.invocation_id.as_deref().expect("an id");
    peer.send(completion_value(peer.protocol, id, &json!("ok")))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_message_waits_for_an_offline_user_and_its_sender_gets_a_receipt() {
    for protocol in common::PROTOCOLS {
        let hub = hub_on(MemoryStore::new(), deliver_policy());
        let mut alice = connect_as(&hub, "alice", protocol).await;
        let id: String = alice
            .call_ok("1", "Tell", &[json!("bob"), json!("hi bob")])
            .await;
        assert_eq!(alice.call_ok::<usize>("2", "Pending", &[]).await, 0);

        // Bob was offline; he connects on a new connection and gets it, with Courier's headers.
        let mut bob = connect_as(&hub, "bob", protocol).await;
        let message = next_delivery(&mut bob, "Deliver").await;
        assert_eq!(arg::<String>(&message, 0), "hi bob");
        assert_eq!(header(&message, "courier-id"), id);
        assert_eq!(header(&message, "courier-mailbox"), "user/Deliver:bob");
        assert_eq!(header(&message, "courier-seq"), "1");
        assert_eq!(header(&message, "courier-floor"), "1");
        assert_eq!(header(&message, "courier-attempt"), "1");
        assert_eq!(bob.call_ok::<usize>("1", "Pending", &[]).await, 1);
        ack(&mut bob, &message).await;

        let receipt = next_delivery(&mut alice, "Receipt").await;
        assert_eq!(arg::<String>(&receipt, 0), id);
        assert_eq!(arg::<String>(&receipt, 1), "delivered");
        assert_eq!(header(&receipt, "courier-mailbox"), "user/Receipt:alice");
        ack(&mut alice, &receipt).await;
        assert_eq!(bob.call_ok::<usize>("2", "Pending", &[]).await, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_nack_or_silence_is_retried_after_backoff_in_order() {
    let hub = hub_on(MemoryStore::new(), deliver_policy());
    let mut alice = connect_as(&hub, "alice", Protocol::Json).await;
    let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
    for text in ["one", "two"] {
        let _: String = alice
            .call_ok("1", "Tell", &[json!("bob"), json!(text)])
            .await;
    }
    // Strictly ordered with window 1: only "one" is in flight.
    let first = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(arg::<String>(&first, 0), "one");
    let started = tokio::time::Instant::now();
    bob.send(completion_error(
        first.invocation_id.as_deref().unwrap(),
        "Client didn't provide a result.",
    ))
    .await;
    let again = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(arg::<String>(&again, 0), "one");
    assert_eq!(header(&again, "courier-attempt"), "2");
    assert_ne!(again.invocation_id, first.invocation_id);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited <= Duration::from_millis(600),
        "backoff of 500 ms ± 20 %, waited {waited:?}"
    );
    // No answer at all: after the 5 s ack timeout and a backoff, a third attempt.
    let third = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(header(&third, "courier-attempt"), "3");
    assert!(started.elapsed() >= Duration::from_secs(5));
    ack(&mut bob, &third).await;
    let second = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(arg::<String>(&second, 0), "two");
    assert_eq!(header(&second, "courier-seq"), "2");
    ack(&mut bob, &second).await;
}

#[tokio::test(start_paused = true)]
async fn an_unacked_message_expires_and_the_sender_learns_it() {
    let hub = hub_on(MemoryStore::new(), deliver_policy());
    let mut alice = connect_as(&hub, "alice", Protocol::MessagePack).await;
    let id: String = alice
        .call_ok(
            "1",
            "TellTtl",
            &[json!("bob"), json!("soon gone"), json!(1000)],
        )
        .await;
    let receipt = next_delivery(&mut alice, "Receipt").await;
    assert_eq!(arg::<String>(&receipt, 0), id);
    assert_eq!(arg::<String>(&receipt, 1), "expired");
    ack(&mut alice, &receipt).await;
    // Bob connects later: nothing for him.
    let mut bob = connect_as(&hub, "bob", Protocol::MessagePack).await;
    assert_eq!(bob.call_ok::<usize>("1", "Pending", &[]).await, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hub_restarted_on_the_same_store_delivers_what_was_accepted() {
    let store = MemoryStore::new();
    let first = hub_on(store.clone(), deliver_policy());
    let mut alice = connect_as(&first, "alice", Protocol::Json).await;
    let id: String = alice
        .call_ok("1", "Tell", &[json!("bob"), json!("across")])
        .await;
    alice.close().await;
    assert!(first.shutdown(Duration::from_secs(1)).await);
    drop(first);

    let second = hub_on(store, deliver_policy());
    let mut bob = connect_as(&second, "bob", Protocol::Json).await;
    let message = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(header(&message, "courier-id"), id);
    assert_eq!(arg::<String>(&message, 0), "across");
    ack(&mut bob, &message).await;
    // The receipt waits in alice's mailbox for her next connection.
    let mut alice = connect_as(&second, "alice", Protocol::Json).await;
    let receipt = next_delivery(&mut alice, "Receipt").await;
    assert_eq!(arg::<String>(&receipt, 0), id);
    assert_eq!(arg::<String>(&receipt, 1), "delivered");
}

#[tokio::test(start_paused = true)]
async fn outcomes_overflow_and_dead_letters_reach_the_app() {
    let policy = deliver_policy()
        .max_attempts(Some(1))
        .capacity(Capacity::new(2, 1 << 20, Overflow::Reject));
    let hub = hub_on(MemoryStore::new(), policy);
    let reliable = hub.context().reliable();
    let mut dead_letters = hub.context().dead_letters();
    let first = reliable.user("bob").send("Deliver", ("a",)).await.unwrap();
    let _second = reliable.user("bob").send("Deliver", ("b",)).await.unwrap();
    let full = reliable
        .user("bob")
        .send("Deliver", ("c",))
        .await
        .unwrap_err();
    assert!(
        matches!(full, ReliableSendError::MailboxFull(ref mailbox) if mailbox.as_key() == "user/Deliver:bob")
    );

    let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
    let message = next_delivery(&mut bob, "Deliver").await;
    bob.send(completion_error(
        message.invocation_id.as_deref().unwrap(),
        "no",
    ))
    .await;
    assert_eq!(
        first.outcome().await,
        Some(Outcome::DeadLettered {
            reason: DeadLetterReason::AttemptsExhausted,
            attempts: 1
        })
    );
    let dead = dead_letters.recv().await.unwrap();
    assert_eq!(
        (dead.method.as_str(), dead.arguments.as_slice()),
        ("Deliver", &["\"a\"".to_owned()][..])
    );
    // Room again.
    reliable.user("bob").send("Deliver", ("c",)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_resync_replays_history_and_only_for_the_callers_own_mailboxes() {
    let hub = hub_on(
        MemoryStore::new(),
        deliver_policy().history(Some(Duration::from_secs(60))),
    );
    let reliable = hub.context().reliable();
    let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
    for text in ["one", "two"] {
        reliable.user("bob").send("Deliver", (text,)).await.unwrap();
        let message = next_delivery(&mut bob, "Deliver").await;
        ack(&mut bob, &message).await;
    }
    reliable
        .user("carol")
        .send("Deliver", ("private",))
        .await
        .unwrap();

    // Bob says he has everything up to 1, and asks for carol's mailbox too.
    let hello = json!({"window": 8, "resume": {"user/Deliver:bob": 1, "user/Deliver:carol": 0}});
    bob.send(invocation(Protocol::Json, None, "courier.hello", &[hello]))
        .await;
    let replay = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(arg::<String>(&replay, 0), "two");
    assert_eq!(header(&replay, "courier-attempt"), "0");
    ack(&mut bob, &replay).await;
    // Nothing of carol's reaches bob.
    bob.send(invocation(Protocol::Json, Some("9"), "Pending", &[]))
        .await;
    match bob.recv().await {
        HubMessage::Completion(completion) => assert_eq!(completion.invocation_id, "9"),
        other => panic!("expected only the Pending completion, got {other:?}"),
    }
    let carol = MailboxId::user("carol");
    assert_eq!(reliable.pending(&carol).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hello_widens_the_window_of_a_strictly_ordered_mailbox() {
    let hub = hub_on(MemoryStore::new(), deliver_policy().window(16));
    let reliable = hub.context().reliable();
    let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
    bob.send(invocation(
        Protocol::Json,
        None,
        "courier.hello",
        &[json!({"window": 4})],
    ))
    .await;
    // The hello is handled before the sends below: it was read first and runs as a method to completion.
    bob.call_ok::<usize>("1", "Pending", &[]).await;
    for n in 0..6 {
        reliable.user("bob").send("Deliver", (n,)).await.unwrap();
    }
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        in_flight.push(next_delivery(&mut bob, "Deliver").await);
    }
    let seqs: Vec<Value> = in_flight
        .iter()
        .map(|m| json!(header(m, "courier-seq")))
        .collect();
    assert_eq!(seqs, [json!("1"), json!("2"), json!("3"), json!("4")]);
    // A fifth only once one is acked.
    ack(&mut bob, &in_flight[0]).await;
    let fifth = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(header(&fifth, "courier-seq"), "5");
}

#[tokio::test(start_paused = true)]
async fn a_call_with_an_idempotency_key_runs_once_and_repeats_get_the_stored_outcome() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let runs = Arc::new(AtomicU32::new(0));
    let hub = Hub::builder()
        .store(MemoryStore::new())
        .options(courier::server::HubOptions::default().maximum_parallel_invocations_per_client(4))
        .method("Charge", {
            let runs = runs.clone();
            move |_ctx: Context, (amount,): (i64,)| {
                let runs = runs.clone();
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if amount < 0 {
                        return Err(HubError::new("negative amount"));
                    }
                    Ok::<_, HubError>(format!("charge #{n} of {amount}"))
                }
            }
        })
        .build();
    let keyed = |protocol, id: &str, key: &str, amount: i64| {
        let HubMessage::Invocation(mut call) =
            invocation(protocol, Some(id), "Charge", &[json!(amount)])
        else {
            unreachable!()
        };
        call.headers.insert("courier-idempotency-key", key);
        HubMessage::Invocation(call)
    };
    let mut alice = connect_as(&hub, "alice", Protocol::Json).await;
    // Two arrivals of one call at once (a resend racing the first), then a later repeat over MessagePack.
    alice.send(keyed(Protocol::Json, "1", "k1", 5)).await;
    alice.send(keyed(Protocol::Json, "2", "k1", 5)).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let HubMessage::Completion(completion) = alice.recv().await else {
            panic!("a completion")
        };
        answers.push(common::result::<String>(&completion));
    }
    assert_eq!(answers, ["charge #1 of 5", "charge #1 of 5"]);
    let mut again = connect_as(&hub, "alice", Protocol::MessagePack).await;
    again.send(keyed(Protocol::MessagePack, "1", "k1", 5)).await;
    let HubMessage::Completion(completion) = again.recv().await else {
        panic!("a completion")
    };
    assert_eq!(common::result::<String>(&completion), "charge #1 of 5");
    // An error is an outcome too; another key runs again; no key runs every time.
    again
        .send(keyed(Protocol::MessagePack, "2", "k2", -1))
        .await;
    again
        .send(keyed(Protocol::MessagePack, "3", "k2", -1))
        .await;
    for _ in 0..2 {
        let HubMessage::Completion(completion) = again.recv().await else {
            panic!("a completion")
        };
        assert_eq!(
            common::error(&completion),
            "An unexpected error occurred invoking 'Charge' on the server. HubException: negative amount"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let _: String = again.call_ok("4", "Charge", &[json!(1)]).await;
    let _: String = again.call_ok("5", "Charge", &[json!(1)]).await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    // Keys are per identity: bob's k1 is his own.
    let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
    bob.send(keyed(Protocol::Json, "1", "k1", 7)).await;
    let HubMessage::Completion(completion) = bob.recv().await else {
        panic!("a completion")
    };
    assert_eq!(common::result::<String>(&completion), "charge #5 of 7");
}

#[test]
fn deliveries_are_counted_in_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let hub = hub_on(MemoryStore::new(), deliver_policy());
            let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
            let sent = hub
                .context()
                .reliable()
                .user("bob")
                .send("Deliver", ("hi",))
                .await
                .unwrap();
            let first = next_delivery(&mut bob, "Deliver").await;
            bob.send(completion_error(
                first.invocation_id.as_deref().unwrap(),
                "not yet",
            ))
            .await;
            let second = next_delivery(&mut bob, "Deliver").await;
            ack(&mut bob, &second).await;
            assert!(matches!(
                sent.outcome().await,
                Some(Outcome::Delivered { attempts: 2, .. })
            ));
        });
    });
    let values: std::collections::HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{:?}", key.name(), labels), value)
        })
        .collect();
    let counter = |name: &str| match values.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?} in {values:?}"),
    };
    assert_eq!(counter("courier_reliable_accepted_total[]"), 1);
    assert_eq!(counter("courier_reliable_attempts_total[]"), 2);
    assert_eq!(counter("courier_reliable_retries_total[]"), 1);
    assert_eq!(
        counter("courier_reliable_outcomes_total[\"outcome=delivered\"]"),
        1
    );
    assert!(
        matches!(values.get("courier_reliable_pending[]"), Some(DebugValue::Gauge(g)) if g.into_inner() == 0.0)
    );
    assert!(
        matches!(values.get("courier_reliable_delivery_seconds[]"), Some(DebugValue::Histogram(h)) if h.len() == 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_stock_client_can_get_the_message_id_as_a_last_argument() {
    let hub = Hub::builder()
        .store(MemoryStore::new())
        .append_message_id("notify")
        .build();
    let mut bob = connect_as(&hub, "bob", Protocol::MessagePack).await;
    let sent = hub
        .context()
        .reliable()
        .user("bob")
        .send("Notify", ("hello",))
        .await
        .unwrap();
    let message = next_delivery(&mut bob, "Notify").await;
    assert_eq!(arg::<String>(&message, 0), "hello");
    assert_eq!(arg::<String>(&message, 1), sent.id().as_str());
    // Other client methods are unchanged.
    hub.context()
        .reliable()
        .user("bob")
        .send("Other", ("x",))
        .await
        .unwrap();
    ack(&mut bob, &message).await;
    let other = next_delivery(&mut bob, "Other").await;
    assert_eq!(other.arguments.len(), 1);
}

/// A hub whose `Deliver` has `policy`, and bob connected to it.
async fn bob_with(policy: Policy) -> (Hub, Peer) {
    let hub = hub_on(MemoryStore::new(), policy);
    let bob = connect_as(&hub, "bob", Protocol::Json).await;
    (hub, bob)
}

#[tokio::test(start_paused = true)]
async fn at_most_once_latest_per_key_and_resend_none_work_end_to_end() {
    use courier_delivery::{Guarantee, Resend};

    // At-most-once: sent once, forgotten; a nack changes nothing.
    let (hub, mut bob) = bob_with(deliver_policy().guarantee(Guarantee::AtMostOnce)).await;
    let sent = hub
        .context()
        .reliable()
        .user("bob")
        .send("Deliver", ("once",))
        .await
        .unwrap();
    let message = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(sent.outcome().await, Some(Outcome::Sent));
    bob.send(completion_error(
        message.invocation_id.as_deref().unwrap(),
        "no",
    ))
    .await;
    assert_eq!(bob.call_ok::<usize>("1", "Pending", &[]).await, 0);

    // Latest per key: of two values with one key sent while bob is away, only the newest is delivered.
    let hub = hub_on(
        MemoryStore::new(),
        deliver_policy().resend(Resend::LatestPerKey),
    );
    let reliable = hub.context().reliable();
    let old = reliable
        .user("bob")
        .key(7)
        .send("Deliver", ("cursor 1",))
        .await
        .unwrap();
    reliable
        .user("bob")
        .key(7)
        .send("Deliver", ("cursor 2",))
        .await
        .unwrap();
    assert_eq!(old.outcome().await, Some(Outcome::Conflated));
    let mut bob = connect_as(&hub, "bob", Protocol::Json).await;
    let message = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(arg::<String>(&message, 0), "cursor 2");

    // Resend none: one attempt; a nack dead-letters it.
    let (hub, mut bob) = bob_with(deliver_policy().resend(Resend::None)).await;
    let sent = hub
        .context()
        .reliable()
        .user("bob")
        .send("Deliver", ("one try",))
        .await
        .unwrap();
    let message = next_delivery(&mut bob, "Deliver").await;
    bob.send(completion_error(
        message.invocation_id.as_deref().unwrap(),
        "no",
    ))
    .await;
    assert!(matches!(
        sent.outcome().await,
        Some(Outcome::DeadLettered {
            reason: DeadLetterReason::AttemptsExhausted,
            attempts: 1
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn overflow_drops_the_oldest_or_the_newest_as_the_policy_says() {
    // Drop oldest: a full mailbox makes room by dead-lettering its oldest message.
    let hub = hub_on(
        MemoryStore::new(),
        deliver_policy().capacity(Capacity::new(2, 1 << 20, Overflow::DropOldest)),
    );
    let reliable = hub.context().reliable();
    let oldest = reliable.user("bob").send("Deliver", ("a",)).await.unwrap();
    for text in ["b", "c"] {
        reliable.user("bob").send("Deliver", (text,)).await.unwrap();
    }
    assert!(matches!(
        oldest.outcome().await,
        Some(Outcome::DeadLettered {
            reason: DeadLetterReason::Overflow,
            ..
        })
    ));
    assert_eq!(reliable.pending(&MailboxId::user("bob")).await.unwrap(), 2);

    // Drop newest: a full mailbox keeps what it has.
    let hub = hub_on(
        MemoryStore::new(),
        deliver_policy().capacity(Capacity::new(1, 1 << 20, Overflow::DropNewest)),
    );
    let reliable = hub.context().reliable();
    reliable
        .user("bob")
        .send("Deliver", ("kept",))
        .await
        .unwrap();
    let newest = reliable
        .user("bob")
        .send("Deliver", ("dropped",))
        .await
        .unwrap();
    assert!(matches!(
        newest.outcome().await,
        Some(Outcome::DeadLettered {
            reason: DeadLetterReason::Overflow,
            ..
        })
    ));
    assert_eq!(reliable.pending(&MailboxId::user("bob")).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unordered_mailbox_lets_later_messages_pass_one_in_backoff() {
    use courier_delivery::Ordering;

    // Unordered, window 2: a message in backoff does not hold back the next one, even for a stock client.
    let (hub, mut bob) = bob_with(deliver_policy().ordering(Ordering::Unordered).window(2)).await;
    let reliable = hub.context().reliable();
    for text in ["stuck", "free"] {
        reliable.user("bob").send("Deliver", (text,)).await.unwrap();
    }
    let first = next_delivery(&mut bob, "Deliver").await;
    let second = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(
        (
            arg::<String>(&first, 0).as_str(),
            arg::<String>(&second, 0).as_str()
        ),
        ("stuck", "free")
    );
    bob.send(completion_error(
        first.invocation_id.as_deref().unwrap(),
        "later",
    ))
    .await;
    ack(&mut bob, &second).await;
    let again = next_delivery(&mut bob, "Deliver").await;
    assert_eq!(
        (
            arg::<String>(&again, 0).as_str(),
            header(&again, "courier-attempt")
        ),
        ("stuck", "2")
    );
}

/// A connection with `identity`, and its id.
async fn connect_with(hub: &Hub, identity: Identity) -> (Peer, courier::server::ConnectionId) {
    let options = ConnectionOptions::default().identity(identity);
    let (mut peer, handle) =
        Peer::open_with(hub, Protocol::Json, TransportInfo::new(), options).await;
    peer.handshake(1).await;
    (peer, handle.id().clone())
}

#[tokio::test(start_paused = true)]
async fn a_client_id_mailbox_reaches_that_device_only() {
    let hub = hub_on(MemoryStore::new(), deliver_policy());
    let (mut laptop, _) =
        connect_with(&hub, Identity::user("bob").with_client_id("bob-laptop")).await;
    let reliable = hub.context().reliable();
    let sent = reliable
        .client("bob-phone")
        .send("Deliver", ("to the phone",))
        .await
        .unwrap();
    assert_eq!(sent.mailbox().as_key(), "client/Deliver:bob-phone");
    // The phone comes online: it gets the message; the laptop (same user, another device) does not.
    let (mut phone, _) =
        connect_with(&hub, Identity::user("bob").with_client_id("bob-phone")).await;
    let message = next_delivery(&mut phone, "Deliver").await;
    assert_eq!(arg::<String>(&message, 0), "to the phone");
    assert_eq!(
        header(&message, "courier-mailbox"),
        "client/Deliver:bob-phone"
    );
    ack(&mut phone, &message).await;
    assert!(matches!(
        sent.outcome().await,
        Some(Outcome::Delivered { attempts: 1, .. })
    ));
    assert_eq!(laptop.call_ok::<usize>("1", "Pending", &[]).await, 0);
}

#[tokio::test(start_paused = true)]
async fn a_group_send_puts_one_message_in_each_member_identitys_mailbox() {
    let hub = hub_on(MemoryStore::new(), deliver_policy());
    let groups = hub.context().groups();
    let mut peers = Vec::new();
    for identity in [
        Identity::user("ann"),
        Identity::user("ann"),
        Identity::user("ben"),
        Identity::anonymous().with_client_id("kiosk"),
        Identity::anonymous(),
    ] {
        let (peer, id) = connect_with(&hub, identity).await;
        groups.add(&id, "room");
        peers.push(peer);
    }
    let sent = hub
        .context()
        .reliable()
        .group("room")
        .send("Deliver", ("hello room",))
        .await
        .unwrap();
    let mut mailboxes: Vec<&str> = sent.iter().map(|sent| sent.mailbox().as_key()).collect();
    mailboxes.sort_unstable();
    assert_eq!(
        mailboxes,
        [
            "client/Deliver:kiosk",
            "user/Deliver:ann",
            "user/Deliver:ben"
        ]
    );
    let ids: std::collections::HashSet<_> = sent.iter().map(|sent| sent.id().clone()).collect();
    assert_eq!(ids.len(), 3, "each entry has its own id");
    // Ben's and the kiosk's connections get theirs (ann's goes to one of her two connections).
    let message = next_delivery(&mut peers[2], "Deliver").await;
    assert_eq!(arg::<String>(&message, 0), "hello room");
    let message = next_delivery(&mut peers[3], "Deliver").await;
    assert_eq!(header(&message, "courier-mailbox"), "client/Deliver:kiosk");
}
