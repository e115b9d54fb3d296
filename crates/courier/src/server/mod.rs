//! The hub server: methods, connections, clients and groups, over any [`Transport`].
//!
//! A [`Hub`] is built once from named methods with typed arguments and results, then every transport that a
//! client opens is handed to [`Hub::accept`]. One task per connection reads its frames, runs the handshake,
//! dispatches invocations, writes replies and keeps the connection alive (HUB-PROTOCOL.md §3, §5, §7–§9).
//!
//! Every buffer is bounded; what happens when one is full is documented on [`HubOptions`]: the outbound queue
//! (a send waits, then the slow connection is aborted), upload streams (reading pauses), invocations beyond the
//! parallel limit (reading pauses), the stateful reconnect buffer (sends wait for acks), pending client results
//! (refused).
//!
//! ```
//! use courier::server::{ConnectionOptions, Context, Hub, HubError};
//! use courier::transport::memory;
//! use courier::Frame;
//! use futures::{SinkExt, StreamExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let hub = Hub::builder()
//!     .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
//!     .method("Broadcast", |ctx: Context, (text,): (String,)| async move {
//!         ctx.others().send("Message", (ctx.connection_id().to_string(), text)).await?;
//!         Ok::<_, HubError>(())
//!     })
//!     .build();
//!
//! // Each transport a client opens goes to `accept`; here, one end of an in-memory pair.
//! let (server_end, mut client) = memory::pair();
//! let connection = hub.accept(server_end, ConnectionOptions::default()).await?;
//!
//! // The client's side, in raw frames: the handshake, then an invocation.
//! client.send(Frame::Text("{\"protocol\":\"json\",\"version\":1}\u{1e}".into())).await?;
//! assert_eq!(client.next().await.transpose()?, Some(Frame::Text("{}\u{1e}".into())));
//! let call = "{\"type\":1,\"invocationId\":\"1\",\"target\":\"add\",\"arguments\":[40,2]}\u{1e}";
//! client.send(Frame::Text(call.into())).await?;
//! let reply = client.next().await.transpose()?.expect("a reply");
//! assert_eq!(reply.payload().as_ref(), b"{\"type\":3,\"invocationId\":\"1\",\"result\":42}\x1e");
//!
//! client.close().await?;
//! connection.closed().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod clients;
mod connection;
mod context;
mod error;
mod id;
mod identity;
mod mailbox;
mod method;
mod options;
mod registry;
mod reliable;
mod tasks;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use clients::{ClientProxy, Clients, Groups, SingleClientProxy};
pub use context::{Context, HubContext};
pub use error::{
    AcceptError, ClientResultError, HubError, ReattachError, ReattachFailed, SendError,
};
pub use id::ConnectionId;
pub use identity::Identity;
pub use method::{Arguments, BindError, Binder, HubArgument, HubArguments, UploadStream};
pub use options::{ConnectionOptions, HubOptions};
pub use reliable::{
    DeadLetter, MessageId, Outcome, Reliable, ReliableGroupSend, ReliableOptions, ReliableSend,
    ReliableSendError, Sent,
};

use crate::store::Store;
use crate::{Transport, TransportInfo};
use courier_delivery::Policy;
use mailbox::{HELLO_METHOD, Hello, Mailboxes};
use method::Method;
use registry::Registry;

type AuthHook =
    Arc<dyn Fn(TransportInfo) -> BoxFuture<'static, Result<Identity, String>> + Send + Sync>;
type ConnectedHook = Arc<dyn Fn(Context) -> BoxFuture<'static, Result<(), HubError>> + Send + Sync>;
type DisconnectedHook =
    Arc<dyn Fn(Context, Option<String>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Everything a hub's connections share.
pub(crate) struct HubInner {
    /// Methods by lower-case name (names match ignoring ASCII case).
    methods: HashMap<String, Method>,
    options: HubOptions,
    registry: Registry,
    authenticate: Option<AuthHook>,
    on_connected: Option<ConnectedHook>,
    on_disconnected: Option<DisconnectedHook>,
    /// Reliable delivery, when the hub has a store.
    mailboxes: Option<Arc<Mailboxes>>,
    /// Connection and mailbox tasks.
    tasks: Arc<tasks::Tasks>,
}

impl HubInner {
    fn method(&self, name: &str) -> Option<&Method> {
        self.methods.get(&name.to_ascii_lowercase())
    }

    /// Registers a connection that completed its handshake, and lets its identity's mailboxes deliver to it.
    /// Refused (false) once shutdown began.
    fn join(&self, id: &ConnectionId, entry: registry::Entry) -> bool {
        let identity = entry.identity.clone();
        if !self.registry.insert(id.clone(), entry) {
            return false;
        }
        if let Some(mailboxes) = &self.mailboxes {
            mailboxes.connected(&identity, id);
        }
        true
    }

    /// Removes an ended connection from the registry and its identity's mailboxes.
    fn leave(&self, id: &ConnectionId, identity: &Identity) {
        self.registry.remove(id);
        if let Some(mailboxes) = &self.mailboxes {
            mailboxes.disconnected(identity, id);
        }
    }
}

/// A hub: its methods, options and hooks, and its live connections. Cheap to clone (all clones are the same hub).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<_> = self.inner.methods.keys().collect();
        methods.sort();
        f.debug_struct("Hub")
            .field("methods", &methods)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Starts building a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// A handle to send to clients and manage groups from outside hub methods.
    pub fn context(&self) -> HubContext {
        HubContext {
            hub: self.inner.clone(),
        }
    }

    /// The hub's options.
    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// Runs the auth hook on what a transport knows of its client: the [`Identity`] it admits (anonymous without a
    /// hook), or [`AcceptError::Unauthorized`] with the hook's reason.
    ///
    /// [`accept`](Self::accept) runs it itself unless [`ConnectionOptions::identity`] says it already ran: a transport
    /// layer that must answer a refusal before the connection exists (HTTP 401 at negotiate, or before a WebSocket
    /// upgrade) calls it first and passes the identity on.
    ///
    /// ```
    /// use courier::server::{AcceptError, Hub, Identity};
    /// use courier::TransportInfo;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let hub = Hub::builder()
    ///     .authenticate(|info: TransportInfo| async move {
    ///         match info.access_token.as_deref() {
    ///             Some("alice-token") => Ok(Some("alice".to_owned())),
    ///             _ => Err("no valid token".to_owned()),
    ///         }
    ///     })
    ///     .build();
    /// let alice = TransportInfo::new().with_access_token("alice-token");
    /// assert_eq!(hub.authenticate(&alice).await.unwrap(), Identity::user("alice"));
    /// let stranger = TransportInfo::new();
    /// assert!(matches!(hub.authenticate(&stranger).await, Err(AcceptError::Unauthorized(_))));
    /// # });
    /// ```
    pub async fn authenticate(&self, info: &TransportInfo) -> Result<Identity, AcceptError> {
        match &self.inner.authenticate {
            Some(authenticate) => authenticate(info.clone())
                .await
                .map_err(AcceptError::Unauthorized),
            None => Ok(Identity::anonymous()),
        }
    }

    /// Takes a connection: runs the auth hook on the transport's [`TransportInfo`] (unless `options` carry the
    /// [`Identity`] it gave already), then spawns the task that drives the connection (handshake, then hub
    /// messages until it ends) on the current tokio runtime.
    ///
    /// The returned handle carries the connection id (the one in `options`, or a new one) and, when `options`
    /// grant stateful reconnect, lets the transport layer hand in a new transport after the old one broke
    /// ([`ConnectionHandle::reattach`]). A refused connection's transport is dropped without a word: the transport
    /// layer answers the refusal in its own terms (an HTTP 401, say) from the [`AcceptError`].
    pub async fn accept(
        &self,
        transport: impl Transport,
        options: ConnectionOptions,
    ) -> Result<ConnectionHandle, AcceptError> {
        if self.inner.registry.is_shutting_down() {
            return Err(AcceptError::ShuttingDown);
        }
        let identity = match options.identity {
            Some(identity) => identity,
            None => self.authenticate(transport.info()).await?,
        };
        let id = options.connection_id.unwrap_or_else(ConnectionId::generate);
        let (ended_tx, ended) = watch::channel(false);
        let (reattach_tx, reattach_rx) = if options.stateful_reconnect {
            let (tx, rx) = mpsc::channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let span = tracing::info_span!("connection", id = %id);
        self.inner.tasks.spawn(tracing::Instrument::instrument(
            connection::run(connection::Setup {
                hub: self.inner.clone(),
                id: id.clone(),
                identity,
                transport: Box::new(transport),
                stateful_granted: options.stateful_reconnect,
                reattach: reattach_rx,
                ended: ended_tx,
            }),
            span,
        ));
        Ok(ConnectionHandle {
            id,
            reattach: reattach_tx,
            ended,
        })
    }

    /// Graceful shutdown: accepts no more connections, tells every connection to finish its running invocations
    /// and close with a Close message (`allowReconnect`, so clients may reconnect elsewhere), and waits for them
    /// up to `deadline`. Connections still running then are aborted. Then the mailbox tasks end (what they hold is
    /// in the store; reliable sends fail from now on). It returns once every task of the hub has ended (or a second
    /// after the deadline), so that dropping the last handle on the hub releases the store at once (a transport
    /// layer's own tasks may hold a handle a moment longer). Returns whether all connections ended in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        self.inner.registry.begin_shutdown();
        let graceful = tokio::time::timeout(deadline, self.inner.registry.wait_empty())
            .await
            .is_ok();
        if !graceful {
            self.inner.registry.abort_all();
            self.inner.registry.wait_empty().await;
        }
        if let Some(mailboxes) = &self.inner.mailboxes {
            mailboxes.shutdown().await;
        }
        // Aborted connections end at once; one still in its handshake ends with its handshake timeout, which is
        // not waited for beyond a second after the deadline.
        let _ =
            tokio::time::timeout_at(until + Duration::from_secs(1), self.inner.tasks.ended()).await;
        graceful
    }
}

/// One accepted connection, for the transport layer.
#[derive(Debug)]
pub struct ConnectionHandle {
    id: ConnectionId,
    reattach: Option<mpsc::Sender<Box<dyn Transport>>>,
    ended: watch::Receiver<bool>,
}

impl ConnectionHandle {
    /// The connection's public id (the one hub methods see).
    pub fn id(&self) -> &ConnectionId {
        &self.id
    }

    /// Hands in a new transport for a stateful-reconnect connection whose transport broke (the http layer maps
    /// the connection token of the reconnect request to this handle). Both sides then send `Sequence` and replay
    /// what the other may have missed; the connection id stays the same.
    ///
    /// Fails if the connection was not granted stateful reconnect, or has ended (closed, or no transport was
    /// handed in within the [`disconnect_timeout`](HubOptions::disconnect_timeout)); the error hands the transport
    /// back, so that the caller can close it properly. A connection whose client asked for protocol version 1
    /// despite the grant does not reconnect either: it reports [`ReattachError::ConnectionGone`]. A transport
    /// handed in just as the connection ends is closed by the connection.
    pub async fn reattach<T: Transport>(&self, transport: T) -> Result<(), ReattachFailed<T>> {
        let Some(sender) = &self.reattach else {
            return Err(ReattachFailed::new(ReattachError::NotStateful, transport));
        };
        // Reserve first: a closed channel then hands back the transport itself rather than a box of it.
        match sender.reserve().await {
            Ok(permit) => {
                permit.send(Box::new(transport));
                Ok(())
            }
            Err(_) => Err(ReattachFailed::new(
                ReattachError::ConnectionGone,
                transport,
            )),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.ended.borrow()
    }

    /// Waits until the connection has ended (after its disconnect hook ran).
    pub async fn closed(&self) {
        let mut ended = self.ended.clone();
        // An error means the driver is gone, which also means it ended.
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

/// Builds a [`Hub`] from methods, hooks and options.
#[derive(Default)]
pub struct HubBuilder {
    methods: HashMap<String, Method>,
    options: HubOptions,
    authenticate: Option<AuthHook>,
    on_connected: Option<ConnectedHook>,
    on_disconnected: Option<DisconnectedHook>,
    store: Option<Arc<dyn Store>>,
    client_methods: HashMap<String, (String, Policy)>,
    reliable_options: ReliableOptions,
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl HubBuilder {
    /// Adds a method. Its arguments are a tuple of `DeserializeOwned` values and [`UploadStream`]s (`()` for
    /// none), bound from the invocation's arguments in order; its result is any `Serialize` value (`()` answers
    /// with a void Completion). Names match ignoring ASCII case; a later method with the same name replaces an
    /// earlier one.
    ///
    /// A [`HubError::Hub`] reaches the caller as `An unexpected error occurred invoking '<name>' on the server.
    /// HubException: <message>`; other failures (and panics) say only the first sentence unless detailed errors
    /// are on.
    ///
    /// Methods without upload streams run on their connection's task, as in ASP.NET Core's dispatch loop: a method
    /// that finishes at once is answered in the same frame, and one that waits is polled beside the connection's
    /// other work. So a method must not block its thread (a synchronous sleep, heavy CPU work): that holds up its
    /// own connection. Use `tokio::task::spawn_blocking` for such work.
    #[must_use]
    pub fn method<A, R, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        A: HubArguments,
        R: Serialize + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        self.methods
            .insert(name.to_ascii_lowercase(), Method::unary(handler));
        self
    }

    /// Adds a streaming method: a client calls it with a StreamInvocation and gets each item as a StreamItem, then
    /// a Completion when the stream ends. An `Err` item ends the stream with `An error occurred on the server while
    /// streaming results.` (plus the detail for a [`HubError::Hub`], or with detailed errors). The client may
    /// cancel it (CancelInvocation): the stream is dropped and a Completion without error is sent.
    ///
    /// ```
    /// use courier::server::{Context, Hub, HubError};
    ///
    /// let hub = Hub::builder()
    ///     .stream_method("Count", |_ctx: Context, (to,): (u32,)| {
    ///         futures::stream::iter((1..=to).map(Ok::<_, HubError>))
    ///     })
    ///     .build();
    /// # drop(hub);
    /// ```
    #[must_use]
    pub fn stream_method<A, T, F, S>(mut self, name: &str, handler: F) -> Self
    where
        A: HubArguments,
        T: Serialize + Send + 'static,
        F: Fn(Context, A) -> S + Send + Sync + 'static,
        S: futures::Stream<Item = Result<T, HubError>> + Send + 'static,
    {
        self.methods
            .insert(name.to_ascii_lowercase(), Method::streaming(handler));
        self
    }

    /// Sets the options.
    #[must_use]
    pub fn options(mut self, options: HubOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the auth hook: it gets the transport's [`TransportInfo`] (access token, headers, address) and returns
    /// the user id (`Ok(None)` for an anonymous connection) or a whole [`Identity`] (with a client id), or a
    /// refusal with its reason. Without a hook every connection is anonymous.
    #[must_use]
    pub fn authenticate<F, Fut, I>(mut self, hook: F) -> Self
    where
        F: Fn(TransportInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<I, String>> + Send + 'static,
        I: Into<Identity>,
    {
        self.authenticate = Some(Arc::new(move |info| {
            hook(info).map(|result| result.map(Into::into)).boxed()
        }));
        self
    }

    /// Sets the hook run once a connection completed its handshake, before its messages are dispatched
    /// (`OnConnectedAsync`). An error closes the connection with `Connection closed with an error.`.
    #[must_use]
    pub fn on_connected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HubError>> + Send + 'static,
    {
        self.on_connected = Some(Arc::new(move |ctx| hook(ctx).boxed()));
        self
    }

    /// Sets the hook run when a connection that completed its handshake has ended (`OnDisconnectedAsync`), with the
    /// error that ended it, if any. The connection has already left its groups and can no longer be sent to.
    #[must_use]
    pub fn on_disconnected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Context, Option<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnected = Some(Arc::new(move |ctx, error| hook(ctx, error).boxed()));
        self
    }

    /// Gives the hub a store: reliable sends ([`Context::reliable`], [`HubContext::reliable`]) keep their
    /// mailboxes there. A durable store (`courier-redb`) makes them survive a restart; [`MemoryStore`] does not.
    ///
    /// [`MemoryStore`]: crate::store::MemoryStore
    #[must_use]
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Gives reliable messages to client method `method` their own delivery policy and their own mailbox per
    /// identity (ordering holds within a mailbox). Messages to client methods without one share the identity's
    /// default mailbox and [`ReliableOptions::default_policy`]. Names match ignoring ASCII case.
    ///
    /// # Panics
    ///
    /// If `method` contains `:` (see [`MailboxId::for_method`](crate::store::MailboxId::for_method)).
    #[must_use]
    pub fn client_method(mut self, method: &str, policy: Policy) -> Self {
        assert!(
            !method.contains(':'),
            "a client method with its own mailbox may not contain ':' ({method:?})"
        );
        self.client_methods
            .insert(method.to_ascii_lowercase(), (method.to_owned(), policy));
        self
    }

    /// Appends the message id as one more argument to every reliable message for client method `method`, so that
    /// a stock client's handler can tell a redelivery from a new message (a Courier client reads the `courier-id`
    /// header instead and needs no such argument). Names match ignoring ASCII case.
    #[must_use]
    pub fn append_message_id(mut self, method: &str) -> Self {
        self.reliable_options
            .id_argument_methods
            .insert(method.to_ascii_lowercase());
        self
    }

    /// Sets the hub-wide settings of reliable delivery.
    #[must_use]
    pub fn reliable_options(mut self, options: ReliableOptions) -> Self {
        self.reliable_options = options;
        self
    }

    /// Builds the hub.
    pub fn build(mut self) -> Hub {
        if self.store.is_some() {
            // A Courier client's hello after its handshake (non-blocking: no reply).
            self = self.method(
                HELLO_METHOD,
                |ctx: Context, (hello,): (Hello,)| async move {
                    if let Some(mailboxes) = &ctx.hub().hub.mailboxes {
                        mailboxes
                            .hello(ctx.identity(), ctx.connection_id(), hello)
                            .await;
                    }
                    Ok::<_, HubError>(())
                },
            );
        }
        let Self {
            methods,
            options,
            authenticate,
            on_connected,
            on_disconnected,
            store,
            client_methods,
            reliable_options,
        } = self;
        let tasks = Arc::new(tasks::Tasks::default());
        Hub {
            inner: Arc::new_cyclic(|hub| HubInner {
                methods,
                options,
                registry: Registry::default(),
                authenticate,
                on_connected,
                on_disconnected,
                mailboxes: store.map(|store| {
                    Arc::new(Mailboxes::new(
                        store,
                        reliable_options,
                        client_methods,
                        hub.clone(),
                        tasks.clone(),
                    ))
                }),
                tasks,
            }),
        }
    }
}
