//! What goes into an outbox and what comes out of it.

use std::time::Duration;

use bytes::Bytes;

use crate::Timestamp;

/// A message to push into an [`Outbox`](crate::Outbox): an encoded payload, plus optional per-message settings.
///
/// The payload is a [`Bytes`]: the engine never copies it, only clones the handle, so one payload pushed to many
/// mailboxes is held once.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use courier_delivery::Message;
///
/// let update = Message::new(Bytes::from_static(b"{\"cursor\":17}"))
///     .key(42) // conflated with older messages of key 42 under Resend::LatestPerKey
///     .ttl(Duration::from_secs(10)); // expires sooner than the policy says
/// assert_eq!(update.payload().len(), 13);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) payload: Bytes,
    pub(crate) key: Option<u64>,
    pub(crate) ttl: Option<Duration>,
}

impl Message {
    /// A message with `payload`, no key, and the policy's time to live.
    pub fn new(payload: Bytes) -> Self {
        Self {
            payload,
            key: None,
            ttl: None,
        }
    }

    /// Sets the conflation key, used under [`Resend::LatestPerKey`](crate::Resend::LatestPerKey) (ignored
    /// otherwise). Keys are caller-chosen numbers: two values that must not replace each other need distinct keys,
    /// so intern names rather than hashing them.
    #[must_use]
    pub fn key(mut self, key: u64) -> Self {
        self.key = Some(key);
        self
    }

    /// Overrides the policy's time to live for this message.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload back (e.g. from a refused push).
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

/// The next frame an [`Outbox`](crate::Outbox) wants written, from
/// [`Outbox::poll_transmit`](crate::Outbox::poll_transmit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A message, sent for the first time, resent, or replayed.
    Message(Outgoing),
    /// Link mode, after the connection re-attached: write SignalR's `Sequence { sequenceId: first }` before the
    /// replayed messages that follow. `first` is the id of the oldest unacknowledged message, or the next id if
    /// none is buffered.
    Sequence {
        /// The id of the first message that follows.
        first: u64,
    },
}

/// One attempt at a message: what to write, and the metadata a receiver needs (carry `seq`, `attempt` and `floor`
/// in the invocation's headers; a stock SignalR client ignores them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The message's sequence number in its mailbox (link mode: SignalR's message id). Numbers start at 1, grow by
    /// one per accepted message, and may have gaps (messages conflated or dropped before they were sent).
    pub seq: u64,
    /// Which attempt this is, from 1; 0 for a replay from the history.
    pub attempt: u32,
    /// Every message of this mailbox numbered below `floor` is settled at the sender (acknowledged, expired,
    /// dead-lettered or conflated): a receiver need not wait for any of them. At most `seq`.
    pub floor: u64,
    /// The payload, shared with the outbox (and with every other mailbox it was pushed to).
    pub payload: Bytes,
}

/// A pending message as a store keeps it, to rebuild an outbox after a restart with
/// [`Outbox::restore`](crate::Outbox::restore); [`Outbox::pending`](crate::Outbox::pending) lists them.
///
/// Every field is independent of the process that wrote it: times are [`Timestamp`]s on the origin the caller
/// chose (use the Unix epoch if the state must survive a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Sequence number in the mailbox.
    pub seq: u64,
    /// The payload.
    pub payload: Bytes,
    /// Conflation key, if any.
    pub key: Option<u64>,
    /// When the message was pushed (latency is measured from here).
    pub enqueued_at: Timestamp,
    /// When it expires; [`Timestamp::MAX`] for never.
    pub expires_at: Timestamp,
    /// Attempts made so far (an attempt in flight when the process stopped counts).
    pub attempts: u32,
}
