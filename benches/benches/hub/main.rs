//! The hub over loopback WebSockets (courier + courier-http) against bare tokio-tungstenite on the same machine:
//! echo round trips per second in three patterns, and the server's memory per idle connection with 10,000
//! clients. docs/benchmarks.md reports the figures.
//!
//! Run: `cargo bench -p courier-benches --bench hub` (about a minute and a half); add `echo` or `memory` after
//! `--` to run one half, `echo sequential|pipelined|clients` for one pattern (to profile it). The memory half runs this binary again as the server (`serve <server>`) so that only
//! the server's memory is counted; it needs about 10,100 file descriptors per process.

// A benchmark reports its tables on stdout.
#![allow(clippy::print_stdout)]

mod echo;
mod memory;
mod servers;

use servers::Server;

/// Errors of a benchmark run: it stops and says why.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; options are not otherwise used.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => {
            echo::run(None)?;
            println!();
            memory::run()
        }
        ["echo"] => echo::run(None),
        ["echo", pattern] => echo::run(Some(pattern)),
        ["memory"] => memory::run(),
        ["serve", name] => {
            memory::serve(Server::from_name(name).ok_or("serve bare|bare-4k-read-buffer|courier")?)
        }
        _ => Err(
            "usage: hub [echo [sequential|pipelined|clients] | memory | serve bare|bare-4k-read-buffer|courier]".into(),
        ),
    }
}
