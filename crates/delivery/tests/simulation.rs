//! Deterministic simulation: an outbox and an inbox joined by a seeded network that loses, duplicates, delays and
//! reorders messages and acks, and cuts the connection; time jumps to the next deadline. Invariants are checked
//! after every step, and at the end every message must be accounted for.
//!
//! Each seed picks a policy variant, a fault profile and a workload. A failing seed is printed; replay it alone
//! with `COURIER_SIM_SEED=<seed> cargo test -p courier-delivery --test simulation`. `COURIER_SIM_SEEDS=<n>` changes
//! how many seeds run (default 2,000 in mailbox mode, 500 in link mode).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use bytes::Bytes;
use courier_delivery::{
    Ack, Backoff, Capacity, DeadLetterReason, Event, Guarantee, Inbox, InboxConfig, Incoming,
    Message, Ordering, Outbox, Outgoing, Overflow, Policy, PushError, Resend, Timestamp, Transmit,
};

/// The simulation's own random source (SplitMix64), independent of the engine's.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_millis(n)
}

/// How hostile the network is, in percent per frame.
#[derive(Debug, Clone, Copy)]
struct Faults {
    loss: u64,
    duplicate: u64,
    max_delay: u64,
    /// Longest time between connection cuts while pushes are still coming (drawn uniformly up to it); `None`
    /// never cuts.
    cut_every: Option<u64>,
    /// Whether the outbox is rebuilt from its pending state once, mid-run.
    restart: bool,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    policy: Policy,
    inbox: InboxConfig,
    faults: Faults,
    messages: u64,
}

fn mailbox_variant(rng: &mut Rng) -> Variant {
    let ordering = rng.pick(&[Ordering::Strict, Ordering::Unordered]);
    let guarantee = rng.pick(&[
        Guarantee::AtMostOnce,
        Guarantee::AtLeastOnce,
        Guarantee::AtLeastOnce,
        Guarantee::ExactlyOnce,
        Guarantee::ExactlyOnce,
    ]);
    let backoff = Backoff::new(
        ms(rng.range(0, 100)),
        1.0 + f64::from(rng.range(0, 20) as u32) / 10.0,
        ms(rng.range(50, 2000)),
    )
    .jitter(f64::from(rng.range(0, 50) as u32) / 100.0);
    let overflow = rng.pick(&[Overflow::Reject, Overflow::DropOldest, Overflow::DropNewest]);
    let policy = Policy::default()
        .guarantee(guarantee)
        .ordering(ordering)
        .window(rng.range(1, 8) as usize)
        .ack_timeout(Some(ms(rng.range(20, 400))))
        .backoff(backoff)
        .max_attempts(if rng.chance(50) {
            None
        } else {
            Some(rng.range(1, 6) as u32)
        })
        .ttl(if rng.chance(30) {
            None
        } else {
            Some(ms(rng.range(200, 20_000)))
        })
        .resend(rng.pick(&[Resend::All, Resend::All, Resend::LatestPerKey, Resend::None]))
        .capacity(Capacity::new(
            rng.range(3, 40) as usize,
            rng.range(200, 3000) as usize,
            overflow,
        ))
        .history(if rng.chance(20) {
            Some(ms(rng.range(10, 5000)))
        } else {
            None
        });
    let inbox = InboxConfig::default()
        .ordering(ordering)
        .window(rng.range(1, 16) as usize)
        .ack_delay(ms(rng.range(0, 50)))
        .ack_every(rng.range(1, 8) as usize);
    let faults = Faults {
        loss: rng.range(0, 30),
        duplicate: rng.range(0, 20),
        max_delay: rng.range(1, 200),
        cut_every: if rng.chance(30) {
            None
        } else {
            Some(rng.range(200, 5000))
        },
        restart: rng.chance(30),
    };
    Variant {
        policy,
        inbox,
        faults,
        messages: rng.range(10, 60),
    }
}

/// A frame on the wire, sender to receiver.
#[derive(Debug, Clone)]
enum Frame {
    Message(Outgoing),
    Sequence(u64),
}

/// What the checker knows about one accepted message.
#[derive(Debug, Default)]
struct Ledger {
    accepted: BTreeSet<u64>,
    outcome: HashMap<u64, Event>,
    /// Sequence numbers in the order the application saw them.
    seen: Vec<u64>,
    seen_set: BTreeSet<u64>,
}

#[allow(clippy::struct_excessive_bools)] // Each flag is one independent fact about the run.
struct Sim {
    variant: Variant,
    rng: Rng,
    now: u64,
    outbox: Outbox,
    inbox: Inbox,
    /// In flight on the wire: (arrival time, tie-breaker, frame).
    to_receiver: BTreeMap<(u64, u64), Frame>,
    to_sender: BTreeMap<(u64, u64), Ack>,
    wire_counter: u64,
    connected: bool,
    reconnect_at: Option<u64>,
    cut_at: Option<u64>,
    /// Pushes still to come: (time, message).
    pushes: VecDeque<(u64, Message)>,
    /// Pushes refused with `Full` (link mode retries them).
    backlog: VecDeque<Message>,
    healed: bool,
    restarted: bool,
    ledger: Ledger,
    link: bool,
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl Sim {
    fn new(seed: u64, variant: Variant, link: bool) -> Self {
        let mut rng = Rng(seed ^ 0xC0FF_EE00);
        let mut pushes = VecDeque::new();
        let mut t = 0;
        for i in 0..variant.messages {
            t += rng.range(0, 60);
            let mut message = Message::new(Bytes::from(vec![i as u8; rng.range(1, 120) as usize]));
            if !link && rng.chance(40) {
                message = message.key(rng.range(0, 3));
            }
            if !link && rng.chance(15) {
                message = message.ttl(ms(rng.range(50, 5000)));
            }
            pushes.push_back((t, message));
        }
        let mut outbox = Outbox::new(variant.policy, seed);
        outbox.handle_connected(at(0));
        Self {
            variant,
            rng,
            now: 0,
            outbox,
            inbox: Inbox::new(variant.inbox),
            to_receiver: BTreeMap::new(),
            to_sender: BTreeMap::new(),
            wire_counter: 0,
            connected: true,
            reconnect_at: None,
            cut_at: None,
            pushes,
            backlog: VecDeque::new(),
            healed: false,
            restarted: false,
            ledger: Ledger::default(),
            link,
        }
    }

    fn run(&mut self) -> Result<Vec<&'static str>, String> {
        for _ in 0..200_000 {
            if self.pushes.is_empty() && self.backlog.is_empty() && !self.healed {
                self.heal();
            }
            if self.healed && self.settled() {
                self.check_final()?;
                return Ok(self.tally());
            }
            let Some(next) = self.next_time() else {
                return Err(format!(
                    "stuck at {} ms with nothing scheduled: {:?}",
                    self.now, self.outbox
                ));
            };
            ensure!(
                next >= self.now,
                "time went backwards: {next} < {}",
                self.now
            );
            self.now = next;
            self.step()?;
        }
        Err("no progress after 200,000 steps".into())
    }

    /// Every accepted message has an outcome and nothing is left to push.
    fn settled(&self) -> bool {
        self.backlog.is_empty()
            && self.pushes.is_empty()
            && self.ledger.outcome.len() == self.ledger.accepted.len()
    }

    /// The end of the faults: no more loss, duplication or cuts, and the connection is (re)established.
    fn heal(&mut self) {
        self.healed = true;
        self.variant.faults.loss = 0;
        self.variant.faults.duplicate = 0;
        self.variant.faults.cut_every = None;
        self.cut_at = None;
        if !self.connected && self.reconnect_at.is_none() {
            self.reconnect_at = Some(self.now + 1);
        }
    }

    fn next_time(&self) -> Option<u64> {
        let candidates = [
            self.pushes.front().map(|(t, _)| *t),
            self.to_receiver.keys().next().map(|(t, _)| *t),
            self.to_sender.keys().next().map(|(t, _)| *t),
            self.outbox.poll_timeout().map(Timestamp::as_millis),
            self.inbox.poll_timeout().map(Timestamp::as_millis),
            self.reconnect_at,
            self.cut_at,
        ];
        candidates
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.max(self.now))
    }

    fn step(&mut self) -> Check {
        let now = at(self.now);
        while let Some((t, _)) = self.pushes.front()
            && *t <= self.now
        {
            let (_, message) = self.pushes.pop_front().expect("front exists");
            self.push(message)?;
        }
        for _ in 0..self.backlog.len() {
            let message = self.backlog.pop_front().expect("non-empty");
            self.push(message)?;
        }
        if self.reconnect_at.is_some_and(|t| t <= self.now) {
            self.reconnect_at = None;
            self.connected = true;
            self.outbox.handle_connected(now);
        }
        while let Some(entry) = self.to_receiver.first_entry()
            && entry.key().0 <= self.now
        {
            match entry.remove() {
                Frame::Message(out) => {
                    if self.link {
                        self.inbox
                            .handle_link_message(out.payload, now)
                            .map_err(|e| e.to_string())?;
                    } else {
                        let incoming = Incoming {
                            seq: out.seq,
                            floor: out.floor,
                            payload: out.payload,
                        };
                        self.inbox
                            .handle_message(incoming, now)
                            .map_err(|e| e.to_string())?;
                    }
                }
                Frame::Sequence(first) => {
                    self.inbox
                        .handle_sequence(first, now)
                        .map_err(|e| format!("fatal Sequence: {e}"))?;
                }
            }
        }
        while let Some(entry) = self.to_sender.first_entry()
            && entry.key().0 <= self.now
        {
            match entry.remove() {
                Ack::UpTo(seq) => self.outbox.handle_ack_upto(seq, now),
                Ack::Single(seq) => self.outbox.handle_ack(seq, now),
            }
        }
        if self.outbox.poll_timeout().is_some_and(|t| t <= now) {
            self.outbox.handle_timeout(now);
            if let Some(t) = self.outbox.poll_timeout() {
                ensure!(
                    t > now,
                    "outbox poll_timeout {t:?} not after handle_timeout({now:?})"
                );
            }
        }
        if self.inbox.poll_timeout().is_some_and(|t| t <= now) {
            self.inbox.handle_timeout(now);
            if let Some(t) = self.inbox.poll_timeout() {
                ensure!(
                    t > now,
                    "inbox poll_timeout {t:?} not after handle_timeout({now:?})"
                );
            }
        }
        if self.cut_at.is_some_and(|t| t <= self.now) {
            self.cut_at = None;
            if self.connected {
                self.cut();
            }
        }
        if self.connected
            && self.cut_at.is_none()
            && let Some(every) = self.variant.faults.cut_every
        {
            self.cut_at = Some(self.now + self.rng.range(1, every));
        }
        if self.variant.faults.restart
            && !self.restarted
            && self.ledger.accepted.len() as u64 >= self.variant.messages / 2
        {
            // A restart happens between steps: what the old outbox emitted is handled first.
            self.drain()?;
            self.restart()?;
        }
        self.drain()?;
        self.check_step()
    }

    fn push(&mut self, message: Message) -> Check {
        match self.outbox.push(message, at(self.now)) {
            Ok(seq) => {
                ensure!(
                    self.ledger.accepted.insert(seq),
                    "sequence number {seq} given twice"
                );
            }
            Err(PushError::Full(message)) if self.link => self.backlog.push_back(message),
            Err(PushError::Full(_) | PushError::TooLarge(_)) => {}
            Err(e) => return Err(format!("unexpected push error {e}")),
        }
        Ok(())
    }

    /// The connection drops: everything on the wire is lost; it comes back a little later.
    fn cut(&mut self) {
        self.connected = false;
        self.to_receiver.clear();
        self.to_sender.clear();
        self.outbox.handle_disconnected(at(self.now));
        self.inbox.handle_disconnected();
        self.reconnect_at = Some(self.now + self.rng.range(1, 500));
    }

    /// The sending process restarts: its outbox is rebuilt from what a store would hold.
    fn restart(&mut self) -> Check {
        self.restarted = true;
        let pending: Vec<_> = self.outbox.pending().collect();
        let before = self.outbox.next_seq();
        self.outbox = Outbox::restore(
            self.variant.policy,
            self.rng.next(),
            before,
            pending,
            at(self.now),
        )
        .map_err(|e| format!("restore failed: {e}"))?;
        if self.connected {
            // The restart dropped the connection too.
            self.connected = false;
            self.to_receiver.clear();
            self.to_sender.clear();
            self.inbox.handle_disconnected();
            self.reconnect_at = Some(self.now + self.rng.range(1, 200));
        }
        Ok(())
    }

    fn send<T>(
        rng: &mut Rng,
        faults: Faults,
        counter: &mut u64,
        now: u64,
        wire: &mut BTreeMap<(u64, u64), T>,
        item: T,
    ) where
        T: Clone,
    {
        if rng.chance(faults.loss) {
            return;
        }
        let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            *counter += 1;
            // A random delay per frame reorders them.
            wire.insert(
                (now + rng.range(1, faults.max_delay), *counter),
                item.clone(),
            );
        }
    }

    fn drain(&mut self) -> Check {
        let now = at(self.now);
        let faults = self.variant.faults;
        // Link mode rides an ordered transport: no loss or reordering within a connection, only cuts.
        let wire_faults = if self.link {
            Faults {
                loss: 0,
                duplicate: 0,
                max_delay: 1,
                ..faults
            }
        } else {
            faults
        };
        while let Some(transmit) = self.outbox.poll_transmit(now) {
            ensure!(self.connected, "transmitted while disconnected");
            let frame = match transmit {
                Transmit::Message(out) => {
                    ensure!(
                        out.floor <= out.seq,
                        "floor {} above seq {}",
                        out.floor,
                        out.seq
                    );
                    Frame::Message(out)
                }
                Transmit::Sequence { first } => {
                    ensure!(self.link, "Sequence in mailbox mode");
                    Frame::Sequence(first)
                }
            };
            if self.link {
                let arrival = self.link_arrival();
                self.wire_counter += 1;
                self.to_receiver.insert((arrival, self.wire_counter), frame);
            } else {
                Self::send(
                    &mut self.rng,
                    wire_faults,
                    &mut self.wire_counter,
                    self.now,
                    &mut self.to_receiver,
                    frame,
                );
            }
        }
        while let Some(delivery) = self.inbox.poll_delivery() {
            let seq = delivery.seq;
            ensure!(
                self.ledger.accepted.contains(&seq),
                "application got {seq}, which was never accepted"
            );
            ensure!(
                self.ledger.seen_set.insert(seq),
                "application got {seq} twice"
            );
            if self.variant.policy.ordering == Ordering::Strict
                && let Some(&last) = self.ledger.seen.last()
            {
                ensure!(seq > last, "strict order broken: {seq} after {last}");
            }
            self.ledger.seen.push(seq);
        }
        while let Some(ack) = self.inbox.poll_ack() {
            if self.connected {
                if self.link {
                    let arrival = self.link_ack_arrival();
                    self.wire_counter += 1;
                    self.to_sender.insert((arrival, self.wire_counter), ack);
                } else {
                    Self::send(
                        &mut self.rng,
                        faults,
                        &mut self.wire_counter,
                        self.now,
                        &mut self.to_sender,
                        ack,
                    );
                }
            }
        }
        while let Some(event) = self.outbox.poll_event() {
            let seq = event.seq();
            ensure!(
                self.ledger.accepted.contains(&seq),
                "event for {seq}, which was never accepted: {event:?}"
            );
            if let Event::Delivered { .. } = event {
                ensure!(
                    self.ledger.seen_set.contains(&seq),
                    "{seq} reported delivered but the application never got it"
                );
            }
            if let Some(previous) = self.ledger.outcome.insert(seq, event.clone()) {
                return Err(format!(
                    "two outcomes for {seq}: {previous:?} then {event:?}"
                ));
            }
        }
        Ok(())
    }

    /// Link mode: frames keep their order, so each arrives after the previous one.
    fn link_arrival(&mut self) -> u64 {
        let last = self
            .to_receiver
            .keys()
            .next_back()
            .map_or(self.now, |(t, _)| *t);
        last.max(self.now) + self.rng.range(0, 20)
    }

    fn link_ack_arrival(&mut self) -> u64 {
        let last = self
            .to_sender
            .keys()
            .next_back()
            .map_or(self.now, |(t, _)| *t);
        last.max(self.now) + self.rng.range(0, 20)
    }

    fn check_step(&self) -> Check {
        let policy = self.variant.policy;
        if policy.guarantee != Guarantee::AtMostOnce {
            ensure!(
                self.outbox.in_flight() <= policy.window,
                "window exceeded: {}",
                self.outbox.in_flight()
            );
        }
        ensure!(
            self.outbox.len() <= policy.capacity.messages,
            "capacity exceeded: {} messages",
            self.outbox.len()
        );
        // Link mode lets the newest message take the buffer over its bound (SignalR's rule); what is older stays
        // within it, since acks only ever remove the oldest messages.
        let overshoot = if self.link {
            self.outbox
                .pending()
                .last()
                .map_or(0, |newest| newest.payload.len())
        } else {
            0
        };
        ensure!(
            self.outbox.bytes() - overshoot <= policy.capacity.bytes,
            "capacity exceeded: {} bytes",
            self.outbox.bytes()
        );
        // Nothing silently lost: every accepted message is pending or has its outcome, never both.
        let pending: BTreeSet<u64> = self.outbox.pending().map(|stored| stored.seq).collect();
        ensure!(
            pending.len() == self.outbox.len(),
            "pending() disagrees with len()"
        );
        for &seq in &self.ledger.accepted {
            let pending = pending.contains(&seq);
            let settled = self.ledger.outcome.contains_key(&seq);
            ensure!(
                pending != settled,
                "message {seq}: pending {pending}, settled {settled}"
            );
        }
        Ok(())
    }

    /// What happened in this run, for the coverage check across seeds.
    fn tally(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self
            .ledger
            .outcome
            .values()
            .map(|event| match event {
                Event::Delivered { attempts: 1, .. } => "delivered first time",
                Event::Delivered { .. } => "delivered after retries",
                Event::Sent { .. } => "sent",
                Event::Expired { .. } => "expired",
                Event::DeadLettered { reason, .. } => match reason {
                    DeadLetterReason::AttemptsExhausted => "attempts exhausted",
                    DeadLetterReason::Overflow => "overflow",
                    _ => "other dead letter",
                },
                Event::Conflated { .. } => "conflated",
                _ => "other",
            })
            .collect();
        if self.restarted {
            kinds.push("restart");
        }
        kinds
    }

    fn check_final(&self) -> Check {
        ensure!(
            self.outbox.is_empty(),
            "messages left pending: {}",
            self.outbox.len()
        );
        if self.link {
            // Nothing is dropped in link mode: everything arrives, once, in order, and is acknowledged.
            let all: Vec<u64> = self.ledger.accepted.iter().copied().collect();
            ensure!(
                self.ledger.seen == all,
                "link mode delivered {:?}, expected {:?}",
                self.ledger.seen,
                all
            );
            for event in self.ledger.outcome.values() {
                ensure!(
                    matches!(event, Event::Delivered { .. }),
                    "link mode outcome {event:?}"
                );
            }
        }
        Ok(())
    }
}

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("COURIER_SIM_SEED") {
        return vec![seed.parse().expect("COURIER_SIM_SEED is a number")];
    }
    let count = std::env::var("COURIER_SIM_SEEDS").map_or(default, |n| {
        n.parse().expect("COURIER_SIM_SEEDS is a number")
    });
    (1..=count).collect()
}

/// Runs every seed; reports each failing one with what it needs to be replayed. Returns how often each kind of
/// outcome happened across the seeds.
fn run_seeds(kind: &str, default: u64, make: impl Fn(u64) -> Sim) -> BTreeMap<&'static str, usize> {
    let mut failures = Vec::new();
    let mut tally = BTreeMap::new();
    for seed in seeds(default) {
        let outcome = catch_unwind(AssertUnwindSafe(|| make(seed).run()));
        let failure = match outcome {
            Ok(Ok(kinds)) => {
                for kind in kinds {
                    *tally.entry(kind).or_insert(0) += 1;
                }
                continue;
            }
            Ok(Err(message)) => message,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into()),
        };
        let variant = make(seed).variant;
        failures.push(format!(
            "{kind} seed {seed} failed: {failure}\n  replay: COURIER_SIM_SEED={seed} cargo test -p courier-delivery --test simulation {kind}\n  variant: {variant:?}"
        ));
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tally
}

/// Whether all seeds ran (not a replay of one), so that coverage can be asserted.
fn full_run() -> bool {
    std::env::var("COURIER_SIM_SEED").is_err()
}

#[test]
fn mailbox() {
    let tally = run_seeds("mailbox", 2000, |seed| {
        let mut rng = Rng(seed);
        let variant = mailbox_variant(&mut rng);
        Sim::new(seed, variant, false)
    });
    if full_run() {
        // The faults must have driven the engine down every path, or the invariants above prove little.
        for kind in [
            "delivered first time",
            "delivered after retries",
            "sent",
            "expired",
            "attempts exhausted",
            "overflow",
            "conflated",
            "restart",
        ] {
            assert!(
                tally.get(kind).copied().unwrap_or(0) > 0,
                "no run saw {kind}: {tally:?}"
            );
        }
    }
}

#[test]
fn link() {
    let tally = run_seeds("link", 500, |seed| {
        let mut rng = Rng(seed ^ 0x1111);
        let variant = Variant {
            policy: Policy::link(rng.range(200, 2000) as usize),
            inbox: InboxConfig::link(),
            faults: Faults {
                loss: 0,
                duplicate: 0,
                max_delay: 1,
                cut_every: Some(rng.range(300, 3000)),
                restart: false,
            },
            messages: rng.range(10, 80),
        };
        Sim::new(seed, variant, true)
    });
    if full_run() {
        assert!(
            tally.contains_key("delivered after retries"),
            "no replay after a cut: {tally:?}"
        );
    }
}
