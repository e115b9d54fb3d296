//! End to end: the Courier client against a real `Hub` with a `MemoryStore`, over in-memory transports the test can
//! cut (both ends then read a broken transport, as when a WebSocket's TCP connection dies).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::client::{Connector, ConnectorError, HubConnection, Opened, ReconnectDelays};
use courier::protocol::Protocol;
use courier::server::{ConnectionOptions, Context, Hub, HubError, Identity, Outcome};
use courier::store::MemoryStore;
use courier::transport::memory::{self, MemoryTransport};
use courier_delivery::Policy;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::oneshot;

/// Connects as user `user` to a hub through a relay that [`cut`](Self::cut) breaks.
#[derive(Clone)]
struct UserConnector {
    hub: Hub,
    user: String,
    cut: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    connections: Arc<AtomicUsize>,
}

impl UserConnector {
    fn new(hub: &Hub, user: &str) -> Self {
        Self {
            hub: hub.clone(),
            user: user.into(),
            cut: Arc::default(),
            connections: Arc::default(),
        }
    }

    /// Breaks the transport in use now.
    fn cut(&self) {
        if let Some(cut) = self.cut.lock().unwrap().take() {
            let _ = cut.send(());
        }
    }
}

impl Connector for UserConnector {
    fn connect(&self, _stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            self.connections.fetch_add(1, Ordering::SeqCst);
            let (server_end, relay_server) = memory::pair();
            let (relay_client, client_end) = memory::pair();
            let (cut_tx, cut) = oneshot::channel();
            *self.cut.lock().unwrap() = Some(cut_tx);
            tokio::spawn(relay(relay_server, relay_client, cut));
            let options = ConnectionOptions::default().identity(Identity::user(&self.user));
            self.hub.accept(server_end, options).await?;
            Ok(Opened::new(client_end))
        }
        .boxed()
    }
}

async fn relay(
    mut server: MemoryTransport,
    mut client: MemoryTransport,
    mut cut: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut cut => break,
            frame = server.next() => match frame {
                Some(Ok(frame)) => if client.send(frame).await.is_err() { break },
                _ => break,
            },
            frame = client.next() => match frame {
                Some(Ok(frame)) => if server.send(frame).await.is_err() { break },
                _ => break,
            },
        }
    }
    server.break_link();
    client.break_link();
}

fn hub() -> Hub {
    Hub::builder()
        .store(MemoryStore::new())
        // Eight in flight: the client's hello raises the window from 1, and its inbox puts them in order.
        .client_method(
            "Deliver",
            Policy::default()
                .window(8)
                .ack_timeout(Some(Duration::from_secs(5))),
        )
        .method("Slow", |_ctx: Context, (value,): (i64,)| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, HubError>(value * 2)
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
    let hub = hub();
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
    let connector = UserConnector::new(&hub, "bob");
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
async fn a_reliable_call_cut_off_by_a_dropped_connection_is_sent_again_and_answered() {
    let hub = hub();
    let connector = UserConnector::new(&hub, "bob");
    let connection = HubConnection::builder(connector.clone())
        .reconnect_policy(ReconnectDelays::new([Duration::ZERO; 4]))
        .start()
        .await
        .unwrap();
    let call = tokio::spawn({
        let connection = connection.clone();
        async move { connection.invoke_reliable::<i64>("Slow", (21,)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    connector.cut();
    assert_eq!(call.await.unwrap(), Ok(42));
    connection.stop().await;
}
