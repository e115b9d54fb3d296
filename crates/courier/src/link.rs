//! Stateful reconnect (HUB-PROTOCOL.md §7) on `courier-delivery`'s link mode, for both the client and the server.

use bytes::Bytes;
use courier_delivery::{
    Ack, Inbox, InboxConfig, InboxError, Message, Outbox, Policy, Received, Timestamp, Transmit,
};
use tokio::time::Instant;

/// Numbering, buffering and acknowledging of trackable messages in both directions.
///
/// The outbox keeps every sent trackable message until the peer acks it. It has no bound of its own: each side
/// bounds it from [`buffered_bytes`](Self::buffered_bytes) as its official counterpart does (the client stops
/// taking calls at the bound, the server once over it, and holds replies meanwhile).
pub(crate) struct Link {
    outbox: Outbox,
    inbox: Inbox,
    /// Engine timestamps count milliseconds from here.
    epoch: Instant,
}

impl Link {
    pub(crate) fn new(epoch: Instant) -> Self {
        let mut outbox = Outbox::new(Policy::link(usize::MAX), 0);
        outbox.handle_connected(Timestamp::ZERO);
        Self {
            outbox,
            inbox: Inbox::new(InboxConfig::link()),
            epoch,
        }
    }

    fn now(&self) -> Timestamp {
        let millis = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis();
        Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// Bytes of trackable messages sent and not yet acknowledged.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.outbox.bytes()
    }

    /// Numbers and buffers one framed trackable message.
    pub(crate) fn push(&mut self, framed: Bytes) {
        let now = self.now();
        // The outbox has no message or byte limit (see the type's documentation), so a push cannot fail.
        let _ = self.outbox.push(Message::new(framed), now);
    }

    /// What to write now: `Sequence` (after a reattach) as `Err(first)`, then buffered messages as `Ok(framed)`.
    pub(crate) fn poll_transmit(&mut self) -> Option<Result<Bytes, i64>> {
        let now = self.now();
        match self.outbox.poll_transmit(now)? {
            Transmit::Sequence { first } => Some(Err(i64::try_from(first).unwrap_or(i64::MAX))),
            Transmit::Message(out) => Some(Ok(out.payload)),
        }
    }

    /// The peer acknowledged everything up to `sequence_id`.
    pub(crate) fn handle_ack(&mut self, sequence_id: i64) {
        let now = self.now();
        self.outbox
            .handle_ack_upto(u64::try_from(sequence_id).unwrap_or(0), now);
        // Delivery events mean nothing at the link level; drain them so they do not pile up.
        while self.outbox.poll_event().is_some() {}
    }

    /// A trackable message arrived: whether to process it (false: a duplicate of a replayed message, or one that
    /// arrived after a disconnect and before the peer's `Sequence`).
    pub(crate) fn receive(&mut self) -> bool {
        let now = self.now();
        let received = self.inbox.handle_link_message(Bytes::new(), now);
        while self.inbox.poll_delivery().is_some() {}
        matches!(received, Ok(Received::Delivered))
    }

    /// The peer's `Sequence` after a reattach.
    pub(crate) fn handle_sequence(&mut self, sequence_id: i64) -> Result<(), InboxError> {
        let now = self.now();
        self.inbox
            .handle_sequence(u64::try_from(sequence_id).unwrap_or(0), now)
    }

    /// When an `Ack` is due.
    pub(crate) fn ack_deadline(&self) -> Option<Instant> {
        self.inbox
            .poll_timeout()
            .map(|at| self.epoch + std::time::Duration::from_millis(at.as_millis()))
    }

    /// The `Ack` to send now, if one is due.
    pub(crate) fn poll_ack(&mut self) -> Option<i64> {
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

    /// The transport broke: nothing is sent, and arrivals are dropped until the peer's `Sequence`.
    pub(crate) fn detach(&mut self) {
        let now = self.now();
        self.outbox.handle_disconnected(now);
        self.inbox.handle_disconnected();
    }

    /// A new transport is up: `poll_transmit` now yields `Sequence` and the replay.
    pub(crate) fn attach(&mut self) {
        let now = self.now();
        self.outbox.handle_connected(now);
    }
}
