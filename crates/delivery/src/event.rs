//! What became of a message.

use std::time::Duration;

use bytes::Bytes;

/// The outcome of a message, from [`Outbox::poll_event`](crate::Outbox::poll_event).
///
/// Every message an outbox accepts ends with exactly one event; a message `push` refuses gets a
/// [`PushError`](crate::PushError) instead, since it was never accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The receiver acknowledged the message.
    Delivered {
        /// Sequence number.
        seq: u64,
        /// Attempts it took, from 1.
        attempts: u32,
        /// From `push` to the ack.
        latency: Duration,
    },
    /// At-most-once: the message was handed to the transport and forgotten; no ack is awaited.
    Sent {
        /// Sequence number.
        seq: u64,
        /// From `push` to the transmission.
        latency: Duration,
    },
    /// Its time to live passed before it was acknowledged.
    Expired {
        /// Sequence number.
        seq: u64,
        /// Attempts made.
        attempts: u32,
        /// The payload, for the caller to log or dead-letter.
        payload: Bytes,
    },
    /// The outbox gave up on the message.
    DeadLettered {
        /// Sequence number.
        seq: u64,
        /// Attempts made.
        attempts: u32,
        /// Why.
        reason: DeadLetterReason,
        /// The payload, for a dead-letter queue.
        payload: Bytes,
    },
    /// [`Resend::LatestPerKey`](crate::Resend::LatestPerKey): a newer message with the same key replaced it.
    Conflated {
        /// Sequence number of the dropped message.
        seq: u64,
        /// Sequence number of the message that replaced it.
        replaced_by: u64,
    },
}

impl Event {
    /// The sequence number of the message the event is about.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Delivered { seq, .. }
            | Self::Sent { seq, .. }
            | Self::Expired { seq, .. }
            | Self::DeadLettered { seq, .. }
            | Self::Conflated { seq, .. } => *seq,
        }
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Its last allowed attempt failed (ack timeout, retryable nack, or the connection dropped).
    AttemptsExhausted,
    /// The receiver refused it ([`Nack::Reject`]).
    Rejected,
    /// The mailbox was full ([`Overflow::DropOldest`](crate::Overflow::DropOldest) or
    /// [`Overflow::DropNewest`](crate::Overflow::DropNewest)).
    Overflow,
}

/// A negative acknowledgement: what the receiver said about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nack {
    /// The attempt failed but may succeed later (a handler error, a missing handler): retry after backoff.
    Retry,
    /// The receiver will never accept this message: dead-letter it.
    Reject,
}
