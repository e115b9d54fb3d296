//! The scene of issue #5 as a program: a Courier server on its embedded durable store (redb) and two Courier
//! clients over loopback WebSockets, showing a message that waits for an offline client, is retried until that
//! client acknowledges it, and is confirmed to its sender with a receipt; then the same across a server restart.
//!
//! ```text
//! cargo run -p courier-examples --example chat [-- --data DIR]
//! ```
//!
//! The store is `DIR/chat.redb` (DIR defaults to `./courier-chat-data` and is created if missing); a previous
//! run's store there is replaced, so every run starts with empty mailboxes. Each line says who speaks: `[server]`,
//! `[alice]` or `[bob]`. Exit code 0 when the scene completed, 1 when it failed or did not complete within 30 s,
//! 2 for a bad command line.

mod client;
mod hub;
mod message;
mod scene;
mod server;
mod transcript;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use transcript::Transcript;

/// Any failure of the scene, with a message that says what failed.
type Error = Box<dyn std::error::Error + Send + Sync>;

/// The data directory when `--data` is not given.
const DEFAULT_DATA: &str = "courier-chat-data";

/// How long the scene may take (it takes a couple of seconds) before it is given up.
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let data = match data_dir(std::env::args().skip(1)) {
        Ok(data) => data,
        Err(usage) => {
            eprintln!("chat: {usage}");
            eprintln!("usage: chat [--data DIR]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let transcript = Transcript::printed();
    match runtime.block_on(play(&data, &transcript, TIMEOUT)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The data directory the arguments after the program name ask for: `--data DIR` or `--data=DIR`.
fn data_dir(args: impl IntoIterator<Item = String>) -> Result<PathBuf, String> {
    let mut data = PathBuf::from(DEFAULT_DATA);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = if arg == "--data" {
            args.next()
        } else if let Some(inline) = arg.strip_prefix("--data=") {
            Some(inline.to_owned())
        } else {
            return Err(format!("unknown argument `{arg}`"));
        };
        match value {
            Some(dir) if !dir.is_empty() => data = PathBuf::from(dir),
            _ => return Err("--data needs a directory".to_owned()),
        }
    }
    Ok(data)
}

/// The scene, given up after `timeout`.
async fn play(data: &Path, transcript: &Transcript, timeout: Duration) -> Result<(), Error> {
    match tokio::time::timeout(timeout, scene::run(data, transcript)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the scene did not complete within {timeout:?}; the last line was: {}",
            transcript.last().unwrap_or_default()
        )
        .into()),
    }
}

#[cfg(test)]
mod tests;
