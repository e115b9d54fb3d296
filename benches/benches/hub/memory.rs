//! Server memory per idle connection: the server runs alone in a child process (this binary, `serve <server>`),
//! and its resident set size is read from `/proc/<pid>/status` before and after [`CONNECTIONS`] clients connect
//! and finish the hub handshake. The clients are bare tokio-tungstenite sockets in this process, so their memory
//! is not counted.
//!
//! A Courier client negotiates (`POST /hub/negotiate?negotiateVersion=1`), opens the WebSocket with the
//! connection token, sends the JSON handshake and waits for the server's `{}`. A bare client opens a WebSocket,
//! sends the same handshake frame and waits for its echo.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::servers::{HUB_PATH, Server};
use courier_benches::load_average;

use crate::BoxError;

/// Idle connections held open.
const CONNECTIONS: u16 = 10_000;
/// Tasks opening connections at the same time (each opens `CONNECTIONS / OPENERS` in turn).
const OPENERS: u16 = 100;
/// How long the server may settle before a reading (start-up, then the last handshakes).
const SETTLE: Duration = Duration::from_secs(1);
/// How long opening all the connections may take before the run gives up (the hub closes a connection that says
/// nothing for 30 s, so the reading must be taken well before that).
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

/// The goal: at most this many bytes per idle Courier connection.
const GOAL: i64 = 16 * 1024;

/// The JSON handshake request.
const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";
/// The hub's handshake response.
const HANDSHAKE_OK: &str = "{}\u{1e}";

/// The child: serves `server` until its standard input closes, after printing the port on standard output.
pub(crate) fn serve(server: Server) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = runtime.block_on(server.start())?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", addr.port())?;
    stdout.flush()?;
    // The runtime's workers serve meanwhile; the parent closes our stdin when it is done.
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Measures both servers and prints the table.
pub(crate) fn run() -> Result<(), BoxError> {
    println!("## Server memory per idle connection ({CONNECTIONS} connections)");
    println!();
    println!("load average before: {}", load_average());
    println!();
    println!(
        "| server | VmRSS before | VmRSS after | bytes per connection | RssAnon per connection | goal ≤ 16 KiB |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for server in [Server::Bare, Server::BareSmallReadBuffer, Server::Courier] {
        let reading = measure(server)?;
        let per_connection = |before: i64, after: i64| (after - before) / i64::from(CONNECTIONS);
        let rss = per_connection(reading.before.rss, reading.after.rss);
        let anon = per_connection(reading.before.anon, reading.after.anon);
        let goal = match server {
            Server::Bare | Server::BareSmallReadBuffer => "(reference)",
            Server::Courier if rss <= GOAL => "met",
            Server::Courier => "**not met**",
        };
        println!(
            "| {} | {} KiB | {} KiB | {rss} | {anon} | {goal} |",
            server.name(),
            reading.before.rss / 1024,
            reading.after.rss / 1024,
        );
    }
    println!();
    println!("load average after: {}", load_average());
    Ok(())
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy)]
struct Memory {
    /// `VmRSS`: all resident pages.
    rss: i64,
    /// `RssAnon`: resident anonymous pages (the heap and stacks, no mapped files).
    anon: i64,
}

impl Memory {
    fn of(pid: u32) -> Result<Self, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> Result<i64, BoxError> {
            let line = status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: i64 = line.trim().trim_end_matches("kB").trim().parse()?;
            Ok(kib * 1024)
        };
        Ok(Self {
            rss: field("VmRSS:")?,
            anon: field("RssAnon:")?,
        })
    }
}

struct Reading {
    before: Memory,
    after: Memory,
}

/// The server child process; killed if it is still running when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin asks it to exit; kill it if it does not within a second.
        drop(self.0.stdin.take());
        for _ in 0..10 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure(server: Server) -> Result<Reading, BoxError> {
    let mut child = ServerProcess(
        Command::new(std::env::current_exe()?)
            .args(["serve", server.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let mut port = String::new();
    BufReader::new(stdout).read_line(&mut port)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port.trim().parse()?));
    std::thread::sleep(SETTLE);
    let before = Memory::of(pid)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let clients = runtime.block_on(async {
        tokio::time::timeout(CONNECT_LIMIT, open_all(server, addr))
            .await
            .map_err(|_| format!("{CONNECTIONS} connections took over {CONNECT_LIMIT:?}"))?
    })?;
    std::thread::sleep(SETTLE);
    let after = Memory::of(pid)?;
    drop(child);
    drop(clients);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(Reading { before, after })
}

/// Opens [`CONNECTIONS`] connections that finished the handshake.
async fn open_all(
    server: Server,
    addr: SocketAddr,
) -> Result<Vec<WebSocketStream<TcpStream>>, BoxError> {
    let mut openers = JoinSet::new();
    for _ in 0..OPENERS {
        openers.spawn(async move {
            let mut clients = Vec::with_capacity(usize::from(CONNECTIONS / OPENERS));
            let mut negotiate = match server {
                Server::Courier => Some(Negotiator::connect(addr).await?),
                Server::Bare | Server::BareSmallReadBuffer => None,
            };
            for _ in 0..CONNECTIONS / OPENERS {
                let url = match &mut negotiate {
                    Some(negotiate) => {
                        let token = negotiate.token().await?;
                        format!("ws://{addr}{HUB_PATH}?id={token}")
                    }
                    None => format!("ws://{addr}/"),
                };
                clients.push(open(addr, &url, server).await?);
            }
            Ok::<_, BoxError>(clients)
        });
    }
    let mut clients = Vec::with_capacity(usize::from(CONNECTIONS));
    while let Some(opened) = openers.join_next().await {
        clients.extend(opened??);
    }
    Ok(clients)
}

/// Opens one WebSocket and runs the handshake.
async fn open(
    addr: SocketAddr,
    url: &str,
    server: Server,
) -> Result<WebSocketStream<TcpStream>, BoxError> {
    use futures::{SinkExt, StreamExt};

    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream).await?;
    socket.send(Message::text(HANDSHAKE)).await?;
    let reply = socket.next().await.ok_or("closed during the handshake")??;
    let expected = match server {
        Server::Courier => HANDSHAKE_OK,
        Server::Bare | Server::BareSmallReadBuffer => HANDSHAKE,
    };
    if reply != Message::text(expected) {
        return Err(format!("unexpected handshake reply {reply:?}").into());
    }
    Ok(socket)
}

/// One keep-alive HTTP/1.1 connection that negotiates connection tokens.
struct Negotiator {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
}

impl Negotiator {
    async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender, addr })
    }

    /// Negotiates a new connection and returns its token.
    async fn token(&mut self) -> Result<String, BoxError> {
        self.sender.ready().await?;
        let request = Request::post(format!("{HUB_PATH}/negotiate?negotiateVersion=1"))
            .header(hyper::header::HOST, self.addr.to_string())
            .body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        let negotiated: serde_json::Value = serde_json::from_slice(&body)?;
        negotiated["connectionToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no connectionToken in {negotiated}").into())
    }
}
