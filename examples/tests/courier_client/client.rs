//! Courier clients for the tests: a builder for the server's hub, and an inbox of `Receive(from, text)` calls.

use std::time::Duration;

use courier::client::{HubConnection, HubConnectionBuilder};
use courier::protocol::Protocol;
use courier_http::HttpConnector;
use tokio::sync::mpsc;

/// How long a test waits for a `Receive` call before failing (generous: a loaded machine is slow, and the wait only
/// costs time when a test fails).
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// A builder for a connection to `hub_url` in `protocol`; `token` is the access token (the user id).
pub(crate) fn builder(
    hub_url: &str,
    protocol: Protocol,
    token: Option<&str>,
) -> HubConnectionBuilder {
    let mut connector = HttpConnector::new(hub_url).expect("the hub URL is valid");
    if let Some(token) = token {
        connector = connector.access_token(token);
    }
    HubConnection::builder(connector).protocol(protocol)
}

/// A started connection to `hub_url`; `token` is the access token (the user id).
pub(crate) async fn connect(
    hub_url: &str,
    protocol: Protocol,
    token: Option<&str>,
) -> HubConnection {
    builder(hub_url, protocol, token)
        .start()
        .await
        .expect("the connection starts")
}

/// A `Receive(from, text)` call: the sender's user id (or null) and the text.
pub(crate) type Call = (Option<String>, String);

/// The `Receive(from, text)` calls a connection got, in order.
pub(crate) struct Inbox {
    calls: mpsc::UnboundedReceiver<Call>,
}

impl Inbox {
    /// Registers a `Receive` handler on `builder` that fills the returned inbox.
    pub(crate) fn on(builder: HubConnectionBuilder) -> (HubConnectionBuilder, Self) {
        let (tx, calls) = mpsc::unbounded_channel();
        let builder = builder.on("Receive", move |call: Call| {
            let tx = tx.clone();
            async move {
                // The inbox is gone only once the test no longer looks.
                let _ = tx.send(call);
                Ok::<_, String>(())
            }
        });
        (builder, Self { calls })
    }

    /// The next call; panics if none arrives within `RECEIVE_TIMEOUT`.
    pub(crate) async fn next(&mut self) -> Call {
        tokio::time::timeout(RECEIVE_TIMEOUT, self.calls.recv())
            .await
            .expect("a Receive call arrives in time")
            .expect("the connection's handler is alive")
    }

    /// Calls that arrived and were not taken.
    pub(crate) fn pending(&mut self) -> Vec<Call> {
        std::iter::from_fn(|| self.calls.try_recv().ok()).collect()
    }
}

/// A started connection with its inbox of `Receive` calls.
pub(crate) struct Client {
    pub(crate) connection: HubConnection,
    pub(crate) inbox: Inbox,
}

impl Client {
    /// Connects to `hub_url` with an inbox; `token` is the user id.
    pub(crate) async fn connect(hub_url: &str, protocol: Protocol, token: Option<&str>) -> Self {
        let (builder, inbox) = Inbox::on(builder(hub_url, protocol, token));
        let connection = builder.start().await.expect("the connection starts");
        Self { connection, inbox }
    }
}

/// `(from, text)` as a `Receive` call carries it.
pub(crate) fn call(from: Option<&str>, text: &str) -> Call {
    (from.map(str::to_owned), text.to_owned())
}
