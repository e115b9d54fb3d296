//! Reliable sends: messages to a user's or a client id's mailbox, delivered until acknowledged (DESIGN.md §2–§3).
//!
//! A reliable message goes into the recipient identity's mailbox in the hub's [`Store`](crate::store::Store) and
//! is delivered to whichever connection of that identity is up, as a client-result invocation: the client
//! handler's return is the ack. It is retried until acked, expired or dead-lettered, across new connections and
//! (with a durable store) server restarts. The send returns once the store has accepted the message, with a
//! [`Sent`] handle whose [`outcome`](Sent::outcome) the sender may await; a receipt may also go, reliably, to the
//! client that caused the send.
//!
//! ```
//! use courier::server::{Context, Hub, HubError};
//! use courier::store::MemoryStore;
//!
//! let hub = Hub::builder()
//!     .store(MemoryStore::new())
//!     .method("Tell", |ctx: Context, (user, text): (String, String)| async move {
//!         let sent = ctx.reliable().user(&user).with_receipt().send("Deliver", (text,)).await?;
//!         Ok::<_, HubError>(sent.id().to_string())
//!     })
//!     .build();
//! # drop(hub);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use courier_delivery::{DeadLetterReason, Policy};
use tokio::sync::oneshot;

use crate::server::HubInner;
use crate::server::mailbox::{Mailboxes, Request};
use crate::server::method::Arguments;
use crate::store::{MailboxId, StoreError};

/// The id of a reliable message: receipts, dead letters and the `courier-id` header name it.
///
/// Ids are 22 characters of base64url, unique across the hub's lifetime and restarts (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Arc<str>);

impl MessageId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(crate::server::id::unique_id().into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MessageId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

/// What became of a reliable message, from [`Sent::outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The recipient acknowledged it.
    Delivered {
        /// Attempts it took, from 1.
        attempts: u32,
        /// From the send to the ack.
        latency: Duration,
    },
    /// At-most-once: it was handed to a connection and forgotten.
    Sent,
    /// Its time to live passed before an ack.
    Expired {
        /// Attempts made.
        attempts: u32,
    },
    /// Given up: attempts exhausted, rejected by the client, or dropped on overflow.
    DeadLettered {
        /// Why.
        reason: DeadLetterReason,
        /// Attempts made.
        attempts: u32,
    },
    /// A newer message with the same key replaced it (the policy resends only the latest per key).
    Conflated,
}

impl Outcome {
    /// The status word a receipt carries: `delivered`, `sent`, `expired`, `dead-lettered` or `conflated`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Sent => "sent",
            Self::Expired { .. } => "expired",
            Self::DeadLettered { .. } => "dead-lettered",
            Self::Conflated => "conflated",
        }
    }
}

/// A dead-lettered message, from [`HubContext::dead_letters`](crate::server::HubContext::dead_letters).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message id.
    pub id: MessageId,
    /// The mailbox it was in.
    pub mailbox: MailboxId,
    /// The client method it was for.
    pub method: String,
    /// Its arguments, as JSON text.
    pub arguments: Vec<String>,
    /// Why it was given up.
    pub reason: DeadLetterReason,
    /// Attempts made.
    pub attempts: u32,
}

/// Why a reliable send was not accepted. Nothing was stored: the message will not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReliableSendError {
    /// The hub has no store (see [`HubBuilder::store`](crate::server::HubBuilder::store)).
    #[error("reliable sends need a hub built with a store")]
    NoStore,
    /// The recipient's mailbox is full and its policy rejects new messages on overflow; or the message alone is
    /// larger than the mailbox's byte capacity.
    #[error("the mailbox {0} is full")]
    MailboxFull(MailboxId),
    /// A receipt was asked for, but the caller has no identity to receive it (an anonymous connection).
    #[error("a receipt needs a caller with a user id or client id")]
    NoReceiptIdentity,
    /// The arguments could not be encoded.
    #[error("cannot encode the arguments: {0}")]
    Encode(#[from] courier_protocol::ProtocolError),
    /// The store failed: the message was not accepted.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// A message the store accepted: its id and mailbox, and its outcome to await.
#[derive(Debug)]
pub struct Sent {
    pub(crate) id: MessageId,
    pub(crate) mailbox: MailboxId,
    pub(crate) seq: u64,
    pub(crate) outcome: oneshot::Receiver<Outcome>,
}

impl Sent {
    /// The message id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The mailbox it went to.
    pub fn mailbox(&self) -> &MailboxId {
        &self.mailbox
    }

    /// Its sequence number in the mailbox.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits for the outcome. `None` if the hub stopped tracking it first (a shutdown): the message stays in the
    /// store and is delivered after the restart, but this handle will not learn of it (a receipt will).
    pub async fn outcome(self) -> Option<Outcome> {
        self.outcome.await.ok()
    }
}

/// Hub-wide settings of reliable delivery, with their defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReliableOptions {
    /// The policy of client methods without their own ([`HubBuilder::client_method`]). Default: [`Policy::default`]
    /// (at-least-once, strictly ordered, window 1, ack timeout 5 s, backoff 500 ms ×2 up to 30 s, no attempt limit,
    /// time to live 24 h, 10,000 messages or 16 MiB per mailbox, reject on overflow, no history).
    ///
    /// [`HubBuilder::client_method`]: crate::server::HubBuilder::client_method
    pub default_policy: Policy,
    /// The client method that carries receipts, with arguments `(id, status)` (see [`Outcome::status`]). Default
    /// `Receipt`.
    pub receipt_method: String,
    /// How often the store is swept for messages whose time to live passed in mailboxes no connection or send
    /// has loaded (their receipts go out then). Default 1 s.
    pub expiry_sweep_interval: Duration,
    /// How many dead letters [`dead_letters`](crate::server::HubContext::dead_letters) subscribers may fall
    /// behind before they skip the oldest (they read `Lagged`). Default 1,024.
    pub dead_letter_capacity: usize,
    /// How long the outcome of a call with an idempotency key is kept, to answer repeats of it without running
    /// the method again. Default 24 h.
    pub result_retention: Duration,
    /// Client methods (lower case) whose reliable messages carry their id as a last argument (see
    /// [`HubBuilder::append_message_id`](crate::server::HubBuilder::append_message_id)). Default none.
    pub id_argument_methods: std::collections::HashSet<String>,
}

impl Default for ReliableOptions {
    fn default() -> Self {
        Self {
            default_policy: Policy::default(),
            receipt_method: "Receipt".into(),
            expiry_sweep_interval: Duration::from_secs(1),
            dead_letter_capacity: 1024,
            result_retention: Duration::from_secs(24 * 3600),
            id_argument_methods: std::collections::HashSet::new(),
        }
    }
}

impl ReliableOptions {
    /// Sets [`default_policy`](Self::default_policy).
    #[must_use]
    pub fn default_policy(mut self, policy: Policy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Sets [`receipt_method`](Self::receipt_method).
    #[must_use]
    pub fn receipt_method(mut self, method: impl Into<String>) -> Self {
        self.receipt_method = method.into();
        self
    }

    /// Sets [`expiry_sweep_interval`](Self::expiry_sweep_interval).
    #[must_use]
    pub fn expiry_sweep_interval(mut self, interval: Duration) -> Self {
        self.expiry_sweep_interval = interval;
        self
    }

    /// Sets [`result_retention`](Self::result_retention).
    #[must_use]
    pub fn result_retention(mut self, retention: Duration) -> Self {
        self.result_retention = retention;
        self
    }

    /// Sets [`dead_letter_capacity`](Self::dead_letter_capacity).
    #[must_use]
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = capacity;
        self
    }
}

/// Reliable sends, from [`Context::reliable`](crate::server::Context::reliable) or
/// [`HubContext::reliable`](crate::server::HubContext::reliable).
#[derive(Clone)]
pub struct Reliable {
    pub(crate) hub: Arc<HubInner>,
    /// The caller's identity mailbox, for receipts (from a [`Context`](crate::server::Context) only).
    pub(crate) caller: Option<MailboxId>,
}

impl fmt::Debug for Reliable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reliable")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Reliable {
    fn mailboxes(&self) -> Result<&Arc<Mailboxes>, ReliableSendError> {
        self.hub
            .mailboxes
            .as_ref()
            .ok_or(ReliableSendError::NoStore)
    }

    fn send_to(&self, to: MailboxId) -> ReliableSend {
        ReliableSend {
            reliable: self.clone(),
            to,
            id: None,
            ttl: None,
            key: None,
            receipt: false,
        }
    }

    /// A message to user `user_id`'s mailbox: delivered to one of the user's connections.
    pub fn user(&self, user_id: &str) -> ReliableSend {
        self.send_to(MailboxId::user(user_id))
    }

    /// A message to client id `client_id`'s mailbox: delivered to that device's connection.
    pub fn client(&self, client_id: &str) -> ReliableSend {
        self.send_to(MailboxId::client(client_id))
    }

    /// A message to every identity in group `group` now: one mailbox entry per member identity (the user id of
    /// a member connection, else its client id; anonymous members are skipped, and several connections of one
    /// identity count once). Group membership is SignalR's, per connection: an identity none of whose
    /// connections is in the group at the send does not get the message.
    pub fn group(&self, group: &str) -> ReliableGroupSend {
        ReliableGroupSend {
            reliable: self.clone(),
            group: group.to_owned(),
            ttl: None,
            receipt: false,
        }
    }

    /// How many messages in identity `identity`'s mailboxes (the default one and every client method's) await an
    /// ack.
    pub async fn pending(&self, identity: &MailboxId) -> Result<usize, ReliableSendError> {
        self.mailboxes()?.pending(&identity.identity()).await
    }
}

/// One reliable message on its way to a mailbox, from [`Reliable::user`] or [`Reliable::client`].
#[derive(Debug)]
#[must_use = "nothing is sent until `send` is awaited"]
pub struct ReliableSend {
    reliable: Reliable,
    to: MailboxId,
    id: Option<MessageId>,
    ttl: Option<Duration>,
    key: Option<u64>,
    receipt: bool,
}

impl ReliableSend {
    /// Uses this id instead of a fresh one (e.g. one already put in the message's arguments).
    pub fn id(mut self, id: MessageId) -> Self {
        self.id = Some(id);
        self
    }

    /// Expires the message after `ttl` instead of the policy's time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the conflation key (used when the policy resends only the latest message per key).
    pub fn key(mut self, key: u64) -> Self {
        self.key = Some(key);
        self
    }

    /// Asks for a receipt: when the message is delivered, expires or is dead-lettered, the caller's identity gets
    /// the [`receipt_method`](ReliableOptions::receipt_method) with `(id, status)`, reliably. Only for sends from
    /// a hub method of an identified caller; otherwise `send` fails with
    /// [`ReliableSendError::NoReceiptIdentity`].
    pub fn with_receipt(mut self) -> Self {
        self.receipt = true;
        self
    }

    /// Stores the message in the mailbox of client method `method` with `arguments`, and returns once the store
    /// accepted it (on disk, for a durable store).
    pub async fn send(
        self,
        method: &str,
        arguments: impl Arguments,
    ) -> Result<Sent, ReliableSendError> {
        let mailboxes = self.reliable.mailboxes()?;
        let receipt_to = receipt_target(&self.reliable, self.receipt)?;
        let request = Request::new(
            self.id.unwrap_or_else(MessageId::generate),
            method,
            &arguments,
            receipt_to,
        )?
        .ttl(self.ttl)
        .key(self.key);
        mailboxes.send(&self.to, request).await
    }
}

/// A reliable message to every member identity of a group, from [`Reliable::group`].
#[derive(Debug)]
#[must_use = "nothing is sent until `send` is awaited"]
pub struct ReliableGroupSend {
    reliable: Reliable,
    group: String,
    ttl: Option<Duration>,
    receipt: bool,
}

impl ReliableGroupSend {
    /// Expires the messages after `ttl` instead of the policy's time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Asks for a receipt per member, as [`ReliableSend::with_receipt`].
    pub fn with_receipt(mut self) -> Self {
        self.receipt = true;
        self
    }

    /// Stores one message (with its own id) per member identity; returns each accepted one, or the first error
    /// (members before it were sent, members after it were not).
    pub async fn send(
        self,
        method: &str,
        arguments: impl Arguments,
    ) -> Result<Vec<Sent>, ReliableSendError> {
        let mailboxes = self.reliable.mailboxes()?;
        let receipt_to = receipt_target(&self.reliable, self.receipt)?;
        let members = self.reliable.hub.registry.group_identities(&self.group);
        // The arguments are encoded once; each member's entry gets its own id.
        let template =
            Request::new(MessageId::generate(), method, &arguments, receipt_to)?.ttl(self.ttl);
        let mut sent = Vec::with_capacity(members.len());
        for member in members {
            let request = Request {
                id: MessageId::generate(),
                ..template.clone()
            };
            sent.push(mailboxes.send(&member, request).await?);
        }
        Ok(sent)
    }
}

fn receipt_target(
    reliable: &Reliable,
    wanted: bool,
) -> Result<Option<MailboxId>, ReliableSendError> {
    if !wanted {
        return Ok(None);
    }
    reliable
        .caller
        .clone()
        .map(Some)
        .ok_or(ReliableSendError::NoReceiptIdentity)
}
