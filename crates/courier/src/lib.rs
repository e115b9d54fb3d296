//! Courier: acknowledged delivery for SignalR hubs (work in progress).
//!
//! This crate joins the codec (`courier-protocol`) and the delivery engine (`courier-delivery`) into a hub server
//! and client on tokio. It knows no transport: anything that moves frames in order implements [`Transport`].
#![forbid(unsafe_code)]

pub mod transport;

pub use transport::{Frame, Transport, TransportError, TransportInfo};
