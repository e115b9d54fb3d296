//! Stateful reconnect for one connection (HUB-PROTOCOL.md §7), on `courier-delivery`'s link mode.

use bytes::Bytes;
use courier_delivery::{
    Ack, Inbox, InboxConfig, InboxError, Message, Outbox, Policy, Received, Transmit,
};
use tokio::time::Instant;

/// Numbering, buffering and acknowledging of trackable messages in both directions.
///
/// The outbox keeps every sent trackable message until the client acks it. Its byte bound is enforced here, not
/// by the outbox, to match .NET: a send waits while the buffer holds `buffer_size` bytes or more, so one message
/// may overshoot the bound (and a message larger than the bound is still sent, once the buffer has drained).
pub(super) struct Link {
    outbox: Outbox,
    inbox: Inbox,
    buffer_size: usize,
    /// The connection's start: engine timestamps count milliseconds from here.
    epoch: Instant,
}

/// What the client's `Sequence` meant.
pub(super) type SequenceResult = Result<(), InboxError>;

impl Link {
    pub(super) fn new(buffer_size: usize, epoch: Instant) -> Self {
        let mut outbox = Outbox::new(Policy::link(usize::MAX), 0);
        outbox.handle_connected(courier_delivery::Timestamp::ZERO);
        Self {
            outbox,
            inbox: Inbox::new(InboxConfig::link()),
            buffer_size,
            epoch,
        }
    }

    fn at(&self, instant: Instant) -> courier_delivery::Timestamp {
        let millis = instant.saturating_duration_since(self.epoch).as_millis();
        courier_delivery::Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: courier_delivery::Timestamp) -> Instant {
        self.epoch + std::time::Duration::from_millis(at.as_millis())
    }

    /// Whether a trackable message may be sent now (the buffer is below its bound).
    pub(super) fn has_room(&self) -> bool {
        self.outbox.bytes() < self.buffer_size
    }

    /// Numbers and buffers one framed trackable message.
    pub(super) fn push(&mut self, framed: Bytes) {
        let now = self.at(Instant::now());
        // The link policy has no message or byte limit (the bound is applied by `has_room`), so a push cannot fail.
        let _ = self.outbox.push(Message::new(framed), now);
    }

    /// What to write now: `Sequence` (after a reattach) as `Err(first)`, then buffered messages as `Ok(framed)`.
    pub(super) fn poll_transmit(&mut self) -> Option<Result<Bytes, i64>> {
        let now = self.at(Instant::now());
        match self.outbox.poll_transmit(now)? {
            Transmit::Sequence { first } => Some(Err(i64::try_from(first).unwrap_or(i64::MAX))),
            Transmit::Message(out) => Some(Ok(out.payload)),
        }
    }

    /// The client acknowledged everything up to `sequence_id`.
    pub(super) fn handle_ack(&mut self, sequence_id: i64) {
        let now = self.at(Instant::now());
        self.outbox
            .handle_ack_upto(u64::try_from(sequence_id).unwrap_or(0), now);
        // Delivery events mean nothing at the link level; drain them so they do not pile up.
        while self.outbox.poll_event().is_some() {}
    }

    /// A trackable message arrived: whether to process it (false: a duplicate of a replayed message, or one that
    /// arrived before the client's `Sequence`).
    pub(super) fn receive(&mut self) -> bool {
        let now = self.at(Instant::now());
        let received = self.inbox.handle_link_message(Bytes::new(), now);
        while self.inbox.poll_delivery().is_some() {}
        matches!(received, Ok(Received::Delivered))
    }

    /// The client's `Sequence` after a reattach.
    pub(super) fn handle_sequence(&mut self, sequence_id: i64) -> SequenceResult {
        let now = self.at(Instant::now());
        self.inbox
            .handle_sequence(u64::try_from(sequence_id).unwrap_or(0), now)
    }

    /// When an `Ack` is due.
    pub(super) fn ack_deadline(&self) -> Option<Instant> {
        self.inbox.poll_timeout().map(|at| self.instant(at))
    }

    /// The `Ack` to send now, if one is due.
    pub(super) fn poll_ack(&mut self) -> Option<i64> {
        let now = self.at(Instant::now());
        self.inbox.handle_timeout(now);
        let mut latest = None;
        while let Some(ack) = self.inbox.poll_ack() {
            if let Ack::UpTo(seq) = ack {
                latest = Some(i64::try_from(seq).unwrap_or(i64::MAX));
            }
        }
        latest
    }

    /// The transport broke: nothing is sent, and arrivals are dropped until the client's `Sequence`.
    pub(super) fn detach(&mut self) {
        let now = self.at(Instant::now());
        self.outbox.handle_disconnected(now);
        self.inbox.handle_disconnected();
    }

    /// A new transport is up: `poll_transmit` now yields `Sequence` and the replay.
    pub(super) fn attach(&mut self) {
        let now = self.at(Instant::now());
        self.outbox.handle_connected(now);
    }
}
