//! The courier client (`HubConnection`) over real WebSockets with `HttpConnector`: a round trip, and a stateful
//! re-attach after the socket is killed.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::serve;
use courier::client::{HubConnection, StartError};
use courier::protocol::Protocol;
use courier::server::{Context, Hub, HubError};
use courier_http::{EndpointOptions, HttpConnector, HubEndpoint};
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

fn hub() -> Hub {
    Hub::builder()
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("WhoAmI", |ctx: Context, ()| async move {
            Ok::<_, HubError>(ctx.connection_id().to_string())
        })
        .stream_method("Count", |_ctx: Context, (to,): (u64,)| {
            futures::stream::unfold(0u64, move |n| async move {
                if n == to {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, HubError>(n), n + 1))
            })
        })
        .build()
}

#[tokio::test]
async fn a_hub_connection_round_trips_over_websockets() {
    let addr = serve(HubEndpoint::new(hub()).router("/hub")).await;
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let connection = courier_http::hub_connection(&format!("http://{addr}/hub"))
            .unwrap()
            .protocol(protocol)
            .start()
            .await
            .unwrap();
        assert_eq!(
            connection.invoke::<i64>("Add", (40, 2)).await,
            Ok(42),
            "{protocol}"
        );
        assert!(
            connection.connection_id().is_some(),
            "negotiate told the client its id"
        );
        connection.stop().await;
    }
}

/// A TCP relay to `target` whose open connections the test can kill (both sockets dropped without a WebSocket
/// close, as when a network path dies).
#[derive(Clone, Default)]
struct Proxy {
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Self::default();
        let connections = proxy.connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        (proxy, addr)
    }

    fn kill_all(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

#[tokio::test]
async fn a_stateful_connection_reattaches_after_its_socket_is_killed() {
    let endpoint =
        HubEndpoint::new(hub()).options(EndpointOptions::new().allow_stateful_reconnects(true));
    let server = serve(endpoint.router("/hub")).await;
    let (proxy, addr) = Proxy::start(server).await;
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        reattach_after_kill(&proxy, addr, protocol).await;
    }
}

async fn reattach_after_kill(proxy: &Proxy, addr: SocketAddr, protocol: Protocol) {
    let connection =
        HubConnection::builder(HttpConnector::new(&format!("http://{addr}/hub")).unwrap())
            .protocol(protocol)
            .stateful_reconnect(true)
            .start()
            .await
            .unwrap();
    let mut events = connection.events();
    let id: String = connection.invoke("WhoAmI", ()).await.unwrap();
    let mut stream = connection.stream::<u64>("Count", (40,)).await.unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.unwrap());
        if items.len() == 10 {
            proxy.kill_all();
        }
    }
    assert_eq!(
        items,
        (0..40).collect::<Vec<_>>(),
        "nothing lost, nothing twice ({protocol})"
    );
    let who: String = connection.invoke("WhoAmI", ()).await.unwrap();
    assert_eq!(who, id, "the same connection");
    assert!(events.try_recv().is_err(), "no reconnect and no close");
    connection.stop().await;
}

#[tokio::test]
async fn a_token_factory_gives_every_connect_and_reattach_a_fresh_token() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hub = {
        let seen = seen.clone();
        Hub::builder()
            .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
                Ok::<_, HubError>(a + b)
            })
            .authenticate(move |info| {
                let seen = seen.clone();
                async move {
                    let token = info.access_token.unwrap_or_default();
                    seen.lock().unwrap().push(token.clone());
                    if token.starts_with("token-") {
                        Ok(Some(token))
                    } else {
                        Err("a token is required".to_owned())
                    }
                }
            })
            .build()
    };
    let endpoint =
        HubEndpoint::new(hub).options(EndpointOptions::new().allow_stateful_reconnects(true));
    let server = serve(endpoint.router("/hub")).await;
    let (proxy, addr) = Proxy::start(server).await;
    let url = format!("http://{addr}/hub");

    let refused = HubConnection::builder(HttpConnector::new(&url).unwrap())
        .start()
        .await;
    assert!(
        matches!(refused, Err(StartError::Connect(_))),
        "no token: {refused:?}"
    );

    let issued = Arc::new(AtomicUsize::new(0));
    let connector = {
        let issued = issued.clone();
        HttpConnector::new(&url)
            .unwrap()
            .access_token_factory(move || {
                let n = issued.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, std::io::Error>(format!("token-{n}")) }
            })
    };
    let connection = HubConnection::builder(connector)
        .stateful_reconnect(true)
        .start()
        .await
        .unwrap();
    assert_eq!(connection.invoke::<i64>("Add", (1, 2)).await, Ok(3));
    proxy.kill_all();
    assert_eq!(connection.invoke::<i64>("Add", (3, 4)).await, Ok(7));
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one token per connect and re-attach"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last().map(String::as_str), Some("token-1"), "{seen:?}");
    connection.stop().await;
}
