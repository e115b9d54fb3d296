//! The delivery policy: every knob of an outbox, with its default.

use std::time::Duration;

use crate::rng::SplitMix64;

/// Which of the two delivery levels an outbox or inbox plays (see the crate documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Courier's mailbox level: explicit sequence numbers, acks per message or cumulative, retries with backoff,
    /// expiry, dead letters.
    Mailbox,
    /// SignalR stateful reconnect (protocol reference, section 7): implicit ids from 1, cumulative `Ack`,
    /// `Sequence` and replay when the same connection re-attaches. Nothing expires and nothing is retried on a
    /// timer; the buffer is bounded in bytes.
    Link,
}

/// How many times a message may reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Guarantee {
    /// Sent once, not tracked: the outbox forgets a message as soon as it is transmitted and reports
    /// [`Event::Sent`](crate::Event::Sent). Cheapest; lost if the connection drops at the wrong moment.
    AtMostOnce,
    /// Retried until acknowledged, expired or dead-lettered. The receiver may see a message more than once.
    AtLeastOnce,
    /// At-least-once at the sender, plus deduplication by sequence number at the receiver (an
    /// [`Inbox`](crate::Inbox)). The outbox behaves as for `AtLeastOnce`; the promise needs an inbox at the other end.
    ExactlyOnce,
}

/// Whether messages of one mailbox may overtake each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ordering {
    /// Nothing overtakes an unacknowledged earlier message: only the `window` oldest pending messages may be in
    /// flight, and a receiving [`Inbox`](crate::Inbox) hands messages to the application in sequence order.
    Strict,
    /// Any `window` pending messages may be in flight; a stuck message does not hold back the others.
    Unordered,
}

/// What is sent again after an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resend {
    /// Every pending message is retried until it is acknowledged, expires or is dead-lettered.
    All,
    /// Conflation for state updates: pushing a message with a key drops every older pending message with the same
    /// key ([`Event::Conflated`](crate::Event::Conflated)), so only the newest value per key is (re)sent.
    LatestPerKey,
    /// A message gets one attempt: if it is not acknowledged it is dead-lettered
    /// ([`DeadLetterReason::AttemptsExhausted`](crate::DeadLetterReason::AttemptsExhausted)), as with
    /// `max_attempts(1)`, but the sender still learns whether it arrived.
    None,
}

/// What `push` does when a mailbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the new message: `push` returns [`PushError::Full`](crate::PushError::Full) with the message, and the
    /// sender may try again later. In link mode this is SignalR's backpressure: wait for acks, then push again.
    Reject,
    /// Make room by dead-lettering the oldest pending messages
    /// ([`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow)), even if they are in flight.
    DropOldest,
    /// Keep what is queued: the new message is accepted, numbered, and dead-lettered at once
    /// ([`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow)).
    DropNewest,
}

/// The delay before retrying a failed attempt: `first × multiplier^(failures − 1)`, capped at `cap`, then spread by
/// ± `jitter` (a fraction) with the outbox's seeded random source so that many mailboxes do not retry in step.
///
/// Default: 500 ms, × 2, capped at 30 s, ± 20 %.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// Delay after the first failed attempt. Default 500 ms.
    pub first: Duration,
    /// Growth per further failure, at least 1. Default 2.
    pub multiplier: f64,
    /// Largest delay before jitter. Default 30 s.
    pub cap: Duration,
    /// Relative spread in `[0, 1]`: 0.2 means the delay is drawn uniformly from ±20 % around its value. Default 0.2.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            multiplier: 2.0,
            cap: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// A backoff that waits `first`, then `first × multiplier`, and so on up to `cap`, with the default jitter.
    pub fn new(first: Duration, multiplier: f64, cap: Duration) -> Self {
        Self {
            first,
            multiplier: multiplier.max(1.0),
            cap,
            jitter: Self::default().jitter,
        }
    }

    /// Sets the relative jitter, clamped to `[0, 1]`.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay after `failures` failed attempts (at least 1).
    pub(crate) fn delay(&self, failures: u32, rng: &mut SplitMix64) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.first.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = grown.min(self.cap.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = if jitter > 0.0 {
            capped * jitter * rng.next_signed_unit()
        } else {
            0.0
        };
        Duration::try_from_secs_f64((capped + spread).max(0.0)).unwrap_or(self.cap)
    }
}

/// How much a mailbox holds, and what happens beyond.
///
/// Default: 10 000 messages, 16 MiB of payload, [`Overflow::Reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capacity {
    /// Most pending messages, at least 1. Default 10 000.
    pub messages: usize,
    /// Most payload bytes held by pending messages, at least 1. Default 16 MiB. In mailbox mode a single message
    /// larger than this is refused with [`PushError::TooLarge`](crate::PushError::TooLarge). In link mode the
    /// mailbox is full only once its bytes exceed this (SignalR's rule): the newest message may overshoot it, and
    /// a message of any size is taken when nothing is buffered.
    pub bytes: usize,
    /// What `push` does when either limit would be exceeded. Default [`Overflow::Reject`].
    pub overflow: Overflow,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            messages: 10_000,
            bytes: 16 * 1024 * 1024,
            overflow: Overflow::Reject,
        }
    }
}

impl Capacity {
    /// At most `messages` pending messages and `bytes` payload bytes (each at least 1), with `overflow` beyond.
    pub fn new(messages: usize, bytes: usize, overflow: Overflow) -> Self {
        Self {
            messages: messages.max(1),
            bytes: bytes.max(1),
            overflow,
        }
    }
}

/// The delivery policy of an [`Outbox`](crate::Outbox): one value per client method or hub method, shared by every
/// mailbox it applies to (each outbox keeps a copy).
///
/// `Policy::default()` is the mailbox default of the design; [`Policy::link`] is SignalR stateful reconnect.
/// Setters chain and clamp nonsensical values to the nearest sensible one (documented on each).
///
/// ```
/// use std::time::Duration;
/// use courier_delivery::{Ordering, Policy, Resend};
///
/// let chat = Policy::default();
/// let presence = Policy::default()
///     .ordering(Ordering::Unordered)
///     .window(16)
///     .resend(Resend::LatestPerKey)
///     .ttl(Some(Duration::from_secs(60)));
/// assert_eq!(chat.window, 1);
/// assert_eq!(presence.window, 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// Mailbox or link level. Default [`Mode::Mailbox`].
    pub mode: Mode,
    /// Default [`Guarantee::AtLeastOnce`].
    pub guarantee: Guarantee,
    /// Default [`Ordering::Strict`].
    pub ordering: Ordering,
    /// Most messages sent and not yet acknowledged, at least 1. Default 1 (what a stock SignalR client needs for
    /// strict order); raise it where the receiver is an [`Inbox`](crate::Inbox), which reorders.
    pub window: usize,
    /// How long an attempt waits for its ack before it counts as failed (then backoff and retry); `None` waits
    /// until the connection drops. At least 1 ms. Default 5 s.
    pub ack_timeout: Option<Duration>,
    /// Delay between a failed attempt and the next. Default [`Backoff::default`].
    pub backoff: Backoff,
    /// Attempts before a message is dead-lettered; `None` for unlimited. At least 1. Default unlimited.
    pub max_attempts: Option<u32>,
    /// How long a message may stay pending before it expires; `None` for never. Default 24 h.
    /// [`Message::ttl`](crate::Message::ttl) overrides it per message.
    pub ttl: Option<Duration>,
    /// Default [`Resend::All`].
    pub resend: Resend,
    /// Default [`Capacity::default`].
    pub capacity: Capacity,
    /// How long acknowledged messages stay readable for [`Outbox::handle_resync`](crate::Outbox::handle_resync);
    /// `None` keeps none. History is bounded by the capacity as well (oldest dropped first). Default none.
    pub history: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: Mode::Mailbox,
            guarantee: Guarantee::AtLeastOnce,
            ordering: Ordering::Strict,
            window: 1,
            ack_timeout: Some(Duration::from_secs(5)),
            backoff: Backoff::default(),
            max_attempts: None,
            ttl: Some(Duration::from_secs(24 * 60 * 60)),
            resend: Resend::All,
            capacity: Capacity::default(),
            history: None,
        }
    }
}

impl Policy {
    /// The SignalR default for `StatefulReconnectBufferSize`: 100 000 bytes.
    pub const LINK_BUFFER_BYTES: usize = 100_000;

    /// SignalR stateful reconnect with a buffer of `buffer_bytes` (at least 1): every message is kept until a
    /// cumulative ack covers it, replayed after a `Sequence` when the connection re-attaches, never retried on a
    /// timer, never expired. As in ASP.NET Core and the JavaScript client (HUB-PROTOCOL.md §7), `push` refuses with
    /// [`PushError::Full`](crate::PushError::Full) (so the caller waits for acks) only while the buffered bytes
    /// exceed `buffer_bytes`: the message that takes the buffer over the bound is accepted, and so is a message
    /// larger than the whole buffer once the buffer is empty. Nothing is ever
    /// [`TooLarge`](crate::PushError::TooLarge).
    pub fn link(buffer_bytes: usize) -> Self {
        Self {
            mode: Mode::Link,
            guarantee: Guarantee::AtLeastOnce,
            ordering: Ordering::Strict,
            window: usize::MAX,
            ack_timeout: None,
            backoff: Backoff::default(),
            max_attempts: None,
            ttl: None,
            resend: Resend::All,
            capacity: Capacity::new(usize::MAX, buffer_bytes, Overflow::Reject),
            history: None,
        }
    }

    /// Sets the guarantee.
    #[must_use]
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Sets the ordering.
    #[must_use]
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Sets the in-flight window (0 becomes 1).
    #[must_use]
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Sets the ack timeout (zero becomes 1 ms; `None` waits for the connection to drop).
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.ack_timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        self
    }

    /// Sets the backoff.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the attempt limit (0 becomes 1; `None` is unlimited).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts.map(|n| n.max(1));
        self
    }

    /// Sets the time to live (`None`: never expires).
    #[must_use]
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets what is resent.
    #[must_use]
    pub fn resend(mut self, resend: Resend) -> Self {
        self.resend = resend;
        self
    }

    /// Sets the capacity and overflow behaviour.
    #[must_use]
    pub fn capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = Capacity::new(capacity.messages, capacity.bytes, capacity.overflow);
        self
    }

    /// Sets how long acknowledged messages stay readable for resync (`None`: not kept).
    #[must_use]
    pub fn history(mut self, history: Option<Duration>) -> Self {
        self.history = history;
        self
    }

    /// The most attempts a message gets: `max_attempts`, or 1 under [`Resend::None`]; `u32::MAX` for no limit.
    pub fn attempt_limit(&self) -> u32 {
        match self.resend {
            Resend::None => 1,
            Resend::All | Resend::LatestPerKey => self.max_attempts.unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_without_jitter() {
        let backoff =
            Backoff::new(Duration::from_millis(500), 2.0, Duration::from_secs(3)).jitter(0.0);
        let mut rng = SplitMix64::new(1);
        let delays: Vec<_> = (1..=5)
            .map(|n| backoff.delay(n, &mut rng).as_millis())
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let backoff = Backoff::default();
        let mut rng = SplitMix64::new(7);
        for _ in 0..1000 {
            let d = backoff.delay(1, &mut rng).as_secs_f64();
            assert!((0.4..=0.6).contains(&d), "{d}");
        }
    }

    #[test]
    fn setters_clamp_nonsense() {
        let p = Policy::default()
            .window(0)
            .max_attempts(Some(0))
            .ack_timeout(Some(Duration::ZERO));
        assert_eq!(p.window, 1);
        assert_eq!(p.max_attempts, Some(1));
        assert_eq!(p.ack_timeout, Some(Duration::from_millis(1)));
    }
}
