//! Reliable delivery over loopback WebSockets (courier + courier-http + the Courier client), in one run:
//!
//! - acked: messages/s from the server's application to a Courier client through a mailbox (window 64, each
//!   message acked by the client's handler returning), against unacked: the same messages as plain SignalR sends
//!   to the same client on the same setup;
//! - replay: the time to deliver 100,000 messages that waited in an offline user's mailbox, once the user connects
//!   (MemoryStore and courier-redb).
//!
//! Run: `cargo bench -p courier-benches --bench reliable` (about a minute). docs/benchmarks.md reports the figures.

// A benchmark reports its figures on stdout.
#![allow(clippy::print_stdout)]

use courier_benches::load_average;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use courier::client::HubConnection;
use courier::server::{Hub, Outcome, Sent};
use courier::store::{MemoryStore, Store};
use courier_delivery::{Capacity, Overflow, Policy};
use courier_http::{HttpConnector, HubEndpoint};
use courier_redb::RedbStore;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Messages per acked/unacked round.
const MESSAGES: u64 = 20_000;
/// Messages waiting for the replay.
const REPLAY: u64 = 100_000;
/// Sends the application keeps outstanding (so that the store can group appends).
const OUTSTANDING: usize = 256;
/// The text each message carries.
const TEXT: &str = "a message of about sixty-four bytes, as a chat line would be....";

fn policy() -> Policy {
    Policy::default()
        .window(64)
        .ttl(None)
        .capacity(Capacity::new(1_000_000, 1 << 30, Overflow::Reject))
}

/// A hub on `store`, served on a loopback port.
async fn serve(store: impl Store) -> Result<(Hub, SocketAddr), BoxError> {
    let hub = Hub::builder()
        .store(store)
        .client_method("Deliver", policy())
        .authenticate(|info: courier::TransportInfo| async move {
            Ok::<_, String>(info.access_token.clone())
        })
        .build();
    let app = HubEndpoint::new(hub.clone()).router::<()>("/hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok((hub, addr))
}

/// A Courier client for user `bob` that counts `Deliver` calls and wakes `done` at `target`.
async fn bob(
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    target: u64,
    done: Arc<Notify>,
) -> Result<HubConnection, BoxError> {
    let connector = HttpConnector::new(&format!("http://{addr}/hub"))?.access_token("bob");
    let connection = HubConnection::builder(connector)
        .on("Deliver", move |(_n, _text): (u64, String)| {
            let count = count.clone();
            let done = done.clone();
            async move {
                if count.fetch_add(1, Ordering::Relaxed) + 1 == target {
                    done.notify_one();
                }
                Ok::<_, String>(())
            }
        })
        .start()
        .await?;
    Ok(connection)
}

/// Reliable sends of `0..messages` to bob, `OUTSTANDING` at a time; returns the accepted handles.
async fn send_reliable(hub: &Hub, messages: u64) -> Result<Vec<Sent>, BoxError> {
    let reliable = hub.context().reliable();
    let mut sent = Vec::with_capacity(usize::try_from(messages)?);
    let mut outstanding = FuturesUnordered::new();
    for n in 0..messages {
        if outstanding.len() == OUTSTANDING
            && let Some(result) = outstanding.next().await
        {
            sent.push(result?);
        }
        let send = reliable.user("bob");
        outstanding.push(async move { send.send("Deliver", (n, TEXT)).await });
    }
    while let Some(result) = outstanding.next().await {
        sent.push(result?);
    }
    Ok(sent)
}

/// Waits for every outcome; all must be deliveries.
async fn delivered(sent: Vec<Sent>) -> Result<(), BoxError> {
    for sent in sent {
        match sent.outcome().await {
            Some(Outcome::Delivered { .. }) => {}
            other => return Err(format!("a message ended {other:?}").into()),
        }
    }
    Ok(())
}

/// Plain sends: messages/s until the client has them all.
async fn unacked(hub: &Hub, addr: SocketAddr) -> Result<f64, BoxError> {
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let client = bob(addr, count.clone(), MESSAGES, done.clone()).await?;
    let user = hub.context().clients().user("bob");
    let started = Instant::now();
    let received = done.notified();
    for n in 0..MESSAGES {
        user.send("Deliver", (n, TEXT)).await?;
    }
    received.await;
    let rate = rate(MESSAGES, started.elapsed());
    client.stop().await;
    Ok(rate)
}

/// Reliable sends: messages/s until every one is acked (its outcome is `Delivered`).
async fn acked(hub: &Hub, addr: SocketAddr) -> Result<f64, BoxError> {
    let count = Arc::new(AtomicU64::new(0));
    let client = bob(addr, count.clone(), MESSAGES, Arc::new(Notify::new())).await?;
    let started = Instant::now();
    delivered(send_reliable(hub, MESSAGES).await?).await?;
    let rate = rate(MESSAGES, started.elapsed());
    client.stop().await;
    if count.load(Ordering::Relaxed) != MESSAGES {
        return Err(format!(
            "the client saw {} messages, not {MESSAGES}",
            count.load(Ordering::Relaxed)
        )
        .into());
    }
    Ok(rate)
}

/// `REPLAY` messages wait in offline bob's mailbox; the time from his connect until all are acked.
async fn replay(store: impl Store) -> Result<(Duration, f64), BoxError> {
    let (hub, addr) = serve(store).await?;
    let loading = Instant::now();
    let sent = send_reliable(&hub, REPLAY).await?;
    let load_rate = rate(REPLAY, loading.elapsed());
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let client = bob(addr, count, REPLAY, Arc::new(Notify::new())).await?;
    delivered(sent).await?;
    let replay = started.elapsed();
    client.stop().await;
    hub.shutdown(Duration::from_secs(5)).await;
    Ok((replay, load_rate))
}

#[allow(
    clippy::cast_precision_loss,
    reason = "message counts are far below 2^52"
)]
fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

async fn run() -> Result<(), BoxError> {
    println!("load average before: {}", load_average());
    println!(
        "acked (reliable, window 64) vs unacked (plain sends), {MESSAGES} messages of {} bytes of text",
        TEXT.len()
    );
    let (hub, addr) = serve(MemoryStore::new()).await?;
    for round in 1..=3 {
        let plain = unacked(&hub, addr).await?;
        let reliable = acked(&hub, addr).await?;
        println!(
            "  round {round}: unacked {plain:>9.0} msg/s   acked {reliable:>9.0} msg/s   acked/unacked {:.0} %",
            100.0 * reliable / plain
        );
    }
    hub.shutdown(Duration::from_secs(5)).await;

    println!("replay of {REPLAY} pending messages to a reconnecting client");
    let (time, load) = replay(MemoryStore::new()).await?;
    println!(
        "  MemoryStore: {:.2} s ({:.0} msg/s); loading them: {load:.0} msg/s",
        time.as_secs_f64(),
        rate(REPLAY, time)
    );
    let dir = std::env::temp_dir().join(format!("courier-bench-reliable-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = replay(RedbStore::open(dir.join("replay.redb"))?).await;
    std::fs::remove_dir_all(&dir)?;
    let (time, load) = result?;
    println!(
        "  RedbStore:   {:.2} s ({:.0} msg/s); loading them: {load:.0} msg/s",
        time.as_secs_f64(),
        rate(REPLAY, time)
    );
    println!("load average after: {}", load_average());
    Ok(())
}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
