//! The task that drives a connection (the quinn `ConnectionDriver` pattern): it owns the connection's state, reads
//! frames, feeds the codec and the link engine, writes what they emit, and sleeps until the next frame or deadline.
//! It outlives one transport: it re-attaches a stateful connection and runs automatic reconnects.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use courier_protocol::{
    Ack, ByteString, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage,
    Invocation, MessageReader, Payload, Protocol, Sequence, StreamInvocation, StreamItem,
};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use super::args::Upload;
use super::outbox::{Calls, ReliableCall};
use super::receiver::{Action, Kind, Receiver};
use super::{
    Config, ConnectionEvent, ConnectionState, Connector, InvokeError, Reattach, RetryContext,
    StartError, Status, reader,
};
use crate::link::Link;
use crate::{Frame, Transport, TransportError};

/// The answer JavaScript gives to a client-result invocation it has no handler for.
const NO_RESULT: &str = "Client didn't provide a result.";

/// The error a client method that panicked answers with.
const PANICKED: &str = "the client method panicked";

const SERVER_TIMEOUT: &str = "Server timeout elapsed without receiving a message from the server.";

/// How long closing a transport may take (a peer that stopped reading must not hold the connection up).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many messages the connection's own tasks (client methods, upload streams) may queue for the driver.
const INTERNAL_QUEUE: usize = 64;

/// A call from a [`HubConnection`](super::HubConnection).
pub(super) enum Command {
    Call {
        /// `None` for a send (no answer).
        id: Option<ByteString>,
        target: String,
        arguments: Vec<Payload>,
        uploads: Vec<(ByteString, Upload)>,
        reply: Reply,
    },
}

/// Where the outcome of a call goes.
pub(super) enum Reply {
    /// `invoke`: the Completion's value.
    Result(oneshot::Sender<Result<Payload, InvokeError>>),
    /// `send`: the call was written.
    Written(oneshot::Sender<Result<(), InvokeError>>),
    /// `stream`: the items, then the end (an `Err` item for a failed stream).
    Stream(mpsc::Sender<Result<Payload, InvokeError>>),
}

/// What the connection's own tasks tell the driver. `generation` names the connection they belong to, so that a
/// late message of a lost connection is not sent on its successor.
enum Internal {
    /// A client method finished; `id` is `None` for an invocation that wants no answer.
    Handled {
        generation: u64,
        id: Option<ByteString>,
        result: CompletionResult,
    },
    /// The client method of a reliable message returned (these outlive their connection: the outcome counts for
    /// the application whichever connection answers).
    Delivered {
        mailbox: ByteString,
        seq: u64,
        outcome: Result<Payload, String>,
    },
    /// An upload stream produced an item (`Ok`), or ended (`Err(None)`) or failed (`Err(Some(text))`).
    Upload {
        generation: u64,
        id: ByteString,
        item: Result<Payload, Option<String>>,
    },
}

/// The channels between the handles and the driver.
pub(super) struct Channels {
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) cancels: mpsc::UnboundedReceiver<ByteString>,
    pub(super) reliable: mpsc::UnboundedReceiver<ReliableCall>,
    /// The handles' invocation id counter.
    pub(super) next_id: Arc<AtomicU64>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) events: broadcast::Sender<ConnectionEvent>,
    pub(super) status: watch::Sender<Status>,
}

/// A transport after a successful handshake.
pub(super) struct Live {
    transport: Box<dyn Transport>,
    pub(super) connection_id: Option<String>,
    reattach: Option<Box<dyn Reattach>>,
    /// Hub messages that arrived in the handshake response's frame.
    leftover: Bytes,
}

/// Opens a transport with the connector and runs the handshake (then sends a Ping, as the JavaScript client does:
/// the .NET server arms its client timeout on it).
pub(super) async fn open(config: &Config, connector: &dyn Connector) -> Result<Live, StartError> {
    let opened = connector
        .connect(config.stateful_reconnect)
        .await
        .map_err(StartError::Connect)?;
    let mut transport = opened.transport;
    let version = if opened.reattach.is_some() { 2 } else { 1 };
    let mut request = BytesMut::new();
    HandshakeRequest::new(config.protocol, version).write(&mut request);
    transport.send(Frame::Text(request.freeze())).await?;
    let leftover = tokio::time::timeout(
        config.handshake_timeout,
        handshake_response(transport.as_mut(), config),
    )
    .await
    .map_err(|_| StartError::HandshakeTimeout)??;
    let mut ping = BytesMut::new();
    // Encoding a Ping cannot fail.
    let _ = config.protocol.encode(&HubMessage::Ping, &mut ping);
    transport
        .send(frame(config.protocol, ping.freeze()))
        .await?;
    Ok(Live {
        transport,
        connection_id: opened.connection_id,
        reattach: opened.reattach,
        leftover,
    })
}

/// Reads the handshake response; returns the bytes after it.
async fn handshake_response(
    transport: &mut dyn Transport,
    config: &Config,
) -> Result<Bytes, StartError> {
    let mut buffer = BytesMut::new();
    loop {
        let frame = transport.next().await.ok_or(StartError::Closed)??;
        buffer.extend_from_slice(frame.payload());
        match HandshakeResponse::parse(&buffer, config.maximum_receive_message_size) {
            Ok(None) => {}
            Ok(Some((response, used))) => {
                return match response.error {
                    Some(error) => Err(StartError::Handshake(error)),
                    None => Ok(buffer.split_off(used).freeze()),
                };
            }
            Err(error) => return Err(StartError::InvalidHandshake(error)),
        }
    }
}

fn frame(protocol: Protocol, payload: Bytes) -> Frame {
    match protocol {
        Protocol::Json => Frame::Text(payload),
        Protocol::MessagePack => Frame::Binary(payload),
    }
}

/// Why a transport's run ended.
enum End {
    /// `stop()`, or every handle dropped: send a Close and close the transport.
    Stopped,
    /// The transport broke: a stateful connection tries to re-attach.
    Broken(String),
    /// The connection is over; `reconnect` says whether automatic reconnect may follow.
    Lost {
        error: Option<String>,
        reconnect: bool,
    },
}

/// What woke the driver.
enum Event {
    Stop,
    Frame(Option<Result<Frame, TransportError>>),
    Command(Option<Command>),
    Reliable(ReliableCall),
    Internal(Internal),
    Cancel(ByteString),
    Unblocked,
    Timer,
}

/// A call waiting for its answer.
enum Pending {
    Result(oneshot::Sender<Result<Payload, InvokeError>>),
    Stream(mpsc::Sender<Result<Payload, InvokeError>>),
}

pub(super) struct Driver {
    config: Config,
    connector: Arc<dyn Connector>,
    channels: Channels,
    internal_tx: mpsc::Sender<Internal>,
    internal: mpsc::Receiver<Internal>,
    /// Counts connections, for [`Internal`] messages.
    generation: u64,
    transport: Option<Box<dyn Transport>>,
    reattach: Option<Box<dyn Reattach>>,
    reader: MessageReader,
    /// Encoded messages waiting to be sent as one frame.
    out: BytesMut,
    /// `send` calls to answer once `out` is written.
    written: Vec<oneshot::Sender<Result<(), InvokeError>>>,
    link: Option<Link>,
    pending: HashMap<ByteString, Pending>,
    uploads: Vec<AbortHandle>,
    /// Reliable messages from the server.
    receiver: Receiver,
    /// Reliable calls to the server.
    calls: Calls,
    handlers_running: usize,
    /// A client-method call waiting for a free slot; nothing more is read meanwhile.
    waiting: Option<Invocation>,
    /// A stream item waiting for room in its reader's buffer; nothing more is read meanwhile.
    blocked: Option<BoxFuture<'static, ()>>,
    last_sent: Instant,
    last_received: Instant,
    /// Wakes the driver at the next deadline. Kept from one wait to the next and moved, not made anew each time:
    /// moving a registered timer later costs no lock on the runtime's timer wheel.
    timer: Pin<Box<Sleep>>,
}

impl Driver {
    pub(super) fn new(config: Config, connector: Arc<dyn Connector>, channels: Channels) -> Self {
        let (internal_tx, internal) = mpsc::channel(INTERNAL_QUEUE);
        let now = Instant::now();
        Self {
            reader: reader(&config),
            receiver: Receiver::new(
                config.protocol,
                config.receive_window,
                config.maximum_mailboxes,
            ),
            calls: Calls::new(config.protocol, &config.outbox),
            config,
            connector,
            channels,
            internal_tx,
            internal,
            generation: 0,
            transport: None,
            reattach: None,
            out: BytesMut::new(),
            written: Vec::new(),
            link: None,
            pending: HashMap::new(),
            uploads: Vec::new(),
            handlers_running: 0,
            waiting: None,
            blocked: None,
            last_sent: now,
            last_received: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// Runs the connection until it closes for good.
    pub(super) async fn run(mut self, live: Live) {
        self.attach_new(live);
        let error = loop {
            let end = self.drive().await;
            let (error, reconnect) = match end {
                End::Stopped => {
                    self.finish_stopped().await;
                    break None;
                }
                End::Broken(error) => {
                    if self.try_reattach().await {
                        continue;
                    }
                    (Some(error), true)
                }
                End::Lost { error, reconnect } => (error, reconnect),
            };
            self.end_connection();
            if let Some(mut transport) = self.transport.take() {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, transport.close()).await;
            }
            // `stop()` while the connection was being lost ends it without a reconnect.
            if !reconnect || self.config.reconnect.is_none() || self.stop_requested() {
                break error;
            }
            match self.reconnect(error).await {
                Ok(live) => {
                    let connection_id = live.connection_id.clone();
                    self.attach_new(live);
                    self.set_status(ConnectionState::Connected, connection_id.clone(), None);
                    let _ = self
                        .channels
                        .events
                        .send(ConnectionEvent::Reconnected { connection_id });
                }
                Err(error) => break error,
            }
        };
        self.end_connection();
        self.calls.close();
        let connection_id = self.channels.status.borrow().connection_id.clone();
        self.set_status(ConnectionState::Disconnected, connection_id, error.clone());
        let _ = self.channels.events.send(ConnectionEvent::Closed { error });
    }

    /// Whether `stop()` was called or every handle is gone.
    fn stop_requested(&self) -> bool {
        *self.channels.stop.borrow() || self.channels.stop.has_changed().is_err()
    }

    fn set_status(
        &self,
        state: ConnectionState,
        connection_id: Option<String>,
        error: Option<String>,
    ) {
        self.channels.status.send_replace(Status {
            state,
            connection_id,
            error,
        });
    }

    /// Takes a freshly handshaken transport as a new connection.
    fn attach_new(&mut self, live: Live) {
        self.generation += 1;
        self.transport = Some(live.transport);
        self.link = live.reattach.is_some().then(|| Link::new(Instant::now()));
        self.reattach = live.reattach;
        self.reader = reader(&self.config);
        self.reader.push_bytes(live.leftover);
        let now = Instant::now();
        self.last_sent = now;
        self.last_received = now;
        // The first message after the handshake's Ping: the receive window and where each mailbox resumes. (Its
        // argument, a number and a map of strings to numbers, always encodes.)
        if let Ok(hello) = self.receiver.hello_invocation() {
            let _ = self.queue(&HubMessage::Invocation(hello));
        }
        self.calls.connected();
    }

    /// The connection is over: fail what waits on it and stop its tasks.
    fn end_connection(&mut self) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Result(reply) => {
                    let _ = reply.send(Err(InvokeError::ConnectionClosed));
                }
                Pending::Stream(items) => {
                    // Behind the items still buffered, so the reader learns that the stream was cut short (one
                    // short-lived task per open stream).
                    tokio::spawn(async move {
                        let _ = items.send(Err(InvokeError::ConnectionClosed)).await;
                    });
                }
            }
        }
        for written in self.written.drain(..) {
            let _ = written.send(Err(InvokeError::ConnectionClosed));
        }
        for upload in self.uploads.drain(..) {
            upload.abort();
        }
        self.receiver.disconnected();
        self.calls.disconnected();
        self.out.clear();
        self.waiting = None;
        self.blocked = None;
        self.link = None;
        self.reattach = None;
    }

    /// `stop()`: a Close message, then a clean close of the transport.
    async fn finish_stopped(&mut self) {
        if let Some(mut transport) = self.transport.take() {
            self.out.clear();
            let _ = self
                .config
                .protocol
                .encode(&HubMessage::Close(Close::default()), &mut self.out);
            let payload = self.out.split().freeze();
            let frame = frame(self.config.protocol, payload);
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                let _ = transport.send(frame).await;
                let _ = transport.close().await;
            })
            .await;
        }
    }

    /// One immediate attempt to re-open a stateful connection whose transport broke. On success both sides send
    /// `Sequence` and replay what the other may have missed.
    async fn try_reattach(&mut self) -> bool {
        let (Some(reattach), Some(link)) = (&mut self.reattach, &mut self.link) else {
            return false;
        };
        link.detach();
        self.transport = None;
        self.out.clear();
        // Bytes of a message cut by the break are not part of any message the server will replay.
        self.reader = reader(&self.config);
        let stop = &mut self.channels.stop;
        let reopened = tokio::select! {
            reopened = reattach.reopen() => reopened,
            () = stopped(stop) => return false,
        };
        let Ok(transport) = reopened else {
            return false;
        };
        self.transport = Some(transport);
        link.attach();
        let now = Instant::now();
        self.last_sent = now;
        self.last_received = now;
        self.take_transmits();
        true
    }

    /// Automatic reconnect: new connections until one is up or the policy gives up (`Err` with the error to close
    /// with). `stop()` ends it at once.
    async fn reconnect(&mut self, error: Option<String>) -> Result<Live, Option<String>> {
        let Some(policy) = self.config.reconnect.clone() else {
            return Err(error);
        };
        let connection_id = self.channels.status.borrow().connection_id.clone();
        self.set_status(ConnectionState::Reconnecting, connection_id, None);
        let _ = self.channels.events.send(ConnectionEvent::Reconnecting {
            error: error.clone(),
        });
        let began = Instant::now();
        let mut context = RetryContext {
            previous_retry_count: 0,
            elapsed: Duration::ZERO,
            reason: error,
        };
        loop {
            context.elapsed = began.elapsed();
            let Some(delay) = policy.next_retry_delay(&context) else {
                return Err(context.reason);
            };
            let attempt = async {
                tokio::time::sleep(delay).await;
                open(&self.config, self.connector.as_ref()).await
            };
            let mut attempt = std::pin::pin!(attempt);
            let (stop, calls, reliable) = (
                &mut self.channels.stop,
                &mut self.calls,
                &mut self.channels.reliable,
            );
            // Meanwhile the outbox takes new reliable calls, and its calls expire on time.
            let result = loop {
                let deadline = calls.deadline();
                tokio::select! {
                    result = &mut attempt => break result,
                    () = stopped(stop) => return Err(None),
                    Some(call) = reliable.recv() => calls.push(call),
                    () = until(deadline) => calls.handle_timeout(),
                }
            };
            match result {
                Ok(live) => return Ok(live),
                Err(error) => {
                    context.previous_retry_count += 1;
                    context.reason = Some(error.to_string());
                }
            }
        }
    }

    /// Runs the current transport until it ends.
    async fn drive(&mut self) -> End {
        loop {
            // Answers to buffered messages (a missing client method, say) go out before the driver sleeps.
            if let Err(end) = self.process_buffered() {
                return end;
            }
            self.send_reliable_calls();
            if let Err(end) = self.flush().await {
                return end;
            }
            let event = self.next_event().await;
            if let Err(end) = self.handle(event) {
                return end;
            }
            self.gather_ready();
            self.gather_after_yield().await;
        }
    }

    /// Before a frame goes out, lets the other tasks run once and takes the calls they made meanwhile (callers
    /// woken by the completions just handled, most often), so that under load one frame and one system call carry
    /// many messages. Only while other calls are in flight, so that one call at a time goes out at once; no timer.
    async fn gather_after_yield(&mut self) {
        if !self.out.is_empty() && self.pending.len() > 1 {
            tokio::task::yield_now().await;
            self.gather_ready();
        }
    }

    /// Whether new calls may be taken: not while a stateful connection's buffer holds
    /// `stateful_reconnect_buffer_size` bytes or more (they wait for acks), as with the official clients. Only
    /// calls wait, so one message may overshoot the bound.
    fn accepting(&self) -> bool {
        self.link
            .as_ref()
            .is_none_or(|link| link.buffered_bytes() < self.config.stateful_reconnect_buffer_size)
    }

    fn reading(&self) -> bool {
        self.waiting.is_none() && self.blocked.is_none()
    }

    fn next_deadline(&self) -> Instant {
        let keep_alive = self.last_sent + self.config.keep_alive_interval;
        // While reading is paused the server's messages wait unread, so its silence cannot be judged.
        let server_timeout = self
            .reading()
            .then(|| self.last_received + self.config.server_timeout);
        let ack = self.link.as_ref().and_then(Link::ack_deadline);
        [server_timeout, ack, self.calls.deadline()]
            .into_iter()
            .flatten()
            .fold(keep_alive, Instant::min)
    }

    async fn next_event(&mut self) -> Event {
        let reading = self.reading();
        let accepting = self.accepting();
        let deadline = self.next_deadline();
        if deadline != self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
        let timer = &mut self.timer;
        let Some(transport) = self.transport.as_mut() else {
            return Event::Frame(None);
        };
        let blocked = self.blocked.as_mut();
        let stop = &mut self.channels.stop;
        tokio::select! {
            () = stopped(stop) => Event::Stop,
            () = unblocked(blocked) => Event::Unblocked,
            frame = transport.next(), if reading => Event::Frame(frame),
            command = self.channels.commands.recv(), if accepting => Event::Command(command),
            Some(call) = self.channels.reliable.recv(), if accepting => Event::Reliable(call),
            Some(internal) = self.internal.recv(), if accepting => Event::Internal(internal),
            Some(id) = self.channels.cancels.recv() => Event::Cancel(id),
            () = timer => Event::Timer,
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), End> {
        match event {
            Event::Stop | Event::Command(None) => return Err(End::Stopped),
            Event::Frame(None) => {
                return Err(End::Lost {
                    error: None,
                    reconnect: true,
                });
            }
            Event::Frame(Some(Err(error))) => return Err(End::Broken(error.to_string())),
            Event::Frame(Some(Ok(frame))) => {
                self.last_received = Instant::now();
                self.reader.push_bytes(frame.into_payload());
            }
            Event::Command(Some(command)) => self.on_command(command),
            Event::Reliable(call) => self.calls.push(call),
            Event::Internal(internal) => self.on_internal(internal),
            Event::Cancel(id) => {
                if self.pending.remove(&id).is_some() {
                    // Messages without payloads always encode.
                    let _ = self.queue(&HubMessage::CancelInvocation(CancelInvocation {
                        headers: Headers::new(),
                        invocation_id: id,
                    }));
                }
            }
            Event::Unblocked => {
                self.blocked = None;
                self.resume_reading();
            }
            Event::Timer => self.on_timer()?,
        }
        Ok(())
    }

    /// Reading resumes after a pause: the server timeout counts from now.
    fn resume_reading(&mut self) {
        self.last_received = Instant::now();
    }

    fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        self.calls.handle_timeout();
        if self.reading() && now >= self.last_received + self.config.server_timeout {
            return Err(End::Lost {
                error: Some(SERVER_TIMEOUT.into()),
                reconnect: true,
            });
        }
        if let Some(sequence_id) = self.link.as_mut().and_then(Link::poll_ack) {
            let _ = self.queue(&HubMessage::Ack(Ack { sequence_id }));
        }
        if now >= self.last_sent + self.config.keep_alive_interval && self.out.is_empty() {
            let _ = self.queue(&HubMessage::Ping);
        }
        Ok(())
    }

    /// Decodes and handles buffered messages until none is complete or reading must pause.
    fn process_buffered(&mut self) -> Result<(), End> {
        while self.reading() {
            match self.reader.next_message() {
                Ok(Some(message)) => self.on_message(message)?,
                Ok(None) => break,
                Err(error) => {
                    return Err(End::Lost {
                        error: Some(error.to_string()),
                        reconnect: true,
                    });
                }
            }
        }
        Ok(())
    }

    fn on_message(&mut self, message: HubMessage) -> Result<(), End> {
        if message.is_trackable() && self.link.as_mut().is_some_and(|link| !link.receive()) {
            return Ok(());
        }
        match message {
            HubMessage::Invocation(invocation) => self.on_invocation(invocation),
            HubMessage::StreamItem(StreamItem {
                invocation_id,
                item,
                ..
            }) => self.on_stream_item(&invocation_id, item),
            HubMessage::Completion(completion) => self.on_completion(completion),
            // JavaScript clients ignore these: a server does not call streams on its clients.
            HubMessage::StreamInvocation(_)
            | HubMessage::CancelInvocation(_)
            | HubMessage::Ping => {}
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            }) => {
                return Err(End::Lost {
                    error: error.map(|error| format!("Server returned an error on close: {error}")),
                    reconnect: allow_reconnect,
                });
            }
            HubMessage::Ack(Ack { sequence_id }) => {
                if let Some(link) = &mut self.link {
                    link.handle_ack(sequence_id);
                }
            }
            HubMessage::Sequence(Sequence { sequence_id }) => {
                if let Some(link) = &mut self.link
                    && let Err(error) = link.handle_sequence(sequence_id)
                {
                    return Err(End::Lost {
                        error: Some(error.to_string()),
                        reconnect: true,
                    });
                }
            }
        }
        Ok(())
    }

    fn on_invocation(&mut self, invocation: Invocation) {
        if self.handlers_running >= self.config.maximum_parallel_handlers {
            self.waiting = Some(invocation);
            return;
        }
        let invocation = match Kind::of(invocation) {
            Kind::Ordinary(invocation) => invocation,
            Kind::Reliable(arrival) => {
                let mut actions = Vec::new();
                self.receiver.arrive(arrival, &mut actions);
                self.act(actions);
                return;
            }
            Kind::Invalid(id, answer) => {
                self.complete(id, answer);
                return;
            }
        };
        let Invocation {
            invocation_id: id,
            target,
            arguments,
            ..
        } = invocation;
        let generation = self.generation;
        let started = self.run_handler(&target, &arguments, move |outcome| Internal::Handled {
            generation,
            id,
            result: match outcome {
                Ok(value) => CompletionResult::Value(value),
                Err(error) => CompletionResult::Error(error.into()),
            },
        });
        if let Some(Internal::Handled {
            id: Some(id),
            result,
            ..
        }) = started
        {
            self.complete(id, result);
        }
    }

    /// Runs the client method `target`: polled once here, as the JavaScript client runs a handler inline, so that
    /// a method that finishes at once is answered without a task (and its answer shares the next frame with the
    /// others'); one that waits goes on a task of its own, which reports `done(outcome)`. Returns `Some(done(..))`
    /// when the outcome is known at once: the method finished on its first poll, is missing, or its arguments do
    /// not bind.
    fn run_handler(
        &mut self,
        target: &str,
        arguments: &[Payload],
        done: impl FnOnce(Result<Payload, String>) -> Internal + Send + 'static,
    ) -> Option<Internal> {
        let call = match self.config.handlers.get(&target.to_ascii_lowercase()) {
            None => Err(NO_RESULT.to_owned()),
            Some(handler) => handler(self.config.protocol, arguments),
        };
        let call = match call {
            Ok(call) => call,
            Err(error) => return Some(done(Err(error))),
        };
        let mut call = std::panic::AssertUnwindSafe(call).catch_unwind();
        if let Some(outcome) = (&mut call).now_or_never() {
            return Some(done(outcome.unwrap_or_else(|_| Err(PANICKED.to_owned()))));
        }
        self.handlers_running += 1;
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let outcome = call.await.unwrap_or_else(|_| Err(PANICKED.to_owned()));
            let _ = internal.send(done(outcome)).await;
        });
        None
    }

    /// Carries out what the receiver asks: answers, and client methods to run (whose immediate failures may ask for
    /// more).
    fn act(&mut self, actions: Vec<Action>) {
        let mut actions = VecDeque::from(actions);
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Complete { id, result } => self.complete(id, result),
                Action::Run {
                    mailbox,
                    seq,
                    target,
                    arguments,
                } => {
                    let started = self.run_handler(&target, &arguments, {
                        let mailbox = mailbox.clone();
                        move |outcome| Internal::Delivered {
                            mailbox,
                            seq,
                            outcome,
                        }
                    });
                    if let Some(Internal::Delivered { outcome, .. }) = started {
                        let mut more = Vec::new();
                        self.receiver.handled(&mailbox, seq, outcome, &mut more);
                        actions.extend(more);
                    }
                }
            }
        }
    }

    /// Writes the reliable calls the outbox wants sent (new ones, and resends), each with a new invocation id.
    fn send_reliable_calls(&mut self) {
        while self.accepting() {
            let next_id = &self.channels.next_id;
            let Some(invocation) = self
                .calls
                .poll_transmit(|| next_id.fetch_add(1, Ordering::Relaxed).to_string().into())
            else {
                break;
            };
            let _ = self.queue(&HubMessage::Invocation(invocation));
        }
    }

    fn on_stream_item(&mut self, id: &ByteString, item: Payload) {
        let Some(Pending::Stream(items)) = self.pending.get(id) else {
            return;
        };
        // A closed receiver means the reader dropped the stream: its cancel is on its way.
        if let Err(mpsc::error::TrySendError::Full(item)) = items.try_send(Ok(item)) {
            let items = items.clone();
            self.blocked = Some(
                async move {
                    let _ = items.send(item).await;
                }
                .boxed(),
            );
        }
    }

    fn on_completion(&mut self, completion: Completion) {
        let Completion {
            invocation_id: id,
            result,
            ..
        } = completion;
        match self.pending.remove(&id) {
            Some(Pending::Result(reply)) => {
                let answer = match result {
                    CompletionResult::Value(payload) => Ok(payload),
                    CompletionResult::Void => Ok(Payload::null(self.config.protocol)),
                    CompletionResult::Error(error) => Err(InvokeError::Hub(error.to_string())),
                };
                let _ = reply.send(answer);
            }
            Some(Pending::Stream(items)) => {
                if let CompletionResult::Error(error) = result {
                    // After the items before it were taken; dropping `items` then ends the stream.
                    self.blocked = Some(
                        async move {
                            let _ = items.send(Err(InvokeError::Hub(error.to_string()))).await;
                        }
                        .boxed(),
                    );
                }
            }
            None => {
                self.calls.complete(&id, result);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let Command::Call {
            id,
            target,
            arguments,
            uploads,
            reply,
        } = command;
        let stream_ids: Vec<ByteString> = uploads.iter().map(|(id, _)| id.clone()).collect();
        let message = match (&reply, id.clone()) {
            (Reply::Stream(_), Some(id)) => HubMessage::StreamInvocation(StreamInvocation {
                headers: Headers::new(),
                invocation_id: id,
                target: target.into(),
                arguments,
                stream_ids,
            }),
            (_, id) => HubMessage::Invocation(Invocation {
                headers: Headers::new(),
                invocation_id: id,
                target: target.into(),
                arguments,
                stream_ids,
            }),
        };
        if let Err(error) = self.queue(&message) {
            let error = InvokeError::from(error);
            match reply {
                Reply::Result(reply) => drop(reply.send(Err(error))),
                Reply::Written(reply) => drop(reply.send(Err(error))),
                Reply::Stream(items) => drop(items.try_send(Err(error))),
            }
            return;
        }
        match (reply, id) {
            (Reply::Result(reply), Some(id)) => {
                self.pending.insert(id, Pending::Result(reply));
            }
            (Reply::Stream(items), Some(id)) => {
                self.pending.insert(id, Pending::Stream(items));
            }
            (Reply::Written(reply), _) => self.written.push(reply),
            // Calls with an answer always carry an id.
            (Reply::Result(_) | Reply::Stream(_), None) => {}
        }
        for (id, upload) in uploads {
            self.spawn_upload(id, upload);
        }
    }

    /// Feeds an upload stream to the driver, as fast as the driver takes its items.
    fn spawn_upload(&mut self, id: ByteString, mut upload: Upload) {
        let internal = self.internal_tx.clone();
        let generation = self.generation;
        let task = tokio::spawn(async move {
            let end = loop {
                match upload.next().await {
                    Some(Ok(item)) => {
                        let item = Internal::Upload {
                            generation,
                            id: id.clone(),
                            item: Ok(item),
                        };
                        if internal.send(item).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break None,
                }
            };
            let _ = internal
                .send(Internal::Upload {
                    generation,
                    id,
                    item: Err(end),
                })
                .await;
        });
        self.uploads.retain(|upload| !upload.is_finished());
        self.uploads.push(task.abort_handle());
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Handled {
                generation,
                id,
                result,
            } => {
                self.handlers_running -= 1;
                if generation == self.generation
                    && let Some(id) = id
                {
                    self.complete(id, result);
                }
                if let Some(invocation) = self.waiting.take() {
                    self.resume_reading();
                    self.on_invocation(invocation);
                }
            }
            Internal::Delivered {
                mailbox,
                seq,
                outcome,
            } => {
                self.handlers_running -= 1;
                let mut actions = Vec::new();
                self.receiver.handled(&mailbox, seq, outcome, &mut actions);
                self.act(actions);
                if let Some(invocation) = self.waiting.take() {
                    self.resume_reading();
                    self.on_invocation(invocation);
                }
            }
            Internal::Upload {
                generation,
                id,
                item,
            } if generation == self.generation => {
                let message = match item {
                    Ok(item) => HubMessage::StreamItem(StreamItem {
                        headers: Headers::new(),
                        invocation_id: id,
                        item,
                    }),
                    Err(error) => HubMessage::Completion(Completion {
                        headers: Headers::new(),
                        invocation_id: id,
                        result: error.map_or(CompletionResult::Void, |error| {
                            CompletionResult::Error(error.into())
                        }),
                    }),
                };
                let _ = self.queue(&message);
            }
            Internal::Upload { .. } => {}
        }
    }

    /// Takes whatever else is ready, without waiting, to fill the next frame.
    fn gather_ready(&mut self) {
        while self.out.len() < 64 * 1024 && self.accepting() {
            if let Ok(internal) = self.internal.try_recv() {
                self.on_internal(internal);
            } else if let Ok(command) = self.channels.commands.try_recv() {
                self.on_command(command);
            } else if let Ok(call) = self.channels.reliable.try_recv() {
                self.calls.push(call);
            } else {
                break;
            }
        }
    }

    fn complete(&mut self, id: ByteString, result: CompletionResult) {
        let _ = self.queue(&HubMessage::Completion(Completion {
            headers: Headers::new(),
            invocation_id: id,
            result,
        }));
    }

    /// Encodes a message for the next frame (numbered and buffered first if trackable on a stateful connection).
    fn queue(&mut self, message: &HubMessage) -> Result<(), courier_protocol::ProtocolError> {
        match &mut self.link {
            Some(link) if message.is_trackable() => {
                let mut framed = BytesMut::new();
                self.config.protocol.encode(message, &mut framed)?;
                link.push(framed.freeze());
                self.take_transmits();
            }
            // Straight into the frame, without a buffer of its own (a failed encode leaves nothing behind).
            _ => self.config.protocol.encode(message, &mut self.out)?,
        }
        Ok(())
    }

    /// Moves what the link wants sent (a `Sequence` after a reattach, the replay, new messages) into the next frame.
    fn take_transmits(&mut self) {
        let Some(link) = &mut self.link else { return };
        while let Some(transmit) = link.poll_transmit() {
            match transmit {
                Ok(framed) => self.out.extend_from_slice(&framed),
                Err(first) => {
                    let _ = self.config.protocol.encode(
                        &HubMessage::Sequence(Sequence { sequence_id: first }),
                        &mut self.out,
                    );
                }
            }
        }
    }

    /// Sends what is queued as one frame.
    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(transport) = &mut self.transport else {
            return Ok(());
        };
        let payload = self.out.split().freeze();
        match transport.send(frame(self.config.protocol, payload)).await {
            Ok(()) => {
                self.last_sent = Instant::now();
                for written in self.written.drain(..) {
                    let _ = written.send(Ok(()));
                }
                Ok(())
            }
            Err(error) => Err(End::Broken(error.to_string())),
        }
    }
}

/// Completes when `stop()` was called or every handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Completes at `deadline` (never, if there is none).
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Completes when the blocked stream item was handed over (never, if none is blocked).
async fn unblocked(blocked: Option<&mut BoxFuture<'static, ()>>) {
    match blocked {
        Some(blocked) => blocked.await,
        None => std::future::pending().await,
    }
}
