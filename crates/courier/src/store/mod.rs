//! Where mailboxes live: the [`Store`] trait, and [`MemoryStore`] for tests and throwaway servers.
//!
//! A mailbox holds the reliable messages addressed to one durable identity (a user, or a client id that a device
//! keeps), numbered by the store in the order they were accepted. A message stays *pending* until it is acked
//! (then it may stay readable as *history* for resync), expired, or removed (dead-lettered, conflated). The store
//! also keeps the results of client-to-server calls by idempotency key, so that a retried call is answered with the
//! stored result instead of running again.
//!
//! The store never reads a clock: every time is a [`Timestamp`] the caller passes, milliseconds since the Unix
//! epoch (the origin must survive a restart). What a store returns is exactly what
//! [`Outbox::restore`](courier_delivery::Outbox::restore) needs to rebuild a mailbox's outbox after a restart:
//!
//! ```
//! use courier::store::{MailboxId, MailboxLimit, MemoryStore, NewMessage, Store};
//! use courier_delivery::{Outbox, Policy, Timestamp};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let alice = MailboxId::user("alice");
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! let seq = store.append(&alice, NewMessage::new("hi".into(), now), MailboxLimit::default()).await?;
//! assert_eq!(seq, 1);
//!
//! // After a restart: rebuild the outbox from what the store kept.
//! let next_seq = store.next_seq(&alice).await?;
//! let pending = store.read_pending(&alice, 0, 1_000).await?;
//! let outbox = Outbox::restore(Policy::default(), 7, next_seq, pending, now)?;
//! assert_eq!(outbox.next_seq(), 2);
//! # Ok(())
//! # }
//! ```

mod memory;
#[doc(hidden)]
pub mod testing;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
pub use courier_delivery::StoredMessage;
use courier_delivery::{Capacity, Timestamp};
use futures::future::BoxFuture;

pub use memory::MemoryStore;

/// The longest idempotency key a store accepts, in bytes. Keys come from the network (a header of a client's
/// call), so they are bounded here rather than trusted.
pub const MAX_KEY_LEN: usize = 256;

/// The address of a mailbox: a user id (any connection of the user reads it) or a client id (one device), and,
/// when the hub gives a client method its own delivery policy, that method.
///
/// The kinds are separate namespaces: `MailboxId::user("a")` and `MailboxId::client("a")` are different
/// mailboxes, and so are `MailboxId::user("a")` (the identity's default mailbox) and
/// `MailboxId::user("a").for_method("Deliver")`. Cloning is cheap (a shared string).
///
/// ```
/// use courier::store::{MailboxId, MailboxKind};
///
/// let id = MailboxId::user("alice");
/// assert_eq!((id.kind(), id.name(), id.method()), (MailboxKind::User, "alice", None));
/// assert_eq!(id.as_key(), "user:alice");
///
/// let deliver = id.for_method("Deliver");
/// assert_eq!(deliver.as_key(), "user/Deliver:alice");
/// assert_eq!((deliver.name(), deliver.method()), ("alice", Some("Deliver")));
/// assert_eq!(deliver.identity(), id);
/// assert_eq!(MailboxId::from_key("user/Deliver:alice"), Some(deliver));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(Arc<str>);

/// Which kind of identity a [`MailboxId`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailboxKind {
    /// A user, as the auth hook names it.
    User,
    /// A client id that one device keeps across connections.
    Client,
}

impl MailboxKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Client => "client",
        }
    }
}

impl MailboxId {
    /// The default mailbox of user `id`.
    pub fn user(id: &str) -> Self {
        Self::new(MailboxKind::User, None, id)
    }

    /// The default mailbox of client id `id`.
    pub fn client(id: &str) -> Self {
        Self::new(MailboxKind::Client, None, id)
    }

    fn new(kind: MailboxKind, method: Option<&str>, id: &str) -> Self {
        let key = match method {
            Some(method) => format!("{}/{method}:{id}", kind.as_str()),
            None => format!("{}:{id}", kind.as_str()),
        };
        Self(key.into())
    }

    /// The same identity's mailbox for client method `method`.
    ///
    /// # Panics
    ///
    /// If `method` contains `:` (the key's separator; method names are the application's, never the network's).
    #[must_use]
    pub fn for_method(&self, method: &str) -> Self {
        assert!(
            !method.contains(':'),
            "a client method with its own mailbox may not contain ':' ({method:?})"
        );
        Self::new(self.kind(), Some(method), self.name())
    }

    /// The identity's default mailbox (this one without its method).
    #[must_use]
    pub fn identity(&self) -> Self {
        Self::new(self.kind(), None, self.name())
    }

    /// The key's head (`user` or `user/Method`) and the name after the first `:`.
    fn split(&self) -> (&str, &str) {
        self.0.split_once(':').unwrap_or((&self.0, ""))
    }

    /// Which kind of identity this is.
    pub fn kind(&self) -> MailboxKind {
        if self.0.starts_with("user") {
            MailboxKind::User
        } else {
            MailboxKind::Client
        }
    }

    /// The user id or client id, without its kind.
    pub fn name(&self) -> &str {
        self.split().1
    }

    /// The client method this mailbox is for, `None` for the identity's default mailbox.
    pub fn method(&self) -> Option<&str> {
        self.split().0.split_once('/').map(|(_, method)| method)
    }

    /// The stable string a store persists: `kind[/method]:name`, kind `user` or `client`.
    pub fn as_key(&self) -> &str {
        &self.0
    }

    /// Parses what [`as_key`](Self::as_key) returned; `None` if `key` is not of that form.
    pub fn from_key(key: &str) -> Option<Self> {
        let (head, _) = key.split_once(':')?;
        let kind = head.split_once('/').map_or(head, |(kind, _)| kind);
        matches!(kind, "user" | "client").then(|| Self(key.into()))
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message to append to a mailbox; the store gives it its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The encoded payload.
    pub payload: Bytes,
    /// Conflation key, if any (see [`Message::key`](courier_delivery::Message::key)).
    pub key: Option<u64>,
    /// When it was sent.
    pub enqueued_at: Timestamp,
    /// When it expires; [`Timestamp::MAX`] for never.
    pub expires_at: Timestamp,
}

impl NewMessage {
    /// A message sent at `enqueued_at`, without a key, that never expires.
    pub fn new(payload: Bytes, enqueued_at: Timestamp) -> Self {
        Self {
            payload,
            key: None,
            enqueued_at,
            expires_at: Timestamp::MAX,
        }
    }

    /// Sets the conflation key.
    #[must_use]
    pub fn key(mut self, key: u64) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets when the message expires.
    #[must_use]
    pub fn expires_at(mut self, expires_at: Timestamp) -> Self {
        self.expires_at = expires_at;
        self
    }
}

/// The most a mailbox may hold pending; an append beyond it fails with [`StoreError::MailboxFull`].
///
/// The delivery policy's [`Capacity`] converts into it. The store only rejects: a server whose policy drops the
/// oldest message on overflow removes it first ([`Store::remove`]) and appends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimit {
    /// Most pending messages. Default 10 000.
    pub messages: usize,
    /// Most pending payload bytes. Default 16 MiB.
    pub bytes: usize,
}

impl Default for MailboxLimit {
    fn default() -> Self {
        Capacity::default().into()
    }
}

impl From<Capacity> for MailboxLimit {
    fn from(capacity: Capacity) -> Self {
        Self {
            messages: capacity.messages,
            bytes: capacity.bytes,
        }
    }
}

impl MailboxLimit {
    /// Sets the most pending messages.
    #[must_use]
    pub fn messages(mut self, messages: usize) -> Self {
        self.messages = messages;
        self
    }

    /// Sets the most pending payload bytes.
    #[must_use]
    pub fn bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    /// Whether a mailbox holding `messages` messages of `bytes` bytes may take one more of `len` bytes.
    pub fn admits(&self, messages: usize, bytes: usize, len: usize) -> bool {
        messages < self.messages && bytes.saturating_add(len) <= self.bytes
    }
}

/// An acknowledged message still kept for resync ([`Store::read_history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryMessage {
    /// Its sequence number in the mailbox.
    pub seq: u64,
    /// The payload.
    pub payload: Bytes,
}

/// A pending message that [`Store::expire`] removed because its time ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredMessage {
    /// The mailbox it was in.
    pub mailbox: MailboxId,
    /// The message as it was stored (its attempts and payload make the `Expired` event).
    pub message: StoredMessage,
}

/// Why a store operation failed. A failed append was not accepted: the sender must be told, never left to assume.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The mailbox is at its [`MailboxLimit`], or the message alone is larger than the limit's bytes.
    #[error("mailbox {mailbox} is full")]
    MailboxFull {
        /// The mailbox.
        mailbox: MailboxId,
    },
    /// The store as a whole is at its bound (e.g. [`MemoryStore`]'s memory bound).
    #[error("the store is full")]
    StoreFull,
    /// An idempotency key longer than [`MAX_KEY_LEN`].
    #[error("idempotency key of {len} bytes is longer than {MAX_KEY_LEN}")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The store was closed (or its writer stopped) before the operation ran.
    #[error("the store is closed")]
    Closed,
    /// The backend failed: I/O, a corrupt file, a lost connection. Whether a failed write happened is unknown
    /// only if the backend says so; a durable store reports a write that did not commit as this error.
    #[error("store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Checks an idempotency key against [`MAX_KEY_LEN`].
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::KeyTooLong { len: key.len() });
    }
    Ok(())
}

/// The future every [`Store`] method returns: boxed, so that the trait is object safe and a server holds an
/// `Arc<dyn Store>`, and `Send`, so that it runs on any tokio task.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Durable (or not) storage for mailboxes and idempotency keys.
///
/// # Contract
///
/// - **Numbering.** [`append`](Self::append) gives each message of a mailbox the next number: 1 first, then one
///   more than any number the mailbox ever gave, acked or removed ones included, across restarts. Numbers are
///   never reused, so a receiver that dedups by number never drops a new message.
/// - **Ordering.** Appends to one mailbox are numbered in the order the store accepted them; reads return
///   messages in ascending number order.
/// - **Visibility.** Once a method's future has completed, every later call sees its effect (read your writes).
/// - **Durability.** For a durable store, an `Ok` from a write means the write is on disk: a crash right after it
///   loses nothing. An `Err` means the write did not happen. [`MemoryStore`] keeps nothing across a restart.
/// - **Idempotence.** Acks, removals, attempt records and stored results may be repeated; the repeat changes
///   nothing. Methods on a message that is not pending (never appended, acked, expired or removed) do nothing.
/// - **Time.** The store reads no clock: times are passed in, in milliseconds since the Unix epoch.
///
/// Methods return [`StoreFuture`]s (boxed, `Send`): `async fn` in a trait cannot be used through `dyn`, and a
/// server shares one store among its tasks as an `Arc<dyn Store>`. An implementation writes
/// `Box::pin(async move { .. })`.
pub trait Store: Send + Sync + 'static {
    /// Appends a message to `mailbox` and returns its sequence number. Fails with
    /// [`StoreError::MailboxFull`] if the pending messages would exceed `limit`, leaving the mailbox unchanged.
    /// The message is accepted (durable, for a durable store) when this returns `Ok`.
    fn append<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
    ) -> StoreFuture<'a, u64>;

    /// The number the next append to `mailbox` will get: 1 for a mailbox never appended to. This is the
    /// `next_seq` of [`Outbox::restore`](courier_delivery::Outbox::restore).
    fn next_seq<'a>(&'a self, mailbox: &'a MailboxId) -> StoreFuture<'a, u64>;

    /// Up to `max` pending messages of `mailbox` numbered above `after`, in ascending order, with their attempt
    /// counts and expiries. Read from `after = 0`, then from the last number returned, until a batch comes back
    /// shorter than `max`.
    fn read_pending<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        max: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>>;

    /// Records that pending message `seq` has been attempted `attempts` times, so that a restart keeps the count
    /// (record an attempt before sending it: an attempt in flight at a crash counts). The count only grows: a
    /// lower number than the stored one is ignored.
    fn record_attempt<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        attempts: u32,
    ) -> StoreFuture<'a, ()>;

    /// Acknowledges pending message `seq`: it is no longer pending. With `keep_until`, it stays readable with
    /// [`read_history`](Self::read_history) until then. Returns whether the message was pending (an ack for an
    /// unknown, acked, expired or removed message returns `false` and changes nothing).
    fn ack<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        keep_until: Option<Timestamp>,
    ) -> StoreFuture<'a, bool>;

    /// Removes pending message `seq` without keeping it (dead-lettered, conflated, or expired by the outbox).
    /// Returns whether it was pending.
    fn remove<'a>(&'a self, mailbox: &'a MailboxId, seq: u64) -> StoreFuture<'a, bool>;

    /// Up to `max` acked messages of `mailbox` numbered above `after` whose `keep_until` is later than `now`,
    /// in ascending order: what a client that says "the last I have is `after`" gets replayed before the pending
    /// messages.
    fn read_history<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        now: Timestamp,
        max: usize,
    ) -> StoreFuture<'a, Vec<HistoryMessage>>;

    /// Removes and returns up to `max` pending messages, of any mailbox, whose expiry is at or before `now`
    /// (earliest expiry first), and drops up to `max` history entries and up to `max` stored results whose time
    /// has passed. Call it periodically, and again at once while it returns `max` messages.
    fn expire(&self, now: Timestamp, max: usize) -> StoreFuture<'_, Vec<ExpiredMessage>>;

    /// The stored result of the call with idempotency key `key` from `mailbox`'s owner, if there is one that
    /// expires after `now`.
    fn get_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Bytes>>;

    /// Stores the result of the call with idempotency key `key`, kept until `expires_at`, unless a result that
    /// expires after `now` is already stored for it: the first result wins, and the one stored is returned, so
    /// that two racing runs of the same call answer alike. Fails with [`StoreError::KeyTooLong`] for a key
    /// longer than [`MAX_KEY_LEN`].
    fn put_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'a, Bytes>;
}
