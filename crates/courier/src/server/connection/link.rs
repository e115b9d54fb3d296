//! Stateful reconnect for one connection (HUB-PROTOCOL.md §7), on `courier-delivery`'s link mode.

use std::collections::VecDeque;

use bytes::Bytes;
use courier_delivery::{
    Ack, Inbox, InboxConfig, InboxError, Message, Outbox, Policy, Received, Transmit,
};
use tokio::time::Instant;

/// Numbering, buffering and acknowledging of trackable messages in both directions.
///
/// The outbox keeps every sent trackable message until the client acks it, bounded as SignalR bounds it: sends
/// wait while the buffered bytes exceed `buffer_size` (the engine's link mode), so one message may overshoot the
/// bound and a message larger than the bound is still sent once the buffer has drained.
///
/// Only the connection's own sends wait ([`has_room`](Self::has_room) gates them). A reply the client's own
/// message calls for at once (an error Completion, a canceled stream's Completion) cannot wait without the
/// connection ceasing to read, and so to hear the acks that would make room: while the buffer is over its bound,
/// such replies are held here, in order, until acks make room. Held replies are bounded by `buffer_size` bytes as
/// well; a client that goes on sending without acknowledging beyond that overflows the link
/// ([`push`](Self::push) fails).
pub(super) struct Link {
    outbox: Outbox,
    inbox: Inbox,
    /// Framed replies waiting for room in the outbox, not yet numbered.
    held: VecDeque<Bytes>,
    held_bytes: usize,
    buffer_size: usize,
    /// The connection's start: engine timestamps count milliseconds from here.
    epoch: Instant,
}

/// What the client's `Sequence` meant.
pub(super) type SequenceResult = Result<(), InboxError>;

/// The client sent more than the link can hold replies for, without acknowledging what it received.
#[derive(Debug)]
pub(super) struct Overflow;

impl Link {
    pub(super) fn new(buffer_size: usize, epoch: Instant) -> Self {
        let mut outbox = Outbox::new(Policy::link(buffer_size), 0);
        outbox.handle_connected(courier_delivery::Timestamp::ZERO);
        Self {
            outbox,
            inbox: Inbox::new(InboxConfig::link()),
            held: VecDeque::new(),
            held_bytes: 0,
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

    /// Whether the connection's own trackable messages may be sent now: the buffer is not over its bound, and no
    /// held reply is waiting (it goes first).
    pub(super) fn has_room(&self) -> bool {
        self.held.is_empty() && self.outbox.has_room(0)
    }

    /// Numbers and buffers one framed trackable message, or holds it while the buffer is over its bound (see the
    /// type's documentation).
    pub(super) fn push(&mut self, framed: Bytes) -> Result<(), Overflow> {
        let framed = if self.held.is_empty() {
            let now = self.at(Instant::now());
            match self.outbox.push(Message::new(framed), now) {
                Ok(_) => return Ok(()),
                Err(refused) => refused.into_message().into_payload(),
            }
        } else {
            framed
        };
        if !self.held.is_empty() && self.held_bytes + framed.len() > self.buffer_size {
            return Err(Overflow);
        }
        self.held_bytes += framed.len();
        self.held.push_back(framed);
        Ok(())
    }

    /// Moves held replies into the outbox while it has room.
    fn release_held(&mut self) {
        let now = self.at(Instant::now());
        while self.outbox.has_room(0)
            && let Some(framed) = self.held.pop_front()
        {
            self.held_bytes -= framed.len();
            // The link outbox takes any message while it has room.
            let _ = self.outbox.push(Message::new(framed), now);
        }
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
        self.release_held();
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
