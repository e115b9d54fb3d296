//! A TCP proxy between a client and the server whose connections a test can kill, to break a WebSocket mid-flight
//! (interop/lib/proxy.mjs), and point at a restarted server. Shared by the `courier_client` and `faults` tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Relays `127.0.0.1:<port>` to a target until dropped.
pub(crate) struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    accepted: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    listener: JoinHandle<()>,
}

impl Proxy {
    /// Starts relaying to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let target = Arc::new(Mutex::new(target));
        let listener = tokio::spawn({
            let accepted = accepted.clone();
            let connections = connections.clone();
            let target = target.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let target = *target.lock().unwrap();
                    let relay = tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                    connections.lock().unwrap().push(relay.abort_handle());
                }
            }
        });
        Self {
            addr,
            target,
            accepted,
            connections,
            listener,
        }
    }

    /// The hub's URL through the proxy.
    pub(crate) fn hub_url(&self) -> String {
        format!("http://{}/hub", self.addr)
    }

    /// How many client connections the proxy has taken so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Relays new connections to `target` from now on (a server restarted on another port).
    #[allow(dead_code, reason = "used by the faults test only")]
    pub(crate) fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    /// Drops every open connection, both sides, without a WebSocket close: the network "breaks".
    pub(crate) fn break_all(&self) {
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
        self.break_all();
    }
}
