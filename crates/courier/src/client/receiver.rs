//! The receiver side of Courier's mailboxes: reliable messages from a Courier server (client-result invocations
//! with `courier-*` headers) handed to the client methods exactly once and in order, and the `courier.hello` that
//! tells the server the receive window and where each mailbox resumes.
//!
//! Sans-IO: the driver feeds arrivals, handler outcomes and disconnects, and carries out the [`Action`]s (answer
//! an invocation, run a handler).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use courier_delivery::{Inbox, InboxConfig, Incoming, Received, Timestamp};
use courier_protocol::{ByteString, CompletionResult, Headers, Invocation, Payload, Protocol};
use serde::Serialize;

/// The hub method a Courier client calls after every handshake.
pub(super) const HELLO: &str = "courier.hello";

/// Why a message was answered with an error (a nack) without running its handler.
pub(super) const BEYOND_WINDOW: &str =
    "courier: the message is beyond the receive window; send the earlier ones first";
pub(super) const SETTLED: &str =
    "courier: the message was settled at the server before its handler ran";
pub(super) const SUPERSEDED: &str = "courier: superseded by a later attempt of the same message";
pub(super) const TOO_MANY_MAILBOXES: &str = "courier: too many mailboxes";

const MAILBOX: &str = "courier-mailbox";
const SEQ: &str = "courier-seq";
const FLOOR: &str = "courier-floor";

/// What the driver must do.
#[derive(Debug)]
pub(super) enum Action {
    /// Answer an invocation.
    Complete {
        id: ByteString,
        result: CompletionResult,
    },
    /// Hand a message to its client method; report the outcome with [`Receiver::handled`].
    Run {
        mailbox: ByteString,
        seq: u64,
        target: ByteString,
        arguments: Vec<Payload>,
    },
}

/// A reliable message as it arrived.
#[derive(Debug)]
pub(super) struct Arrival {
    id: ByteString,
    mailbox: ByteString,
    seq: u64,
    floor: u64,
    target: ByteString,
    arguments: Vec<Payload>,
}

/// What an invocation from the server is.
#[derive(Debug)]
pub(super) enum Kind {
    /// An ordinary invocation (no invocation id, or no `courier-mailbox` header): handled as before.
    Ordinary(Invocation),
    /// A reliable message.
    Reliable(Arrival),
    /// A reliable message whose `courier-seq` or `courier-floor` header is missing or not a decimal number: it is
    /// answered with this error.
    Invalid(ByteString, CompletionResult),
}

impl Kind {
    pub(super) fn of(invocation: Invocation) -> Self {
        let (Some(id), Some(mailbox)) = (
            invocation.invocation_id.clone(),
            invocation.headers.get(MAILBOX).cloned(),
        ) else {
            return Self::Ordinary(invocation);
        };
        let number = |name: &str| {
            invocation
                .headers
                .get(name)
                .and_then(|value| value.parse::<u64>().ok())
                .ok_or_else(|| format!("courier: invalid header {name}"))
        };
        match number(SEQ).and_then(|seq| Ok((seq, number(FLOOR)?))) {
            Ok((seq, floor)) => Self::Reliable(Arrival {
                id,
                mailbox,
                seq,
                floor,
                target: invocation.target,
                arguments: invocation.arguments,
            }),
            Err(error) => Self::Invalid(id, CompletionResult::Error(error.into())),
        }
    }
}

/// The `courier.hello` argument.
#[derive(Debug, Serialize)]
pub(super) struct Hello<'a> {
    window: u32,
    resume: BTreeMap<&'a str, u64>,
}

/// A message waiting for its turn: held for reordering, or released behind the one running.
#[derive(Debug)]
struct Waiting {
    /// The invocation to answer (the latest attempt's).
    id: ByteString,
    target: ByteString,
    arguments: Vec<Payload>,
}

/// The message whose handler runs.
#[derive(Debug)]
struct Running {
    seq: u64,
    /// The invocation to answer; `None` once its connection is gone and no resend arrived yet.
    id: Option<ByteString>,
}

/// One mailbox: handlers run one at a time, in sequence order.
#[derive(Debug)]
struct Mailbox {
    /// Reordering and floors. Its watermark is the highest number released to the handler (run, running or
    /// waiting behind the running one).
    inbox: Inbox,
    /// Every number at or below it was handed to the application (its handler returned `Ok`) or is settled at the
    /// server (below a floor). What the hello reports.
    settled: u64,
    /// Held and released messages not running yet, by number; all above `settled`, at most `window` apart.
    waiting: BTreeMap<u64, Waiting>,
    running: Option<Running>,
}

/// Every mailbox this client process has seen.
#[derive(Debug)]
pub(super) struct Receiver {
    protocol: Protocol,
    window: u32,
    maximum_mailboxes: usize,
    mailboxes: HashMap<ByteString, Mailbox>,
}

impl Receiver {
    pub(super) fn new(protocol: Protocol, window: u32, maximum_mailboxes: usize) -> Self {
        Self {
            protocol,
            window: window.max(1),
            maximum_mailboxes,
            mailboxes: HashMap::new(),
        }
    }

    fn inbox_config(&self) -> InboxConfig {
        InboxConfig::default().window(self.window as usize)
    }

    /// The hello for a new connection: the window, and where each mailbox resumes.
    pub(super) fn hello(&self) -> Hello<'_> {
        Hello {
            window: self.window,
            resume: self
                .mailboxes
                .iter()
                .map(|(key, mailbox)| (&**key, mailbox.settled))
                .collect(),
        }
    }

    /// The hello, encoded as a non-blocking invocation of [`HELLO`].
    pub(super) fn hello_invocation(&self) -> Result<Invocation, courier_protocol::ProtocolError> {
        Ok(Invocation {
            headers: Headers::new(),
            invocation_id: None,
            target: HELLO.into(),
            arguments: vec![Payload::from_value(self.protocol, &self.hello())?],
            stream_ids: Vec::new(),
        })
    }

    /// A reliable message arrived.
    pub(super) fn arrive(&mut self, arrival: Arrival, actions: &mut Vec<Action>) {
        let Arrival {
            id,
            mailbox: key,
            seq,
            floor,
            target,
            arguments,
        } = arrival;
        // The highest number is refused too, so that `number + 1` never overflows.
        if seq == 0 || seq == u64::MAX || floor > seq {
            let error = courier_delivery::InboxError::InvalidSequence { seq, floor };
            actions.push(error_answer(id, &format!("courier: {error}")));
            return;
        }
        if !self.mailboxes.contains_key(&key) {
            if self.mailboxes.len() >= self.maximum_mailboxes {
                actions.push(error_answer(id, TOO_MANY_MAILBOXES));
                return;
            }
            let mailbox = Mailbox {
                inbox: Inbox::new(self.inbox_config()),
                settled: 0,
                waiting: BTreeMap::new(),
                running: None,
            };
            self.mailboxes.insert(key.clone(), mailbox);
        }
        let window = u64::from(self.window);
        let config = self.inbox_config();
        let Some(mailbox) = self.mailboxes.get_mut(&key) else {
            return;
        };
        mailbox.settle_below(floor, config, actions);
        if seq <= mailbox.settled {
            // Already handed to the application (or settled at the server): ack again, do not hand it twice.
            actions.push(Action::Complete {
                id,
                result: CompletionResult::Value(Payload::null(self.protocol)),
            });
        } else if let Some(running) = mailbox.running.as_mut().filter(|r| r.seq == seq) {
            // A resend while its handler runs: the handler's outcome answers the newest attempt.
            if let Some(old) = running.id.replace(id) {
                actions.push(error_answer(old, SUPERSEDED));
            }
        } else if let Some(waiting) = mailbox.waiting.get_mut(&seq) {
            let old = std::mem::replace(&mut waiting.id, id);
            actions.push(error_answer(old, SUPERSEDED));
        } else if seq > mailbox.settled.saturating_add(window) {
            actions.push(error_answer(id, BEYOND_WINDOW));
        } else {
            let incoming = Incoming {
                seq,
                floor,
                payload: Bytes::new(),
            };
            match mailbox.inbox.handle_message(incoming, Timestamp::ZERO) {
                Ok(Received::Delivered | Received::Held) => {
                    mailbox.waiting.insert(
                        seq,
                        Waiting {
                            id,
                            target,
                            arguments,
                        },
                    );
                }
                // Not reached: numbers at or below the inbox's watermark are settled, running or waiting, and the
                // window check keeps the inbox from dropping.
                Ok(_) | Err(_) => actions.push(error_answer(id, BEYOND_WINDOW)),
            }
            mailbox.drain_inbox();
        }
        mailbox.start_next(&key, actions);
    }

    /// The handler of `seq` in `mailbox` returned: `Ok` with its result, or `Err` with the error's text.
    pub(super) fn handled(
        &mut self,
        key: &ByteString,
        seq: u64,
        outcome: Result<Payload, String>,
        actions: &mut Vec<Action>,
    ) {
        let config = self.inbox_config();
        let Some(mailbox) = self.mailboxes.get_mut(key) else {
            return;
        };
        let Some(running) = mailbox.running.take_if(|running| running.seq == seq) else {
            return;
        };
        match outcome {
            Ok(value) => {
                mailbox.settled = mailbox.settled.max(seq);
                if let Some(id) = running.id {
                    actions.push(Action::Complete {
                        id,
                        result: CompletionResult::Value(value),
                    });
                }
            }
            Err(error) => {
                if let Some(id) = running.id {
                    actions.push(error_answer(id, &error));
                }
                if seq > mailbox.settled {
                    // The application did not take it: it must be handed over again when the server resends it,
                    // so the inbox goes back to before it, and what waited behind it is held again.
                    mailbox.rewind(config);
                }
            }
        }
        mailbox.start_next(key, actions);
    }

    /// The connection is gone: the invocations waiting belong to it (the server resends what is pending on the
    /// next one). Handlers still running finish; their outcome counts for the application.
    pub(super) fn disconnected(&mut self) {
        let config = self.inbox_config();
        for mailbox in self.mailboxes.values_mut() {
            mailbox.waiting.clear();
            let released = match &mut mailbox.running {
                Some(running) => {
                    running.id = None;
                    running.seq.max(mailbox.settled)
                }
                None => mailbox.settled,
            };
            mailbox.inbox = Inbox::resume_after(config, released);
        }
    }
}

impl Mailbox {
    /// Everything below `floor` is settled at the server: stop waiting for it, and answer the messages below it
    /// that did not run (the server ignores the answers; each invocation still gets one).
    fn settle_below(&mut self, floor: u64, config: InboxConfig, actions: &mut Vec<Action>) {
        let below = floor.saturating_sub(1);
        if below <= self.settled {
            return;
        }
        self.settled = below;
        let kept = self.waiting.split_off(&floor);
        for (_, waiting) in std::mem::replace(&mut self.waiting, kept) {
            actions.push(error_answer(waiting.id, SETTLED));
        }
        // Messages held just above the floor may go now.
        self.rewind(config);
    }

    /// The inbox's deliveries are the waiting entries at or below its watermark: nothing to keep from them.
    fn drain_inbox(&mut self) {
        while self.inbox.poll_delivery().is_some() {}
    }

    /// Starts the next released message if none runs.
    fn start_next(&mut self, key: &ByteString, actions: &mut Vec<Action>) {
        if self.running.is_some() {
            return;
        }
        let Some(entry) = self.waiting.first_entry() else {
            return;
        };
        let seq = *entry.key();
        if seq > self.inbox.watermark() {
            return;
        }
        let Waiting {
            id,
            target,
            arguments,
        } = entry.remove();
        self.running = Some(Running { seq, id: Some(id) });
        actions.push(Action::Run {
            mailbox: key.clone(),
            seq,
            target,
            arguments,
        });
    }

    /// A new inbox from `settled`, fed the waiting messages again: held, or released when they follow on.
    fn rewind(&mut self, config: InboxConfig) {
        self.inbox = Inbox::resume_after(config, self.settled);
        for &seq in self.waiting.keys() {
            // Floor 1 changes nothing; these numbers are within the window above `settled`, so none is dropped.
            let incoming = Incoming {
                seq,
                floor: 1,
                payload: Bytes::new(),
            };
            let _ = self.inbox.handle_message(incoming, Timestamp::ZERO);
        }
        self.drain_inbox();
    }
}

fn error_answer(id: ByteString, error: &str) -> Action {
    Action::Complete {
        id,
        result: CompletionResult::Error(error.into()),
    }
}
