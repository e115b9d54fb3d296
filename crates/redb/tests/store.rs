//! RedbStore against the store conformance suite, and across closing and reopening its file.

use bytes::Bytes;
use courier::store::{MailboxId, MailboxLimit, NewMessage, Store, testing};
use courier_delivery::Timestamp;
use courier_redb::RedbStore;
use tempfile::TempDir;

/// A fresh store in its own directory (kept alive by the returned guard).
fn fresh() -> (RedbStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("courier.redb")).unwrap();
    (store, dir)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (store, _dir) = fresh();
            testing::$name(&store).await;
            store.close().await;
        }
    )*};
}

conformance!(
    numbering_and_order,
    read_from_sequence,
    ack_is_idempotent,
    limits,
    expiry,
    dedup,
    history_window,
    rebuild_outbox,
    concurrent_appends,
);

#[tokio::test]
async fn everything_survives_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("courier.redb");
    let mailbox = MailboxId::client("device-1");
    let t = Timestamp::from_millis;
    let limit = MailboxLimit::default();

    let store = RedbStore::open(&path).unwrap();
    for n in 1..=4u64 {
        let message = NewMessage::new(Bytes::from(format!("m{n}")), t(n)).expires_at(t(1_000));
        assert_eq!(store.append(&mailbox, message, limit).await.unwrap(), n);
    }
    store.ack(&mailbox, 1, Some(t(500))).await.unwrap();
    store.remove(&mailbox, 2).await.unwrap();
    store.record_attempt(&mailbox, 3, 2).await.unwrap();
    store
        .put_result(&mailbox, "call-7", Bytes::from_static(b"42"), t(0), t(900))
        .await
        .unwrap();
    store.close().await;

    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.next_seq(&mailbox).await.unwrap(), 5);
    let pending = store.read_pending(&mailbox, 0, 10).await.unwrap();
    let summary: Vec<_> = pending
        .iter()
        .map(|m| (m.seq, m.attempts, m.payload.clone(), m.expires_at))
        .collect();
    assert_eq!(
        summary,
        [
            (3, 2, Bytes::from("m3"), t(1_000)),
            (4, 0, Bytes::from("m4"), t(1_000))
        ]
    );
    let history = store.read_history(&mailbox, 0, t(100), 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|m| (m.seq, m.payload.clone()))
            .collect::<Vec<_>>(),
        [(1, Bytes::from("m1"))]
    );
    assert_eq!(
        store.get_result(&mailbox, "call-7", t(100)).await.unwrap(),
        Some(Bytes::from_static(b"42"))
    );

    // The expiry index survived too.
    let expired = store.expire(t(1_000), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|e| e.message.seq).collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(
        store
            .append(&mailbox, NewMessage::new(Bytes::new(), t(2_000)), limit)
            .await
            .unwrap(),
        5
    );
    store.close().await;
}

#[tokio::test]
async fn a_file_open_elsewhere_is_refused() {
    let (store, dir) = fresh();
    assert!(RedbStore::open(dir.path().join("courier.redb")).is_err());
    store.close().await;
}

#[test]
fn writes_are_answered_after_the_runtime_that_opened_the_store_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let opener = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store =
        opener.block_on(async { RedbStore::open(dir.path().join("courier.redb")).unwrap() });
    drop(opener);

    let user = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    user.block_on(async {
        let mailbox = MailboxId::user("alice");
        let message = NewMessage::new(Bytes::from_static(b"hi"), Timestamp::from_millis(1));
        let seq = store
            .append(&mailbox, message, MailboxLimit::default())
            .await
            .unwrap();
        assert!(store.ack(&mailbox, seq, None).await.unwrap());
        store.close().await;
    });
}
