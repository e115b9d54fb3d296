//! The server's shutdown as Courier clients see it (interop/test/lifecycle.test.mjs).

use std::time::Duration;

use courier::client::ConnectionState;
use courier::protocol::Protocol;

use crate::client::connect;
use crate::server::Server;

#[tokio::test]
async fn sigterm_closes_connected_clients_without_error_and_exits_with_0() {
    let mut server = Server::start();
    let mut connections = Vec::new();
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let connection = connect(&server.hub_url(), protocol, None).await;
        assert_eq!(connection.invoke::<i64>("Add", (1, 2)).await, Ok(3));
        connections.push(connection);
    }
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.logs());
    for connection in connections {
        // A Close without error is a close without error.
        let error = tokio::time::timeout(Duration::from_secs(5), connection.closed())
            .await
            .expect("the client saw the connection close");
        assert_eq!(error, None, "{}", connection.protocol());
        assert_eq!(connection.state(), ConnectionState::Disconnected);
    }
}
