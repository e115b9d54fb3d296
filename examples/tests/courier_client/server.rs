//! The conformance server as a child process (CONFORMANCE.md, "Start and stop"), killed when its guard drops.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the server may take to announce its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of the server's stderr kept to show when a test fails.
const STDERR_LIMIT: usize = 64 * 1024;

/// A running conformance server. Dropping it kills the process (SIGKILL) if it still runs, and prints its logs
/// when the test is failing.
pub(crate) struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Runs the server on a free loopback port and waits for its `listening on http://HOST:PORT` line.
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with more command-line arguments (`--store PATH`).
    pub(crate) fn start_with(args: &[&str]) -> Self {
        let binary = binary();
        let mut child = Command::new(&binary)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain_stderr(
            child.stderr.take().expect("stderr is piped"),
            stderr.clone(),
        );
        let lines = first_line(child.stdout.take().expect("stdout is piped"));
        let mut server = Self {
            child,
            url: String::new(),
            stderr,
        };
        let Ok(line) = lines.recv_timeout(START_TIMEOUT) else {
            panic!(
                "the server did not announce its address within {START_TIMEOUT:?}:\n{}",
                server.logs()
            );
        };
        let url = line
            .strip_prefix("listening on ")
            .filter(|url| url.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"));
        server.url.push_str(url);
        server
    }

    /// The hub's URL, `http://HOST:PORT/hub`.
    pub(crate) fn hub_url(&self) -> String {
        format!("{}/hub", self.url)
    }

    /// The `HOST:PORT` the server listens on.
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.url["http://".len()..]
            .parse()
            .expect("the announced address is HOST:PORT")
    }

    /// What the server wrote to stderr so far.
    pub(crate) fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the server to exit: its exit status.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "kill -s TERM failed: {status}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the server can be waited for") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the server with SIGKILL (no shutdown at all) and waits for it to be gone.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("the server can be killed");
        self.child.wait().expect("the server can be waited for");
    }

    /// Stops the server with SIGTERM and checks that it shut down cleanly (exit code 0), as every Node interop test
    /// file does at its end.
    pub(crate) async fn stop(mut self) {
        let status = self.terminate().await;
        assert_eq!(
            status.code(),
            Some(0),
            "the server's exit: {status}\n{}",
            self.logs()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- conformance server stderr ---\n{}", self.logs());
        }
    }
}

/// The conformance binary: `COURIER_CONFORMANCE_BIN`, or `examples/conformance` in this test's target directory
/// (the test runs as `<target>/debug/deps/courier_client-<hash>`).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("COURIER_CONFORMANCE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let path = profile
        .join("examples")
        .join(format!("conformance{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "no conformance server at {}: build it with `cargo build --example conformance`, or name it in \
         COURIER_CONFORMANCE_BIN",
        path.display()
    );
    path
}

/// Reads stdout on a thread: the first line goes to the returned channel, the rest is read and dropped so the
/// server never blocks on a full pipe.
fn first_line(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    rx
}

/// Reads stderr on a thread into `logs`, keeping the first `STDERR_LIMIT` bytes.
fn drain_stderr(stderr: impl Read + Send + 'static, logs: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let mut logs = logs.lock().unwrap();
            if logs.len() + line.len() < STDERR_LIMIT {
                logs.push_str(&line);
                logs.push('\n');
            }
        }
    });
}
