//! End to end: the Courier client against a real `Hub` with a `MemoryStore`, over in-memory transports the test can
//! cut (both ends then read a broken transport, as when a WebSocket's TCP connection dies).

mod client_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::client::{Connector, ConnectorError, HubConnection, Opened, ReconnectDelays};
use courier::protocol::Protocol;
use courier::server::{ConnectionOptions, Context, Hub, HubError, Identity, Outcome};
use courier::store::MemoryStore;
use courier::transport::memory;
use courier_delivery::Policy;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

/// Breaks the relay in use now.
#[derive(Clone, Default)]
struct Cut(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl Cut {
    fn cut(&self) {
        if let Some(cut) = self.0.lock().unwrap().take() {
            let _ = cut.send(());
        }
    }
}

/// Connects as user `user` to a hub through a relay that `cut` breaks.
#[derive(Clone)]
struct UserConnector {
    hub: Hub,
    user: String,
    cut: Cut,
    connections: Arc<AtomicUsize>,
}

impl UserConnector {
    fn new(hub: &Hub, user: &str, cut: &Cut) -> Self {
        Self {
            hub: hub.clone(),
            user: user.into(),
            cut: cut.clone(),
            connections: Arc::default(),
        }
    }

    fn cut(&self) {
        self.cut.cut();
    }
}

impl Connector for UserConnector {
    fn connect(&self, _stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            self.connections.fetch_add(1, Ordering::SeqCst);
            let (server_end, relay_server) = memory::pair();
            let (relay_client, client_end) = memory::pair();
            let (cut_tx, cut) = oneshot::channel();
            *self.cut.0.lock().unwrap() = Some(cut_tx);
            tokio::spawn(client_common::relay(relay_server, relay_client, cut));
            let options = ConnectionOptions::default().identity(Identity::user(&self.user));
            self.hub.accept(server_end, options).await?;
            Ok(Opened::new(client_end))
        }
        .boxed()
    }
}

/// A hub with a store whose methods count their runs in `runs`.
fn hub(cut: &Cut, runs: &Arc<AtomicUsize>) -> Hub {
    let (slow_runs, cutting_runs, cut) = (runs.clone(), runs.clone(), cut.clone());
    Hub::builder()
        .store(MemoryStore::new())
        // Eight in flight: the client's hello raises the window from 1, and its inbox puts them in order.
        .client_method(
            "Deliver",
            Policy::default()
                .window(8)
                .ack_timeout(Some(Duration::from_secs(5))),
        )
        .method("Slow", move |_ctx: Context, (value,): (i64,)| {
            let runs = slow_runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, HubError>(value * 2)
            }
        })
        // Its answer is lost with the connection it cuts.
        .method("CutThenAnswer", move |_ctx: Context, (value,): (i64,)| {
            let (runs, cut) = (cutting_runs.clone(), cut.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                cut.cut();
                Ok::<_, HubError>(value + 1)
            }
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn reliable_messages_reach_the_client_once_each_and_in_order_across_dropped_connections() {
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        deliver_across_dropped_connections(protocol).await;
    }
}

async fn deliver_across_dropped_connections(protocol: Protocol) {
    let cut = Cut::default();
    let hub = hub(&cut, &Arc::default());
    let mut sent = Vec::new();
    for n in 1..=30 {
        let message = hub
            .context()
            .reliable()
            .user("bob")
            .send("Deliver", (n,))
            .await
            .unwrap();
        sent.push(message);
    }
    let connector = UserConnector::new(&hub, "bob", &cut);
    let handed = Arc::new(Mutex::new(Vec::<i64>::new()));
    let connections = connector.connections.clone();
    let connection = HubConnection::builder(connector.clone())
        .protocol(protocol)
        .reconnect_policy(ReconnectDelays::new([Duration::ZERO; 8]))
        .on("Deliver", {
            let handed = handed.clone();
            move |(n,): (i64,)| {
                let handed = handed.clone();
                let connector = connector.clone();
                async move {
                    // Some work, so that several messages are in flight when the connection drops.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    handed.lock().unwrap().push(n);
                    // The answers to these are lost with their connection.
                    if n % 7 == 0 {
                        connector.cut();
                    }
                    Ok::<_, String>(())
                }
            }
        })
        .start()
        .await
        .unwrap();
    for message in sent {
        let outcome = message.outcome().await;
        assert!(
            matches!(outcome, Some(Outcome::Delivered { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(*handed.lock().unwrap(), (1..=30).collect::<Vec<_>>());
    // Cut after 7, 14, 21 and 28.
    assert_eq!(connections.load(Ordering::SeqCst), 5);
    connection.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reliable_call_whose_connection_drops_runs_once_and_gets_its_answer() {
    let cut = Cut::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let hub = hub(&cut, &runs);
    let connector = UserConnector::new(&hub, "bob", &cut);
    let connections = connector.connections.clone();
    let connection = HubConnection::builder(connector.clone())
        .reconnect_policy(ReconnectDelays::new([Duration::ZERO; 4]))
        .start()
        .await
        .unwrap();

    // Cut while the method runs: the resend waits for the first run's outcome.
    let call = tokio::spawn({
        let connection = connection.clone();
        async move { connection.invoke_reliable::<i64>("Slow", (21,)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    connector.cut();
    assert_eq!(call.await.unwrap(), Ok(42));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    // Cut once the method ran, before its answer arrived: the resend gets the stored answer.
    let answer = connection
        .invoke_reliable::<i64>("CutThenAnswer", (41,))
        .await;
    assert_eq!(answer, Ok(42));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    connection.stop().await;
}
