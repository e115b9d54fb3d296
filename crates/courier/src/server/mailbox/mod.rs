//! The hub's mailboxes: one task per loaded mailbox drives its [`Outbox`](courier_delivery::Outbox) against the
//! store and the identity's connections (see [`driver`]).
//!
//! A mailbox is loaded while it has something to do: when a send targets it, when a connection of its identity
//! comes up and the store holds pending messages for it, or when a client asks to resync it. A loaded mailbox with
//! nothing pending unloads itself; the store keeps everything that matters, so loading again is only a read.
//! Expiry of mailboxes nobody loaded is the sweeper's job ([`sweep`]).
//!
//! Every outcome is reported once, by whoever removed the message from the store (the store's `ack`/`remove`
//! return whether the message was still pending): a receipt to the sender, a dead letter to the sink.

mod driver;
pub(crate) mod envelope;
mod idempotency;
mod telemetry;

pub(crate) use idempotency::KEY_HEADER;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use courier_delivery::{Policy, Timestamp};
use courier_protocol::Protocol;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use self::driver::Command;
use self::envelope::Envelope;
use crate::server::method::Arguments;
use crate::server::reliable::{DeadLetter, MessageId, Outcome, ReliableOptions, Sent};
use crate::server::tasks::Tasks;
use crate::server::{ConnectionId, HubInner, Identity, ReliableSendError};
use crate::store::{MailboxId, Store};

/// The hub method a Courier client invokes after every handshake (docs/mailboxes.md, "The wire").
pub(crate) const HELLO_METHOD: &str = "courier.hello";

/// The most a connection may say it reorders: bounds what a mailbox puts in flight to one connection.
const MAX_WINDOW: usize = 1024;

/// How many commands wait for a mailbox task before senders wait for room.
const COMMAND_QUEUE: usize = 1024;

/// How many expired messages one sweep removes before sweeping again at once.
const SWEEP_BATCH: usize = 1000;

/// A reliable message on its way into a mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) id: MessageId,
    pub(crate) method: String,
    /// Each argument as JSON text.
    pub(crate) arguments: Vec<String>,
    pub(crate) receipt_to: Option<MailboxId>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) key: Option<u64>,
}

impl Request {
    pub(crate) fn new(
        id: MessageId,
        method: &str,
        arguments: &impl Arguments,
        receipt_to: Option<MailboxId>,
    ) -> Result<Self, courier_protocol::ProtocolError> {
        Ok(Self {
            id,
            method: method.to_owned(),
            arguments: Envelope::json_arguments(&arguments.encode(Protocol::Json)?),
            receipt_to,
            ttl: None,
            key: None,
        })
    }

    pub(crate) fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    pub(crate) fn key(mut self, key: Option<u64>) -> Self {
        self.key = key;
        self
    }

    /// The stored form of the message.
    fn encode(&self) -> bytes::Bytes {
        Envelope::encode_parts(
            self.id.as_str(),
            &self.method,
            &self.arguments,
            self.receipt_to.as_ref().map(MailboxId::as_key),
        )
    }
}

/// What a Courier client says after its handshake (`courier.hello`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Hello {
    /// How many messages of one mailbox the client reorders.
    pub(crate) window: usize,
    /// Per mailbox key, the last sequence number the client handed to its application in order.
    pub(crate) resume: HashMap<String, u64>,
}

/// Milliseconds since the Unix epoch, advancing with tokio's clock (so paused-time tests work) from a wall-clock
/// reading taken once: store times survive a restart, and a wall-clock jump while running does not disturb timers.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: Timestamp,
    started: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            origin: Timestamp::from_millis(
                u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            ),
            started: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        self.origin + self.started.elapsed()
    }

    /// The tokio instant at which `at` is reached.
    fn instant(&self, at: Timestamp) -> tokio::time::Instant {
        let after = Duration::from_millis(at.as_millis().saturating_sub(self.origin.as_millis()));
        self.started
            .checked_add(after)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365))
    }
}

/// Every mailbox of a hub that has a store.
pub(crate) struct Mailboxes {
    store: Arc<dyn Store>,
    options: ReliableOptions,
    /// Client methods with their own policy: lower-case name → (name as declared, policy).
    methods: HashMap<String, (String, Policy)>,
    drivers: Mutex<HashMap<MailboxId, mpsc::Sender<Command>>>,
    dead_letters: broadcast::Sender<DeadLetter>,
    hub: Weak<HubInner>,
    clock: OnceLock<Clock>,
    /// The expiry sweeper, once started.
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Calls with an idempotency key whose first run is still going.
    running: idempotency::Running,
    /// Set by [`shutdown`](Self::shutdown): mailbox tasks end, and no new one starts.
    stopping: watch::Sender<bool>,
    /// The hub's tasks: mailbox tasks and their helpers are counted there.
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Mailboxes {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        options: ReliableOptions,
        methods: HashMap<String, (String, Policy)>,
        hub: Weak<HubInner>,
        tasks: Arc<Tasks>,
    ) -> Self {
        let (dead_letters, _) = broadcast::channel(options.dead_letter_capacity.max(1));
        Self {
            store,
            options,
            methods,
            drivers: Mutex::new(HashMap::new()),
            dead_letters,
            hub,
            clock: OnceLock::new(),
            sweeper: Mutex::new(None),
            running: idempotency::Running::default(),
            stopping: watch::Sender::new(false),
            tasks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<MailboxId, mpsc::Sender<Command>>> {
        self.drivers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Timestamp {
        self.clock.get_or_init(Clock::new).now()
    }

    pub(crate) fn dead_letters(&self) -> broadcast::Receiver<DeadLetter> {
        self.dead_letters.subscribe()
    }

    /// The policy of `mailbox` (its method's, or the default).
    fn policy(&self, mailbox: &MailboxId) -> Policy {
        mailbox
            .method()
            .and_then(|method| self.methods.get(&method.to_ascii_lowercase()))
            .map_or_else(|| self.options.default_policy, |(_, policy)| *policy)
    }

    /// The mailbox of `identity` that messages for client method `method` go to.
    fn mailbox_for(&self, identity: &MailboxId, method: &str) -> MailboxId {
        match self.methods.get(&method.to_ascii_lowercase()) {
            Some((declared, _)) => identity.for_method(declared),
            None => identity.clone(),
        }
    }

    /// Every mailbox of an identity: its default one and one per client method with a policy.
    fn mailboxes_of(&self, identity: &MailboxId) -> Vec<MailboxId> {
        std::iter::once(identity.clone())
            .chain(
                self.methods
                    .values()
                    .map(|(declared, _)| identity.for_method(declared)),
            )
            .collect()
    }

    /// The identity mailboxes a connection reads.
    fn identities(identity: &Identity) -> impl Iterator<Item = MailboxId> {
        identity
            .user_id()
            .map(MailboxId::user)
            .into_iter()
            .chain(identity.client_id().map(MailboxId::client))
    }

    /// The running task of `mailbox`, started if need be; `None` once the hub is shutting down.
    fn driver(self: &Arc<Self>, mailbox: &MailboxId) -> Option<mpsc::Sender<Command>> {
        if *self.stopping.borrow() {
            return None;
        }
        self.start_sweeper();
        let mut drivers = self.lock();
        if let Some(driver) = drivers.get(mailbox)
            && !driver.is_closed()
        {
            return Some(driver.clone());
        }
        let (sender, commands) = mpsc::channel(COMMAND_QUEUE);
        drivers.insert(mailbox.clone(), sender.clone());
        drop(drivers);
        let span = tracing::debug_span!("mailbox", key = %mailbox);
        self.tasks.spawn(tracing::Instrument::instrument(
            driver::run(
                self.clone(),
                mailbox.clone(),
                commands,
                self.stopping.subscribe(),
            ),
            span,
        ));
        Some(sender)
    }

    /// Called by a mailbox task that found itself idle: it leaves the map and its queue closes. Commands that a
    /// sender queued between taking the task's handle and the close are still in the queue: the caller forwards
    /// them ([`forward`](Self::forward)) to the mailbox's next task.
    fn unload(&self, mailbox: &MailboxId, commands: &mut mpsc::Receiver<Command>) {
        let mut drivers = self.lock();
        drivers.remove(mailbox);
        commands.close();
    }

    /// Hands the commands left in an unloaded task's queue to the mailbox's next task (started for them).
    async fn forward(
        self: &Arc<Self>,
        mailbox: &MailboxId,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        while let Some(command) = commands.recv().await {
            // Refused only while shutting down: then the command is dropped, and its sender told so.
            let _ = self.command(mailbox, command).await;
        }
    }

    /// Called by a mailbox task that ends for another reason (shutdown, a failed load).
    fn remove(&self, mailbox: &MailboxId) {
        self.lock().remove(mailbox);
    }

    /// Tells every mailbox task to end (their state is in the store) and waits for the sweeper; the hub then waits
    /// for its tasks ([`Tasks::ended`]). Sends fail from now on.
    pub(crate) async fn shutdown(&self) {
        self.stopping.send_replace(true);
        let sweeper = self
            .sweeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sweeper) = sweeper {
            // It holds the store while it sweeps.
            let _ = sweeper.await;
        }
    }

    /// Sends a command to `mailbox`'s task, loading it if need be (again, if it unloaded meanwhile). Gives the
    /// command back once the hub is shutting down.
    async fn command(
        self: &Arc<Self>,
        mailbox: &MailboxId,
        mut command: Command,
    ) -> Result<(), Command> {
        loop {
            let Some(driver) = self.driver(mailbox) else {
                return Err(command);
            };
            match driver.send(command).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => command = back,
            }
        }
    }

    /// Sends to an already loaded mailbox only.
    fn notify_loaded(&self, mailbox: &MailboxId, command: Command) {
        let Some(driver) = self.lock().get(mailbox).cloned() else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(command)) = driver.try_send(command) {
            tokio::spawn(async move {
                let _ = driver.send(command).await;
            });
        }
    }

    pub(crate) async fn send(
        self: &Arc<Self>,
        identity: &MailboxId,
        request: Request,
    ) -> Result<Sent, ReliableSendError> {
        let mailbox = self.mailbox_for(identity, &request.method);
        let (reply, accepted) = oneshot::channel();
        self.command(&mailbox, Command::Send { request, reply })
            .await
            .map_err(|_| ReliableSendError::ShuttingDown)?;
        accepted
            .await
            .unwrap_or(Err(ReliableSendError::ShuttingDown))
    }

    pub(crate) async fn pending(
        self: &Arc<Self>,
        identity: &MailboxId,
    ) -> Result<usize, ReliableSendError> {
        let mut total = 0;
        for mailbox in self.mailboxes_of(identity) {
            let (reply, count) = oneshot::channel();
            self.command(&mailbox, Command::Pending(reply))
                .await
                .map_err(|_| ReliableSendError::ShuttingDown)?;
            total += count.await.map_err(|_| ReliableSendError::ShuttingDown)??;
        }
        Ok(total)
    }

    /// A connection of `identity` completed its handshake: loaded mailboxes start delivering to it, and
    /// mailboxes the store holds pending messages for are loaded.
    pub(crate) fn connected(self: &Arc<Self>, identity: &Identity, connection: &ConnectionId) {
        // After a restart, expired messages of mailboxes nobody loads must still be found (and their receipts
        // sent), so the sweeper starts with the first connection at the latest.
        self.start_sweeper();
        let mut unloaded = Vec::new();
        for identity in Self::identities(identity) {
            for mailbox in self.mailboxes_of(&identity) {
                let loaded = self.lock().contains_key(&mailbox);
                if loaded {
                    self.notify_loaded(&mailbox, Command::Connected(connection.clone()));
                } else {
                    unloaded.push(mailbox);
                }
            }
        }
        if unloaded.is_empty() {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            for mailbox in unloaded {
                match this.store.read_pending(&mailbox, 0, 1).await {
                    // A task started now finds the connection in the registry itself.
                    Ok(pending) if !pending.is_empty() => drop(this.driver(&mailbox)),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%mailbox, %error, "cannot read the mailbox of a connecting client");
                    }
                }
            }
        });
    }

    /// A connection of `identity` ended.
    pub(crate) fn disconnected(&self, identity: &Identity, connection: &ConnectionId) {
        for identity in Self::identities(identity) {
            for mailbox in self.mailboxes_of(&identity) {
                self.notify_loaded(&mailbox, Command::Disconnected(connection.clone()));
            }
        }
    }

    /// A Courier client's hello: its receive window, and where to resume each mailbox it names. Mailboxes that
    /// are not the connection's own identity's are ignored.
    pub(crate) async fn hello(
        self: &Arc<Self>,
        identity: &Identity,
        connection: &ConnectionId,
        hello: Hello,
    ) {
        let window = hello.window.clamp(1, MAX_WINDOW);
        // Kept with the connection, for mailboxes that load later.
        if let Some(hub) = self.hub.upgrade() {
            hub.registry.set_receive_window(connection, window);
        }
        for identity in Self::identities(identity) {
            for mailbox in self.mailboxes_of(&identity) {
                let resume = hello.resume.get(mailbox.as_key()).copied();
                let command = Command::Hello {
                    connection: connection.clone(),
                    window,
                    resume,
                };
                if resume.is_some() {
                    // Refused only while shutting down, when nothing is delivered anyway.
                    let _ = self.command(&mailbox, command).await;
                } else {
                    self.notify_loaded(&mailbox, command);
                }
            }
        }
    }

    /// Reports an outcome once: a receipt to whoever asked for one, a dead letter to the sink.
    fn report(self: &Arc<Self>, mailbox: &MailboxId, envelope: &Envelope, outcome: &Outcome) {
        tracing::debug!(%mailbox, id = %envelope.id, outcome = outcome.status(), "reliable message settled");
        if let Outcome::DeadLettered { reason, attempts } = outcome {
            let _ = self.dead_letters.send(DeadLetter {
                id: envelope.id.as_str().into(),
                mailbox: mailbox.clone(),
                method: envelope.target.clone(),
                arguments: envelope.arguments.clone(),
                reason: *reason,
                attempts: *attempts,
            });
        }
        let Some(to) = envelope.receipt_to.as_deref().and_then(MailboxId::from_key) else {
            return;
        };
        let request = Request::new(
            MessageId::generate(),
            &self.options.receipt_method,
            &(envelope.id.as_str(), outcome.status()),
            None,
        );
        let this = self.clone();
        // A task of its own: the receipt's mailbox may be this one, or one whose task waits on this one.
        self.tasks.spawn(async move {
            let result = match request {
                Ok(request) => this.send(&to, request).await.map(drop),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = result {
                tracing::warn!(mailbox = %to, %error, "cannot send a receipt");
            }
        });
    }

    fn start_sweeper(self: &Arc<Self>) {
        let mut sweeper = self.sweeper.lock().unwrap_or_else(PoisonError::into_inner);
        if sweeper.is_none() && !*self.stopping.borrow() {
            *sweeper = Some(tokio::spawn(sweep(
                Arc::downgrade(self),
                self.options.expiry_sweep_interval,
                self.stopping.subscribe(),
            )));
        }
    }
}

/// Removes expired messages from the store every `interval` while the hub lives, and reports those no mailbox
/// task reported (a loaded mailbox's own timer usually gets there first; the store says who removed it).
async fn sweep(
    mailboxes: Weak<Mailboxes>,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        let Some(mailboxes) = mailboxes.upgrade() else {
            return;
        };
        loop {
            let expired = match mailboxes.store.expire(mailboxes.now(), SWEEP_BATCH).await {
                Ok(expired) => expired,
                Err(error) => {
                    tracing::warn!(%error, "cannot sweep the store for expired messages");
                    break;
                }
            };
            for expired in &expired {
                match Envelope::decode(&expired.message.payload) {
                    Ok(envelope) => mailboxes.report(
                        &expired.mailbox,
                        &envelope,
                        &Outcome::Expired {
                            attempts: expired.message.attempts,
                        },
                    ),
                    Err(error) => tracing::warn!(mailbox = %expired.mailbox, %error, "expired"),
                }
            }
            if expired.len() < SWEEP_BATCH {
                break;
            }
        }
    }
}

/// A seed for an outbox's backoff jitter.
fn seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
