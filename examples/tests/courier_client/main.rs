//! The Courier client (`HubConnection` over `HttpConnector`) against the conformance server, run as a child
//! process: the scenarios of the Node interop tests (interop/test), in JSON and MessagePack.
//!
//! The server binary is `COURIER_CONFORMANCE_BIN` (scripts/test sets it), or else `examples/conformance` next to
//! this test's own `deps` folder (built by `cargo build --example conformance`).

mod client;
mod fan_out;
mod kill;
mod lifecycle;
mod methods;
mod proxy;
mod server;
mod stateful_reconnect;

/// Makes each `async fn name(protocol: Protocol)` two tests, `name::json` and `name::messagepack`.
macro_rules! each_protocol {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn json() {
                super::$name(courier::protocol::Protocol::Json).await;
            }

            #[tokio::test]
            async fn messagepack() {
                super::$name(courier::protocol::Protocol::MessagePack).await;
            }
        }
    )*};
}
pub(crate) use each_protocol;
