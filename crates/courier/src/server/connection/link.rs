//! The server's bound on a connection's stateful reconnect buffer, and the replies held while it is full.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::link::Link;

/// Bounds the link's buffer as SignalR bounds it: sends wait while the buffered bytes exceed `buffer_size`, so
/// one message may overshoot the bound and a message larger than the bound is still sent once the buffer has
/// drained.
///
/// Only the connection's own sends wait ([`has_room`](Self::has_room) gates them). A reply the client's own
/// message calls for at once (an error Completion, a canceled stream's Completion) cannot wait without the
/// connection ceasing to read, and so to hear the acks that would make room: while the buffer is over its bound,
/// such replies are held here, in order, until acks make room. Held replies are bounded by `buffer_size` bytes as
/// well; a client that goes on sending without acknowledging beyond that overflows the link
/// ([`push`](Self::push) fails).
pub(super) struct Held {
    /// Framed replies waiting for room in the link's buffer, not yet numbered.
    replies: VecDeque<Bytes>,
    bytes: usize,
    buffer_size: usize,
}

/// The client sent more than the link can hold replies for, without acknowledging what it received.
#[derive(Debug)]
pub(super) struct Overflow;

impl Held {
    pub(super) fn new(buffer_size: usize) -> Self {
        Self {
            replies: VecDeque::new(),
            bytes: 0,
            buffer_size,
        }
    }

    fn buffer_has_room(&self, link: &Link) -> bool {
        link.buffered_bytes() <= self.buffer_size
    }

    /// Whether the connection's own trackable messages may be sent now: the buffer is not over its bound, and no
    /// held reply is waiting (it goes first).
    pub(super) fn has_room(&self, link: &Link) -> bool {
        self.replies.is_empty() && self.buffer_has_room(link)
    }

    /// Numbers and buffers one framed trackable message, or holds it while the buffer is over its bound (see the
    /// type's documentation).
    pub(super) fn push(&mut self, link: &mut Link, framed: Bytes) -> Result<(), Overflow> {
        if self.has_room(link) {
            link.push(framed);
            return Ok(());
        }
        if !self.replies.is_empty() && self.bytes + framed.len() > self.buffer_size {
            return Err(Overflow);
        }
        self.bytes += framed.len();
        self.replies.push_back(framed);
        Ok(())
    }

    /// Moves held replies into the link's buffer while it has room (after an ack).
    pub(super) fn release(&mut self, link: &mut Link) {
        while self.buffer_has_room(link)
            && let Some(framed) = self.replies.pop_front()
        {
            self.bytes -= framed.len();
            link.push(framed);
        }
    }
}
