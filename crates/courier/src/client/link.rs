//! Stateful reconnect on the client side (HUB-PROTOCOL.md §7), on `courier-delivery`'s link mode.

use bytes::Bytes;
use courier_delivery::{
    Ack, Inbox, InboxConfig, InboxError, Message, Outbox, Policy, Received, Timestamp, Transmit,
};
use tokio::time::Instant;

/// Numbering, buffering and acknowledging of trackable messages in both directions.
///
/// The outbox keeps every sent trackable message until the server acks it. The byte bound is applied by the
/// driver through [`Link::has_room`]: while the buffer holds `buffer_size` bytes or more, no new call is taken
/// (sends wait for acks), so one message may overshoot the bound, as with the official clients.
pub(super) struct Link {
    outbox: Outbox,
    inbox: Inbox,
    buffer_size: usize,
    /// Engine timestamps count milliseconds from here.
    epoch: Instant,
}

impl Link {
    pub(super) fn new(buffer_size: usize) -> Self {
        let mut outbox = Outbox::new(Policy::link(usize::MAX), 0);
        outbox.handle_connected(Timestamp::ZERO);
        Self {
            outbox,
            inbox: Inbox::new(InboxConfig::link()),
            buffer_size,
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        let millis = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis();
        Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// Whether a new trackable message may be sent now.
    pub(super) fn has_room(&self) -> bool {
        self.outbox.bytes() < self.buffer_size
    }

    /// Numbers and buffers one framed trackable message.
    pub(super) fn push(&mut self, framed: Bytes) {
        let now = self.now();
        // The link policy has no message or byte limit (the bound is `has_room`), so a push cannot fail.
        let _ = self.outbox.push(Message::new(framed), now);
    }

    /// What to write now: `Sequence` (after a reattach) as `Err(first)`, then buffered messages as `Ok(framed)`.
    pub(super) fn poll_transmit(&mut self) -> Option<Result<Bytes, i64>> {
        let now = self.now();
        match self.outbox.poll_transmit(now)? {
            Transmit::Sequence { first } => Some(Err(i64::try_from(first).unwrap_or(i64::MAX))),
            Transmit::Message(out) => Some(Ok(out.payload)),
        }
    }

    /// The server acknowledged everything up to `sequence_id`.
    pub(super) fn handle_ack(&mut self, sequence_id: i64) {
        let now = self.now();
        self.outbox
            .handle_ack_upto(u64::try_from(sequence_id).unwrap_or(0), now);
        // Delivery events mean nothing at the link level; drain them so they do not pile up.
        while self.outbox.poll_event().is_some() {}
    }

    /// A trackable message arrived: whether to process it (false: a duplicate of a replayed message, or one that
    /// arrived after a disconnect and before the server's `Sequence`).
    pub(super) fn receive(&mut self) -> bool {
        let now = self.now();
        let received = self.inbox.handle_link_message(Bytes::new(), now);
        while self.inbox.poll_delivery().is_some() {}
        matches!(received, Ok(Received::Delivered))
    }

    /// The server's `Sequence` after a reattach.
    pub(super) fn handle_sequence(&mut self, sequence_id: i64) -> Result<(), InboxError> {
        let now = self.now();
        self.inbox
            .handle_sequence(u64::try_from(sequence_id).unwrap_or(0), now)
    }

    /// When an `Ack` is due.
    pub(super) fn ack_deadline(&self) -> Option<Instant> {
        self.inbox
            .poll_timeout()
            .map(|at| self.epoch + std::time::Duration::from_millis(at.as_millis()))
    }

    /// The `Ack` to send now, if one is due.
    pub(super) fn poll_ack(&mut self) -> Option<i64> {
        let now = self.now();
        self.inbox.handle_timeout(now);
        let mut latest = None;
        while let Some(ack) = self.inbox.poll_ack() {
            if let Ack::UpTo(seq) = ack {
                latest = Some(i64::try_from(seq).unwrap_or(i64::MAX));
            }
        }
        latest
    }

    /// The transport broke: nothing is sent, and arrivals are dropped until the server's `Sequence`.
    pub(super) fn detach(&mut self) {
        let now = self.now();
        self.outbox.handle_disconnected(now);
        self.inbox.handle_disconnected();
    }

    /// A new transport is up: `poll_transmit` now yields `Sequence` and the replay.
    pub(super) fn attach(&mut self) {
        let now = self.now();
        self.outbox.handle_connected(now);
    }
}
