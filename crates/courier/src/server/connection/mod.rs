//! The task that drives one connection (the quinn `ConnectionDriver` pattern): it owns the connection's state,
//! reads frames, dispatches invocations, writes replies and keeps time.

mod handshake;
mod invocations;
mod link;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use courier_protocol::{
    ByteString, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage,
    Invocation, MessageReader, Payload, Protocol, ProtocolError, Sequence, StreamInvocation,
    StreamItem,
};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use self::invocations::{Finished, Invocations, completion_result};
use self::link::Held;
use crate::link::Link;
use crate::server::context::ConnectionInfo;
use crate::server::mailbox::KEY_HEADER;
use crate::server::method::{BindError, Binder, Method, UploadItem};
use crate::server::registry::{ClientInvocation, Entry, Outbound, Stop};
use crate::server::{
    ClientResultError, ConnectionId, Context, HubContext, HubError, HubInner, HubOptions, Identity,
};
use crate::{Frame, Transport, TransportError};

/// Everything [`run`] needs to start a connection.
pub(crate) struct Setup {
    pub(crate) hub: Arc<HubInner>,
    pub(crate) id: ConnectionId,
    pub(crate) identity: Identity,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) stateful_granted: bool,
    pub(crate) reattach: Option<mpsc::Receiver<Box<dyn Transport>>>,
    pub(crate) ended: watch::Sender<bool>,
}

/// Frames are filled with ready messages up to about this size before being sent (a single larger message still
/// goes in one frame: messages are never split).
const FRAME_TARGET: usize = 64 * 1024;

const CLOSED_WITH_ERROR: &str = "Connection closed with an error.";

/// Runs a connection from handshake to end.
pub(crate) async fn run(setup: Setup) {
    let Setup {
        hub,
        id,
        identity,
        mut transport,
        stateful_granted,
        reattach,
        ended,
    } = setup;
    let Some(agreed) = handshake::run(transport.as_mut(), &hub.options).await else {
        let _ = transport.close().await;
        refuse_reattach(reattach, &hub.options).await;
        ended.send_replace(true);
        return;
    };
    let info = Arc::new(ConnectionInfo {
        id: id.clone(),
        identity: identity.clone(),
        protocol: agreed.protocol,
        transport: transport.info().clone(),
    });
    let ctx = Context::new(HubContext { hub: hub.clone() }, info);
    let (own, outbound) = mpsc::channel(hub.options.outbound_queue_capacity.max(1));
    let (stop_tx, stop) = watch::channel(None);
    if !hub.join(
        &id,
        Entry::new(agreed.protocol, identity.clone(), own.clone(), stop_tx),
    ) {
        // Shutdown began during the handshake. Boxed, so that this task, which lives as long as the connection,
        // does not hold room for a second connection state.
        Box::pin(async {
            let mut connection = Connection::new(
                hub.clone(),
                ctx,
                agreed.protocol,
                transport,
                None,
                None,
                (own, outbound),
                stop,
            );
            connection.finish(End::Close(shutdown_close())).await;
        })
        .await;
        refuse_reattach(reattach, &hub.options).await;
        ended.send_replace(true);
        return;
    }
    let epoch = Instant::now();
    let stateful = stateful_granted && agreed.version >= 2;
    let link = stateful.then(|| Box::new(Link::new(epoch)));
    // Without stateful reconnect the receiver goes here, so `reattach` fails at once.
    let reattach = if stateful {
        reattach
    } else {
        refuse_reattach(reattach, &hub.options).await;
        None
    };
    let mut connection = Connection::new(
        hub.clone(),
        ctx.clone(),
        agreed.protocol,
        transport,
        link,
        reattach,
        (own, outbound),
        stop,
    );
    connection.reader.push_bytes(agreed.leftover);

    let end = match &hub.on_connected {
        Some(hook) => match AssertUnwindSafe(hook(ctx.clone())).catch_unwind().await {
            Ok(Ok(())) => connection.drive().await,
            Ok(Err(error)) => {
                let detail = error.detail(hub.options.enable_detailed_errors);
                End::Close(Close {
                    error: Some(with_detail(CLOSED_WITH_ERROR, detail).into()),
                    allow_reconnect: false,
                })
            }
            Err(_) => End::Close(Close {
                error: Some(CLOSED_WITH_ERROR.into()),
                allow_reconnect: false,
            }),
        },
        None => connection.drive().await,
    };
    let error = match &end {
        End::Close(Close {
            error: Some(error), ..
        }) => Some(error.to_string()),
        End::Broken(error) | End::Aborted(error) => Some(error.clone()),
        _ => None,
    };
    connection.finish(end).await;
    hub.leave(&id, &identity);
    if let Some(hook) = &hub.on_disconnected {
        let _ = AssertUnwindSafe(hook(ctx, error)).catch_unwind().await;
    }
    ended.send_replace(true);
}

/// Why the connection ends.
enum End {
    /// Send this Close, then close the transport.
    Close(Close),
    /// The client closed the transport cleanly: close our side.
    ClientClosed,
    /// The transport broke (the text says how): a stateful connection waits for a new one, others end.
    Broken(String),
    /// The connection is given up without a Close (aborted, a send timed out, no reattach in time).
    Aborted(String),
}

fn shutdown_close() -> Close {
    Close {
        error: None,
        allow_reconnect: true,
    }
}

/// What woke the driver.
enum Event {
    Frame(Option<Result<Frame, TransportError>>),
    Outbound(Outbound),
    Finished(Finished),
    Unblocked,
    Stop(Stop),
    Reattach(Box<dyn Transport>),
    Timer,
}

/// What the connection's own invocation and stream tasks send to the driver, through the same queue as sends from
/// elsewhere ([`Outbound::Own`]): so what a method sends before it returns reaches the client before its
/// Completion.
pub(crate) enum Internal {
    /// An invocation finished (`id` is `None` for a non-blocking one, which gets no reply): a method with upload
    /// streams, or one run on the connection's task whose Completion must wait behind queued messages.
    Completed {
        id: Option<ByteString>,
        result: CompletionResult,
        /// Whether the invocation counted against `maximum_parallel_invocations_per_client`.
        limited: bool,
    },
    /// A server-to-client stream produced an item.
    StreamItem { id: ByteString, item: Payload },
    /// A server-to-client stream ended, with the error text for the caller if it failed.
    StreamEnded {
        id: ByteString,
        error: Option<String>,
    },
}

struct Connection {
    hub: Arc<HubInner>,
    ctx: Context,
    protocol: Protocol,
    /// `None` while a stateful connection waits for a new transport.
    transport: Option<Box<dyn Transport>>,
    reader: MessageReader,
    /// Encoded messages waiting to be sent as one frame.
    out: BytesMut,
    /// Boxed: most connections are not stateful, and the link is large.
    link: Option<Box<Link>>,
    /// Replies waiting for room in the link's buffer (empty without a link).
    held: Held,
    reattach: Option<mpsc::Receiver<Box<dyn Transport>>>,
    /// When a detached connection gives up waiting for a new transport.
    detached_until: Option<Instant>,
    outbound: mpsc::Receiver<Outbound>,
    /// The sending side of `outbound`, for the connection's own tasks.
    own: mpsc::Sender<Outbound>,
    stop: watch::Receiver<Option<Stop>>,
    /// Graceful shutdown: no new work; end once running invocations are done.
    draining: bool,
    running: usize,
    /// The methods without upload streams, run on this task.
    invocations: Invocations,
    /// The running invocations that count against `maximum_parallel_invocations_per_client`: those without upload
    /// streams, as in .NET (a call whose uploads are still open must not stop the reading of its own items).
    limited: usize,
    /// An invocation waiting for a free slot; nothing more is read meanwhile.
    waiting: Option<Invocation>,
    /// An upload item waiting for room in its stream's buffer; nothing more is read meanwhile.
    blocked: Option<BoxFuture<'static, ()>>,
    streams: HashMap<ByteString, AbortHandle>,
    uploads: HashMap<ByteString, mpsc::Sender<UploadItem>>,
    results: HashMap<ByteString, oneshot::Sender<Result<Payload, ClientResultError>>>,
    next_result_id: u64,
    last_sent: Instant,
    last_received: Instant,
    /// Wakes this task at the next deadline. Kept from one wait to the next and moved, not made anew each time:
    /// moving a registered timer later costs no lock on the runtime's timer wheel.
    timer: Pin<Box<Sleep>>,
    /// The client timeout counts only once the client has sent a Ping (as .NET).
    client_pinged: bool,
    /// The client kept sending without acknowledging until the link could hold no more replies.
    link_overflow: bool,
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    fn new(
        hub: Arc<HubInner>,
        ctx: Context,
        protocol: Protocol,
        transport: Box<dyn Transport>,
        link: Option<Box<Link>>,
        reattach: Option<mpsc::Receiver<Box<dyn Transport>>>,
        (own, outbound): (mpsc::Sender<Outbound>, mpsc::Receiver<Outbound>),
        stop: watch::Receiver<Option<Stop>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            reader: MessageReader::new(protocol, hub.options.maximum_receive_message_size),
            held: Held::new(hub.options.stateful_reconnect_buffer_size),
            hub,
            ctx,
            protocol,
            transport: Some(transport),
            out: BytesMut::new(),
            link,
            reattach,
            detached_until: None,
            outbound,
            own,
            stop,
            draining: false,
            running: 0,
            invocations: Invocations::default(),
            limited: 0,
            waiting: None,
            blocked: None,
            streams: HashMap::new(),
            uploads: HashMap::new(),
            results: HashMap::new(),
            next_result_id: 0,
            last_sent: now,
            last_received: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
            client_pinged: false,
            link_overflow: false,
        }
    }

    /// The main loop: until the connection ends.
    async fn drive(&mut self) -> End {
        loop {
            let result = match self.process_buffered() {
                // Replies to what was just read (an error Completion, say) go out before waiting for more.
                Ok(()) => self.flush().await,
                Err(end) => Err(end),
            };
            if let Some(end) = self.settle(result) {
                return end;
            }
            if self.link_overflow {
                return self.overflow_close();
            }
            if self.draining && self.running == 0 {
                return End::Close(shutdown_close());
            }
            let event = self.next_event().await;
            let result = match self.handle(event) {
                Ok(()) => {
                    self.gather_ready();
                    self.gather_after_yield().await;
                    self.flush().await
                }
                Err(end) => Err(end),
            };
            if let Some(end) = self.settle(result) {
                return end;
            }
        }
    }

    /// What a step's outcome means for the loop: go on (a stateful connection whose transport broke waits for a
    /// new one), or end.
    fn settle(&mut self, result: Result<(), End>) -> Option<End> {
        match result {
            Ok(()) => None,
            Err(End::Broken(_)) if self.link.is_some() && self.transport.is_some() => {
                self.detach();
                None
            }
            Err(end) => Some(end),
        }
    }

    /// Whether messages from the app and the connection's own tasks may be taken: not while a stateful
    /// connection's replay buffer is full (sends wait for acks).
    fn accepting(&self) -> bool {
        self.link
            .as_ref()
            .is_none_or(|link| self.held.has_room(link))
    }

    /// Whether more client messages may be read.
    fn reading(&self) -> bool {
        self.waiting.is_none() && self.blocked.is_none() && !self.draining
    }

    fn next_deadline(&self) -> Option<Instant> {
        if let Some(until) = self.detached_until {
            return Some(until);
        }
        let keep_alive = self.last_sent + self.hub.options.keep_alive_interval;
        let client_timeout = (self.client_pinged && self.reading())
            .then(|| self.last_received + self.hub.options.client_timeout_interval);
        let ack = self.link.as_deref().and_then(Link::ack_deadline);
        [Some(keep_alive), client_timeout, ack]
            .into_iter()
            .flatten()
            .min()
    }

    async fn next_event(&mut self) -> Event {
        let reading = self.reading();
        let accepting = self.accepting();
        let deadline = self.next_deadline();
        if let Some(deadline) = deadline
            && deadline != self.timer.deadline()
        {
            self.timer.as_mut().reset(deadline);
        }
        let timer = &mut self.timer;
        let transport = self.transport.as_mut();
        let blocked = self.blocked.as_mut();
        let reattach = self.reattach.as_mut();
        let stop = &mut self.stop;
        // Not biased: a source that is always ready (a fast stream, a chatty client) must not starve the others.
        tokio::select! {
            () = changed(stop) => Event::Stop((*stop.borrow_and_update()).unwrap_or(Stop::Abort)),
            Some(transport) = next_reattach(reattach) => Event::Reattach(transport),
            () = unblocked(blocked) => Event::Unblocked,

            frame = next_frame(transport), if reading => Event::Frame(frame),
            Some(item) = self.outbound.recv(), if accepting => Event::Outbound(item),
            finished = self.invocations.finished() => Event::Finished(finished),
            () = timer, if deadline.is_some() => Event::Timer,
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), End> {
        match event {
            Event::Frame(None) => {
                // A clean close ends the connection for good, even if it cut a message short.
                return Err(End::ClientClosed);
            }
            Event::Frame(Some(Err(error))) => return Err(End::Broken(error.to_string())),
            Event::Frame(Some(Ok(frame))) => {
                self.last_received = Instant::now();
                self.reader.push_bytes(frame.into_payload());
            }

            Event::Outbound(item) => self.on_outbound(item),
            Event::Finished(finished) => self.on_finished(finished),
            Event::Unblocked => {
                self.blocked = None;
                self.resume_reading();
            }
            Event::Stop(Stop::Abort) => {
                return Err(End::Aborted("the connection was aborted".into()));
            }
            Event::Stop(Stop::Shutdown) => self.begin_draining(),
            Event::Stop(Stop::Close) => return Err(End::Close(Close::default())),
            Event::Reattach(transport) => self.attach(transport),
            Event::Timer => return self.on_timer(),
        }
        Ok(())
    }

    /// Decodes and handles buffered client messages until none is complete or reading must pause.
    fn process_buffered(&mut self) -> Result<(), End> {
        while self.reading() && self.transport.is_some() {
            match self.reader.next_message() {
                Ok(Some(message)) => self.on_message(message)?,
                Ok(None) => break,
                Err(error) => return Err(self.protocol_error(&error)),
            }
        }
        Ok(())
    }

    fn overflow_close(&self) -> End {
        let detail = self.hub.options.enable_detailed_errors.then(|| {
            "InvalidOperationException: The client sent more than the stateful reconnect buffer can hold \
             replies for without acknowledging them."
                .to_owned()
        });
        End::Close(Close {
            error: Some(with_detail(CLOSED_WITH_ERROR, detail).into()),
            allow_reconnect: true,
        })
    }

    fn protocol_error(&self, error: &ProtocolError) -> End {
        let detail = self
            .hub
            .options
            .enable_detailed_errors
            .then(|| format!("InvalidDataException: {error}"));
        End::Close(Close {
            error: Some(with_detail(CLOSED_WITH_ERROR, detail).into()),
            allow_reconnect: true,
        })
    }

    fn on_message(&mut self, message: HubMessage) -> Result<(), End> {
        if message.is_trackable() && self.link.as_mut().is_some_and(|link| !link.receive()) {
            return Ok(());
        }
        match message {
            HubMessage::Invocation(invocation) => self.on_invocation(invocation),
            HubMessage::StreamInvocation(invocation) => self.on_stream_invocation(invocation),
            HubMessage::StreamItem(item) => self.on_upload_item(item),
            HubMessage::Completion(completion) => self.on_completion(completion),
            HubMessage::CancelInvocation(CancelInvocation { invocation_id, .. }) => {
                if let Some(stream) = self.streams.remove(&invocation_id) {
                    stream.abort();
                    self.complete(invocation_id, CompletionResult::Void);
                }
            }
            HubMessage::Ping => self.client_pinged = true,
            HubMessage::Close(_) => {
                return Err(End::Close(Close::default()));
            }
            HubMessage::Ack(ack) => {
                if let Some(link) = &mut self.link {
                    link.handle_ack(ack.sequence_id);
                    self.held.release(link);
                    // Held replies may have moved into the buffer.
                    self.take_transmits();
                }
            }
            HubMessage::Sequence(Sequence { sequence_id }) => {
                if let Some(link) = &mut self.link
                    && let Err(error) = link.handle_sequence(sequence_id)
                {
                    let detail = self
                        .hub
                        .options
                        .enable_detailed_errors
                        .then(|| format!("InvalidOperationException: {error}"));
                    return Err(End::Close(Close {
                        error: Some(with_detail(CLOSED_WITH_ERROR, detail).into()),
                        allow_reconnect: false,
                    }));
                }
            }
        }
        Ok(())
    }

    fn on_invocation(&mut self, invocation: Invocation) {
        let limited = invocation.stream_ids.is_empty();
        if limited
            && self.limited
                >= self
                    .hub
                    .options
                    .maximum_parallel_invocations_per_client
                    .max(1)
        {
            self.waiting = Some(invocation);
            return;
        }
        let Invocation {
            headers,
            invocation_id: id,
            target,
            arguments,
            stream_ids,
        } = invocation;
        let handler = match self.hub.method(&target) {
            None => return self.fail(id, unknown_method(&target)),
            Some(Method::Streaming(_)) => {
                return self.fail(
                    id,
                    format!("The client attempted to invoke the streaming '{target}' method with a non-streaming invocation."),
                );
            }
            Some(Method::Unary(handler)) => handler.clone(),
        };
        let mut binder = Binder::new(
            arguments,
            stream_ids,
            self.hub.options.stream_buffer_capacity,
        );
        let mut call = match handler(self.ctx.clone(), &mut binder) {
            Ok(call) => call,
            Err(error) => return self.fail(id, self.bind_error_text(&target, error)),
        };
        if let (Some(mailboxes), Some(key)) = (&self.hub.mailboxes, headers.get(KEY_HEADER)) {
            call = mailboxes.run_once(self.ctx.identity(), self.ctx.protocol(), key, call);
        }
        self.uploads.extend(binder.into_streams());
        self.running += 1;
        self.limited += usize::from(limited);
        let detailed = self.hub.options.enable_detailed_errors;
        if limited {
            if let Some(finished) = self.invocations.start(id, target, detailed, call) {
                self.on_finished(finished);
            }
            return;
        }
        let own = self.own.clone();
        tokio::spawn(async move {
            let outcome = AssertUnwindSafe(call).catch_unwind().await.ok();
            let result = completion_result(outcome, &target, detailed);
            let _ = own
                .send(Outbound::Own(Box::new(Internal::Completed {
                    id,
                    result,
                    limited,
                })))
                .await;
        });
    }

    fn on_stream_invocation(&mut self, invocation: StreamInvocation) {
        let StreamInvocation {
            invocation_id: id,
            target,
            arguments,
            stream_ids,
            ..
        } = invocation;
        let handler = match self.hub.method(&target) {
            None => return self.fail(Some(id), unknown_method(&target)),
            Some(Method::Unary(_)) => {
                return self.fail(
                    Some(id),
                    format!("The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."),
                );
            }
            Some(Method::Streaming(handler)) => handler.clone(),
        };
        if self.streams.contains_key(&id) {
            return self.fail(
                Some(id.clone()),
                format!("Invocation ID '{id}' is already in use."),
            );
        }
        let mut binder = Binder::new(
            arguments,
            stream_ids,
            self.hub.options.stream_buffer_capacity,
        );
        let mut items = match handler(self.ctx.clone(), &mut binder) {
            Ok(items) => items,
            Err(error) => return self.fail(Some(id), self.bind_error_text(&target, error)),
        };
        self.uploads.extend(binder.into_streams());
        let own = self.own.clone();
        let detailed = self.hub.options.enable_detailed_errors;
        let stream_id = id.clone();
        let task = tokio::spawn(async move {
            let error = loop {
                match AssertUnwindSafe(items.next()).catch_unwind().await {
                    Ok(Some(Ok(item))) => {
                        let item = Internal::StreamItem {
                            id: stream_id.clone(),
                            item,
                        };
                        if own.send(Outbound::Own(Box::new(item))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Err(error))) => break Some(error),
                    Ok(None) => break None,
                    Err(_) => break Some(HubError::internal("the stream panicked")),
                }
            };
            let error = error.map(|error| {
                with_detail(
                    "An error occurred on the server while streaming results.",
                    error.detail(detailed),
                )
            });
            let end = Internal::StreamEnded {
                id: stream_id,
                error,
            };
            let _ = own.send(Outbound::Own(Box::new(end))).await;
        });
        self.streams.insert(id, task.abort_handle());
    }

    fn on_upload_item(&mut self, item: StreamItem) {
        let Some(sender) = self.uploads.get(&item.invocation_id) else {
            return;
        };
        match sender.try_send(Ok(item.item)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The method stopped reading (or finished): later items have nowhere to go.
                self.uploads.remove(&item.invocation_id);
            }
            Err(mpsc::error::TrySendError::Full(value)) => {
                let sender = sender.clone();
                self.blocked = Some(
                    async move {
                        let _ = sender.send(value).await;
                    }
                    .boxed(),
                );
            }
        }
    }

    fn on_completion(&mut self, completion: Completion) {
        let Completion {
            invocation_id: id,
            result,
            ..
        } = completion;
        if let Some(reply) = self.results.remove(&id) {
            let answer = match result {
                CompletionResult::Value(payload) => Ok(payload),
                CompletionResult::Void => Ok(Payload::null(self.protocol)),
                CompletionResult::Error(error) => Err(ClientResultError::Client(error.to_string())),
            };
            let _ = reply.send(answer);
        } else if let Some(sender) = self.uploads.remove(&id)
            && let CompletionResult::Error(error) = result
        {
            // Ends the stream with the client's error once the items before it were taken.
            self.blocked = Some(
                async move {
                    let _ = sender.send(Err(error.to_string())).await;
                }
                .boxed(),
            );
        }
    }

    fn on_internal(&mut self, item: Internal) {
        match item {
            Internal::Completed {
                id,
                result,
                limited,
            } => {
                self.running -= 1;
                self.limited -= usize::from(limited);
                // Upload streams whose method has ended are no longer read: forget them.
                self.uploads.retain(|_, stream| !stream.is_closed());
                if let Some(id) = id {
                    self.complete(id, result);
                }
                if let Some(invocation) = self.waiting.take() {
                    self.resume_reading();
                    self.on_invocation(invocation);
                }
            }
            Internal::StreamItem { id, item } => {
                if self.streams.contains_key(&id) {
                    self.queue(&HubMessage::StreamItem(StreamItem {
                        headers: Headers::new(),
                        invocation_id: id,
                        item,
                    }));
                }
            }
            Internal::StreamEnded { id, error } => {
                if self.streams.remove(&id).is_some() {
                    let result = error.map_or(CompletionResult::Void, |error| {
                        CompletionResult::Error(error.into())
                    });
                    self.complete(id, result);
                }
            }
        }
    }

    fn on_outbound(&mut self, item: Outbound) {
        match item {
            Outbound::Message(framed) => self.queue_encoded(framed, true),
            Outbound::Own(item) => self.on_internal(*item),
            Outbound::InvokeClient(invocation) => {
                let ClientInvocation {
                    headers,
                    target,
                    arguments,
                    reply,
                } = *invocation;
                self.results.retain(|_, reply| !reply.is_closed());
                if self.results.len() >= self.hub.options.maximum_pending_client_results {
                    let _ = reply.send(Err(ClientResultError::TooManyPending));
                    return;
                }
                self.next_result_id += 1;
                let id: ByteString = format!("s{}", self.next_result_id).into();
                self.queue(&HubMessage::Invocation(Invocation {
                    headers,
                    invocation_id: Some(id.clone()),
                    target: target.into(),
                    arguments,
                    stream_ids: Vec::new(),
                }));
                self.results.insert(id, reply);
            }
        }
    }

    fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if let Some(until) = self.detached_until {
            return if now >= until {
                Err(End::Aborted("no transport was reattached in time".into()))
            } else {
                Ok(())
            };
        }
        if self.client_pinged
            && self.reading()
            && now >= self.last_received + self.hub.options.client_timeout_interval
        {
            let detail = self.hub.options.enable_detailed_errors.then_some(
                "OperationCanceledException: Client hasn't sent a message/ping within the configured \
                 ClientTimeoutInterval.",
            );
            return Err(End::Close(Close {
                error: Some(with_detail(CLOSED_WITH_ERROR, detail.map(str::to_owned)).into()),
                allow_reconnect: true,
            }));
        }
        if let Some(sequence_id) = self.link.as_deref_mut().and_then(Link::poll_ack) {
            self.queue(&HubMessage::Ack(courier_protocol::Ack { sequence_id }));
        }
        if now >= self.last_sent + self.hub.options.keep_alive_interval {
            self.queue(&HubMessage::Ping);
        }
        Ok(())
    }

    /// Reading resumes after a pause (an invocation waited for a slot, an upload for room): the client's silence
    /// while this side did not read is not its fault, so the client timeout starts over (as in .NET).
    fn resume_reading(&mut self) {
        self.last_received = Instant::now();
    }

    fn begin_draining(&mut self) {
        self.draining = true;
        self.waiting = None;
        for (_, stream) in self.streams.drain() {
            stream.abort();
        }
        self.uploads.clear();
    }

    /// A method run on this task finished. What it sent to its caller before it returned is in the outbound queue,
    /// so that is taken first; if the queue cannot be emptied now (a stateful connection's buffer is full), the
    /// Completion goes through the queue behind it, as a method with a task of its own sends it.
    fn on_finished(&mut self, finished: Finished) {
        while self.accepting()
            && let Ok(item) = self.outbound.try_recv()
        {
            self.on_outbound(item);
        }
        let Finished { id, result } = finished;
        let completed = Internal::Completed {
            id,
            result,
            limited: true,
        };
        if self.accepting() && self.outbound.is_empty() {
            self.on_internal(completed);
            return;
        }
        let item = Outbound::Own(Box::new(completed));
        if let Err(mpsc::error::TrySendError::Full(item)) = self.own.try_send(item) {
            let own = self.own.clone();
            tokio::spawn(async move {
                let _ = own.send(item).await;
            });
        }
    }

    /// Takes whatever else is ready, without waiting, to fill the next frame.
    fn gather_ready(&mut self) {
        while let Some(finished) = self.invocations.poll_finished() {
            self.on_finished(finished);
        }
        while self.out.len() < FRAME_TARGET && self.accepting() {
            let Ok(item) = self.outbound.try_recv() else {
                break;
            };
            self.on_outbound(item);
        }
    }

    /// Before a frame goes out, lets the other tasks run once and takes what they queued meanwhile (completions of
    /// invocations read in the same frame, most often), so that under load one frame and one system call carry
    /// many messages. Only while other invocations run, so that a lone reply goes out at once; no timer.
    async fn gather_after_yield(&mut self) {
        if !self.out.is_empty() && self.running > 0 {
            tokio::task::yield_now().await;
            self.gather_ready();
        }
    }

    /// Answers an invocation with an error, if it wants an answer.
    fn fail(&mut self, id: Option<ByteString>, error: String) {
        if let Some(id) = id {
            self.complete(id, CompletionResult::Error(error.into()));
        }
    }

    fn complete(&mut self, id: ByteString, result: CompletionResult) {
        self.queue(&HubMessage::Completion(Completion {
            headers: Headers::new(),
            invocation_id: id,
            result,
        }));
    }

    fn bind_error_text(&self, target: &str, error: BindError) -> String {
        match error {
            BindError::Arguments(detail) => with_detail(
                &format!("Failed to invoke '{target}' due to an error on the server."),
                self.hub
                    .options
                    .enable_detailed_errors
                    .then(|| format!("InvalidDataException: {detail}")),
            ),
            BindError::StreamCount { sent, expected } => format!(
                "An unexpected error occurred invoking '{target}' on the server. HubException: Client sent {sent} \
                 stream(s), Hub method expects {expected}."
            ),
        }
    }

    /// Encodes a message for the next frame (numbered and buffered first if trackable on a stateful connection).
    /// Only a payload of the other protocol or a message over 2 GiB fails to encode; neither is produced here.
    fn queue(&mut self, message: &HubMessage) {
        if self.link.is_some() && message.is_trackable() {
            let mut framed = BytesMut::new();
            if self.protocol.encode(message, &mut framed).is_ok() {
                self.queue_encoded(framed.freeze(), true);
            }
        } else if self.transport.is_some() {
            // Straight into the frame, without a buffer of its own (a failed encode leaves nothing behind).
            let _ = self.protocol.encode(message, &mut self.out);
        }
    }

    fn queue_encoded(&mut self, framed: Bytes, trackable: bool) {
        match &mut self.link {
            Some(link) if trackable => {
                if self.held.push(link, framed).is_err() {
                    self.link_overflow = true;
                }
                self.take_transmits();
            }
            _ if self.transport.is_some() => self.out.extend_from_slice(&framed),
            // Detached: untracked messages (Ping, Ack) are meaningless on the next transport.
            _ => {}
        }
    }

    /// Moves what the link wants sent (a `Sequence` after a reattach, then the replay, then new messages) into the
    /// next frame.
    fn take_transmits(&mut self) {
        if self.transport.is_none() {
            return;
        }
        let Some(link) = &mut self.link else { return };
        while let Some(transmit) = link.poll_transmit() {
            match transmit {
                Ok(framed) => self.out.extend_from_slice(&framed),
                Err(first) => {
                    let _ = self.protocol.encode(
                        &HubMessage::Sequence(Sequence { sequence_id: first }),
                        &mut self.out,
                    );
                }
            }
        }
    }

    /// Sends what is queued as one frame, within the send timeout.
    async fn flush(&mut self) -> Result<(), End> {
        let Some(transport) = &mut self.transport else {
            return Ok(());
        };
        if self.out.is_empty() {
            return Ok(());
        }
        let payload = self.out.split().freeze();
        let frame = match self.protocol {
            Protocol::Json => Frame::Text(payload),
            Protocol::MessagePack => Frame::Binary(payload),
        };
        match tokio::time::timeout(self.hub.options.send_timeout, transport.send(frame)).await {
            Ok(Ok(())) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Ok(Err(error)) => Err(End::Broken(error.to_string())),
            Err(_) => Err(End::Aborted("sending to the transport timed out".into())),
        }
    }

    /// The transport of a stateful connection broke: wait for a new one.
    fn detach(&mut self) {
        self.transport = None;
        self.out.clear();
        self.detached_until = Some(Instant::now() + self.hub.options.disconnect_timeout);
        if let Some(link) = &mut self.link {
            link.detach();
        }
        // Bytes of a message cut by the break are not part of any message the client will replay.
        self.reader =
            MessageReader::new(self.protocol, self.hub.options.maximum_receive_message_size);
    }

    fn attach(&mut self, transport: Box<dyn Transport>) {
        if self.transport.is_some() {
            // The client reconnected before this side saw the old transport break.
            self.detach();
        }
        self.transport = Some(transport);
        self.detached_until = None;
        let now = Instant::now();
        self.last_sent = now;
        self.last_received = now;
        if let Some(link) = &mut self.link {
            link.attach();
        }
        self.take_transmits();
    }

    /// Ends the connection: sends the Close if there is one, closes the transport, and releases what waits on it.
    async fn finish(&mut self, end: End) {
        self.invocations.detach();
        refuse_reattach(self.reattach.take(), &self.hub.options).await;
        for (_, stream) in self.streams.drain() {
            stream.abort();
        }
        self.uploads.clear();
        self.results.clear();
        if let Some(mut transport) = self.transport.take() {
            if let End::Close(close) = &end {
                // Replies queued before the end still go out, in the same frame as the Close.
                if self
                    .protocol
                    .encode(&HubMessage::Close(close.clone()), &mut self.out)
                    .is_ok()
                {
                    let payload = self.out.split().freeze();
                    let frame = match self.protocol {
                        Protocol::Json => Frame::Text(payload),
                        Protocol::MessagePack => Frame::Binary(payload),
                    };
                    let _ =
                        tokio::time::timeout(self.hub.options.send_timeout, transport.send(frame))
                            .await;
                }
            }
            if matches!(end, End::Close(_) | End::ClientClosed) {
                let _ =
                    tokio::time::timeout(self.hub.options.send_timeout, transport.close()).await;
            }
        }
    }
}

/// Refuses further re-attached transports, and closes those handed in before the refusal took effect (they were
/// accepted by [`ConnectionHandle::reattach`](crate::server::ConnectionHandle::reattach), so nobody else will).
async fn refuse_reattach(
    reattach: Option<mpsc::Receiver<Box<dyn Transport>>>,
    options: &HubOptions,
) {
    let Some(mut reattach) = reattach else { return };
    reattach.close();
    // `recv` returns `None` only once no reserved slot can still deliver a transport.
    while let Some(mut transport) = reattach.recv().await {
        let _ = tokio::time::timeout(options.send_timeout, transport.close()).await;
    }
}

/// Waits for a change of the stop signal (forever if its sender is gone).
async fn changed(stop: &mut watch::Receiver<Option<Stop>>) {
    if stop.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The next frame of the transport (never, while there is none).
async fn next_frame(
    transport: Option<&mut Box<dyn Transport>>,
) -> Option<Result<Frame, TransportError>> {
    match transport {
        Some(transport) => transport.next().await,
        None => std::future::pending().await,
    }
}

/// A new transport handed in through the connection handle (never, without stateful reconnect).
async fn next_reattach(
    reattach: Option<&mut mpsc::Receiver<Box<dyn Transport>>>,
) -> Option<Box<dyn Transport>> {
    match reattach {
        Some(reattach) => reattach.recv().await,
        None => std::future::pending().await,
    }
}

/// Completes when the blocked upload item was handed over (never, if none is blocked).
async fn unblocked(blocked: Option<&mut BoxFuture<'static, ()>>) {
    match blocked {
        Some(blocked) => blocked.await,
        None => std::future::pending().await,
    }
}

fn with_detail(base: &str, detail: Option<String>) -> String {
    match detail {
        Some(detail) => format!("{base} {detail}"),
        None => base.to_owned(),
    }
}

fn unknown_method(target: &str) -> String {
    format!(
        "Failed to invoke '{target}' due to an error on the server. HubException: Method does not exist."
    )
}
