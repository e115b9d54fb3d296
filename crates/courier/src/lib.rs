//! Courier: acknowledged delivery for SignalR hubs.
//!
//! This crate joins the codec (`courier-protocol`) and the delivery engine (`courier-delivery`) into a hub server
//! and a hub client on tokio. It knows no transport: anything that moves frames in order implements
//! [`Transport`]; [`transport::memory`] is an in-memory pair for tests.
//!
//! - [`server`]: [`Hub`](server::Hub), built from typed methods; connections accepted from any transport;
//!   [`Clients`](server::Clients) and [`Groups`](server::Groups) to send to; stateful reconnect.
//! - [`client`]: [`HubConnection`](client::HubConnection), opened through a [`Connector`](client::Connector);
//!   invoke, send, streams both ways, client methods, keep-alive, automatic and stateful reconnect.
#![forbid(unsafe_code)]

pub mod client;
mod link;
pub mod server;
pub mod store;
pub mod transport;

/// The wire protocol crate, re-exported for its message and payload types.
pub use courier_protocol as protocol;
pub use store::{MailboxId, MemoryStore, Store, StoreError};
pub use transport::{Frame, Transport, TransportError, TransportInfo};
