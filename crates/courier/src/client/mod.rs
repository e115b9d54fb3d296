//! The hub client: a [`HubConnection`] to a SignalR hub (a Courier server or ASP.NET Core) over any
//! [`Transport`](crate::Transport), opened by a [`Connector`].
//!
//! It follows the official JavaScript client (HUB-PROTOCOL.md §3, §5.3, §7–§9): the handshake, then a Ping;
//! client methods by name (ignoring ASCII case) that may answer client-result invocations; `invoke`, `send`,
//! streams both ways; keep-alive pings and the server timeout; automatic reconnect with a [`ReconnectPolicy`]
//! (off unless asked); and stateful reconnect when the connector grants it.
//!
//! ```
//! use courier::client::{HubConnection, InProcessConnector};
//! use courier::server::{Context, Hub, HubError};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let hub = Hub::builder()
//!     .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
//!     .build();
//! let connection = HubConnection::builder(InProcessConnector::new(hub))
//!     .on("Ask", |(question,): (String,)| async move { Ok::<_, String>(format!("{question}? yes")) })
//!     .start()
//!     .await?;
//! let sum: i64 = connection.invoke("add", (40, 2)).await?;
//! assert_eq!(sum, 42);
//! connection.stop().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Events
//!
//! [`HubConnection::events`] subscribes to [`ConnectionEvent`]s (reconnecting, reconnected, closed) on a
//! broadcast channel holding the last [`EVENT_CAPACITY`] events: a subscriber that falls further behind skips the
//! oldest ones (it reads `Lagged`). [`HubConnection::state`] and [`HubConnection::closed`] give the current state
//! and the final error without subscribing.
//!
//! # Bounds
//!
//! One task drives each connection and owns its state; every queue into it is bounded, and what happens when one
//! is full is chosen:
//!
//! - calls wait for room in a queue of 64 ([`invoke`](HubConnection::invoke), [`send`](HubConnection::send),
//!   [`stream`](HubConnection::stream) return once it took them); upload streams are read only as fast as they
//!   are sent;
//! - a server-to-client stream buffers 16 items; while a slow reader leaves them there, the connection stops
//!   reading from the server (the server timeout is suspended meanwhile);
//! - at most [`maximum_parallel_handlers`](HubConnectionBuilder::maximum_parallel_handlers) client-method calls
//!   run at once; beyond that, reading pauses too;
//! - a message from the server larger than
//!   [`maximum_receive_message_size`](HubConnectionBuilder::maximum_receive_message_size) closes the connection;
//! - with stateful reconnect, sent messages are kept until acknowledged up to
//!   [`stateful_reconnect_buffer_size`](HubConnectionBuilder::stateful_reconnect_buffer_size) bytes; calls wait
//!   while it is full;
//! - per mailbox, at most [`receive_window`](HubConnectionBuilder::receive_window) reliable messages are held (a
//!   message further ahead is nacked), in at most
//!   [`maximum_mailboxes`](HubConnectionBuilder::maximum_mailboxes) mailboxes (a message for one more is nacked);
//! - at most [`reliable_outbox_capacity`](HubConnectionBuilder::reliable_outbox_capacity) reliable calls wait for
//!   their answer; one more fails at once with [`InvokeError::OutboxFull`].
//!
//! # Reliable messages from a Courier server
//!
//! A Courier server delivers a hub's reliable messages (those sent to mailboxes, docs/delivery.md) as client-result
//! invocations with `courier-*` headers: the mailbox, the message's sequence number in it, and a floor below which
//! everything is settled at the server. This client hands them to the client method registered with
//! [`on`](HubConnectionBuilder::on) exactly once and in sequence order per mailbox, one at a time:
//!
//! - a message that arrives early is held until the ones before it were handed over, or until a floor says they
//!   will not come; it is answered when its handler returns;
//! - a message already handed over (a resend after a lost answer, or after a reconnect) is not handed over again:
//!   it is answered at once with `null`;
//! - the handler's `Ok` value is the answer (the ack); its error is an error Completion (a nack), and the server
//!   sends the message again later: it is then handed over again, before the messages behind it;
//! - a resend that arrives while the handler still runs takes over the answer (the earlier attempt is answered with
//!   an error, which the server ignores).
//!
//! The guarantee holds within the process: the mailboxes' state lives as long as the [`HubConnection`], across
//! reconnects. After every handshake the client sends a `courier.hello` with its receive window and, per mailbox,
//! the last message handed over in order, from which the server resumes. Invocations without `courier-*` headers
//! are handled as before, and a stock SignalR server ignores the hello.
//!
//! # Reliable calls
//!
//! [`HubConnection::invoke_reliable`] sends a call with an idempotency key and sends it again, with the same key,
//! after a reconnect or an ack timeout, until an answer arrives; a Courier server with a store runs it once. See
//! [`reliable_method_policy`](HubConnectionBuilder::reliable_method_policy) for retries, backoff and expiry.

mod args;
mod connector;
mod driver;
mod error;
mod outbox;
mod receiver;
mod reconnect;
mod stream;

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use courier_protocol::{ByteString, MessageReader, Payload, Protocol};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use args::{Args, HandlerArgs};
pub use connector::{Connector, ConnectorError, InProcessConnector, Opened, Reattach};
pub use error::{InvokeError, StartError};
pub use reconnect::{ReconnectDelays, ReconnectPolicy, RetryContext};
pub use stream::HubStream;

use driver::{Command, Reply};
use outbox::{OutboxConfig, ReliableCall, Slot};

pub use courier_delivery::{Backoff, Policy};

/// How many [`ConnectionEvent`]s a subscriber may fall behind before it skips the oldest.
pub const EVENT_CAPACITY: usize = 16;

/// How many calls may wait for the connection's task before a caller waits for room.
const COMMAND_QUEUE: usize = 64;

/// How many items of one server-to-client stream are buffered for a slow reader.
const STREAM_BUFFER: usize = 16;

/// The default [`receive_window`](HubConnectionBuilder::receive_window).
pub const DEFAULT_RECEIVE_WINDOW: u32 = 64;

/// The default [`maximum_mailboxes`](HubConnectionBuilder::maximum_mailboxes).
pub const DEFAULT_MAXIMUM_MAILBOXES: usize = 1024;

/// The default [`reliable_outbox_capacity`](HubConnectionBuilder::reliable_outbox_capacity).
pub const DEFAULT_RELIABLE_OUTBOX_CAPACITY: usize = 1024;

/// A client method: binds the arguments, runs, and answers with an encoded result or an error text.
type Handler = Arc<
    dyn Fn(Protocol, &[Payload]) -> Result<BoxFuture<'static, Result<Payload, String>>, String>
        + Send
        + Sync,
>;

/// What happened to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection was lost and automatic reconnect begins; the error that ended it, if any.
    Reconnecting {
        /// Why the connection was lost.
        error: Option<String>,
    },
    /// A new connection is up after a reconnect.
    Reconnected {
        /// The new connection's id, if the connector knows it.
        connection_id: Option<String>,
    },
    /// The connection has closed for good.
    Closed {
        /// Why, or `None` after [`HubConnection::stop`] or a clean close.
        error: Option<String>,
    },
}

/// The state of a [`HubConnection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected: calls go out at once.
    Connected,
    /// Lost and reconnecting: calls wait for the new connection.
    Reconnecting,
    /// Closed for good: calls fail with [`InvokeError::NotConnected`].
    Disconnected,
}

/// The state and connection id, shared by the driver with every handle.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    state: ConnectionState,
    connection_id: Option<String>,
    error: Option<String>,
}

/// The options of a connection (see the setters of [`HubConnectionBuilder`] for their defaults).
#[derive(Clone)]
pub(crate) struct Config {
    protocol: Protocol,
    keep_alive_interval: Duration,
    server_timeout: Duration,
    handshake_timeout: Duration,
    maximum_receive_message_size: Option<usize>,
    stateful_reconnect: bool,
    stateful_reconnect_buffer_size: usize,
    maximum_parallel_handlers: usize,
    reconnect: Option<Arc<dyn ReconnectPolicy>>,
    handlers: Arc<HashMap<String, Handler>>,
    receive_window: u32,
    maximum_mailboxes: usize,
    outbox: OutboxConfig,
}

/// Builds and starts a [`HubConnection`].
pub struct HubConnectionBuilder {
    connector: Arc<dyn Connector>,
    config: Config,
    handlers: HashMap<String, Handler>,
    call_policies: HashMap<String, Policy>,
}

impl std::fmt::Debug for HubConnectionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut handlers: Vec<_> = self.handlers.keys().collect();
        handlers.sort();
        f.debug_struct("HubConnectionBuilder")
            .field("protocol", &self.config.protocol)
            .field("handlers", &handlers)
            .finish_non_exhaustive()
    }
}

impl HubConnectionBuilder {
    fn new(connector: impl Connector) -> Self {
        Self {
            connector: Arc::new(connector),
            config: Config {
                protocol: Protocol::Json,
                keep_alive_interval: Duration::from_secs(15),
                server_timeout: Duration::from_secs(30),
                handshake_timeout: Duration::from_secs(15),
                maximum_receive_message_size: Some(1024 * 1024),
                stateful_reconnect: false,
                stateful_reconnect_buffer_size: Policy::LINK_BUFFER_BYTES,
                maximum_parallel_handlers: 64,
                reconnect: None,
                handlers: Arc::default(),
                receive_window: DEFAULT_RECEIVE_WINDOW,
                maximum_mailboxes: DEFAULT_MAXIMUM_MAILBOXES,
                outbox: OutboxConfig {
                    capacity: DEFAULT_RELIABLE_OUTBOX_CAPACITY,
                    default_policy: default_call_policy(),
                    policies: Arc::default(),
                },
            },
            handlers: HashMap::new(),
            call_policies: HashMap::new(),
        }
    }

    /// The hub protocol. Default: JSON.
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = protocol;
        self
    }

    /// Registers a client method, called when the server invokes `name` (ignoring ASCII case; a later handler for
    /// the same name replaces an earlier one).
    ///
    /// Its arguments are a tuple of `DeserializeOwned` values ([`HandlerArgs`]). When the server asks for a result
    /// (a client-result invocation, with an invocation id), the client answers with a Completion carrying the
    /// returned value, or the error's text; arguments that do not bind answer with the binding error. Without a
    /// handler, such an invocation is answered `Client didn't provide a result.`.
    ///
    /// The handler's future is polled first on the connection's own task (as the JavaScript client calls a handler
    /// inline): one that finishes at once is answered in the same frame as the others, and one that waits goes on
    /// a task of its own. So a handler must not block its thread: that holds up the whole connection.
    #[must_use]
    pub fn on<A, R, E, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        A: HandlerArgs,
        R: Serialize + Send + 'static,
        E: Display + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |protocol, arguments| {
            let call = handler(A::bind(arguments)?);
            Ok(async move {
                match call.await {
                    Ok(value) => Payload::from_value(protocol, &value).map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                }
            }
            .boxed())
        });
        self.handlers.insert(name.to_ascii_lowercase(), handler);
        self
    }

    /// Reconnects automatically with [`ReconnectDelays::default`] (0, 2, 10 and 30 seconds, then stop), as the
    /// JavaScript client's `withAutomaticReconnect()`. Default: no automatic reconnect.
    #[must_use]
    pub fn automatic_reconnect(self) -> Self {
        self.reconnect_policy(ReconnectDelays::default())
    }

    /// Reconnects automatically with this policy. Default: no automatic reconnect.
    #[must_use]
    pub fn reconnect_policy(mut self, policy: impl ReconnectPolicy) -> Self {
        self.config.reconnect = Some(Arc::new(policy));
        self
    }

    /// Asks the connector for stateful reconnect (HUB-PROTOCOL.md §7). When granted, the client speaks protocol
    /// version 2 and, when the transport breaks, re-opens the same connection once, with nothing lost. Default:
    /// false.
    #[must_use]
    pub fn stateful_reconnect(mut self, ask: bool) -> Self {
        self.config.stateful_reconnect = ask;
        self
    }

    /// How many bytes of sent messages stateful reconnect keeps until the server acknowledges them; while the
    /// buffer is full, calls wait. Default: 100 000 (the JavaScript client's).
    #[must_use]
    pub fn stateful_reconnect_buffer_size(mut self, bytes: usize) -> Self {
        self.config.stateful_reconnect_buffer_size = bytes;
        self
    }

    /// A Ping is sent when nothing else was sent for this long. Default: 15 s.
    #[must_use]
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.config.keep_alive_interval = interval;
        self
    }

    /// The connection closes with `Server timeout elapsed without receiving a message from the server.` when
    /// nothing is received for this long. Default: 30 s (twice the server's keep-alive interval).
    #[must_use]
    pub fn server_timeout(mut self, timeout: Duration) -> Self {
        self.config.server_timeout = timeout;
        self
    }

    /// How long the server may take to answer the handshake. Default: 15 s.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// The largest message accepted from the server, framing included; a larger one closes the connection.
    /// `None`: no limit. Default: 1 MiB.
    #[must_use]
    pub fn maximum_receive_message_size(mut self, bytes: Option<usize>) -> Self {
        self.config.maximum_receive_message_size = bytes;
        self
    }

    /// How many client-method calls may run at once; beyond that the connection stops reading from the server
    /// until one finishes. Default: 64.
    #[must_use]
    pub fn maximum_parallel_handlers(mut self, count: usize) -> Self {
        self.config.maximum_parallel_handlers = count.max(1);
        self
    }

    /// How many messages of one mailbox this client holds above the last one handed over in order (early arrivals
    /// waiting for their turn), told to the server in the `courier.hello` so that it sends no more than this many
    /// ahead; a message further ahead is answered with an error (a nack) and sent again later. At least 1.
    /// Default: [`DEFAULT_RECEIVE_WINDOW`] (64). See [reliable messages](self#reliable-messages-from-a-courier-server).
    #[must_use]
    pub fn receive_window(mut self, window: u32) -> Self {
        self.config.receive_window = window.max(1);
        self
    }

    /// How many mailboxes this client tracks; a reliable message for one more is answered with an error (a nack).
    /// A client usually sees a few (its identity's default mailbox and one per client method with its own delivery
    /// policy). Default: [`DEFAULT_MAXIMUM_MAILBOXES`] (1,024).
    #[must_use]
    pub fn maximum_mailboxes(mut self, count: usize) -> Self {
        self.config.maximum_mailboxes = count;
        self
    }

    /// How many [reliable calls](HubConnection::invoke_reliable) may wait for their answer at once; one more fails
    /// at once with [`InvokeError::OutboxFull`]. At least 1. Default: [`DEFAULT_RELIABLE_OUTBOX_CAPACITY`] (1,024).
    #[must_use]
    pub fn reliable_outbox_capacity(mut self, calls: usize) -> Self {
        self.config.outbox.capacity = calls.max(1);
        self
    }

    /// The delivery policy of [reliable calls](HubConnection::invoke_reliable) to hub methods without a policy of
    /// their own (see [`reliable_method_policy`](Self::reliable_method_policy) for what applies).
    ///
    /// Default: [`Policy::default`] with unordered delivery and no limit on calls in flight (calls do not wait for
    /// each other), and no ack timeout (an attempt fails when the connection drops: a hub method may take its
    /// time). So a call is resent on every reconnect, without an attempt limit, for up to 24 hours.
    #[must_use]
    pub fn reliable_policy(mut self, policy: Policy) -> Self {
        self.config.outbox.default_policy = policy;
        self
    }

    /// The delivery policy of [reliable calls](HubConnection::invoke_reliable) to the hub method `method`
    /// (matched ignoring ASCII case, as the server matches it).
    ///
    /// What applies: `ack_timeout` (an attempt without a Completion after it has failed: the call is sent again
    /// with the same key), `backoff` (the delay before that), `max_attempts` and `resend` (then
    /// [`InvokeError::AttemptsExhausted`]), `ttl` ([`InvokeError::Expired`]), `capacity.messages` and
    /// `capacity.overflow` (this method's calls waiting at once; `Reject` fails the new call with
    /// [`InvokeError::OutboxFull`], the other overflows fail the one dropped with it), and `ordering` with `window`
    /// (strict with window 1 sends this method's calls one at a time, in order). `guarantee` is always
    /// at-least-once (the server runs a key once), and `capacity.bytes` and `history` do not apply. A new
    /// connection resends pending calls at once, without waiting out their backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// use courier::client::{HubConnection, InProcessConnector, Policy};
    /// # let hub = courier::server::Hub::builder().build();
    ///
    /// let builder = HubConnection::builder(InProcessConnector::new(hub)).reliable_method_policy(
    ///     "PlaceOrder",
    ///     Policy::default().ack_timeout(Some(Duration::from_secs(10))).max_attempts(Some(5)),
    /// );
    /// # drop(builder);
    /// ```
    #[must_use]
    pub fn reliable_method_policy(mut self, method: &str, policy: Policy) -> Self {
        self.call_policies
            .insert(method.to_ascii_lowercase(), policy);
        self
    }

    /// Connects, runs the handshake, and spawns the task that drives the connection on the current tokio runtime.
    pub async fn start(mut self) -> Result<HubConnection, StartError> {
        self.config.handlers = Arc::new(self.handlers);
        self.config.outbox.policies = Arc::new(self.call_policies);
        let live = driver::open(&self.config, self.connector.as_ref()).await?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (cancels_tx, cancels) = mpsc::unbounded_channel();
        // Bounded by the outbox's slots.
        let (reliable_tx, reliable) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let next_id = Arc::new(AtomicU64::new(0));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (status_tx, status) = watch::channel(Status {
            state: ConnectionState::Connected,
            connection_id: live.connection_id.clone(),
            error: None,
        });
        let driver = driver::Driver::new(
            self.config.clone(),
            self.connector,
            driver::Channels {
                commands,
                cancels,
                reliable,
                next_id: next_id.clone(),
                stop,
                events: events.clone(),
                status: status_tx,
            },
        );
        tokio::spawn(driver.run(live));
        Ok(HubConnection {
            inner: Arc::new(Inner {
                protocol: self.config.protocol,
                commands: commands_tx,
                cancels: cancels_tx,
                reliable: reliable_tx,
                outbox_capacity: self.config.outbox.capacity,
                outbox_taken: Arc::default(),
                key_prefix: key_prefix(),
                stop: stop_tx,
                events,
                status,
                next_id,
            }),
        })
    }
}

/// A call's encoded arguments and its upload streams with their ids.
struct Prepared {
    arguments: Vec<Payload>,
    uploads: Vec<(ByteString, args::Upload)>,
}

struct Inner {
    protocol: Protocol,
    commands: mpsc::Sender<Command>,
    cancels: mpsc::UnboundedSender<ByteString>,
    reliable: mpsc::UnboundedSender<ReliableCall>,
    outbox_capacity: usize,
    /// Places taken in the reliable outbox.
    outbox_taken: Arc<AtomicUsize>,
    /// Random, so that idempotency keys differ across processes and connections.
    key_prefix: String,
    stop: watch::Sender<bool>,
    events: broadcast::Sender<ConnectionEvent>,
    status: watch::Receiver<Status>,
    /// Invocation and upload stream ids: a decimal counter from "0", as the JavaScript client (shared with the
    /// driver, which numbers the attempts of reliable calls).
    next_id: Arc<AtomicU64>,
}

/// A connection to a hub. Cheap to clone (all clones are the same connection); when the last clone is dropped
/// the connection stops.
///
/// Calls made while the connection reconnects wait for the new connection; calls made after it closed for good
/// fail with [`InvokeError::NotConnected`].
#[derive(Clone)]
pub struct HubConnection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HubConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConnection")
            .field("protocol", &self.inner.protocol)
            .field("status", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

impl HubConnection {
    /// Starts building a connection that opens its transports with `connector`.
    pub fn builder(connector: impl Connector) -> HubConnectionBuilder {
        HubConnectionBuilder::new(connector)
    }

    /// The hub protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.inner.protocol
    }

    /// The current connection's id, if the connector knows it (it changes on an automatic reconnect, not on a
    /// stateful re-attach).
    pub fn connection_id(&self) -> Option<String> {
        self.inner.status.borrow().connection_id.clone()
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.inner.status.borrow().state
    }

    /// Subscribes to the connection's events from now on (see the [module docs](self#events)).
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until the connection has closed for good; the error that closed it, if any.
    pub async fn closed(&self) -> Option<String> {
        let mut status = self.inner.status.clone();
        let status = status
            .wait_for(|status| status.state == ConnectionState::Disconnected)
            .await;
        status.ok().and_then(|status| status.error.clone())
    }

    /// Closes the connection: sends a Close message, closes the transport, and fails calls still waiting with
    /// [`InvokeError::ConnectionClosed`]. Returns once the connection has closed.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let _ = self.closed().await;
    }

    fn next_id(&self) -> ByteString {
        self.inner
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
            .into()
    }

    /// Encodes the arguments and gives the upload streams their ids (before the invocation takes its own, as in
    /// the JavaScript client).
    fn prepare(&self, args: impl Into<Args>) -> Result<Prepared, InvokeError> {
        let (arguments, uploads) = args.into().encode(self.inner.protocol)?;
        let uploads = uploads
            .into_iter()
            .map(|upload| (self.next_id(), upload))
            .collect();
        Ok(Prepared { arguments, uploads })
    }

    async fn submit(
        &self,
        target: &str,
        prepared: Prepared,
        id: Option<ByteString>,
        reply: Reply,
    ) -> Result<(), InvokeError> {
        let command = Command::Call {
            id,
            target: target.into(),
            arguments: prepared.arguments,
            uploads: prepared.uploads,
            reply,
        };
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| InvokeError::NotConnected)
    }

    /// Calls a hub method and waits for its result, bound to `T` (`()` for a method with no result).
    ///
    /// An error Completion is [`InvokeError::Hub`] with the server's text (e.g. `Failed to invoke 'x' due to an
    /// error on the server. HubException: Method does not exist.`).
    pub async fn invoke<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Into<Args>,
    ) -> Result<T, InvokeError> {
        let prepared = self.prepare(args)?;
        let (reply, result) = oneshot::channel();
        let id = self.next_id();
        self.submit(method, prepared, Some(id), Reply::Result(reply))
            .await?;
        let payload = result.await.map_err(|_| InvokeError::ConnectionClosed)??;
        Ok(payload.deserialize()?)
    }

    /// Calls a hub method reliably and waits for its result, bound to `T` (`()` for a method with no result).
    ///
    /// The call carries an idempotency key (the `courier-idempotency-key` header: random, URL-safe, at most 64
    /// bytes), made once and kept across attempts. It waits in the connection's reliable outbox and is sent again,
    /// with the same key and a new invocation id, on every reconnect and whenever its policy's ack timeout passes
    /// (after the policy's backoff), until a Completion arrives: its result, or the hub's error
    /// ([`InvokeError::Hub`]), both final. A Courier server with a store runs the method once per caller and key
    /// and answers a resend with the stored Completion, so the method runs once however often the call is sent.
    /// Other servers, and anonymous callers, run it on every attempt.
    ///
    /// Errors at once: [`InvokeError::OutboxFull`] when the outbox holds
    /// [`reliable_outbox_capacity`](HubConnectionBuilder::reliable_outbox_capacity) calls (or the method's policy
    /// capacity), [`InvokeError::UploadInReliableCall`] for arguments with upload streams. Later:
    /// [`InvokeError::Expired`] and [`InvokeError::AttemptsExhausted`] per the method's policy
    /// ([`reliable_method_policy`](HubConnectionBuilder::reliable_method_policy)), and
    /// [`InvokeError::ConnectionClosed`] when the connection closes for good first (the outbox lives in memory,
    /// with the connection). Dropping the returned future does not take the call back: it is still sent until
    /// answered.
    ///
    /// ```
    /// use courier::client::{HubConnection, InProcessConnector};
    /// use courier::server::{Context, Hub, HubError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let hub = Hub::builder()
    ///     .method("PlaceOrder", |_ctx: Context, (item,): (String,)| async move {
    ///         Ok::<_, HubError>(format!("order for {item} placed"))
    ///     })
    ///     .build();
    /// let connection = HubConnection::builder(InProcessConnector::new(hub)).start().await?;
    /// let placed: String = connection.invoke_reliable("PlaceOrder", ("tea",)).await?;
    /// assert_eq!(placed, "order for tea placed");
    /// connection.stop().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn invoke_reliable<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Into<Args>,
    ) -> Result<T, InvokeError> {
        let slot = Slot::take(&self.inner.outbox_taken, self.inner.outbox_capacity)
            .ok_or(InvokeError::OutboxFull)?;
        let Prepared { arguments, uploads } = self.prepare(args)?;
        if !uploads.is_empty() {
            return Err(InvokeError::UploadInReliableCall);
        }
        let (reply, result) = oneshot::channel();
        let key = format!("{}-{}", self.inner.key_prefix, self.next_id());
        let call = ReliableCall {
            target: method.into(),
            arguments,
            key: key.into(),
            reply,
            _slot: slot,
        };
        self.inner
            .reliable
            .send(call)
            .map_err(|_| InvokeError::NotConnected)?;
        let payload = result.await.map_err(|_| InvokeError::ConnectionClosed)??;
        Ok(payload.deserialize()?)
    }

    /// Calls a hub method without waiting for it to run (no invocation id, no answer); returns once the call was
    /// written to the transport.
    pub async fn send(&self, method: &str, args: impl Into<Args>) -> Result<(), InvokeError> {
        let (reply, written) = oneshot::channel();
        let prepared = self.prepare(args)?;
        self.submit(method, prepared, None, Reply::Written(reply))
            .await?;
        written.await.map_err(|_| InvokeError::ConnectionClosed)?
    }

    /// Calls a streaming hub method; its items arrive on the returned [`HubStream`]. Dropping the stream cancels
    /// it on the server.
    pub async fn stream<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Into<Args>,
    ) -> Result<HubStream<T>, InvokeError> {
        let (items_tx, items) = mpsc::channel(STREAM_BUFFER);
        let prepared = self.prepare(args)?;
        let id = self.next_id();
        self.submit(method, prepared, Some(id.clone()), Reply::Stream(items_tx))
            .await?;
        Ok(HubStream::new(id, items, self.inner.cancels.clone()))
    }
}

/// The policy of reliable calls without one of their own (see [`HubConnectionBuilder::reliable_policy`]).
fn default_call_policy() -> Policy {
    Policy::default()
        .ordering(courier_delivery::Ordering::Unordered)
        .window(usize::MAX)
        .ack_timeout(None)
}

/// 128 random bits in hex, from the standard library's hash keys (seeded by the operating system).
fn key_prefix() -> String {
    let [a, b] = [1u8, 2].map(|n| std::hash::RandomState::new().hash_one(n));
    format!("{a:016x}{b:016x}")
}

/// A reader for the connection's protocol and limit.
fn reader(config: &Config) -> MessageReader {
    MessageReader::new(config.protocol, config.maximum_receive_message_size)
}
