//! The task that drives one mailbox: its outbox, the store, and the connections of its identity.
//!
//! It owns an [`Outbox`] in mailbox mode, rebuilt from the store when the task starts. Sends are appended to the
//! store first (the store numbers them; the outbox, fed in the same order, gives the same numbers), then pushed.
//! Each attempt goes to one connection of the identity as a client-result invocation with `courier-*` headers;
//! the answer is the ack or nack. Outcomes are written back to the store (ack, remove) before they are reported.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use courier_delivery::{Event, Message, Nack, Ordering, Outbox, Outgoing, Timestamp, Transmit};
use courier_protocol::{Headers, Payload, Protocol};
use futures::FutureExt;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::envelope::Envelope;
use super::telemetry::{self, Gauges};
use super::{Mailboxes, Request, seed};
use crate::server::registry::{ClientInvocation, Outbound};
use crate::server::reliable::{MessageId, Outcome, Sent};
use crate::server::{ClientResultError, ConnectionId, HubInner, ReliableSendError};
use crate::store::{MailboxId, MailboxLimit, NewMessage, StoreError};

/// How many pending messages one store read returns while a mailbox loads.
const LOAD_BATCH: usize = 1000;

/// Most sends appended to the store together (one grouped commit for a durable store).
const SEND_BATCH: usize = 256;

/// What the hub tells a mailbox task.
pub(crate) enum Command {
    /// Append a message and report its acceptance.
    Send {
        request: Request,
        reply: oneshot::Sender<Result<Sent, ReliableSendError>>,
    },
    /// A connection of the identity came up.
    Connected(ConnectionId),
    /// A connection of the identity ended.
    Disconnected(ConnectionId),
    /// A Courier client's hello on one connection.
    Hello {
        connection: ConnectionId,
        window: usize,
        resume: Option<u64>,
    },
    /// How many messages are pending.
    Pending(oneshot::Sender<Result<usize, ReliableSendError>>),
}

/// A connection of the mailbox's identity.
struct Link {
    id: ConnectionId,
    protocol: Protocol,
    outbound: mpsc::Sender<Outbound>,
    /// How many messages it reorders (1 until its client says hello).
    window: usize,
}

/// What a pending message needs at its outcome beyond what the outbox's events carry: its id and receipt
/// address (a `Delivered` event has no payload to read them from), and the sender's outcome handle.
struct Tracked {
    id: MessageId,
    receipt_to: Option<String>,
    outcome: Option<oneshot::Sender<Outcome>>,
}

/// The answer to one attempt: `None` when it was not answered within the ack timeout.
struct Answer {
    seq: u64,
    attempt: u32,
    connection: ConnectionId,
    result: Option<Result<Result<Payload, ClientResultError>, oneshot::error::RecvError>>,
}

type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

struct Driver {
    mailboxes: Arc<Mailboxes>,
    hub: Arc<HubInner>,
    mailbox: MailboxId,
    outbox: Outbox,
    /// Kept after an ack this long, for resync (the outbox keeps no history itself: the store does).
    history: Option<std::time::Duration>,
    /// The policy's in-flight window (the outbox's own changes with the connection: [`Driver::window_for`]).
    window: usize,
    links: Vec<Link>,
    /// Index into `links` of the connection attempts go to.
    current: Option<usize>,
    tracked: HashMap<u64, Tracked>,
    answers: FuturesUnordered<Pending>,
    gauges: Gauges,
}

pub(crate) async fn run(
    mailboxes: Arc<Mailboxes>,
    mailbox: MailboxId,
    mut commands: mpsc::Receiver<Command>,
    mut stopping: watch::Receiver<bool>,
) {
    let Some(hub) = mailboxes.hub.upgrade() else {
        return;
    };
    let mut driver = match Driver::load(mailboxes.clone(), hub, mailbox.clone()).await {
        Ok(driver) => driver,
        Err(error) => {
            tracing::error!(%mailbox, %error, "cannot load the mailbox");
            // Unload, and tell everyone who waits; the next command loads it again.
            mailboxes.remove(&mailbox);
            commands.close();
            while let Some(command) = commands.recv().await {
                match command {
                    Command::Send { reply, .. } => {
                        let _ = reply.send(Err(ReliableSendError::Store(StoreError::Closed)));
                    }
                    Command::Pending(reply) => {
                        let _ = reply.send(Err(ReliableSendError::Store(StoreError::Closed)));
                    }
                    _ => {}
                }
            }
            return;
        }
    };
    tokio::select! {
        () = driver.run(&mut commands) => {}
        _ = stopping.wait_for(|stopping| *stopping) => mailboxes.remove(&mailbox),
    }
}

impl Driver {
    async fn load(
        mailboxes: Arc<Mailboxes>,
        hub: Arc<HubInner>,
        mailbox: MailboxId,
    ) -> Result<Self, StoreError> {
        let store = &mailboxes.store;
        let next_seq = store.next_seq(&mailbox).await?;
        let mut pending = Vec::new();
        loop {
            let after = pending
                .last()
                .map_or(0, |message: &courier_delivery::StoredMessage| message.seq);
            let batch = store.read_pending(&mailbox, after, LOAD_BATCH).await?;
            let done = batch.len() < LOAD_BATCH;
            pending.extend(batch);
            if done {
                break;
            }
        }
        let mut tracked = HashMap::new();
        for message in &pending {
            if let Ok(envelope) = Envelope::decode(&message.payload)
                && envelope.receipt_to.is_some()
            {
                tracked.insert(
                    message.seq,
                    Tracked {
                        id: envelope.id.as_str().into(),
                        receipt_to: envelope.receipt_to,
                        outcome: None,
                    },
                );
            }
        }
        let mut policy = mailboxes.policy(&mailbox);
        let history = policy.history.take();
        let window = policy.window;
        let now = mailboxes.now();
        let outbox = Outbox::restore(policy, seed(), next_seq, pending, now)
            .map_err(|error| StoreError::Backend(Box::new(error)))?;
        let mut driver = Self {
            mailboxes,
            hub,
            mailbox,
            outbox,
            history,
            window,
            links: Vec::new(),
            current: None,
            tracked,
            answers: FuturesUnordered::new(),
            gauges: Gauges::default(),
        };
        // Connections that came up before this task was registered; later ones are announced by command.
        for id in driver
            .hub
            .registry
            .identity_connections(&driver.mailbox.identity())
        {
            driver.connected(id);
        }
        Ok(driver)
    }

    async fn run(&mut self, commands: &mut mpsc::Receiver<Command>) {
        loop {
            self.flush().await;
            self.gauges.update(&self.outbox);
            if self.outbox.is_empty() && commands.is_empty() {
                self.mailboxes.unload(&self.mailbox, commands);
                self.mailboxes.forward(&self.mailbox, commands).await;
                return;
            }
            let deadline = self.outbox.poll_timeout();
            let clock = self.mailboxes.clock.get().copied();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command, commands).await,
                    None => return,
                },
                Some(answer) = self.answers.next(), if !self.answers.is_empty() => {
                    self.answer(answer);
                    // Take every answer already in, so that their acks go to the store in one commit.
                    while let Some(Some(answer)) = self.answers.next().now_or_never() {
                        self.answer(answer);
                    }
                }
                () = sleep_until(clock, deadline), if deadline.is_some() => {
                    let now = self.mailboxes.now();
                    self.outbox.handle_timeout(now);
                }
            }
        }
    }

    async fn command(&mut self, command: Command, commands: &mut mpsc::Receiver<Command>) {
        match command {
            Command::Send { request, reply } => {
                // Take every send already queued, so that the store commits them together.
                let mut sends = vec![(request, reply)];
                let mut other = Vec::new();
                while sends.len() < SEND_BATCH
                    && let Ok(command) = commands.try_recv()
                {
                    match command {
                        Command::Send { request, reply } => sends.push((request, reply)),
                        command => other.push(command),
                    }
                }
                self.append(sends).await;
                for command in other {
                    Box::pin(self.command(command, commands)).await;
                }
            }
            Command::Connected(id) => self.connected(id),
            Command::Disconnected(id) => self.disconnected(&id),
            Command::Hello {
                connection,
                window,
                resume,
            } => self.hello(connection, window, resume).await,
            Command::Pending(reply) => {
                let _ = reply.send(Ok(self.outbox.len()));
            }
        }
    }

    /// Appends sends to the store (concurrently: a durable store groups them into one commit) and pushes the
    /// accepted ones into the outbox in the same order, so both number them alike.
    async fn append(
        &mut self,
        sends: Vec<(Request, oneshot::Sender<Result<Sent, ReliableSendError>>)>,
    ) {
        let now = self.mailboxes.now();
        let policy = *self.outbox.policy();
        // The store enforces a rejecting capacity; dropping policies let the outbox choose what to drop.
        let limit = match policy.capacity.overflow {
            courier_delivery::Overflow::Reject => MailboxLimit::from(policy.capacity),
            _ => MailboxLimit::default()
                .messages(usize::MAX)
                .bytes(usize::MAX),
        };
        let prepared: Vec<_> = sends
            .into_iter()
            .map(|(request, reply)| {
                let payload = request.encode();
                let ttl = request.ttl.or(policy.ttl);
                let mut message = NewMessage::new(payload, now);
                if let Some(ttl) = ttl {
                    message = message.expires_at(now + ttl);
                }
                if let Some(key) = request.key {
                    message = message.key(key);
                }
                (request, reply, message)
            })
            .collect();
        let store = &self.mailboxes.store;
        let mailbox = &self.mailbox;
        let results = join_all(
            prepared
                .iter()
                .map(|(_, _, message)| store.append(mailbox, message.clone(), limit)),
        )
        .await;
        for ((request, reply, message), result) in prepared.into_iter().zip(results) {
            let seq = match result {
                Ok(seq) => seq,
                Err(StoreError::MailboxFull { mailbox }) => {
                    let _ = reply.send(Err(ReliableSendError::MailboxFull(mailbox)));
                    continue;
                }
                Err(error) => {
                    let _ = reply.send(Err(ReliableSendError::Store(error)));
                    continue;
                }
            };
            let mut pushed = Message::new(message.payload);
            if let Some(ttl) = request.ttl {
                pushed = pushed.ttl(ttl);
            }
            if let Some(key) = message.key {
                pushed = pushed.key(key);
            }
            match self.outbox.push(pushed, now) {
                Ok(pushed_seq) if pushed_seq == seq => {}
                outcome => {
                    // The store and the outbox disagree: a bug, or a store shared with another writer. The
                    // message is stored; the next load delivers it.
                    tracing::error!(mailbox = %self.mailbox, seq, ?outcome, "mailbox out of step with the store");
                }
            }
            telemetry::accepted();
            let (outcome_tx, outcome) = oneshot::channel();
            self.tracked.insert(
                seq,
                Tracked {
                    id: request.id.clone(),
                    receipt_to: request.receipt_to.as_ref().map(|to| to.as_key().to_owned()),
                    outcome: Some(outcome_tx),
                },
            );
            let _ = reply.send(Ok(Sent {
                id: request.id,
                mailbox: self.mailbox.clone(),
                seq,
                outcome,
            }));
        }
    }

    /// Writes outcomes back to the store and reports them, then sends what the window allows.
    async fn flush(&mut self) {
        loop {
            let events: Vec<Event> = std::iter::from_fn(|| self.outbox.poll_event()).collect();
            let now = self.mailboxes.now();
            let transmits: Vec<Outgoing> =
                std::iter::from_fn(|| match self.outbox.poll_transmit(now) {
                    Some(Transmit::Message(out)) => Some(out),
                    // Link mode only; a mailbox never asks for a Sequence.
                    Some(Transmit::Sequence { .. }) | None => None,
                })
                .collect();
            if events.is_empty() && transmits.is_empty() {
                return;
            }
            self.settle(events, now).await;
            self.transmit(transmits).await;
        }
    }

    async fn settle(&mut self, events: Vec<Event>, now: Timestamp) {
        if events.is_empty() {
            return;
        }
        let store = &self.mailboxes.store;
        let mailbox = &self.mailbox;
        let keep_until = self.history.map(|history| now + history);
        let removed = join_all(events.iter().map(|event| async move {
            let result = match event {
                Event::Delivered { seq, .. } => store.ack(mailbox, *seq, keep_until).await,
                other => store.remove(mailbox, other.seq()).await,
            };
            result.unwrap_or_else(|error| {
                tracing::warn!(%mailbox, seq = event.seq(), %error, "cannot record an outcome in the store");
                false
            })
        }))
        .await;
        for (event, removed) in events.into_iter().zip(removed) {
            let seq = event.seq();
            let (outcome, payload) = match event {
                Event::Delivered {
                    attempts, latency, ..
                } => (Outcome::Delivered { attempts, latency }, None),
                Event::Sent { .. } => (Outcome::Sent, None),
                Event::Expired {
                    attempts, payload, ..
                } => (Outcome::Expired { attempts }, Some(payload)),
                Event::DeadLettered {
                    attempts,
                    reason,
                    payload,
                    ..
                } => (Outcome::DeadLettered { reason, attempts }, Some(payload)),
                Event::Conflated { .. } => (Outcome::Conflated, None),
                _ => continue,
            };
            telemetry::settled(&outcome);
            let tracked = self.tracked.remove(&seq);
            // The stored envelope when the event carries it (dead letters need the arguments), else what was
            // tracked (enough for a receipt).
            let envelope = payload
                .and_then(|payload| Envelope::decode(&payload).ok())
                .or_else(|| tracked.as_ref().map(Tracked::envelope));
            if removed && let Some(envelope) = &envelope {
                self.mailboxes.report(&self.mailbox, envelope, &outcome);
            }
            if let Some(sender) = tracked.and_then(|tracked| tracked.outcome) {
                let _ = sender.send(outcome);
            }
        }
    }

    async fn transmit(&mut self, transmits: Vec<Outgoing>) {
        if transmits.is_empty() {
            return;
        }
        let store = &self.mailboxes.store;
        let mailbox = &self.mailbox;
        // Record each attempt before sending it, so that an attempt in flight at a crash counts against the
        // policy's attempt limit. Without a limit the count decides nothing, and the write is skipped.
        let limited = self.outbox.policy().attempt_limit() < u32::MAX;
        join_all(
            transmits
                .iter()
                .filter(|out| limited && out.attempt > 0)
                .map(|out| async move {
                    if let Err(error) = store.record_attempt(mailbox, out.seq, out.attempt).await {
                        tracing::warn!(%mailbox, seq = out.seq, %error, "cannot record an attempt");
                    }
                }),
        )
        .await;
        for out in transmits {
            self.send_attempt(out).await;
        }
    }

    async fn send_attempt(&mut self, out: Outgoing) {
        let now = self.mailboxes.now();
        let Some(link) = self.current.map(|i| &self.links[i]) else {
            // The outbox only transmits while connected, and it is connected only while there is a link.
            return;
        };
        let envelope = match Envelope::decode(&out.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::error!(mailbox = %self.mailbox, seq = out.seq, %error, "undeliverable message");
                self.outbox
                    .handle_nack(out.seq, out.attempt, Nack::Reject, now);
                return;
            }
        };
        let with_id = self
            .mailboxes
            .options
            .id_argument_methods
            .contains(&envelope.target.to_ascii_lowercase());
        let arguments = match envelope.arguments(link.protocol, with_id) {
            Ok(arguments) => arguments,
            Err(error) => {
                tracing::error!(mailbox = %self.mailbox, seq = out.seq, %error, "cannot encode a message");
                self.outbox
                    .handle_nack(out.seq, out.attempt, Nack::Reject, now);
                return;
            }
        };
        let headers = Headers::new()
            .with("courier-id", envelope.id.as_str())
            .with("courier-mailbox", self.mailbox.as_key())
            .with("courier-seq", out.seq.to_string())
            .with("courier-floor", out.floor.to_string())
            .with("courier-attempt", out.attempt.to_string());
        let (reply, answer) = oneshot::channel();
        let invocation = Outbound::InvokeClient(Box::new(ClientInvocation {
            headers,
            target: envelope.target,
            arguments,
            reply,
        }));
        let connection = link.id.clone();
        if out.attempt > 0 {
            telemetry::attempt(out.attempt);
        }
        // One span per attempt, from its sending to its answer (inside the mailbox task's span).
        let span =
            tracing::debug_span!("delivery", seq = out.seq, attempt = out.attempt, %connection);
        span.in_scope(|| tracing::debug!("sent"));
        let queued = match link.outbound.try_send(invocation) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(invocation)) => {
                let send_timeout = self.hub.options.send_timeout;
                matches!(
                    tokio::time::timeout(send_timeout, link.outbound.send(invocation)).await,
                    Ok(Ok(()))
                )
            }
        };
        if !queued {
            self.disconnected(&connection);
            return;
        }
        let ack_timeout = self.outbox.policy().ack_timeout;
        let (seq, attempt) = (out.seq, out.attempt);
        self.answers.push(Box::pin(tracing::Instrument::instrument(
            async move {
                let result = match ack_timeout {
                    Some(timeout) => tokio::time::timeout(timeout, answer).await.ok(),
                    None => Some(answer.await),
                };
                match &result {
                    Some(Ok(Ok(_))) => tracing::debug!("acked"),
                    Some(Ok(Err(error))) => tracing::debug!(%error, "nacked"),
                    Some(Err(_)) => tracing::debug!("connection gone"),
                    None => tracing::debug!("no answer within the ack timeout"),
                }
                Answer {
                    seq,
                    attempt,
                    connection,
                    result,
                }
            },
            span,
        )));
    }

    fn answer(&mut self, answer: Answer) {
        let Answer {
            seq,
            attempt,
            connection,
            result,
        } = answer;
        let now = self.mailboxes.now();
        if attempt == 0 {
            // A replay from the history: already acked once.
            return;
        }
        match result {
            Some(Ok(Ok(_))) => self.outbox.handle_ack(seq, now),
            Some(Ok(Err(ClientResultError::ConnectionGone)) | Err(_)) => {
                self.disconnected(&connection);
            }
            Some(Ok(Err(_))) => {
                self.outbox.handle_nack(seq, attempt, Nack::Retry, now);
                self.rotate();
            }
            // The outbox's own ack timer fails the attempt; try another connection next.
            None => self.rotate(),
        }
    }

    /// The window for `link`: what it reorders, when the policy orders strictly.
    fn window_for(&self, link: &Link) -> usize {
        match self.outbox.policy().ordering {
            Ordering::Strict => link.window.min(self.window),
            _ => self.window,
        }
    }

    /// Makes `index` the connection attempts go to.
    fn attach(&mut self, index: usize) {
        self.current = Some(index);
        let window = self.window_for(&self.links[index]);
        self.outbox.set_window(window);
        self.outbox.handle_connected(self.mailboxes.now());
    }

    fn connected(&mut self, id: ConnectionId) {
        if self.links.iter().any(|link| link.id == id) {
            return;
        }
        let Some((protocol, outbound)) = self.hub.registry.connection(&id) else {
            return;
        };
        let window = self.hub.registry.receive_window(&id);
        self.links.push(Link {
            id,
            protocol,
            outbound,
            window,
        });
        if self.current.is_none() {
            self.attach(self.links.len() - 1);
        }
    }

    fn disconnected(&mut self, id: &ConnectionId) {
        let Some(index) = self.links.iter().position(|link| &link.id == id) else {
            return;
        };
        self.links.remove(index);
        match self.current {
            Some(current) if current == index => {
                self.current = None;
                self.outbox.handle_disconnected(self.mailboxes.now());
                if !self.links.is_empty() {
                    self.attach(self.links.len() - 1);
                }
            }
            Some(current) if current > index => self.current = Some(current - 1),
            _ => {}
        }
    }

    /// After a failed attempt, the next one goes to the identity's next connection (one may be stale).
    fn rotate(&mut self) {
        if let Some(current) = self.current
            && self.links.len() > 1
        {
            let next = (current + 1) % self.links.len();
            self.current = Some(next);
            let window = self.window_for(&self.links[next]);
            self.outbox.set_window(window);
        }
    }

    async fn hello(&mut self, connection: ConnectionId, window: usize, resume: Option<u64>) {
        self.connected(connection.clone());
        let Some(index) = self.links.iter().position(|link| link.id == connection) else {
            return;
        };
        self.links[index].window = window;
        let Some(after) = resume else {
            if self.current == Some(index) {
                let window = self.window_for(&self.links[index]);
                self.outbox.set_window(window);
            }
            return;
        };
        // A resync: this connection asks, so it gets the replay and what follows.
        self.current = Some(index);
        let window = self.window_for(&self.links[index]);
        self.outbox.set_window(window);
        let now = self.mailboxes.now();
        let mut after_history = after;
        loop {
            let history = match self
                .mailboxes
                .store
                .read_history(&self.mailbox, after_history, now, LOAD_BATCH)
                .await
            {
                Ok(history) => history,
                Err(error) => {
                    tracing::warn!(mailbox = %self.mailbox, %error, "cannot read the history for a resync");
                    break;
                }
            };
            let done = history.len() < LOAD_BATCH;
            for message in history {
                after_history = message.seq;
                self.send_attempt(Outgoing {
                    seq: message.seq,
                    attempt: 0,
                    floor: message.seq,
                    payload: message.payload,
                })
                .await;
            }
            if done {
                break;
            }
        }
        self.outbox.handle_resync(after, now);
    }
}

impl Tracked {
    /// An envelope with what a receipt needs (no method, no arguments).
    fn envelope(&self) -> Envelope {
        Envelope {
            id: self.id.to_string(),
            target: String::new(),
            arguments: Vec::new(),
            receipt_to: self.receipt_to.clone(),
        }
    }
}

async fn sleep_until(clock: Option<super::Clock>, deadline: Option<Timestamp>) {
    match (clock, deadline) {
        (Some(clock), Some(deadline)) => tokio::time::sleep_until(clock.instant(deadline)).await,
        _ => std::future::pending().await,
    }
}
