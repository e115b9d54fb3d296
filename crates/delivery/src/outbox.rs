//! The sender side: pending messages, attempts, timers and outcomes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::Bytes;

use crate::policy::{Guarantee, Mode, Ordering, Overflow, Policy, Resend};
use crate::rng::SplitMix64;
use crate::time::duration_millis;
use crate::{
    DeadLetterReason, Event, Message, Nack, Outgoing, PushError, RestoreError, StoredMessage,
    Timestamp, Transmit,
};

/// The sender side of one mailbox (mailbox mode) or one connection's stateful-reconnect buffer (link mode).
///
/// An `Outbox` numbers the messages pushed into it, hands them out for transmission within the in-flight window,
/// retries them with backoff until they are acknowledged, and reports what became of each one. It owns no socket
/// and reads no clock: every input carries the current time, and outputs are polled.
///
/// # Calling order
///
/// 1. Feed every input as it happens: [`push`](Self::push), [`handle_ack`](Self::handle_ack) /
///    [`handle_ack_upto`](Self::handle_ack_upto), [`handle_nack`](Self::handle_nack),
///    [`handle_connected`](Self::handle_connected) / [`handle_disconnected`](Self::handle_disconnected),
///    [`handle_resync`](Self::handle_resync), and [`handle_timeout`](Self::handle_timeout) whenever the deadline
///    from `poll_timeout` has been reached (calling it early is harmless).
/// 2. Then drain the outputs: [`poll_transmit`](Self::poll_transmit) until `None` (write each frame),
///    [`poll_event`](Self::poll_event) until `None` (report each outcome), and finally
///    [`poll_timeout`](Self::poll_timeout) to learn when to call `handle_timeout` next.
///
/// Events accumulate until polled (one per settled message), so poll them after every input.
///
/// ```
/// use bytes::Bytes;
/// use courier_delivery::{Event, Message, Outbox, Policy, Timestamp, Transmit};
///
/// let now = Timestamp::from_millis(0);
/// let mut outbox = Outbox::new(Policy::default(), 7);
/// let seq = outbox.push(Message::new(Bytes::from_static(b"hello")), now)?;
/// outbox.handle_connected(now);
///
/// let Some(Transmit::Message(out)) = outbox.poll_transmit(now) else { unreachable!() };
/// assert_eq!((out.seq, out.attempt), (seq, 1));
/// // ... write it; later the receiver acknowledges:
/// outbox.handle_ack(seq, Timestamp::from_millis(40));
/// assert!(matches!(outbox.poll_event(), Some(Event::Delivered { attempts: 1, .. })));
/// # Ok::<(), courier_delivery::PushError>(())
/// ```
#[derive(Debug)]
pub struct Outbox {
    policy: Policy,
    rng: SplitMix64,
    /// Pending messages in ascending sequence order.
    entries: VecDeque<Entry>,
    bytes: usize,
    in_flight: usize,
    next_seq: u64,
    /// No entry numbered below this is ready to send (lets `poll_transmit` skip the in-flight prefix).
    ready_from: u64,
    /// Ack deadlines in send order; the ack timeout is constant, so this is also deadline order. Entries whose
    /// attempt has since ended are skipped when they come up.
    ack_deadlines: VecDeque<Timer>,
    /// Backoff deadlines, earliest first; stale ones are skipped likewise.
    retries: BinaryHeap<Reverse<Timer>>,
    /// Never later than the earliest expiry among `entries` (it may be earlier, after the message that set it
    /// left): when it passes, `handle_timeout` scans for expired messages and recomputes it exactly.
    next_expiry: Timestamp,
    /// The expiries of the pending messages that expire too long after their push for the entry to hold.
    far_expiries: HashMap<u64, Timestamp>,
    keys: KeyIndex,
    history: VecDeque<Kept>,
    history_bytes: usize,
    /// History replays requested by `handle_resync`, sent before anything else.
    replays: VecDeque<Outgoing>,
    /// Link mode: a `Sequence` to send before anything else.
    sequence: Option<u64>,
    events: VecDeque<Event>,
    connected: bool,
    attached_before: bool,
    now: Timestamp,
}

/// A pending message, packed into 56 bytes (32 of them the payload handle) so that, with the queue's growth slack
/// of at most an eighth (see [`Outbox::make_room`]), the heap held per message stays within the 64-byte budget.
#[derive(Debug)]
struct Entry {
    payload: Bytes,
    seq: u64,
    enqueued_at: Timestamp,
    attempts: u32,
    /// The [`State`] in the low two bits; above them, the expiry as milliseconds after `enqueued_at`, or one of
    /// the codes [`Entry::NEVER`] and [`Entry::FAR`].
    packed: u32,
}

impl Entry {
    /// Expiry code: the message never expires.
    const NEVER: u32 = (1 << 30) - 1;
    /// Expiry code: the expiry is not representable as a delta below `FAR` milliseconds (about 12 days) after the
    /// push; the outbox keeps it in `far_expiries`.
    const FAR: u32 = Self::NEVER - 1;

    /// A ready entry, and whether its expiry must be kept in `far_expiries`.
    fn new(
        payload: Bytes,
        seq: u64,
        enqueued_at: Timestamp,
        expires_at: Timestamp,
        attempts: u32,
    ) -> (Self, bool) {
        let code = if expires_at == Timestamp::MAX {
            Self::NEVER
        } else {
            expires_at
                .as_millis()
                .checked_sub(enqueued_at.as_millis())
                .and_then(|delta| u32::try_from(delta).ok())
                .filter(|&delta| delta < Self::FAR)
                .unwrap_or(Self::FAR)
        };
        let entry = Self {
            payload,
            seq,
            enqueued_at,
            attempts,
            packed: code << 2 | State::Ready as u32,
        };
        (entry, code == Self::FAR)
    }

    fn state(&self) -> State {
        match self.packed & 0b11 {
            0 => State::Ready,
            1 => State::InFlight,
            _ => State::Backoff,
        }
    }

    fn set_state(&mut self, state: State) {
        self.packed = self.packed & !0b11 | state as u32;
    }

    /// Whether the expiry is kept in `far_expiries`.
    fn is_far(&self) -> bool {
        self.packed >> 2 == Self::FAR
    }

    /// When the message expires; `far_expiries` holds the expiries of the entries that are [`is_far`](Self::is_far).
    fn expires_at(&self, far_expiries: &HashMap<u64, Timestamp>) -> Timestamp {
        match self.packed >> 2 {
            Self::NEVER => Timestamp::MAX,
            Self::FAR => far_expiries[&self.seq],
            delta => Timestamp::from_millis(self.enqueued_at.as_millis() + u64::from(delta)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to be sent (first time or again).
    Ready = 0,
    /// Sent, waiting for the ack.
    InFlight = 1,
    /// A failed attempt, waiting out its backoff.
    Backoff = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Timestamp,
    seq: u64,
    attempt: u32,
}

/// An acknowledged message kept for resync.
#[derive(Debug)]
struct Kept {
    seq: u64,
    acked_at: Timestamp,
    payload: Bytes,
}

/// Conflation keys, held only under [`Resend::LatestPerKey`] and only for messages that have one, so that
/// unkeyed messages pay nothing.
#[derive(Debug, Default)]
struct KeyIndex {
    /// Key to the sequence number of its newest pending message.
    latest: HashMap<u64, u64>,
    /// Sequence number to key, for every pending keyed message.
    of_seq: HashMap<u64, u64>,
}

impl KeyIndex {
    fn insert(&mut self, seq: u64, key: u64) -> Option<u64> {
        self.of_seq.insert(seq, key);
        self.latest.insert(key, seq)
    }

    /// Forgets the key of `seq`, if it has one. Without any keyed message pending this costs no hashing, so that
    /// unkeyed messages need no flag of their own.
    fn remove(&mut self, seq: u64) {
        if self.of_seq.is_empty() {
            return;
        }
        if let Some(key) = self.of_seq.remove(&seq)
            && self.latest.get(&key) == Some(&seq)
        {
            self.latest.remove(&key);
        }
    }

    fn key_of(&self, seq: u64) -> Option<u64> {
        self.of_seq.get(&seq).copied()
    }
}

impl Outbox {
    /// An empty, disconnected outbox. `seed` drives the backoff jitter: give each mailbox its own (e.g. a hash of
    /// its name) so that their retries spread out; the same seed replays the same run.
    pub fn new(policy: Policy, seed: u64) -> Self {
        Self {
            policy,
            rng: SplitMix64::new(seed),
            entries: VecDeque::new(),
            bytes: 0,
            in_flight: 0,
            next_seq: 1,
            ready_from: 1,
            ack_deadlines: VecDeque::new(),
            retries: BinaryHeap::new(),
            next_expiry: Timestamp::MAX,
            far_expiries: HashMap::new(),
            keys: KeyIndex::default(),
            history: VecDeque::new(),
            history_bytes: 0,
            replays: VecDeque::new(),
            sequence: None,
            events: VecDeque::new(),
            connected: false,
            attached_before: false,
            now: Timestamp::ZERO,
        }
    }

    /// Rebuilds an outbox from what a store returned after a restart: the pending messages in sequence order, and
    /// the number the next pushed message gets (above every number ever given, acknowledged ones included).
    ///
    /// The result is disconnected, every message ready to be sent again with its attempt count kept. Messages
    /// already past their expiry, or whose attempts are used up, are settled at once (their events are ready to
    /// poll). Capacity is not enforced on restore: a store never holds more than the policy allowed, and if the
    /// policy shrank, pushes are refused until the mailbox drains below it.
    pub fn restore(
        policy: Policy,
        seed: u64,
        next_seq: u64,
        pending: impl IntoIterator<Item = StoredMessage>,
        now: Timestamp,
    ) -> Result<Self, RestoreError> {
        let mut outbox = Self::new(policy, seed);
        outbox.now = now;
        let mut previous = 0;
        for stored in pending {
            if stored.seq <= previous {
                return Err(RestoreError::OutOfOrder {
                    seq: stored.seq,
                    previous,
                });
            }
            previous = stored.seq;
            outbox.bytes += stored.payload.len();
            outbox.next_expiry = outbox.next_expiry.min(stored.expires_at);
            outbox.add_entry(
                stored.payload,
                stored.seq,
                stored.enqueued_at,
                stored.expires_at,
                stored.attempts,
            );
            if let Some(key) = stored.key {
                outbox.index_key(stored.seq, key);
            }
        }
        if next_seq <= previous {
            return Err(RestoreError::NextSeqTooLow {
                next_seq,
                seq: previous,
            });
        }
        outbox.next_seq = next_seq;
        outbox.ready_from = outbox.floor();
        let limit = outbox.policy.attempt_limit();
        let mut i = 0;
        while i < outbox.entries.len() {
            if outbox.entries[i].attempts >= limit {
                outbox.dead_letter(i, DeadLetterReason::AttemptsExhausted);
            } else {
                i += 1;
            }
        }
        outbox.expire(now);
        Ok(outbox)
    }

    /// Accepts a message and returns its sequence number.
    ///
    /// Under [`Resend::LatestPerKey`] older pending messages with the same key are conflated first. When the
    /// mailbox is full, the policy's [`Overflow`] decides: `Reject` returns [`PushError::Full`] (nothing changes),
    /// `DropOldest` dead-letters the oldest messages until the new one fits, `DropNewest` numbers the new message
    /// and dead-letters it at once. In mailbox mode a message larger than the byte capacity is always refused
    /// ([`PushError::TooLarge`]); in link mode the mailbox is full only while its bytes exceed the capacity, as
    /// SignalR's buffer is (see [`has_room`](Self::has_room)).
    pub fn push(&mut self, message: Message, now: Timestamp) -> Result<u64, PushError> {
        let now = self.observe(now);
        let len = message.payload.len();
        if self.policy.mode == Mode::Mailbox && len > self.policy.capacity.bytes {
            return Err(PushError::TooLarge(message));
        }
        let key = message
            .key
            .filter(|_| self.policy.resend == Resend::LatestPerKey);
        // The pending message this one conflates, if any: its room counts as free.
        let replaced = key
            .and_then(|key| self.keys.latest.get(&key))
            .and_then(|&seq| self.index_of(seq));
        let (freed_messages, freed_bytes) =
            replaced.map_or((0, 0), |i| (1, self.entries[i].payload.len()));
        let capacity = self.policy.capacity;
        let fits = self.fits(freed_messages, freed_bytes, len);
        if !fits && capacity.overflow == Overflow::Reject {
            return Err(PushError::Full(message));
        }

        let seq = self.next_seq;
        self.next_seq += 1;
        if !fits && capacity.overflow == Overflow::DropNewest {
            self.events.push_back(Event::DeadLettered {
                seq,
                attempts: 0,
                reason: DeadLetterReason::Overflow,
                payload: message.payload,
            });
            return Ok(seq);
        }
        if let Some(i) = replaced {
            let old = self.remove_at(i).seq;
            self.events.push_back(Event::Conflated {
                seq: old,
                replaced_by: seq,
            });
        }
        // Overflow::DropOldest: make room.
        while !self.entries.is_empty() && !self.fits(0, 0, len) {
            self.dead_letter(0, DeadLetterReason::Overflow);
        }

        let ttl = message.ttl.or(self.policy.ttl);
        let expires_at = ttl.map_or(Timestamp::MAX, |ttl| now + ttl);
        self.next_expiry = self.next_expiry.min(expires_at);
        self.bytes += len;
        self.add_entry(message.payload, seq, now, expires_at, 0);
        if let Some(key) = key {
            self.index_key(seq, key);
        }
        Ok(seq)
    }

    /// The receiver acknowledged message `seq` (any attempt of it). Unknown or already settled numbers are ignored,
    /// so acks are idempotent.
    pub fn handle_ack(&mut self, seq: u64, now: Timestamp) {
        let now = self.observe(now);
        if let Some(i) = self.index_of(seq)
            && self.entries[i].attempts > 0
        {
            self.deliver(i, now);
            self.prune_ack_timers();
        }
    }

    /// The receiver acknowledged every message numbered up to `seq` (SignalR's `Ack`, or a cumulative ack from an
    /// [`Inbox`](crate::Inbox)). Messages never sent are not covered: a receiver cannot have them.
    pub fn handle_ack_upto(&mut self, seq: u64, now: Timestamp) {
        let now = self.observe(now);
        while let Some(front) = self.entries.front()
            && front.seq <= seq
            && front.attempts > 0
        {
            self.deliver(0, now);
        }
        self.prune_ack_timers();
    }

    /// The receiver refused attempt `attempt` of message `seq`. [`Nack::Retry`] counts as a failed attempt (backoff,
    /// then retry, or dead-letter when attempts are used up) if that attempt is still the one in flight; a nack for
    /// an older attempt is ignored. [`Nack::Reject`] dead-letters the message whatever its state.
    pub fn handle_nack(&mut self, seq: u64, attempt: u32, nack: Nack, now: Timestamp) {
        let now = self.observe(now);
        let Some(i) = self.index_of(seq) else { return };
        let entry = &self.entries[i];
        if entry.attempts == 0 {
            return;
        }
        match nack {
            Nack::Reject => self.dead_letter(i, DeadLetterReason::Rejected),
            Nack::Retry => {
                if entry.state() == State::InFlight && entry.attempts == attempt {
                    self.fail_attempt(i, now);
                }
            }
        }
    }

    /// A connection to the receiver is up: pending messages are (re)sent in order, without waiting out backoffs.
    /// In link mode a re-attach (every call after the first) first emits [`Transmit::Sequence`].
    pub fn handle_connected(&mut self, now: Timestamp) {
        self.observe(now);
        self.connected = true;
        if self.policy.mode == Mode::Link && self.attached_before {
            self.sequence = Some(self.floor());
        }
        self.attached_before = true;
        for entry in &mut self.entries {
            if entry.state() == State::Backoff {
                entry.set_state(State::Ready);
            }
        }
        self.retries.clear();
        self.ready_from = self.floor();
    }

    /// The connection dropped: every attempt in flight has failed (dead-lettered if it was the last allowed one,
    /// otherwise resent on the next connection). Nothing is sent until [`handle_connected`](Self::handle_connected).
    pub fn handle_disconnected(&mut self, now: Timestamp) {
        self.observe(now);
        self.connected = false;
        self.sequence = None;
        self.replays.clear();
        self.ack_deadlines.clear();
        let limit = self.policy.attempt_limit();
        let mut i = 0;
        while i < self.entries.len() {
            let entry = &mut self.entries[i];
            if entry.state() == State::InFlight {
                self.in_flight -= 1;
                if entry.attempts >= limit {
                    entry.set_state(State::Ready);
                    self.dead_letter(i, DeadLetterReason::AttemptsExhausted);
                    continue;
                }
                entry.set_state(State::Ready);
                self.ready_from = self.ready_from.min(entry.seq);
            }
            i += 1;
        }
    }

    /// The receiver says the last message it has is `after`: everything up to `after` counts as acknowledged, the
    /// acknowledged messages after it that the history still holds are replayed (untracked,
    /// [`Outgoing::attempt`] 0), then every pending message after it is sent again.
    pub fn handle_resync(&mut self, after: u64, now: Timestamp) {
        let now = self.observe(now);
        self.handle_ack_upto(after, now);
        self.prune_history(now);
        let mut replays: Vec<_> = self
            .history
            .iter()
            .filter(|acked| acked.seq > after)
            .collect();
        replays.sort_unstable_by_key(|acked| acked.seq);
        self.replays = replays
            .into_iter()
            .map(|acked| Outgoing {
                seq: acked.seq,
                attempt: 0,
                floor: acked.seq,
                payload: acked.payload.clone(),
            })
            .collect();
        for entry in &mut self.entries {
            match entry.state() {
                State::InFlight => self.in_flight -= 1,
                State::Ready | State::Backoff => {}
            }
            entry.set_state(State::Ready);
        }
        self.ack_deadlines.clear();
        self.retries.clear();
        self.ready_from = self.floor();
    }

    /// Time has reached `now`: expires messages, fails attempts whose ack timed out, and ends backoffs that are
    /// over. Afterwards [`poll_timeout`](Self::poll_timeout) is later than `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.observe(now);
        self.expire(now);
        while let Some(timer) = self.ack_deadlines.front().copied()
            && timer.at <= now
        {
            self.ack_deadlines.pop_front();
            if let Some(i) = self.index_of(timer.seq) {
                let entry = &self.entries[i];
                if entry.state() == State::InFlight && entry.attempts == timer.attempt {
                    self.fail_attempt(i, now);
                }
            }
        }
        while let Some(Reverse(timer)) = self.retries.peek().copied()
            && timer.at <= now
        {
            self.retries.pop();
            if let Some(i) = self.index_of(timer.seq) {
                let entry = &mut self.entries[i];
                if entry.state() == State::Backoff && entry.attempts == timer.attempt {
                    entry.set_state(State::Ready);
                    self.ready_from = self.ready_from.min(timer.seq);
                }
            }
        }
        self.prune_history(now);
    }

    /// The next frame to write, if the connection is up and the window allows one. Each call that returns a message
    /// starts an attempt (its ack timeout runs from `now`).
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        let now = self.observe(now);
        if !self.connected {
            return None;
        }
        if let Some(first) = self.sequence.take() {
            return Some(Transmit::Sequence { first });
        }
        if let Some(replay) = self.replays.pop_front() {
            return Some(Transmit::Message(replay));
        }
        let at_most_once = self.policy.guarantee == Guarantee::AtMostOnce;
        if !at_most_once && self.in_flight >= self.policy.window {
            return None;
        }
        let i = self.next_ready()?;
        let floor = self.floor();
        let ack_timeout = self.policy.ack_timeout;
        let entry = &mut self.entries[i];
        entry.attempts = entry.attempts.saturating_add(1);
        let out = Outgoing {
            seq: entry.seq,
            attempt: entry.attempts,
            floor,
            payload: entry.payload.clone(),
        };
        self.ready_from = entry.seq + 1;
        if at_most_once {
            let latency = now.saturating_duration_since(entry.enqueued_at);
            self.remove_at(i);
            self.events.push_back(Event::Sent {
                seq: out.seq,
                latency,
            });
        } else {
            entry.set_state(State::InFlight);
            self.in_flight += 1;
            if let Some(timeout) = ack_timeout {
                self.ack_deadlines.push_back(Timer {
                    at: now + timeout,
                    seq: out.seq,
                    attempt: out.attempt,
                });
            }
        }
        Some(Transmit::Message(out))
    }

    /// The next outcome to report, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next, if anything is waiting on time. May be
    /// early (a timer whose message has since settled); never late.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let ack = self.ack_deadlines.front().map(|t| t.at);
        let retry = self.retries.peek().map(|Reverse(t)| t.at);
        let expiry = (!self.entries.is_empty() && self.next_expiry < Timestamp::MAX)
            .then_some(self.next_expiry);
        [ack, retry, expiry].into_iter().flatten().min()
    }

    /// Number of pending messages (accepted and not yet settled).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes held by pending messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether a message of `len` payload bytes would be accepted now without overflowing.
    ///
    /// In link mode `len` does not matter: a send may proceed while the buffered bytes do not exceed the capacity,
    /// as SignalR's stateful reconnect buffer does (HUB-PROTOCOL.md §7). So the newest message may take the buffer
    /// over its bound, and an empty buffer takes a message of any size; then sends wait for acks.
    pub fn has_room(&self, len: usize) -> bool {
        self.fits(0, 0, len)
    }

    /// Whether a message of `len` bytes fits once `freed_messages` pending messages of `freed_bytes` bytes are gone.
    fn fits(&self, freed_messages: usize, freed_bytes: usize, len: usize) -> bool {
        let capacity = self.policy.capacity;
        let held = self.bytes - freed_bytes;
        let bytes_fit = match self.policy.mode {
            Mode::Mailbox => held + len <= capacity.bytes,
            Mode::Link => held <= capacity.bytes,
        };
        self.entries.len() - freed_messages < capacity.messages && bytes_fit
    }

    /// The oldest pending sequence number, or the next one to be given if nothing is pending: everything below it
    /// is settled. Link mode: the `sequenceId` of a `Sequence` message.
    pub fn floor(&self) -> u64 {
        self.entries
            .front()
            .map_or(self.next_seq, |entry| entry.seq)
    }

    /// The sequence number the next pushed message gets (store it to [`restore`](Self::restore) later).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Changes the in-flight window (at least 1), e.g. when a receiver that reorders takes over from one that
    /// does not. Lowering it below the messages in flight sends nothing more until enough of them settle.
    pub fn set_window(&mut self, window: usize) {
        self.policy.window = window.max(1);
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The pending messages as a store would keep them, in sequence order (payloads are shared, not copied).
    pub fn pending(&self) -> impl Iterator<Item = StoredMessage> + '_ {
        self.entries.iter().map(|entry| StoredMessage {
            seq: entry.seq,
            payload: entry.payload.clone(),
            key: self.keys.key_of(entry.seq),
            enqueued_at: entry.enqueued_at,
            expires_at: entry.expires_at(&self.far_expiries),
            attempts: entry.attempts,
        })
    }

    fn observe(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        self.now
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        self.entries
            .binary_search_by_key(&seq, |entry| entry.seq)
            .ok()
    }

    fn index_key(&mut self, seq: u64, key: u64) {
        if self.policy.resend != Resend::LatestPerKey {
            return;
        }
        if let Some(old) = self.keys.insert(seq, key)
            && let Some(i) = self.index_of(old)
        {
            self.remove_at(i);
            self.events.push_back(Event::Conflated {
                seq: old,
                replaced_by: seq,
            });
        }
    }

    /// Drops ack timers at the front whose attempt has ended (acknowledged), so that they neither pile up between
    /// timeouts nor wake the driver early. Timers behind a live one stay until it goes: at most one ack timeout's
    /// worth of transmissions.
    fn prune_ack_timers(&mut self) {
        while let Some(timer) = self.ack_deadlines.front() {
            let live = self.index_of(timer.seq).is_some_and(|i| {
                let entry = &self.entries[i];
                entry.state() == State::InFlight && entry.attempts == timer.attempt
            });
            if live {
                break;
            }
            self.ack_deadlines.pop_front();
        }
    }

    /// The index of the lowest-numbered ready entry that the ordering allows to be sent now.
    fn next_ready(&mut self) -> Option<usize> {
        let start = self
            .entries
            .partition_point(|entry| entry.seq < self.ready_from);
        let end = match self.policy.ordering {
            // Only the `window` oldest pending messages may be in flight: nothing overtakes an earlier one by more.
            Ordering::Strict if self.policy.guarantee != Guarantee::AtMostOnce => {
                self.entries.len().min(self.policy.window)
            }
            Ordering::Strict | Ordering::Unordered => self.entries.len(),
        };
        let found = (start..end).find(|&i| self.entries[i].state() == State::Ready);
        if found.is_none() {
            self.ready_from = self
                .entries
                .get(end)
                .map_or(self.next_seq, |entry| entry.seq)
                .max(self.ready_from);
        }
        found
    }

    /// Appends a ready entry (numbered above every pending one).
    fn add_entry(
        &mut self,
        payload: Bytes,
        seq: u64,
        enqueued_at: Timestamp,
        expires_at: Timestamp,
        attempts: u32,
    ) {
        let (entry, far) = Entry::new(payload, seq, enqueued_at, expires_at, attempts);
        if far {
            self.far_expiries.insert(seq, expires_at);
        }
        self.make_room();
        self.entries.push_back(entry);
    }

    /// Grows the queue, when full, by an eighth of its length (at least four slots) rather than doubling it, so that
    /// from 32 pending messages on the spare capacity never exceeds an eighth of them: 56-byte entries then hold at
    /// most 63 bytes per message. Growth stays geometric, so pushes stay amortised O(1). The first push allocates a
    /// single slot: most mailboxes of a fan-out hold one message.
    fn make_room(&mut self) {
        let len = self.entries.len();
        if len == self.entries.capacity() {
            let extra = if len == 0 { 1 } else { (len / 8).max(4) };
            self.entries.reserve_exact(extra);
        }
    }

    /// Removes entry `i` and undoes its accounting.
    fn remove_at(&mut self, i: usize) -> Entry {
        let entry = self.entries.remove(i).expect("index in range");
        self.bytes -= entry.payload.len();
        if entry.state() == State::InFlight {
            self.in_flight -= 1;
        }
        if entry.is_far() {
            self.far_expiries.remove(&entry.seq);
        }
        self.keys.remove(entry.seq);
        entry
    }

    fn deliver(&mut self, i: usize, now: Timestamp) {
        let entry = self.remove_at(i);
        self.events.push_back(Event::Delivered {
            seq: entry.seq,
            attempts: entry.attempts,
            latency: now.saturating_duration_since(entry.enqueued_at),
        });
        if self.policy.history.is_some() {
            self.history_bytes += entry.payload.len();
            self.history.push_back(Kept {
                seq: entry.seq,
                acked_at: now,
                payload: entry.payload,
            });
            while self.history.len() > self.policy.capacity.messages
                || self.history_bytes > self.policy.capacity.bytes
            {
                self.drop_oldest_history();
            }
        }
    }

    fn dead_letter(&mut self, i: usize, reason: DeadLetterReason) {
        let entry = self.remove_at(i);
        self.events.push_back(Event::DeadLettered {
            seq: entry.seq,
            attempts: entry.attempts,
            reason,
            payload: entry.payload,
        });
    }

    /// The attempt in flight for entry `i` failed: back off, or dead-letter if it was the last one allowed.
    fn fail_attempt(&mut self, i: usize, now: Timestamp) {
        self.in_flight -= 1;
        let entry = &mut self.entries[i];
        entry.set_state(State::Ready);
        if entry.attempts >= self.policy.attempt_limit() {
            self.dead_letter(i, DeadLetterReason::AttemptsExhausted);
            return;
        }
        let delay = duration_millis(self.policy.backoff.delay(entry.attempts, &mut self.rng));
        if delay == 0 {
            self.ready_from = self.ready_from.min(entry.seq);
        } else {
            entry.set_state(State::Backoff);
            let at = Timestamp::from_millis(now.as_millis().saturating_add(delay));
            self.retries.push(Reverse(Timer {
                at,
                seq: entry.seq,
                attempt: entry.attempts,
            }));
        }
    }

    /// Settles every message whose expiry is at or before `now`, if the earliest known expiry has passed.
    fn expire(&mut self, now: Timestamp) {
        if self.next_expiry > now {
            return;
        }
        let mut next = Timestamp::MAX;
        let mut i = 0;
        while i < self.entries.len() {
            let expires_at = self.entries[i].expires_at(&self.far_expiries);
            if expires_at <= now {
                let entry = self.remove_at(i);
                self.events.push_back(Event::Expired {
                    seq: entry.seq,
                    attempts: entry.attempts,
                    payload: entry.payload,
                });
            } else {
                next = next.min(expires_at);
                i += 1;
            }
        }
        self.next_expiry = next;
    }

    fn prune_history(&mut self, now: Timestamp) {
        let Some(keep) = self.policy.history else {
            return;
        };
        while let Some(oldest) = self.history.front()
            && oldest.acked_at + keep <= now
        {
            self.drop_oldest_history();
        }
    }

    fn drop_oldest_history(&mut self) {
        if let Some(oldest) = self.history.pop_front() {
            self.history_bytes -= oldest.payload.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::{Entry, Outbox};
    use crate::{Event, Message, Policy, StoredMessage, Timestamp};

    /// The per-message budget of the design is 64 bytes, half of it the payload handle; the entry takes 56 so that
    /// the queue's growth slack (at most an eighth) fits within it.
    #[test]
    fn a_pending_message_takes_56_bytes() {
        assert_eq!(size_of::<Entry>(), 56);
    }

    /// Expiries too far after the push for the entry's delta (and odd ones from a store, before the push) are kept
    /// exactly, fire on time, and leave nothing behind once settled.
    #[test]
    fn far_expiries_are_kept_exactly() {
        let day = 24 * 60 * 60 * 1000;
        let payload = Bytes::from_static(b"x");
        let stored = |seq, enqueued_at, expires_at| StoredMessage {
            seq,
            payload: payload.clone(),
            key: None,
            enqueued_at: Timestamp::from_millis(enqueued_at),
            expires_at: Timestamp::from_millis(expires_at),
            attempts: 0,
        };
        let pending = vec![
            stored(1, 5_000, 5_000 + 30 * day),
            stored(2, 5_000, u64::MAX - 1),
            stored(3, 9_000, 10_000 + 3 * day),
        ];
        let now = Timestamp::from_millis(9_000);
        let mut outbox = Outbox::restore(Policy::default(), 1, 4, pending.clone(), now).unwrap();
        let seq = outbox
            .push(
                Message::new(payload.clone()).ttl(Duration::from_millis(40 * day)),
                now,
            )
            .unwrap();
        let mut expected = pending;
        expected.push(stored(seq, 9_000, 9_000 + 40 * day));
        assert_eq!(outbox.pending().collect::<Vec<_>>(), expected);
        assert_eq!(outbox.far_expiries.len(), 3);

        for (at, seq, far_left) in [
            (10_000 + 3 * day, 3, 3),
            (5_000 + 30 * day, 1, 2),
            (9_000 + 40 * day, 4, 1),
        ] {
            outbox.handle_timeout(Timestamp::from_millis(at - 1));
            assert_eq!(outbox.poll_event(), None, "nothing expires before {at}");
            outbox.handle_timeout(Timestamp::from_millis(at));
            assert!(matches!(outbox.poll_event(), Some(Event::Expired { seq: s, .. }) if s == seq));
            assert_eq!(outbox.poll_event(), None);
            assert_eq!(outbox.far_expiries.len(), far_left);
        }
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.far_expiries.len(), 1);
    }
}
