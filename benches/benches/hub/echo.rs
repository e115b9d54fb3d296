//! Echo round trips per second over loopback WebSockets, Courier against bare tokio-tungstenite, in three
//! patterns: one caller one call at a time, one connection with 64 calls in flight, 100 connections with one call
//! in flight each.
//!
//! Servers and clients share one multi-thread tokio runtime (one worker per core) in this process, for both
//! stacks. Each case runs for [`WARMUP`], then is counted for [`MEASURE`]; its tasks stop at the end, and a case
//! that does not stop within [`GRACE`] is aborted, so the run always ends.
//!
//! Besides round trips per second, each case reports the CPU time the process used per round trip (client and
//! server together, from `/proc/self/stat`): on a machine shared with other work the rates move with the load, the
//! CPU time per round trip much less.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use courier::client::HubConnection;
use courier_protocol::{Headers, HubMessage, Invocation, Payload, Protocol};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::servers::{HUB_PATH, SMALL_READ_BUFFER, Server};
use courier_benches::load_average;

use crate::BoxError;

/// Time to reach a steady state before counting.
const WARMUP: Duration = Duration::from_secs(1);
/// Time counted.
const MEASURE: Duration = Duration::from_secs(3);
/// How long the tasks of a case may take to stop before they are aborted.
const GRACE: Duration = Duration::from_secs(5);

/// The echoed text: 64 ASCII characters.
const TEXT: &str = "Courier echo benchmark: sixty-four characters of text, no escape";
/// The invocation id in the bare client's frame: five digits, as the hub client's ids have after 10 000 calls.
const BARE_INVOCATION_ID: &str = "12345";

/// Calls in flight on the one connection of [`Pattern::Pipelined`].
const IN_FLIGHT: usize = 64;
/// Connections of [`Pattern::Clients`].
const CLIENTS: usize = 100;

/// How the calls are made.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// One connection, one call at a time.
    Sequential,
    /// One connection, [`IN_FLIGHT`] calls in flight.
    Pipelined,
    /// [`CLIENTS`] connections, one call at a time on each.
    Clients,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Self::Sequential => "sequential",
            Self::Pipelined => "pipelined",
            Self::Clients => "clients",
        }
    }

    fn label(self) -> String {
        match self {
            Self::Sequential => "1 client, 1 in flight".to_owned(),
            Self::Pipelined => format!("1 client, {IN_FLIGHT} in flight"),
            Self::Clients => format!("{CLIENTS} clients, 1 in flight each"),
        }
    }
}

/// The goal: Courier's round trips per second at least this share of bare WebSocket echoes.
const GOAL: f64 = 0.70;

/// Runs every case, or those of the pattern named `only`, and prints the table.
pub(crate) fn run(only: Option<&str>) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let bare = Server::BareSmallReadBuffer.start().await?;
        let courier = Server::Courier.start().await?;
        println!(
            "## Echo round trips per second (warm-up {WARMUP:?}, measured {MEASURE:?} per case)"
        );
        println!();
        println!("load average before: {}", load_average());
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            println!(
                "{protocol}: invocation frame {} bytes, Courier's completion {} bytes",
                invocation_frame(protocol)?.len(),
                completion_size(protocol)?
            );
        }
        println!();
        println!(
            "| pattern | protocol | bare msg/s | Courier msg/s | Courier ÷ bare | goal ≥ 70% | bare CPU µs/msg | Courier CPU µs/msg |"
        );
        println!("|---|---|---:|---:|---:|---|---:|---:|");
        let patterns = [Pattern::Sequential, Pattern::Pipelined, Pattern::Clients];
        for pattern in patterns
            .into_iter()
            .filter(|pattern| only.is_none_or(|name| name == pattern.name()))
        {
            for protocol in [Protocol::Json, Protocol::MessagePack] {
                let bare = measure(bare_case(bare, pattern, protocol).await?).await?;
                let courier = measure(courier_case(courier, pattern, protocol).await?).await?;
                let ratio = courier.rate / bare.rate;
                println!(
                    "| {} | {protocol} | {} | {} | {:.0}% | {} | {} | {} |",
                    pattern.label(),
                    thousands(bare.rate),
                    thousands(courier.rate),
                    ratio * 100.0,
                    if ratio >= GOAL { "met" } else { "**not met**" },
                    micros(bare.cpu_per_call),
                    micros(courier.cpu_per_call),
                );
            }
        }
        println!();
        println!("load average after: {}", load_average());
        Ok(())
    })
}

/// The tasks of one case, ready to start, and what they share.
struct Case {
    tasks: Vec<futures::future::BoxFuture<'static, Result<(), BoxError>>>,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Case {
    fn new() -> Self {
        Self {
            tasks: Vec::new(),
            done: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a case measured.
struct Measured {
    /// Round trips per second.
    rate: f64,
    /// CPU time of the whole process per round trip, where the system tells it.
    cpu_per_call: Option<Duration>,
}

/// Runs a case: warm-up, then round trips counted over [`MEASURE`].
async fn measure(case: Case) -> Result<Measured, BoxError> {
    let Case { tasks, done, stop } = case;
    let mut set = JoinSet::new();
    for task in tasks {
        set.spawn(task);
    }
    tokio::time::sleep(WARMUP).await;
    let (start, before, cpu_before) = (
        Instant::now(),
        done.load(Ordering::Relaxed),
        process_cpu_time(),
    );
    tokio::time::sleep(MEASURE).await;
    let (elapsed, after, cpu_after) = (
        start.elapsed(),
        done.load(Ordering::Relaxed),
        process_cpu_time(),
    );
    stop.store(true, Ordering::Relaxed);
    let finished = tokio::time::timeout(GRACE, async {
        while let Some(result) = set.join_next().await {
            result??;
        }
        Ok::<_, BoxError>(())
    })
    .await;
    match finished {
        Ok(result) => result?,
        Err(_) => return Err("a case did not stop within its grace period".into()),
    }
    let calls = after - before;
    let cpu_per_call = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if calls > 0 => u32::try_from(calls)
            .ok()
            .map(|calls| after.saturating_sub(before) / calls),
        _ => None,
    };
    // Counts stay far below 2^52: the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let rate = calls as f64 / elapsed.as_secs_f64();
    Ok(Measured { rate, cpu_per_call })
}

/// The CPU time (user and system, all threads) this process has used, from `/proc/self/stat` (Linux; `None`
/// elsewhere). Its unit is the clock tick, 10 ms, so over [`MEASURE`] it is exact to about 1%.
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it. `utime` and `stime` are the 14th
    // and 15th fields, so the 12th and 13th after the name.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports these in USER_HZ, 100 per second on every architecture it runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// `Some(12.345 µs)` as `12.3`; `None` as `?`.
fn micros(duration: Option<Duration>) -> String {
    duration.map_or_else(
        || "?".to_owned(),
        |duration| format!("{:.1}", duration.as_secs_f64() * 1e6),
    )
}

/// A case of the Courier client (`HubConnection`) calling `Echo` on the Courier server.
async fn courier_case(
    addr: SocketAddr,
    pattern: Pattern,
    protocol: Protocol,
) -> Result<Case, BoxError> {
    let url = format!("http://{addr}{HUB_PATH}");
    let connect = || async {
        let connection = courier_http::hub_connection(&url)?
            .protocol(protocol)
            .start()
            .await?;
        Ok::<_, BoxError>(connection)
    };
    let mut case = Case::new();
    let (connections, callers_each) = match pattern {
        Pattern::Sequential => (vec![connect().await?], 1),
        Pattern::Pipelined => (vec![connect().await?], IN_FLIGHT),
        Pattern::Clients => {
            let mut connections = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                connections.push(connect().await?);
            }
            (connections, 1)
        }
    };
    for connection in connections {
        for _ in 0..callers_each {
            let (connection, done, stop) =
                (connection.clone(), case.done.clone(), case.stop.clone());
            case.tasks
                .push(courier_caller(connection, done, stop).boxed());
        }
        // The callers hold clones; the connection stops when the last one is dropped.
    }
    Ok(case)
}

/// Calls `Echo` one call at a time until told to stop.
async fn courier_caller(
    connection: HubConnection,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), BoxError> {
    while !stop.load(Ordering::Relaxed) {
        let echoed: String = connection.invoke("Echo", (TEXT,)).await?;
        if echoed != TEXT {
            return Err(format!("Echo returned {echoed:?}").into());
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// A case of bare tokio-tungstenite clients sending the Courier client's invocation frame to the bare echo server.
async fn bare_case(
    addr: SocketAddr,
    pattern: Pattern,
    protocol: Protocol,
) -> Result<Case, BoxError> {
    let frame = match protocol {
        Protocol::Json => Message::Text(invocation_frame(protocol)?.try_into()?),
        Protocol::MessagePack => Message::Binary(invocation_frame(protocol)?),
    };
    let mut case = Case::new();
    let clients = match pattern {
        Pattern::Sequential | Pattern::Pipelined => 1,
        Pattern::Clients => CLIENTS,
    };
    for _ in 0..clients {
        let socket = bare_connect(addr).await?;
        let window = match pattern {
            Pattern::Sequential | Pattern::Clients => 1,
            Pattern::Pipelined => IN_FLIGHT,
        };
        let (frame, done, stop) = (frame.clone(), case.done.clone(), case.stop.clone());
        case.tasks
            .push(bare_caller(socket, frame, window, done, stop).boxed());
    }
    Ok(case)
}

async fn bare_connect(addr: SocketAddr) -> Result<WebSocketStream<TcpStream>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(SMALL_READ_BUFFER);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(format!("ws://{addr}/"), stream, Some(config))
            .await?;
    Ok(socket)
}

/// Keeps `window` copies of `frame` in flight until told to stop, each echo checked and counted: sends until the
/// window is full, flushes once, then waits for echoes. With a window of 1 this is one call at a time.
async fn bare_caller(
    mut socket: WebSocketStream<TcpStream>,
    frame: Message,
    window: usize,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), BoxError> {
    let mut in_flight = 0;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && in_flight == 0 {
            break;
        }
        if !stopping {
            while in_flight < window {
                socket.feed(frame.clone()).await?;
                in_flight += 1;
            }
            socket.flush().await?;
        }
        let mut echoed = socket.next().await.ok_or("the echo server closed")??;
        loop {
            if echoed != frame {
                return Err(format!("the echo server returned {echoed:?}").into());
            }
            in_flight -= 1;
            done.fetch_add(1, Ordering::Relaxed);
            match socket.next().now_or_never() {
                Some(next) => echoed = next.ok_or("the echo server closed")??,
                None => break,
            }
        }
    }
    socket.close(None).await?;
    Ok(())
}

/// The framed invocation `Echo(TEXT)` as the bare client sends it.
fn invocation_frame(protocol: Protocol) -> Result<Bytes, BoxError> {
    let message = HubMessage::Invocation(Invocation {
        headers: Headers::new(),
        invocation_id: Some(BARE_INVOCATION_ID.into()),
        target: "Echo".into(),
        arguments: vec![Payload::from_value(protocol, &TEXT)?],
        stream_ids: Vec::new(),
    });
    let mut framed = BytesMut::new();
    protocol.encode(&message, &mut framed)?;
    Ok(framed.freeze())
}

/// The framed size of the completion the hub answers with, for the same invocation id.
fn completion_size(protocol: Protocol) -> Result<usize, BoxError> {
    let message = HubMessage::Completion(courier_protocol::Completion {
        headers: Headers::new(),
        invocation_id: BARE_INVOCATION_ID.into(),
        result: courier_protocol::CompletionResult::Value(Payload::from_value(protocol, &TEXT)?),
    });
    let mut framed = BytesMut::new();
    protocol.encode(&message, &mut framed)?;
    Ok(framed.len())
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
