//! The fault test: reliable messages between several Courier clients while a TCP proxy cuts their connections at
//! random and the server is restarted on its store mid-run. A checker then proves that every accepted message
//! reached its recipient's application, none twice, and in the order of its mailbox, and prints the counts.
//!
//! Everything is real: courier-http on loopback WebSockets, the Courier client with automatic reconnect, a
//! `RedbStore` file. `COURIER_FAULT_MESSAGES` (default 2,000) and `COURIER_FAULT_SEED` (default: from the clock,
//! printed) set the run; the soak in docs/benchmarks.md runs the same harness longer, in release.

#[path = "courier_client/proxy.rs"]
mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier::client::{HubConnection, ReconnectPolicy, RetryContext};
use courier::protocol::Protocol;
use courier::server::{Hub, ReliableSendError};
use courier_delivery::{Backoff, Policy};
use courier_http::{EndpointOptions, HttpConnector, HubEndpoint};
use courier_redb::RedbStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use proxy::Proxy;

/// Users, each one client, each sending to the others.
const USERS: u32 = 4;

/// How long the run may take to deliver everything before it counts as a failure.
const DEADLINE: Duration = Duration::from_secs(120);

/// Reconnect at once and forever: the proxy keeps cutting.
struct Always;

impl ReconnectPolicy for Always {
    fn next_retry_delay(&self, context: &RetryContext) -> Option<Duration> {
        Some(Duration::from_millis(
            if context.previous_retry_count == 0 {
                0
            } else {
                50
            },
        ))
    }
}

/// xorshift64*: reproducible runs from a printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The delivery policy under test: strictly ordered, quick retries so that the run is short.
fn policy() -> Policy {
    Policy::default()
        .window(16)
        .ack_timeout(Some(Duration::from_secs(2)))
        .backoff(Backoff::new(
            Duration::from_millis(50),
            2.0,
            Duration::from_millis(500),
        ))
}

/// A server on a fresh port over the store at `path`.
struct Server {
    addr: SocketAddr,
    hub: Hub,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
}

impl Server {
    async fn start(path: &Path) -> Self {
        // The previous server's last handles (axum's connection tasks) go within moments of its shutdown.
        let mut tries = 0;
        let store = loop {
            match RedbStore::open(path) {
                Ok(store) => break store,
                Err(error) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(%error, "the store is still held");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("the store opens: {error}"),
            }
        };
        let hub = Hub::builder()
            .store(store)
            .client_method("Deliver", policy())
            .authenticate(|info: courier::TransportInfo| async move {
                Ok::<_, String>(info.access_token.clone())
            })
            .build();
        let app = HubEndpoint::new(hub.clone())
            .options(EndpointOptions::new())
            .router::<()>("/hub");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let serving = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            hub,
            stop,
            serving,
        }
    }

    /// Shuts down gracefully and releases the store.
    async fn stop(self) {
        self.hub.shutdown(Duration::from_secs(2)).await;
        let _ = self.stop.send(());
        self.serving.await.unwrap();
    }
}

/// What one client's application saw: `(from, n)` per `Deliver` call, in order.
type Seen = Arc<Mutex<Vec<(u32, u64)>>>;

async fn client(url: &str, user: u32, protocol: Protocol, seen: Seen) -> HubConnection {
    let connector = HttpConnector::new(url)
        .unwrap()
        .access_token(format!("u{user}"));
    HubConnection::builder(connector)
        .protocol(protocol)
        .reconnect_policy(Always)
        .on("Deliver", move |(from, n): (u32, u64)| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((from, n));
                Ok::<_, String>(())
            }
        })
        .start()
        .await
        .expect("the client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::print_stdout,
    reason = "the run's seed and counts are the test's report"
)]
async fn nothing_accepted_is_lost_duplicated_or_reordered_under_cuts_and_a_restart() {
    let messages: u64 = std::env::var("COURIER_FAULT_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("COURIER_FAULT_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(
                std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() % u128::from(u64::MAX),
            )
            .unwrap()
                | 1
        });
    println!("fault run: {messages} messages, {USERS} users, COURIER_FAULT_SEED={seed}");
    let dir = TempDir::new();
    let path = dir.0.join("faults.redb");

    let server = Server::start(&path).await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    let url = proxy.hub_url();
    let seen: Vec<Seen> = (0..USERS).map(|_| Seen::default()).collect();
    let mut clients = Vec::new();
    for user in 0..USERS {
        let protocol = if user % 2 == 0 {
            Protocol::Json
        } else {
            Protocol::MessagePack
        };
        clients.push(client(&url, user, protocol, seen[user as usize].clone()).await);
    }

    // The chaos: cut every connection every 100-400 ms until the run ends.
    let cutting = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let mut rng = Rng(seed);
            let mut cuts = 0u32;
            loop {
                tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
                proxy.break_all();
                cuts += 1;
                if cuts == u32::MAX {
                    return cuts;
                }
            }
        }
    });

    // The senders: the server's application sends from user to user; only an `Ok` counts as accepted. Halfway, the
    // server is restarted on its store.
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut accepted: HashMap<(u32, u32), u64> = HashMap::new();
    let mut server = Some(server);
    let mut refused = 0u64;
    let started = Instant::now();
    for i in 0..messages {
        if i == messages / 2 {
            let old = server.take().unwrap();
            old.stop().await;
            let restarted = Server::start(&path).await;
            proxy.retarget(restarted.addr);
            proxy.break_all();
            server = Some(restarted);
            println!("restarted the server on its store after {i} messages");
        }
        let from = u32::try_from(rng.below(u64::from(USERS))).unwrap();
        let to = (from + 1 + u32::try_from(rng.below(u64::from(USERS - 1))).unwrap()) % USERS;
        let n = accepted.get(&(from, to)).copied().unwrap_or(0);
        let reliable = server.as_ref().unwrap().hub.context().reliable();
        match reliable
            .user(&format!("u{to}"))
            .send("Deliver", (from, n))
            .await
        {
            Ok(_) => *accepted.entry((from, to)).or_default() += 1,
            Err(ReliableSendError::MailboxFull(_)) => refused += 1,
            Err(error) => panic!("send {i} failed: {error}"),
        }
    }
    let total: u64 = accepted.values().sum();

    // Wait until every accepted message was seen, or the deadline passes.
    let everything =
        |seen: &[Seen]| -> usize { seen.iter().map(|s| s.lock().unwrap().len()).sum() };
    while everything(&seen) < usize::try_from(total).unwrap() && started.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cutting.abort();
    // Let late duplicates, if any, arrive before checking.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let counts = check(&seen, &accepted);
    println!(
        "accepted {total} (refused {refused}), delivered {}, {counts:?}, proxy connections {}, {:.1} s",
        everything(&seen),
        proxy.accepted(),
        started.elapsed().as_secs_f64()
    );
    for client in &clients {
        client.stop().await;
    }
    server.unwrap().stop().await;
    assert_eq!(counts, Counts::default(), "seed {seed}");
}

/// What the checker found wrong: all zero in a good run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
}

/// Compares what each application saw with what was accepted for it, per sender (a sender's messages to one
/// recipient were accepted in the order of their numbers, so they must arrive in that order).
fn check(seen: &[Seen], accepted: &HashMap<(u32, u32), u64>) -> Counts {
    let mut counts = Counts::default();
    for to in 0..USERS {
        let seen = seen[to as usize].lock().unwrap().clone();
        for from in 0..USERS {
            let got: Vec<u64> = seen
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, n)| *n)
                .collect();
            let mut next = 0;
            for &n in &got {
                match n.cmp(&next) {
                    std::cmp::Ordering::Less => counts.duplicates += 1,
                    std::cmp::Ordering::Equal => next += 1,
                    std::cmp::Ordering::Greater => {
                        counts.out_of_order += 1;
                        next = n + 1;
                    }
                }
            }
            let mut distinct = got;
            distinct.sort_unstable();
            distinct.dedup();
            let sent = accepted.get(&(from, to)).copied().unwrap_or(0);
            counts.lost += sent - u64::try_from(distinct.len()).unwrap();
        }
    }
    counts
}

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos();
        let path =
            std::env::temp_dir().join(format!("courier-faults-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
