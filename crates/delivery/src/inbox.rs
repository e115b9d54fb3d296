//! The receiver side: duplicate window, reorder buffer, ack coalescing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::policy::{Mode, Ordering};
use crate::{InboxError, Timestamp};

/// How an [`Inbox`] receives. `InboxConfig::default()` is the mailbox receiver; [`InboxConfig::link`] is SignalR's.
///
/// ```
/// use std::time::Duration;
/// use courier_delivery::{InboxConfig, Ordering};
///
/// let config = InboxConfig::default().ordering(Ordering::Unordered).window(256).ack_delay(Duration::ZERO);
/// assert_eq!(config.window, 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxConfig {
    /// Mailbox (explicit sequence numbers) or link (implicit ids, `Sequence`). Default [`Mode::Mailbox`].
    pub mode: Mode,
    /// [`Ordering::Strict`] hands messages to the application in sequence order, holding early arrivals;
    /// [`Ordering::Unordered`] hands them over on arrival. Default strict. Must match the sender's policy.
    pub ordering: Ordering,
    /// Most messages held above the watermark, at least 1: early arrivals waiting for their turn (strict), or
    /// numbers remembered to drop duplicates (unordered). An arrival beyond it is dropped unacknowledged (strict:
    /// the highest held one makes room for a lower arrival), so the sender retries it later: memory stays bounded
    /// and nothing is lost. Make it at least the sender's window. Default 1024.
    pub window: usize,
    /// How long an ack may wait to be coalesced with later ones. Default 10 ms (link mode: 1 s, as SignalR).
    pub ack_delay: Duration,
    /// Send the ack at once when this many messages await one, at least 1. Default 32 (link mode: unlimited).
    pub ack_every: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Mailbox,
            ordering: Ordering::Strict,
            window: 1024,
            ack_delay: Duration::from_millis(10),
            ack_every: 32,
        }
    }
}

impl InboxConfig {
    /// SignalR stateful reconnect: ids counted from 1 on arrival, duplicates dropped, `Ack` with the latest id one
    /// second after the first unacknowledged message.
    pub fn link() -> Self {
        Self {
            mode: Mode::Link,
            ordering: Ordering::Strict,
            window: 1,
            ack_delay: Duration::from_secs(1),
            ack_every: usize::MAX,
        }
    }

    /// Sets the ordering.
    #[must_use]
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Sets the window (0 becomes 1).
    #[must_use]
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Sets the ack delay (zero acks at once).
    #[must_use]
    pub fn ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// Sets how many messages trigger an ack at once (0 becomes 1).
    #[must_use]
    pub fn ack_every(mut self, count: usize) -> Self {
        self.ack_every = count.max(1);
        self
    }
}

/// A mailbox message as received: the metadata from its headers and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// [`Outgoing::seq`](crate::Outgoing::seq).
    pub seq: u64,
    /// [`Outgoing::floor`](crate::Outgoing::floor).
    pub floor: u64,
    /// The payload.
    pub payload: Bytes,
}

/// A message for the application, from [`Inbox::poll_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Sequence number (link mode: the SignalR message id).
    pub seq: u64,
    /// The payload.
    pub payload: Bytes,
}

/// An ack to send back, from [`Inbox::poll_ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Every message up to this number is settled here ([`Outbox::handle_ack_upto`](crate::Outbox::handle_ack_upto);
    /// link mode: SignalR's `Ack { sequenceId }`).
    UpTo(u64),
    /// This message was handed to the application ([`Outbox::handle_ack`](crate::Outbox::handle_ack)).
    Single(u64),
}

/// What an inbox did with an arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// Handed to the application (with any held messages it unblocked).
    Delivered,
    /// Early: held until the messages before it arrive or are known to be settled.
    Held,
    /// Already had it (acked again so the sender stops resending).
    Duplicate,
    /// Dropped unacknowledged: the window is full (the sender will retry), or, in link mode, a message that
    /// arrived after a disconnect and before the peer's `Sequence`.
    Dropped,
}

/// The receiver side of a mailbox (mailbox mode) or of a connection's stateful reconnect (link mode).
///
/// It keeps a watermark (every number at or below it is settled: delivered, or given up by the sender), drops
/// duplicates, holds early arrivals under strict ordering, and coalesces acks. Acks cover only what was handed to
/// the application, so an ack never claims a message the application did not get.
///
/// # Calling order
///
/// Feed [`handle_message`](Self::handle_message) (mailbox) or [`handle_link_message`](Self::handle_link_message)
/// and [`handle_sequence`](Self::handle_sequence) (link) as frames arrive, [`handle_disconnected`](Self::handle_disconnected)
/// when the connection drops, and [`handle_timeout`](Self::handle_timeout) when `poll_timeout`'s deadline is
/// reached. Then drain [`poll_delivery`](Self::poll_delivery) (to the application), [`poll_ack`](Self::poll_ack)
/// (to the sender), and read [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Inbox {
    config: InboxConfig,
    watermark: u64,
    /// Strict: arrivals above the watermark waiting for the gap below them to close.
    held: BTreeMap<u64, Bytes>,
    /// Unordered: numbers above the watermark already delivered.
    seen: BTreeSet<u64>,
    deliveries: VecDeque<Delivery>,
    /// Whether the watermark must be acknowledged.
    ack_watermark: bool,
    /// Unordered: delivered numbers above the watermark to acknowledge one by one.
    ack_singles: Vec<u64>,
    unacked: usize,
    /// When the coalesced ack is due, once something awaits one.
    ack_at: Option<Timestamp>,
    ack_due: bool,
    /// Link mode: the id the next message gets.
    next_id: u64,
    /// Link mode: after a disconnect, arrivals are dropped until the peer's `Sequence`.
    awaiting_sequence: bool,
    now: Timestamp,
}

impl Inbox {
    /// An empty inbox: nothing received, watermark 0.
    pub fn new(config: InboxConfig) -> Self {
        Self::resume_after(config, 0)
    }

    /// An inbox that already has every message up to `watermark` (e.g. after the application asked its sender to
    /// [`resync`](crate::Outbox::handle_resync) from there).
    pub fn resume_after(config: InboxConfig, watermark: u64) -> Self {
        let config = InboxConfig {
            window: config.window.max(1),
            ack_every: config.ack_every.max(1),
            ..config
        };
        Self {
            config,
            watermark,
            held: BTreeMap::new(),
            seen: BTreeSet::new(),
            deliveries: VecDeque::new(),
            ack_watermark: false,
            ack_singles: Vec::new(),
            unacked: 0,
            ack_at: None,
            ack_due: false,
            next_id: watermark + 1,
            awaiting_sequence: false,
            now: Timestamp::ZERO,
        }
    }

    /// Mailbox mode: a message arrived.
    pub fn handle_message(
        &mut self,
        message: Incoming,
        now: Timestamp,
    ) -> Result<Received, InboxError> {
        let Incoming {
            seq,
            floor,
            payload,
        } = message;
        if self.config.mode != Mode::Mailbox {
            return Err(InboxError::WrongMode);
        }
        if seq == 0 || floor > seq {
            return Err(InboxError::InvalidSequence { seq, floor });
        }
        self.now = self.now.max(now);
        // Everything below the floor is settled at the sender: stop waiting for it.
        self.raise_watermark(floor - 1);
        if seq <= self.watermark {
            self.want_watermark_ack();
            return Ok(Received::Duplicate);
        }
        Ok(match self.config.ordering {
            Ordering::Strict => self.receive_strict(seq, payload),
            Ordering::Unordered => self.receive_unordered(seq, payload),
        })
    }

    /// Link mode: the next trackable message (SignalR types 1 to 5) arrived; its id is counted, not carried.
    pub fn handle_link_message(
        &mut self,
        payload: Bytes,
        now: Timestamp,
    ) -> Result<Received, InboxError> {
        if self.config.mode != Mode::Link {
            return Err(InboxError::WrongMode);
        }
        self.now = self.now.max(now);
        if self.awaiting_sequence {
            return Ok(Received::Dropped);
        }
        let id = self.next_id;
        self.next_id += 1;
        if id <= self.watermark {
            return Ok(Received::Duplicate);
        }
        self.watermark = id;
        self.deliveries.push_back(Delivery { seq: id, payload });
        self.want_watermark_ack();
        Ok(Received::Delivered)
    }

    /// Link mode: the peer re-attached and says its replay starts at id `first`. A `first` beyond the next id
    /// expected is fatal ([`InboxError::SequenceAhead`]): messages were lost.
    ///
    /// The latest id is acknowledged again (after the ack delay): the ack the peer is missing may have been lost
    /// with the old connection, and without it the peer's buffer would stay full of messages we already have.
    pub fn handle_sequence(&mut self, first: u64, now: Timestamp) -> Result<(), InboxError> {
        if self.config.mode != Mode::Link {
            return Err(InboxError::WrongMode);
        }
        // SignalR compares with the id the next message would get. After a replay that another drop cut short,
        // that id lags behind the latest id received, and SignalR would call a replay that loses nothing fatal:
        // compare with whichever is higher.
        let expected = self.next_id.max(self.watermark + 1);
        if first > expected {
            return Err(InboxError::SequenceAhead { first, expected });
        }
        self.now = self.now.max(now);
        self.next_id = first;
        self.awaiting_sequence = false;
        if self.watermark > 0 {
            self.want_watermark_ack();
        }
        Ok(())
    }

    /// The connection dropped. Link mode: arrivals are dropped until the peer's `Sequence`. Mailbox mode: nothing
    /// changes (held messages wait for the next connection).
    pub fn handle_disconnected(&mut self) {
        if self.config.mode == Mode::Link {
            self.awaiting_sequence = true;
        }
    }

    /// Time has reached `now`: a coalesced ack whose delay is over becomes ready to poll.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        if self.ack_at.is_some_and(|at| at <= self.now) {
            self.ack_due = true;
        }
    }

    /// The next message for the application, in the order promised.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// The next ack to send, once one is due (by delay or count).
    pub fn poll_ack(&mut self) -> Option<Ack> {
        if !self.ack_due {
            return None;
        }
        if std::mem::take(&mut self.ack_watermark) {
            return Some(Ack::UpTo(self.watermark));
        }
        if let Some(seq) = self.ack_singles.pop() {
            return Some(Ack::Single(seq));
        }
        self.ack_due = false;
        self.ack_at = None;
        self.unacked = 0;
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next: the coalesced ack's deadline.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.ack_due { None } else { self.ack_at }
    }

    /// Every sequence number at or below this is settled here (link mode: the latest id received).
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Messages held above the watermark (strict: waiting for earlier ones; unordered: remembered for dedup).
    pub fn held(&self) -> usize {
        self.held.len() + self.seen.len()
    }

    fn receive_strict(&mut self, seq: u64, payload: Bytes) -> Received {
        if seq == self.watermark + 1 {
            self.watermark = seq;
            self.deliveries.push_back(Delivery { seq, payload });
            self.release_held();
            self.want_watermark_ack();
            return Received::Delivered;
        }
        if self.held.contains_key(&seq) {
            return Received::Duplicate;
        }
        if self.held.len() >= self.config.window {
            match self.held.last_key_value() {
                Some((&highest, _)) if highest > seq => {
                    self.held.remove(&highest);
                }
                _ => return Received::Dropped,
            }
        }
        self.held.insert(seq, payload);
        Received::Held
    }

    fn receive_unordered(&mut self, seq: u64, payload: Bytes) -> Received {
        if self.seen.contains(&seq) {
            self.want_single_ack(seq);
            return Received::Duplicate;
        }
        if self.seen.len() >= self.config.window && seq != self.watermark + 1 {
            return Received::Dropped;
        }
        self.deliveries.push_back(Delivery { seq, payload });
        self.seen.insert(seq);
        while self.seen.first() == Some(&(self.watermark + 1)) {
            self.seen.pop_first();
            self.watermark += 1;
        }
        if seq <= self.watermark {
            self.want_watermark_ack();
        } else {
            self.want_single_ack(seq);
        }
        Received::Delivered
    }

    /// Moves the watermark up to `to`: held messages at or below it were given up by the sender and are dropped.
    fn raise_watermark(&mut self, to: u64) {
        if to <= self.watermark {
            return;
        }
        self.watermark = to;
        self.held = self.held.split_off(&(to + 1));
        self.seen = self.seen.split_off(&(to + 1));
        self.ack_singles.retain(|&seq| seq > to);
        // The gap closed: messages held just above it may go now.
        let before = self.deliveries.len();
        self.release_held();
        while self.seen.first() == Some(&(self.watermark + 1)) {
            self.seen.pop_first();
            self.watermark += 1;
        }
        if self.deliveries.len() > before {
            self.want_watermark_ack();
        }
    }

    fn release_held(&mut self) {
        while let Some(entry) = self.held.first_entry()
            && *entry.key() == self.watermark + 1
        {
            let (seq, payload) = entry.remove_entry();
            self.watermark = seq;
            self.deliveries.push_back(Delivery { seq, payload });
        }
    }

    fn want_watermark_ack(&mut self) {
        self.ack_watermark = true;
        self.ack_singles.retain(|&seq| seq > self.watermark);
        self.count_unacked();
    }

    fn want_single_ack(&mut self, seq: u64) {
        if !self.ack_singles.contains(&seq) {
            self.ack_singles.push(seq);
        }
        self.count_unacked();
    }

    fn count_unacked(&mut self) {
        self.unacked += 1;
        if self.ack_at.is_none() {
            self.ack_at = Some(self.now + self.config.ack_delay);
        }
        if self.unacked >= self.config.ack_every || self.config.ack_delay.is_zero() {
            self.ack_due = true;
        }
    }
}
