//! Errors of the engine.

use crate::Message;

/// Why [`Outbox::push`](crate::Outbox::push) refused a message. The message is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The mailbox is full and its overflow policy is [`Overflow::Reject`](crate::Overflow::Reject). Push again
    /// after acks have made room ([`Outbox::has_room`](crate::Outbox::has_room) tells when).
    #[error("the mailbox is full")]
    Full(Message),
    /// Mailbox mode: the message alone is larger than the mailbox's byte capacity; it can never be accepted.
    /// (Link mode takes such a message once its buffer is empty.)
    #[error("the message is larger than the mailbox's byte capacity")]
    TooLarge(Message),
}

impl PushError {
    /// The refused message.
    pub fn into_message(self) -> Message {
        match self {
            Self::Full(message) | Self::TooLarge(message) => message,
        }
    }
}

/// Why [`Outbox::restore`](crate::Outbox::restore) refused a stored state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Sequence numbers must start at 1 and strictly increase.
    #[error("stored message {seq} is out of order (after {previous})")]
    OutOfOrder {
        /// The offending sequence number.
        seq: u64,
        /// The one before it (0 at the start).
        previous: u64,
    },
    /// The next sequence number must be above every stored one.
    #[error("next sequence number {next_seq} is not above stored message {seq}")]
    NextSeqTooLow {
        /// The next sequence number given.
        next_seq: u64,
        /// The highest stored sequence number.
        seq: u64,
    },
}

/// A protocol violation seen by an [`Inbox`](crate::Inbox). The connection should be closed with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// Link mode: the peer's `Sequence` is ahead of what was received (fatal in SignalR).
    #[error("Sequence ID greater than amount of messages we've received.")]
    SequenceAhead {
        /// The peer's sequence id.
        first: u64,
        /// The id the next message would have had.
        expected: u64,
    },
    /// A mailbox message with sequence number 0 or a floor above its own number.
    #[error("invalid sequence numbers: seq {seq}, floor {floor}")]
    InvalidSequence {
        /// The sequence number received.
        seq: u64,
        /// The floor received.
        floor: u64,
    },
    /// A mailbox-mode input given to a link-mode inbox, or the other way round.
    #[error("this input does not belong to the inbox's mode")]
    WrongMode,
}
