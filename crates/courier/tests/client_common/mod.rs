//! A test hub and connectors for the client tests: the in-process one, one whose links the test can cut, and one
//! to a scripted server.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier::client::{Connector, ConnectorError, Opened, Reattach};
use courier::server::{
    ConnectionHandle, ConnectionOptions, Context, Hub, HubError, HubOptions, UploadStream,
};
use courier::transport::memory::{self, MemoryTransport};
use courier::{Frame, Transport};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

/// Set when the `Forever` stream is dropped on the server (cancelled).
pub type Cancelled = Arc<AtomicBool>;

/// A hub with the methods the tests call.
pub fn hub(cancelled: Cancelled) -> Hub {
    hub_with(
        HubOptions::default().maximum_parallel_invocations_per_client(4),
        cancelled,
    )
}

pub fn hub_with(options: HubOptions, cancelled: Cancelled) -> Hub {
    Hub::builder()
        .options(options)
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .method("WhoAmI", |ctx: Context, ()| async move {
            Ok::<_, HubError>(ctx.connection_id().to_string())
        })
        .method("Fail", |_ctx: Context, ()| async move {
            Err::<(), _>(HubError::new("nope"))
        })
        .method("Notify", |ctx: Context, (text,): (String,)| async move {
            ctx.caller().send("Note", (text,)).await?;
            Ok::<_, HubError>(())
        })
        .method(
            "AskClient",
            |ctx: Context, (question,): (String,)| async move {
                ctx.caller()
                    .invoke::<String>("Ask", (question,))
                    .await
                    .map_err(|error| HubError::new(error.to_string()))
            },
        )
        .method(
            "Sum",
            |_ctx: Context, (numbers,): (UploadStream<i64>,)| async move {
                let numbers: Vec<Result<i64, HubError>> = numbers.collect().await;
                numbers.into_iter().sum::<Result<i64, HubError>>()
            },
        )
        .stream_method("Count", |_ctx: Context, (to,): (u64,)| {
            futures::stream::unfold(0u64, move |n| async move {
                if n == to {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok::<_, HubError>(n), n + 1))
            })
        })
        .stream_method("Forever", move |_ctx: Context, ()| {
            let guard = DropFlag(cancelled.clone());
            futures::stream::unfold(guard, |guard| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok::<_, HubError>(1u8), guard))
            })
        })
        .build()
}

struct DropFlag(Cancelled);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Connects to a hub through a relay the test can cut: both ends then read a broken transport, as when a
/// WebSocket's TCP connection dies. Grants stateful reconnect when asked.
#[derive(Clone, Default)]
pub struct CuttableConnector {
    hub: Arc<Mutex<Option<Hub>>>,
    /// Cuts the current relay.
    cut: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    /// Whether re-attaching is refused (the server forgot the connection, say).
    pub refuse_reattach: Arc<AtomicBool>,
}

impl CuttableConnector {
    pub fn new(hub: Hub) -> Self {
        let connector = Self::default();
        *connector.hub.lock().unwrap() = Some(hub);
        connector
    }

    /// Cuts the transport in use now.
    pub fn cut(&self) {
        if let Some(cut) = self.cut.lock().unwrap().take() {
            let _ = cut.send(());
        }
    }

    /// Opens a relay whose server end goes to `attach`; returns the client end.
    fn relay(&self) -> (MemoryTransport, MemoryTransport) {
        let (server_end, relay_server) = memory::pair();
        let (relay_client, client_end) = memory::pair();
        let (cut_tx, cut) = oneshot::channel();
        *self.cut.lock().unwrap() = Some(cut_tx);
        tokio::spawn(relay(relay_server, relay_client, cut));
        (server_end, client_end)
    }
}

/// Relays frames both ways between two in-memory links until `cut` fires or either side ends, then breaks both.
pub async fn relay(
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

impl Connector for CuttableConnector {
    fn connect(&self, stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            let hub = self.hub.lock().unwrap().clone().expect("a hub");
            let (server_end, client_end) = self.relay();
            let options = ConnectionOptions::default().stateful_reconnect(stateful_reconnect);
            let handle = hub.accept(server_end, options).await?;
            let opened = Opened::new(client_end).with_connection_id(handle.id().to_string());
            Ok(if stateful_reconnect {
                opened.with_reattach(CuttableReattach {
                    connector: self.clone(),
                    handle,
                })
            } else {
                opened
            })
        }
        .boxed()
    }
}

struct CuttableReattach {
    connector: CuttableConnector,
    handle: ConnectionHandle,
}

impl Reattach for CuttableReattach {
    fn reopen(&mut self) -> BoxFuture<'_, Result<Box<dyn Transport>, ConnectorError>> {
        async move {
            if self.connector.refuse_reattach.load(Ordering::SeqCst) {
                return Err("404: no connection with that id".into());
            }
            let (server_end, client_end) = self.connector.relay();
            self.handle.reattach(server_end).await?;
            Ok(Box::new(client_end) as Box<dyn Transport>)
        }
        .boxed()
    }
}

/// Connects to a scripted server: each connection's server end goes to the test through a channel.
/// Grants stateful reconnect when asked if made with [`ScriptedConnector::granting_stateful`] (re-attaching then
/// always fails).
#[derive(Clone)]
pub struct ScriptedConnector {
    servers: mpsc::Sender<MemoryTransport>,
    grant_stateful: bool,
}

impl ScriptedConnector {
    pub fn new() -> (Self, mpsc::Receiver<MemoryTransport>) {
        let (servers, receiver) = mpsc::channel(8);
        (
            Self {
                servers,
                grant_stateful: false,
            },
            receiver,
        )
    }

    pub fn granting_stateful() -> (Self, mpsc::Receiver<MemoryTransport>) {
        let (mut connector, receiver) = Self::new();
        connector.grant_stateful = true;
        (connector, receiver)
    }
}

impl Connector for ScriptedConnector {
    fn connect(&self, stateful_reconnect: bool) -> BoxFuture<'_, Result<Opened, ConnectorError>> {
        async move {
            let (server_end, client_end) = memory::pair();
            self.servers.send(server_end).await?;
            let opened = Opened::new(client_end);
            Ok(if stateful_reconnect && self.grant_stateful {
                opened.with_reattach(NoReattach)
            } else {
                opened
            })
        }
        .boxed()
    }
}

struct NoReattach;

impl Reattach for NoReattach {
    fn reopen(&mut self) -> BoxFuture<'_, Result<Box<dyn Transport>, ConnectorError>> {
        async { Err("the scripted server does not re-attach".into()) }.boxed()
    }
}

/// The `courier.hello` a client with the default receive window sends after its first handshake (after the Ping).
pub const HELLO: &str =
    "{\"type\":1,\"target\":\"courier.hello\",\"arguments\":[{\"window\":64,\"resume\":{}}]}\u{1e}";

/// The scripted server's side: reads the handshake request and answers it.
pub async fn accept_handshake(server: &mut MemoryTransport, response: &str) -> String {
    let Some(Ok(Frame::Text(request))) = server.next().await else {
        panic!("a handshake request");
    };
    server
        .send(Frame::Text(format!("{response}\u{1e}").into()))
        .await
        .unwrap();
    String::from_utf8(request.to_vec()).unwrap()
}

/// The next frame's text (JSON), or `None` when the client closed or broke the transport.
pub async fn next_text(server: &mut MemoryTransport) -> Option<String> {
    match server.next().await? {
        Ok(frame) => Some(String::from_utf8(frame.payload().to_vec()).unwrap()),
        Err(_) => None,
    }
}
