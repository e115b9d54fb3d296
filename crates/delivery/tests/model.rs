//! Model-based property tests: the outbox against a reference model that does everything the obvious way (a
//! sorted list, linear scans, no timers: every deadline is recomputed from the messages themselves).

use std::time::Duration;

use bytes::Bytes;
use courier_delivery::{
    Backoff, Capacity, DeadLetterReason, Event, Message, Nack, Ordering, Outbox, Overflow, Policy,
    PushError, Timestamp, Transmit,
};
use proptest::prelude::*;

const ACK_TIMEOUT: u64 = 100;
const TTL: u64 = 1_000;
const MAX_ATTEMPTS: u32 = 3;

/// Backoff after `failures` failed attempts: 50 ms, doubling, capped at 400 ms, no jitter.
fn backoff(failures: u32) -> u64 {
    (50u64 << (failures - 1).min(10)).min(400)
}

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Transmit,
    Ack(usize),
    AckUpTo(usize),
    NackRetry(usize),
    NackReject(usize),
    Advance(u64),
    Connect,
    Disconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..80).prop_map(Op::Push),
        4 => Just(Op::Transmit),
        3 => (0usize..8).prop_map(Op::Ack),
        1 => (0usize..8).prop_map(Op::AckUpTo),
        1 => (0usize..8).prop_map(Op::NackRetry),
        1 => (0usize..8).prop_map(Op::NackReject),
        3 => (1u64..300).prop_map(Op::Advance),
        1 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Ready,
    InFlight { deadline: u64 },
    Backoff { until: u64 },
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    len: usize,
    attempts: u32,
    state: State,
    expires: u64,
}

/// What an outcome looks like, without payloads and latencies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Delivered(u64, u32),
    Expired(u64),
    Dead(u64, DeadLetterReason),
}

fn outcome(event: Event) -> Outcome {
    match event {
        Event::Delivered { seq, attempts, .. } => Outcome::Delivered(seq, attempts),
        Event::Expired { seq, .. } => Outcome::Expired(seq),
        Event::DeadLettered { seq, reason, .. } => Outcome::Dead(seq, reason),
        other => panic!("unexpected event {other:?}"),
    }
}

struct Model {
    strict: bool,
    window: usize,
    capacity: Capacity,
    pending: Vec<Pending>,
    next_seq: u64,
    connected: bool,
    now: u64,
    events: Vec<Outcome>,
}

impl Model {
    fn bytes(&self) -> usize {
        self.pending.iter().map(|p| p.len).sum()
    }

    fn in_flight(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| matches!(p.state, State::InFlight { .. }))
            .count()
    }

    fn index(&self, seq: u64) -> Option<usize> {
        self.pending.iter().position(|p| p.seq == seq)
    }

    fn push(&mut self, len: usize) -> Result<u64, &'static str> {
        if len > self.capacity.bytes {
            return Err("too large");
        }
        let fits =
            |m: &Self| m.pending.len() < m.capacity.messages && m.bytes() + len <= m.capacity.bytes;
        if !fits(self) {
            match self.capacity.overflow {
                Overflow::Reject => return Err("full"),
                _ => {
                    while !fits(self) {
                        let oldest = self.pending.remove(0);
                        self.events
                            .push(Outcome::Dead(oldest.seq, DeadLetterReason::Overflow));
                    }
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push(Pending {
            seq,
            len,
            attempts: 0,
            state: State::Ready,
            expires: self.now + TTL,
        });
        Ok(seq)
    }

    fn transmit(&mut self) -> Vec<(u64, u32)> {
        let mut sent = Vec::new();
        while self.connected && self.in_flight() < self.window {
            let eligible = if self.strict {
                self.window.min(self.pending.len())
            } else {
                self.pending.len()
            };
            let Some(p) = self.pending[..eligible]
                .iter_mut()
                .find(|p| p.state == State::Ready)
            else {
                break;
            };
            p.attempts += 1;
            p.state = State::InFlight {
                deadline: self.now + ACK_TIMEOUT,
            };
            sent.push((p.seq, p.attempts));
        }
        sent
    }

    fn ack(&mut self, seq: u64) {
        if let Some(i) = self.index(seq)
            && self.pending[i].attempts > 0
        {
            let p = self.pending.remove(i);
            self.events.push(Outcome::Delivered(p.seq, p.attempts));
        }
    }

    fn ack_upto(&mut self, seq: u64) {
        while let Some(p) = self.pending.first()
            && p.seq <= seq
            && p.attempts > 0
        {
            self.ack(p.seq);
        }
    }

    fn fail(&mut self, i: usize) {
        let p = &mut self.pending[i];
        if p.attempts >= MAX_ATTEMPTS {
            let p = self.pending.remove(i);
            self.events
                .push(Outcome::Dead(p.seq, DeadLetterReason::AttemptsExhausted));
        } else {
            p.state = State::Backoff {
                until: self.now + backoff(p.attempts),
            };
        }
    }

    fn nack(&mut self, seq: u64, attempt: u32, nack: Nack) {
        let Some(i) = self.index(seq) else { return };
        let p = &self.pending[i];
        if p.attempts == 0 {
            return;
        }
        match nack {
            Nack::Reject => {
                self.pending.remove(i);
                self.events
                    .push(Outcome::Dead(seq, DeadLetterReason::Rejected));
            }
            _ => {
                if matches!(p.state, State::InFlight { .. }) && p.attempts == attempt {
                    self.fail(i);
                }
            }
        }
    }

    fn advance(&mut self, by: u64) {
        self.now += by;
        let now = self.now;
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|p| p.expires <= now);
        self.pending = kept;
        self.events
            .extend(expired.iter().map(|p| Outcome::Expired(p.seq)));
        // Ack timeouts in the order the attempts were sent: by deadline, then by number.
        let mut timed_out: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter_map(|p| match p.state {
                State::InFlight { deadline } if deadline <= now => Some((deadline, p.seq)),
                _ => None,
            })
            .collect();
        timed_out.sort_unstable();
        for (_, seq) in timed_out {
            let i = self.index(seq).expect("still pending");
            self.fail(i);
        }
        for p in &mut self.pending {
            if matches!(p.state, State::Backoff { until } if until <= now) {
                p.state = State::Ready;
            }
        }
    }

    fn connect(&mut self) {
        self.connected = true;
        for p in &mut self.pending {
            if matches!(p.state, State::Backoff { .. }) {
                p.state = State::Ready;
            }
        }
    }

    fn disconnect(&mut self) {
        self.connected = false;
        let mut i = 0;
        while i < self.pending.len() {
            if matches!(self.pending[i].state, State::InFlight { .. }) {
                if self.pending[i].attempts >= MAX_ATTEMPTS {
                    let p = self.pending.remove(i);
                    self.events
                        .push(Outcome::Dead(p.seq, DeadLetterReason::AttemptsExhausted));
                    continue;
                }
                self.pending[i].state = State::Ready;
            }
            i += 1;
        }
    }

    /// The earliest deadline the model knows of.
    fn next_deadline(&self) -> Option<u64> {
        self.pending
            .iter()
            .flat_map(|p| {
                let timer = match p.state {
                    State::InFlight { deadline } => Some(deadline),
                    State::Backoff { until } => Some(until),
                    State::Ready => None,
                };
                [timer, Some(p.expires)]
            })
            .flatten()
            .min()
    }
}

/// The engine and the model agree on outcomes, pending messages, accounting and deadlines.
fn compare(outbox: &mut Outbox, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let events: Vec<_> = std::iter::from_fn(|| outbox.poll_event())
        .map(outcome)
        .collect();
    prop_assert_eq!(
        events,
        std::mem::take(&mut model.events),
        "events after {:?}",
        op
    );
    let pending: Vec<_> = outbox.pending().map(|s| (s.seq, s.attempts)).collect();
    let want: Vec<_> = model.pending.iter().map(|p| (p.seq, p.attempts)).collect();
    prop_assert_eq!(pending, want, "pending after {:?}", op);
    prop_assert_eq!(outbox.in_flight(), model.in_flight());
    prop_assert_eq!(outbox.bytes(), model.bytes());
    // Never late: the engine may wake early for a timer that no longer matters, never after a real deadline.
    if let Some(deadline) = model.next_deadline() {
        let engine = outbox.poll_timeout().map(Timestamp::as_millis);
        prop_assert!(
            engine.is_some_and(|t| t <= deadline),
            "poll_timeout {:?}, model {}",
            engine,
            deadline
        );
    }
    Ok(())
}

fn check(strict: bool, window: usize, overflow: Overflow, ops: &[Op]) -> Result<(), TestCaseError> {
    let capacity = Capacity::new(5, 200, overflow);
    let policy = Policy::default()
        .ordering(if strict {
            Ordering::Strict
        } else {
            Ordering::Unordered
        })
        .window(window)
        .ack_timeout(Some(Duration::from_millis(ACK_TIMEOUT)))
        .backoff(
            Backoff::new(Duration::from_millis(50), 2.0, Duration::from_millis(400)).jitter(0.0),
        )
        .max_attempts(Some(MAX_ATTEMPTS))
        .ttl(Some(Duration::from_millis(TTL)))
        .capacity(capacity);
    let mut outbox = Outbox::new(policy, 0);
    let mut model = Model {
        strict,
        window,
        capacity,
        pending: Vec::new(),
        next_seq: 1,
        connected: false,
        now: 0,
        events: Vec::new(),
    };
    // The attempt of each message most recently sent, to nack it.
    let mut last_attempt = std::collections::HashMap::new();
    for op in ops {
        let now = Timestamp::from_millis(model.now);
        // Numbers in ops pick among the messages pushed so far (including settled ones).
        let pick = |i: usize| (i as u64 % model.next_seq.max(1)).max(1);
        match *op {
            Op::Push(len) => {
                let got = outbox.push(Message::new(Bytes::from(vec![0; len])), now);
                let want = model.push(len);
                match (got, want) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                    (Err(PushError::Full(_)), Err("full"))
                    | (Err(PushError::TooLarge(_)), Err("too large")) => {}
                    (got, want) => prop_assert!(false, "push: engine {:?}, model {:?}", got, want),
                }
            }
            Op::Transmit => {
                let got: Vec<_> = std::iter::from_fn(|| outbox.poll_transmit(now))
                    .map(|t| match t {
                        Transmit::Message(out) => (out.seq, out.attempt),
                        Transmit::Sequence { .. } => (0, 0),
                    })
                    .collect();
                let want = model.transmit();
                for &(seq, attempt) in &got {
                    last_attempt.insert(seq, attempt);
                }
                prop_assert_eq!(got, want, "transmit");
            }
            Op::Ack(i) => {
                outbox.handle_ack(pick(i), now);
                model.ack(pick(i));
            }
            Op::AckUpTo(i) => {
                outbox.handle_ack_upto(pick(i), now);
                model.ack_upto(pick(i));
            }
            Op::NackRetry(i) | Op::NackReject(i) => {
                let nack = if matches!(op, Op::NackRetry(_)) {
                    Nack::Retry
                } else {
                    Nack::Reject
                };
                let seq = pick(i);
                let attempt = last_attempt.get(&seq).copied().unwrap_or(1);
                outbox.handle_nack(seq, attempt, nack, now);
                model.nack(seq, attempt, nack);
            }
            Op::Advance(by) => {
                model.advance(by);
                let later = Timestamp::from_millis(model.now);
                outbox.handle_timeout(later);
                if let Some(next) = outbox.poll_timeout() {
                    prop_assert!(
                        next > later,
                        "poll_timeout {:?} not after {:?}",
                        next,
                        later
                    );
                }
            }
            Op::Connect => {
                outbox.handle_connected(now);
                model.connect();
            }
            Op::Disconnect => {
                outbox.handle_disconnected(now);
                model.disconnect();
            }
        }
        compare(&mut outbox, &mut model, op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn outbox_matches_the_model(
        strict in any::<bool>(),
        window in 1usize..4,
        drop_oldest in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let overflow = if drop_oldest { Overflow::DropOldest } else { Overflow::Reject };
        check(strict, window, overflow, &ops)?;
    }
}
