//! The conformance server: a hub for clients that nobody in this project wrote (the official SignalR clients,
//! Python clients, the interop tests). Its contract is `shared/CONFORMANCE.md`.
//!
//! ```text
//! cargo run --example conformance -- --addr 127.0.0.1:0
//! ```
//!
//! It prints one line on stdout, `listening on http://HOST:PORT`, once it accepts connections, and serves the
//! hub at `/hub` (negotiate and WebSockets, JSON and MessagePack, stateful reconnect allowed). Logs go to stderr,
//! filtered by `RUST_LOG` (default `info`). Reliable delivery keeps its mailboxes in memory, or with `--store PATH`
//! in the embedded durable store (courier-redb) at PATH. SIGTERM or SIGINT closes every connection with a Close message and
//! exits with code 0; a bad command line exits with code 2.

mod args;
mod hub;
mod identity;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use courier_http::{EndpointOptions, HubEndpoint};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use args::Args;

/// How long connections get to finish their running invocations on shutdown before they are aborted.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("conformance: {}", error.0);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("conformance: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the hub until SIGTERM or SIGINT, then shuts it down gracefully.
async fn serve(args: Args) -> std::io::Result<()> {
    // Signals are caught from before the address is announced, so a client may stop the server at any time after.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    let builder = courier::server::Hub::builder();
    let hub = match &args.store {
        Some(path) => {
            let store = courier_redb::RedbStore::open(path).map_err(|error| {
                std::io::Error::other(format!("cannot open the store {}: {error}", path.display()))
            })?;
            tracing::info!(path = %path.display(), "mailboxes in the durable store");
            hub::build(builder.store(store))
        }
        None => hub::build(builder.store(courier::store::MemoryStore::new())),
    };
    let app = HubEndpoint::new(hub.clone())
        .options(EndpointOptions::new().allow_stateful_reconnects(true))
        .router::<()>("/hub");
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot listen on {}: {error}", args.addr),
            )
        })?;
    let addr = listener.local_addr()?;
    #[allow(
        clippy::print_stdout,
        reason = "the address announcement is the stdout contract"
    )]
    {
        println!("listening on http://{addr}");
    }
    tracing::info!(%addr, "serving the hub at /hub");

    let stopped = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
        if !hub.shutdown(SHUTDOWN_DEADLINE).await {
            tracing::warn!("connections still running after {SHUTDOWN_DEADLINE:?} were aborted");
        }
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped)
    .await
}
