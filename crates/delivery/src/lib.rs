//! The sans-IO acknowledged-delivery engine of Courier.
//!
//! A deterministic state machine in the shape of `quinn-proto`: it owns no socket, spawns nothing and never reads
//! a clock. Time is an argument ([`Timestamp`]), inputs are `handle_*` methods, and outputs are polled
//! (`poll_transmit`, `poll_event`, `poll_timeout`). The async layer owns one engine per mailbox or connection,
//! feeds it frames and deadlines, and writes what it emits.
//!
//! - [`Outbox`]: the sender side. Numbers messages, sends them within an in-flight window, retries with backoff
//!   until acknowledged, expires and dead-letters them, and reports one [`Event`] per message.
//! - [`Inbox`]: the receiver side. Drops duplicates, puts messages back in order, and coalesces acks.
//!
//! Both run in one of two [`Mode`]s, set by their configuration: **mailbox** (Courier's guarantee, every knob of
//! the [`Policy`]) or **link** (SignalR stateful reconnect: [`Policy::link`], [`InboxConfig::link`]).
//!
//! ```
//! use bytes::Bytes;
//! use courier_delivery::{Ack, Event, Inbox, InboxConfig, Incoming, Message, Outbox, Policy, Timestamp, Transmit};
//!
//! let now = Timestamp::ZERO;
//! let mut outbox = Outbox::new(Policy::default(), 1);
//! let mut inbox = Inbox::new(InboxConfig::default());
//! outbox.handle_connected(now);
//! outbox.push(Message::new(Bytes::from_static(b"hi")), now)?;
//!
//! // Sender to receiver.
//! while let Some(Transmit::Message(out)) = outbox.poll_transmit(now) {
//!     inbox.handle_message(Incoming { seq: out.seq, floor: out.floor, payload: out.payload }, now)?;
//! }
//! let delivery = inbox.poll_delivery().expect("in order, so delivered at once");
//! assert_eq!(&delivery.payload[..], b"hi");
//!
//! // Receiver to sender: acks are coalesced, so let the ack delay pass.
//! let later = inbox.poll_timeout().expect("an ack is waiting");
//! inbox.handle_timeout(later);
//! while let Some(ack) = inbox.poll_ack() {
//!     match ack {
//!         Ack::UpTo(seq) => outbox.handle_ack_upto(seq, later),
//!         Ack::Single(seq) => outbox.handle_ack(seq, later),
//!     }
//! }
//! assert!(matches!(outbox.poll_event(), Some(Event::Delivered { seq: 1, attempts: 1, .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod event;
mod inbox;
mod message;
mod outbox;
mod policy;
mod rng;
mod time;

pub use error::{InboxError, PushError, RestoreError};
pub use event::{DeadLetterReason, Event, Nack};
pub use inbox::{Ack, Delivery, Inbox, InboxConfig, Incoming, Received};
pub use message::{Message, Outgoing, StoredMessage, Transmit};
pub use outbox::Outbox;
pub use policy::{Backoff, Capacity, Guarantee, Mode, Ordering, Overflow, Policy, Resend};
pub use time::Timestamp;
