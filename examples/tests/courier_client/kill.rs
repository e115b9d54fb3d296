//! The conformance server on a durable store (`--store`), killed with SIGKILL again and again while a client keeps
//! sending reliable messages: after the last restart, every message whose `SendReliable` returned an id reaches
//! its recipient.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::client::HubConnection;
use courier::protocol::Protocol;
use serde::Deserialize;

use crate::client::{builder, connect};
use crate::server::Server;

/// Kills and restarts.
const ROUNDS: usize = 4;
/// Senders per round, each calling `SendReliable` one after the other.
const SENDERS: usize = 4;
/// How long the senders run before the kill.
const LOAD: Duration = Duration::from_millis(400);

/// What `Deliver` carries (CONFORMANCE.md).
#[derive(Debug, Deserialize)]
struct Delivery {
    id: String,
    text: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_repeatedly_under_load_loses_nothing_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("kill.redb");
    let store = store.to_str().unwrap();
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..ROUNDS {
        let server = Server::start_with(&["--store", store]);
        let alice = connect(&server.hub_url(), Protocol::Json, Some("alice")).await;
        let alice = Arc::new(alice);
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (alice, accepted) = (alice.clone(), accepted.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        let text = format!("round {round} sender {sender} #{n}");
                        match alice
                            .invoke::<String>("SendReliable", ("bob", text.clone()))
                            .await
                        {
                            Ok(id) => accepted.lock().unwrap().push((id, text)),
                            // The kill: the call's answer is lost, so it may or may not have been accepted.
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(LOAD).await;
        server.kill();
        for sender in senders {
            sender.await.unwrap();
        }
        alice.stop().await;
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= ROUNDS,
        "the senders got through: {}",
        accepted.len()
    );

    // The last restart: bob connects and everything accepted arrives (each once, in this client).
    let server = Server::start_with(&["--store", store]);
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let bob: HubConnection = builder(&server.hub_url(), Protocol::MessagePack, Some("bob"))
        .on("Deliver", {
            let seen = seen.clone();
            move |(delivery,): (Delivery,)| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((delivery.id, delivery.text));
                    Ok::<_, String>("ok")
                }
            }
        })
        .start()
        .await
        .expect("bob connects");
    let expected: HashSet<_> = accepted.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<_> = seen.lock().unwrap().iter().cloned().collect();
        if expected.is_subset(&got) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} accepted messages missing after the restarts",
            expected.difference(&got).count(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "nothing handed to bob twice");
    bob.stop().await;
    server.stop().await;
}
