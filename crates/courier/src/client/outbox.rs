//! The reliable outbox: hub calls that carry an idempotency key and are sent again, with the same key and a new
//! invocation id, until a Completion arrives, their time to live passes or their attempts run out. A
//! [`courier_delivery::Outbox`] per policy does the bookkeeping (ack timeouts, backoff, attempts, expiry).
//!
//! Sans-IO like the engine: the driver feeds calls, Completions, connection changes and deadlines, and writes the
//! invocations it polls.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use courier_delivery::{
    DeadLetterReason, Event, Guarantee, Message, Mode, Outbox, Policy, Timestamp, Transmit,
};
use courier_protocol::{ByteString, CompletionResult, Headers, Invocation, Payload, Protocol};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::InvokeError;

/// The invocation header that carries a reliable call's idempotency key.
pub(super) const IDEMPOTENCY_KEY: &str = "courier-idempotency-key";

/// The outbox's options, from the builder.
#[derive(Debug, Clone)]
pub(super) struct OutboxConfig {
    /// Most calls in the outbox, across methods.
    pub(super) capacity: usize,
    pub(super) default_policy: Policy,
    /// By hub method name, ASCII-lowercased (hub methods are matched ignoring case).
    pub(super) policies: Arc<HashMap<String, Policy>>,
}

/// A place in the outbox, held by a call from the moment it is made until it is answered (or dropped), so that
/// the bound covers calls the driver has not taken yet.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place if fewer than `capacity` are taken.
    pub(super) fn take(taken: &Arc<AtomicUsize>, capacity: usize) -> Option<Self> {
        taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(taken.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A call waiting in the outbox.
pub(super) struct ReliableCall {
    pub(super) target: String,
    pub(super) arguments: Vec<Payload>,
    pub(super) key: ByteString,
    pub(super) reply: oneshot::Sender<Result<Payload, InvokeError>>,
    /// Given back when the call is dropped, answered or not.
    pub(super) _slot: Slot,
}

struct Pending {
    call: ReliableCall,
    /// The invocation id of the attempt in flight on the current connection.
    attempt: Option<ByteString>,
}

/// Which outbox and which number in it.
type CallId = (usize, u64);

pub(super) struct Calls {
    protocol: Protocol,
    /// Hub method (lowercase) to its outbox; methods without a policy of their own share outbox 0.
    by_method: HashMap<String, usize>,
    outboxes: Vec<Outbox>,
    pending: HashMap<CallId, Pending>,
    attempts: HashMap<ByteString, CallId>,
    /// The engine's time is milliseconds since this.
    origin: Instant,
}

impl Calls {
    /// An empty outbox; it sends once [`connected`](Self::connected).
    pub(super) fn new(protocol: Protocol, config: &OutboxConfig) -> Self {
        let origin = Instant::now();
        let seeds = std::hash::RandomState::new();
        let mut by_method = HashMap::new();
        let mut outboxes = vec![Outbox::new(
            for_calls(config.default_policy),
            seeds.hash_one(0),
        )];
        for (method, policy) in config.policies.iter() {
            by_method.insert(method.clone(), outboxes.len());
            outboxes.push(Outbox::new(for_calls(*policy), seeds.hash_one(method)));
        }
        Self {
            protocol,
            by_method,
            outboxes,
            pending: HashMap::new(),
            attempts: HashMap::new(),
            origin,
        }
    }

    fn now(&self) -> Timestamp {
        let millis = self.origin.elapsed().as_millis();
        Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// Takes a call, or answers it at once with [`InvokeError::OutboxFull`] when its method's policy has no room.
    pub(super) fn push(&mut self, call: ReliableCall) {
        let now = self.now();
        let index = self
            .by_method
            .get(&call.target.to_ascii_lowercase())
            .copied()
            .unwrap_or(0);
        match self.outboxes[index].push(Message::new(Bytes::new()), now) {
            Ok(seq) => {
                self.pending.insert(
                    (index, seq),
                    Pending {
                        call,
                        attempt: None,
                    },
                );
                self.settle_events();
            }
            Err(_) => drop(call.reply.send(Err(InvokeError::OutboxFull))),
        }
    }

    /// The next invocation to write, with a new id from `next_id`.
    pub(super) fn poll_transmit(
        &mut self,
        mut next_id: impl FnMut() -> ByteString,
    ) -> Option<Invocation> {
        let now = self.now();
        for (index, outbox) in self.outboxes.iter_mut().enumerate() {
            while let Some(transmit) = outbox.poll_transmit(now) {
                // Mailbox mode never asks for a `Sequence`.
                let Transmit::Message(out) = transmit else {
                    continue;
                };
                let Some(pending) = self.pending.get_mut(&(index, out.seq)) else {
                    continue;
                };
                let id = next_id();
                // An answer to an earlier attempt is no longer awaited: this one gets the same answer.
                if let Some(earlier) = pending.attempt.replace(id.clone()) {
                    self.attempts.remove(&earlier);
                }
                self.attempts.insert(id.clone(), (index, out.seq));
                let call = &pending.call;
                return Some(Invocation {
                    headers: Headers::new().with(IDEMPOTENCY_KEY, call.key.clone()),
                    invocation_id: Some(id),
                    target: call.target.as_str().into(),
                    arguments: call.arguments.clone(),
                    stream_ids: Vec::new(),
                });
            }
        }
        None
    }

    /// A Completion arrived (ignored unless it answers the current attempt of a reliable call).
    pub(super) fn complete(&mut self, id: &ByteString, result: CompletionResult) {
        let Some(call_id) = self.attempts.remove(id) else {
            return;
        };
        if let Some(pending) = self.pending.remove(&call_id) {
            let answer = match result {
                CompletionResult::Value(payload) => Ok(payload),
                CompletionResult::Void => Ok(Payload::null(self.protocol)),
                CompletionResult::Error(error) => Err(InvokeError::Hub(error.to_string())),
            };
            let _ = pending.call.reply.send(answer);
        }
        let now = self.now();
        self.outboxes[call_id.0].handle_ack(call_id.1, now);
        self.settle_events();
    }

    /// A new connection is up: everything pending is sent again.
    pub(super) fn connected(&mut self) {
        let now = self.now();
        for outbox in &mut self.outboxes {
            outbox.handle_connected(now);
        }
    }

    /// The connection is gone: the attempts in flight failed.
    pub(super) fn disconnected(&mut self) {
        let now = self.now();
        for outbox in &mut self.outboxes {
            outbox.handle_disconnected(now);
        }
        self.attempts.clear();
        for pending in self.pending.values_mut() {
            pending.attempt = None;
        }
        self.settle_events();
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.outboxes
            .iter()
            .filter_map(Outbox::poll_timeout)
            .min()
            .and_then(|at| {
                self.origin
                    .checked_add(Duration::from_millis(at.as_millis()))
            })
    }

    /// Time passed: ack timeouts, backoffs and expiries are due.
    pub(super) fn handle_timeout(&mut self) {
        let now = self.now();
        for outbox in &mut self.outboxes {
            outbox.handle_timeout(now);
        }
        self.settle_events();
    }

    /// The connection closed for good: every call still waiting fails.
    pub(super) fn close(&mut self) {
        self.attempts.clear();
        for (_, pending) in self.pending.drain() {
            let _ = pending.call.reply.send(Err(InvokeError::ConnectionClosed));
        }
    }

    /// Answers the calls the engine gave up on.
    fn settle_events(&mut self) {
        for (index, outbox) in self.outboxes.iter_mut().enumerate() {
            while let Some(event) = outbox.poll_event() {
                let seq = event.seq();
                let error = match event {
                    Event::Expired { .. } => InvokeError::Expired,
                    Event::DeadLettered {
                        reason: DeadLetterReason::Overflow,
                        ..
                    } => InvokeError::OutboxFull,
                    Event::DeadLettered { attempts, .. } => {
                        InvokeError::AttemptsExhausted { attempts }
                    }
                    // Delivered: answered with the Completion already. No other event happens to calls.
                    _ => continue,
                };
                if let Some(pending) = self.pending.remove(&(index, seq)) {
                    if let Some(attempt) = pending.attempt {
                        self.attempts.remove(&attempt);
                    }
                    let _ = pending.call.reply.send(Err(error));
                }
            }
        }
    }
}

/// A policy as calls use it: mailbox mode, at least once (the server runs a key once, so a resend is safe).
fn for_calls(mut policy: Policy) -> Policy {
    policy.mode = Mode::Mailbox;
    policy.guarantee(Guarantee::AtLeastOnce)
}
