//! A hub on a `RedbStore`: after a graceful shutdown and the last handle dropped, the file is released at once, and
//! a hub opened on it again has every accepted message.

use std::time::Duration;

use courier::server::Hub;
use courier::store::{MailboxId, Store};
use courier_redb::RedbStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_hub_releases_its_store_and_a_new_hub_finds_every_accepted_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let hub = Hub::builder()
        .store(RedbStore::open(&path).unwrap())
        .build();
    let reliable = hub.context().reliable();
    let mut ids = Vec::new();
    for n in 0..50 {
        let sent = reliable.user("bob").send("Deliver", (n,)).await.unwrap();
        ids.push(sent.seq());
    }
    assert!(hub.shutdown(Duration::from_secs(1)).await);
    assert!(
        reliable.user("bob").send("Deliver", (50,)).await.is_err(),
        "no sends after shutdown"
    );
    drop((hub, reliable));

    let store = RedbStore::open(&path).expect("the file is free again");
    let pending = store
        .read_pending(&MailboxId::user("bob"), 0, 100)
        .await
        .unwrap();
    assert_eq!(pending.iter().map(|m| m.seq).collect::<Vec<_>>(), ids);
    store.close().await;
}
