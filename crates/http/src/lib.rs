//! HTTP transports for Courier hubs: the SignalR negotiate exchange and WebSockets, for servers (an axum
//! [`Router`](axum::Router)) and clients (tokio-tungstenite over rustls).
//!
//! - Server: [`HubEndpoint`] serves `POST {path}/negotiate` and WebSockets on `{path}` as ASP.NET Core does, and
//!   hands each connection's [`WebSocketTransport`] to a [`ConnectionHandler`]: courier's
//!   [`Hub`](courier::server::Hub) is one.
//! - Client: [`HttpConnector`] negotiates with a Courier or ASP.NET Core server and opens the WebSocket, giving a
//!   [`ClientTransport`] and a [`Session`] that can re-open the same connection (stateful reconnect).
//!
//! Both transports implement [`courier::Transport`]: JSON travels in text frames, MessagePack in binary frames.
#![forbid(unsafe_code)]

mod client;
mod client_transport;
mod connector;
mod endpoint;
mod ids;
mod server_transport;
mod websocket;

pub use client::{ConnectError, HttpConnector, Session};
pub use client_transport::ClientTransport;
pub use connector::{TokenConnector, hub_connection};
pub use endpoint::{ConnectionHandler, EndpointOptions, HubEndpoint, NewConnection};
pub use server_transport::WebSocketTransport;
