//! The conformance suite every [`Store`] passes: each function takes a fresh, empty store and panics on the first
//! broken promise. `MemoryStore`'s tests and every store crate's tests call all of them.
#![allow(
    clippy::missing_panics_doc,
    reason = "test support: a panic is a failed test"
)]

use bytes::Bytes;
use courier_delivery::{Event, Outbox, Policy, Timestamp, Transmit};

use super::{MAX_KEY_LEN, MailboxId, MailboxLimit, NewMessage, Store, StoreError};

/// A time well after the epoch, as a server would pass.
const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(T0.as_millis() + millis)
}

fn payload(seq: u64) -> Bytes {
    Bytes::from(format!("message {seq}"))
}

async fn append(store: &dyn Store, mailbox: &MailboxId, message: NewMessage) -> u64 {
    store
        .append(mailbox, message, MailboxLimit::default())
        .await
        .expect("append")
}

async fn pending_seqs(store: &dyn Store, mailbox: &MailboxId) -> Vec<u64> {
    let pending = store
        .read_pending(mailbox, 0, usize::MAX)
        .await
        .expect("read_pending");
    pending.iter().map(|m| m.seq).collect()
}

/// Numbers start at 1 per mailbox, grow by one, are never reused, and reads keep every field in order.
pub async fn numbering_and_order(store: &dyn Store) {
    let (alice, bob) = (MailboxId::user("alice"), MailboxId::client("alice"));
    assert_eq!(store.next_seq(&alice).await.unwrap(), 1);
    for expected in 1..=3 {
        let message = NewMessage::new(payload(expected), at(expected))
            .key(expected * 10)
            .expires_at(at(1_000));
        assert_eq!(append(store, &alice, message).await, expected);
    }
    assert_eq!(
        append(store, &bob, NewMessage::new(payload(1), T0)).await,
        1,
        "mailboxes number apart"
    );
    assert_eq!(store.next_seq(&alice).await.unwrap(), 4);

    let pending = store.read_pending(&alice, 0, 10).await.unwrap();
    assert_eq!(pending.len(), 3);
    for (message, seq) in pending.iter().zip(1..) {
        assert_eq!(message.seq, seq);
        assert_eq!(message.payload, payload(seq));
        assert_eq!(message.key, Some(seq * 10));
        assert_eq!(message.enqueued_at, at(seq));
        assert_eq!(message.expires_at, at(1_000));
        assert_eq!(message.attempts, 0);
    }
    let bobs = store.read_pending(&bob, 0, 10).await.unwrap();
    assert_eq!((bobs[0].key, bobs[0].expires_at), (None, Timestamp::MAX));

    // Acking everything does not reset the numbering.
    for seq in 1..=3 {
        assert!(store.ack(&alice, seq, None).await.unwrap());
    }
    assert_eq!(
        append(store, &alice, NewMessage::new(payload(4), T0)).await,
        4
    );
    assert_eq!(store.next_seq(&alice).await.unwrap(), 5);
}

/// `read_pending` returns what follows `after`, at most `max` at a time, skipping settled messages.
pub async fn read_from_sequence(store: &dyn Store) {
    let mailbox = MailboxId::user("reader");
    assert!(
        store
            .read_pending(&mailbox, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "unknown mailbox"
    );
    for seq in 1..=10 {
        append(store, &mailbox, NewMessage::new(payload(seq), T0)).await;
    }
    let batch = store.read_pending(&mailbox, 3, 4).await.unwrap();
    assert_eq!(
        batch.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    assert!(store.read_pending(&mailbox, 3, 0).await.unwrap().is_empty());
    assert!(
        store
            .read_pending(&mailbox, 10, 5)
            .await
            .unwrap()
            .is_empty()
    );

    store.ack(&mailbox, 5, None).await.unwrap();
    store.remove(&mailbox, 8).await.unwrap();
    // Paging as a restoring server does: from the last number returned until a short batch.
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        let batch = store.read_pending(&mailbox, after, 3).await.unwrap();
        seen.extend(batch.iter().map(|m| m.seq));
        match batch.last() {
            Some(last) if batch.len() == 3 => after = last.seq,
            _ => break,
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 6, 7, 9, 10]);
}

/// Acks and removals are idempotent and report whether the message was pending.
pub async fn ack_is_idempotent(store: &dyn Store) {
    let mailbox = MailboxId::user("acker");
    for seq in 1..=3 {
        append(store, &mailbox, NewMessage::new(payload(seq), T0)).await;
    }
    assert!(store.ack(&mailbox, 2, None).await.unwrap());
    assert!(
        !store.ack(&mailbox, 2, None).await.unwrap(),
        "a second ack changes nothing"
    );
    assert!(!store.ack(&mailbox, 2, Some(at(1_000))).await.unwrap());
    assert!(
        !store.remove(&mailbox, 2).await.unwrap(),
        "an acked message is not removed again"
    );
    assert!(store.remove(&mailbox, 3).await.unwrap());
    assert!(!store.remove(&mailbox, 3).await.unwrap());
    assert!(
        !store.ack(&mailbox, 3, None).await.unwrap(),
        "a removed message is not acked"
    );
    assert!(
        !store.ack(&mailbox, 99, None).await.unwrap(),
        "unknown number"
    );
    assert!(
        !store
            .ack(&MailboxId::user("nobody"), 1, None)
            .await
            .unwrap(),
        "unknown mailbox"
    );
    store.record_attempt(&mailbox, 2, 5).await.unwrap();
    assert_eq!(pending_seqs(store, &mailbox).await, [1]);
    assert!(
        store
            .read_history(&mailbox, 0, T0, 10)
            .await
            .unwrap()
            .is_empty(),
        "no history asked for"
    );
}

/// An append beyond the mailbox limit fails, changes nothing and takes no number; an ack makes room.
pub async fn limits(store: &dyn Store) {
    let mailbox = MailboxId::user("full");
    let limit = MailboxLimit::default().messages(2).bytes(20);
    let ten = || NewMessage::new(Bytes::from_static(b"0123456789"), T0);
    assert_eq!(store.append(&mailbox, ten(), limit).await.unwrap(), 1);
    let too_big = NewMessage::new(Bytes::from_static(&[0; 11]), T0);
    let error = store.append(&mailbox, too_big, limit).await.unwrap_err();
    assert!(
        matches!(error, StoreError::MailboxFull { mailbox: ref m } if *m == mailbox),
        "{error}"
    );
    assert_eq!(store.append(&mailbox, ten(), limit).await.unwrap(), 2);
    let error = store
        .append(&mailbox, NewMessage::new(Bytes::new(), T0), limit)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::MailboxFull { .. }), "{error}");
    assert_eq!(
        store.next_seq(&mailbox).await.unwrap(),
        3,
        "a refused append takes no number"
    );

    store.ack(&mailbox, 1, Some(at(1_000))).await.unwrap();
    assert_eq!(
        store.append(&mailbox, ten(), limit).await.unwrap(),
        3,
        "history does not count as pending"
    );
    assert_eq!(pending_seqs(store, &mailbox).await, [2, 3]);
}

/// `expire` removes due messages (earliest first, at most `max`), drops stale history and results, and leaves
/// the rest.
pub async fn expiry(store: &dyn Store) {
    let (a, b) = (MailboxId::user("a"), MailboxId::client("b"));
    append(
        store,
        &a,
        NewMessage::new(payload(1), T0).expires_at(at(300)),
    )
    .await;
    append(store, &a, NewMessage::new(payload(2), T0)).await;
    append(
        store,
        &b,
        NewMessage::new(payload(1), T0).expires_at(at(100)),
    )
    .await;
    append(
        store,
        &b,
        NewMessage::new(payload(2), T0).expires_at(at(200)),
    )
    .await;
    append(
        store,
        &a,
        NewMessage::new(payload(3), T0).expires_at(at(5_000)),
    )
    .await;
    store.record_attempt(&b, 1, 2).await.unwrap();

    assert!(
        store.expire(at(99), 10).await.unwrap().is_empty(),
        "nothing due yet"
    );
    let first = store.expire(at(300), 2).await.unwrap();
    let got: Vec<_> = first
        .iter()
        .map(|e| (e.mailbox.clone(), e.message.seq))
        .collect();
    assert_eq!(
        got,
        [(b.clone(), 1), (b.clone(), 2)],
        "earliest first, at most max"
    );
    assert_eq!(
        (first[0].message.attempts, &first[0].message.payload),
        (2, &payload(1))
    );
    let second = store.expire(at(300), 2).await.unwrap();
    assert_eq!(
        second
            .iter()
            .map(|e| (e.mailbox.clone(), e.message.seq))
            .collect::<Vec<_>>(),
        [(a.clone(), 1)]
    );
    assert!(store.expire(at(300), 2).await.unwrap().is_empty());
    assert_eq!(pending_seqs(store, &a).await, [2, 3]);
    assert!(pending_seqs(store, &b).await.is_empty());

    // A message acked or removed before its expiry is not reported expired.
    store.ack(&a, 3, None).await.unwrap();
    assert!(
        store.expire(Timestamp::MAX, 10).await.unwrap().is_empty(),
        "never-expiring messages stay"
    );
    assert_eq!(pending_seqs(store, &a).await, [2]);
}

/// Results are stored once per key and mailbox, the first one wins, and they are gone after their expiry.
pub async fn dedup(store: &dyn Store) {
    let (alice, bob) = (MailboxId::client("alice"), MailboxId::client("bob"));
    let (first, second) = (Bytes::from_static(b"first"), Bytes::from_static(b"second"));
    assert_eq!(store.get_result(&alice, "k1", T0).await.unwrap(), None);
    assert_eq!(
        store
            .put_result(&alice, "k1", first.clone(), T0, at(100))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store.get_result(&alice, "k1", at(99)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .put_result(&alice, "k1", second.clone(), at(50), at(500))
            .await
            .unwrap(),
        first,
        "the first result wins"
    );
    assert_eq!(
        store.get_result(&bob, "k1", T0).await.unwrap(),
        None,
        "keys are per mailbox"
    );
    assert_eq!(
        store.get_result(&alice, "k1", at(100)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .put_result(&alice, "k1", second.clone(), at(100), at(500))
            .await
            .unwrap(),
        second,
        "an expired result is replaced"
    );
    assert_eq!(
        store.get_result(&alice, "k1", at(499)).await.unwrap(),
        Some(second.clone())
    );

    store
        .put_result(&bob, "k2", first.clone(), T0, at(200))
        .await
        .unwrap();
    store.expire(at(200), 10).await.unwrap();
    assert_eq!(
        store.get_result(&bob, "k2", T0).await.unwrap(),
        None,
        "dropped by expire"
    );
    assert_eq!(
        store.get_result(&alice, "k1", at(300)).await.unwrap(),
        Some(second),
        "not yet due"
    );

    let long = "k".repeat(MAX_KEY_LEN + 1);
    let error = store
        .put_result(&alice, &long, first, T0, at(100))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::KeyTooLong { len } if len == MAX_KEY_LEN + 1),
        "{error}"
    );
    assert!(matches!(
        store.get_result(&alice, &long, T0).await,
        Err(StoreError::KeyTooLong { .. })
    ));
    let longest = "k".repeat(MAX_KEY_LEN);
    store
        .put_result(&alice, &longest, Bytes::new(), T0, at(100))
        .await
        .unwrap();
}

/// Acked messages kept with a `keep_until` are readable after a number, in order, within their window.
pub async fn history_window(store: &dyn Store) {
    let mailbox = MailboxId::user("history");
    for seq in 1..=5 {
        append(store, &mailbox, NewMessage::new(payload(seq), T0)).await;
    }
    store.ack(&mailbox, 1, Some(at(100))).await.unwrap();
    store.ack(&mailbox, 2, Some(at(200))).await.unwrap();
    store.ack(&mailbox, 3, None).await.unwrap();
    store.ack(&mailbox, 4, Some(at(300))).await.unwrap();

    let seqs = |history: Vec<super::HistoryMessage>| {
        history.into_iter().map(|m| m.seq).collect::<Vec<_>>()
    };
    let all = store.read_history(&mailbox, 0, T0, 10).await.unwrap();
    assert_eq!(all[0].payload, payload(1));
    assert_eq!(
        seqs(all),
        [1, 2, 4],
        "not 3 (no history asked), not 5 (pending)"
    );
    assert_eq!(
        seqs(store.read_history(&mailbox, 1, T0, 10).await.unwrap()),
        [2, 4]
    );
    assert_eq!(
        seqs(store.read_history(&mailbox, 0, T0, 1).await.unwrap()),
        [1]
    );
    assert_eq!(
        seqs(store.read_history(&mailbox, 0, at(150), 10).await.unwrap()),
        [2, 4],
        "1 is past its window"
    );
    assert_eq!(pending_seqs(store, &mailbox).await, [5]);

    store.expire(at(200), 10).await.unwrap();
    assert_eq!(
        seqs(store.read_history(&mailbox, 0, T0, 10).await.unwrap()),
        [4],
        "expire dropped 1 and 2"
    );
}

/// What the store keeps rebuilds an outbox: numbering, attempt counts, expiries and keys survive.
pub async fn rebuild_outbox(store: &dyn Store) {
    let mailbox = MailboxId::user("restart");
    append(store, &mailbox, NewMessage::new(payload(1), T0)).await;
    append(store, &mailbox, NewMessage::new(payload(2), T0).key(7)).await;
    append(
        store,
        &mailbox,
        NewMessage::new(payload(3), T0).expires_at(at(50)),
    )
    .await;
    append(store, &mailbox, NewMessage::new(payload(4), T0)).await;
    store.ack(&mailbox, 1, None).await.unwrap();
    store.record_attempt(&mailbox, 2, 3).await.unwrap();
    store.record_attempt(&mailbox, 2, 1).await.unwrap(); // a late, lower record: ignored
    store.record_attempt(&mailbox, 4, 1).await.unwrap();

    let next_seq = store.next_seq(&mailbox).await.unwrap();
    let pending = store.read_pending(&mailbox, 0, 100).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|m| (m.seq, m.attempts))
            .collect::<Vec<_>>(),
        [(2, 3), (3, 0), (4, 1)]
    );
    assert_eq!(pending[0].key, Some(7));
    let now = at(100);
    let mut outbox =
        Outbox::restore(Policy::default(), 1, next_seq, pending, now).expect("restore");

    assert!(
        matches!(outbox.poll_event(), Some(Event::Expired { seq: 3, .. })),
        "3 expired while down"
    );
    outbox.handle_connected(now);
    let Some(Transmit::Message(out)) = outbox.poll_transmit(now) else {
        panic!("the oldest pending message is resent")
    };
    assert_eq!((out.seq, out.attempt, out.payload), (2, 4, payload(2)));
    assert_eq!(outbox.next_seq(), 5);
}

/// Concurrent appends to one mailbox get distinct, gapless numbers, and reads return them in number order.
pub async fn concurrent_appends(store: &dyn Store) {
    let mailbox = MailboxId::user("busy");
    let appends = (0..200).map(|i| {
        let mailbox = &mailbox;
        async move {
            let seq = append(
                store,
                mailbox,
                NewMessage::new(Bytes::from(format!("{i}")), T0),
            )
            .await;
            (seq, i)
        }
    });
    let mut accepted = futures::future::join_all(appends).await;
    accepted.sort_unstable();
    assert_eq!(
        accepted.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    let pending = store.read_pending(&mailbox, 0, 1_000).await.unwrap();
    let stored: Vec<_> = pending.into_iter().map(|m| (m.seq, m.payload)).collect();
    let expected: Vec<_> = accepted
        .into_iter()
        .map(|(seq, i)| (seq, Bytes::from(format!("{i}"))))
        .collect();
    assert_eq!(stored, expected);
}
