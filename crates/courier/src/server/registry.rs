//! The hub's live connections, groups and users (ASP.NET Core's `DefaultHubLifetimeManager`), and delivery of
//! messages into connections' outbound queues.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use courier_protocol::{Headers, Payload, Protocol, ProtocolError};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::server::connection::Internal;
use crate::server::{ClientResultError, ConnectionId, Identity};
use crate::store::{MailboxId, MailboxKind};

/// What other connections and the app put into a connection's outbound queue.
pub(crate) enum Outbound {
    /// One framed hub message, already encoded for the connection's protocol.
    Message(Bytes),
    /// From the connection's own invocations and streams.
    Own(Box<Internal>),
    /// A client-result invocation: the connection gives it an id and routes the client's Completion to `reply`.
    InvokeClient(Box<ClientInvocation>),
}

/// A client-result invocation on its way to its connection ([`Outbound::InvokeClient`]).
///
/// Boxed in [`Outbound`], as [`Internal`] is, so a slot of the outbound queue is small: the queue allocates its
/// slots 32 at a time, the first block when the connection starts, and an idle connection keeps it.
pub(crate) struct ClientInvocation {
    pub(crate) headers: Headers,
    pub(crate) target: String,
    pub(crate) arguments: Vec<Payload>,
    pub(crate) reply: oneshot::Sender<Result<Payload, ClientResultError>>,
}

/// Why a connection is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Graceful shutdown: finish running invocations, send Close, end.
    Shutdown,
    /// Abort at once, without a Close (a send to it timed out, or the shutdown deadline passed).
    Abort,
    /// End at once with a plain Close (the app called [`Context::abort`](crate::server::Context::abort)).
    Close,
}

/// A connection as the registry knows it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) protocol: Protocol,
    pub(crate) identity: Identity,
    pub(crate) outbound: mpsc::Sender<Outbound>,
    pub(crate) stop: watch::Sender<Option<Stop>>,
    groups: HashSet<String>,
    /// How many messages of one mailbox its client reorders (from a Courier client's hello; 1 otherwise).
    receive_window: usize,
}

impl Entry {
    pub(crate) fn new(
        protocol: Protocol,
        identity: Identity,
        outbound: mpsc::Sender<Outbound>,
        stop: watch::Sender<Option<Stop>>,
    ) -> Self {
        Self {
            protocol,
            identity,
            outbound,
            stop,
            groups: HashSet::new(),
            receive_window: 1,
        }
    }
}

/// Who a send goes to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    All {
        except: Vec<ConnectionId>,
    },
    Connections(Vec<ConnectionId>),
    Group {
        name: String,
        except: Vec<ConnectionId>,
    },
    User(String),
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, Entry>,
    groups: HashMap<String, HashSet<ConnectionId>>,
    users: HashMap<String, HashSet<ConnectionId>>,
    /// Connections by client id.
    clients: HashMap<String, HashSet<ConnectionId>>,
    shutting_down: bool,
}

/// One recipient of a send, taken out of the registry so that no lock is held while waiting.
struct Recipient {
    protocol: Protocol,
    outbound: mpsc::Sender<Outbound>,
    stop: watch::Sender<Option<Stop>>,
}

/// Every live (handshaken) connection of a hub.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
    /// Signalled whenever a connection leaves (shutdown waits on it).
    left: Notify,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, but a poisoned map is still consistent: every update is one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection; refused (false) once shutdown began.
    pub(crate) fn insert(&self, id: ConnectionId, entry: Entry) -> bool {
        let mut state = self.lock();
        if state.shutting_down {
            return false;
        }
        if let Some(user) = entry.identity.user_id() {
            state
                .users
                .entry(user.to_owned())
                .or_default()
                .insert(id.clone());
        }
        if let Some(client) = entry.identity.client_id() {
            state
                .clients
                .entry(client.to_owned())
                .or_default()
                .insert(id.clone());
        }
        state.connections.insert(id, entry);
        true
    }

    /// Removes a connection from the registry, its groups and its user.
    pub(crate) fn remove(&self, id: &ConnectionId) {
        let mut state = self.lock();
        if let Some(entry) = state.connections.remove(id) {
            for group in entry.groups {
                remove_member(&mut state.groups, &group, id);
            }
            if let Some(user) = entry.identity.user_id() {
                remove_member(&mut state.users, user, id);
            }
            if let Some(client) = entry.identity.client_id() {
                remove_member(&mut state.clients, client, id);
            }
        }
        drop(state);
        self.left.notify_waiters();
    }

    pub(crate) fn add_to_group(&self, id: &ConnectionId, group: &str) {
        let mut state = self.lock();
        let Some(entry) = state.connections.get_mut(id) else {
            return;
        };
        entry.groups.insert(group.to_owned());
        state
            .groups
            .entry(group.to_owned())
            .or_default()
            .insert(id.clone());
    }

    pub(crate) fn remove_from_group(&self, id: &ConnectionId, group: &str) {
        let mut state = self.lock();
        let Some(entry) = state.connections.get_mut(id) else {
            return;
        };
        entry.groups.remove(group);
        remove_member(&mut state.groups, group, id);
    }

    /// The protocol and queue of one connection.
    pub(crate) fn connection(
        &self,
        id: &ConnectionId,
    ) -> Option<(Protocol, mpsc::Sender<Outbound>)> {
        self.lock()
            .connections
            .get(id)
            .map(|entry| (entry.protocol, entry.outbound.clone()))
    }

    /// The connections that read an identity's mailboxes: the user's, or the client id's.
    pub(crate) fn identity_connections(&self, identity: &MailboxId) -> Vec<ConnectionId> {
        let state = self.lock();
        let members = match identity.kind() {
            MailboxKind::User => state.users.get(identity.name()),
            MailboxKind::Client => state.clients.get(identity.name()),
        };
        members
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The identity mailboxes of a group's connections: a member's user, else its client id (anonymous
    /// members have none), each once.
    pub(crate) fn group_identities(&self, group: &str) -> Vec<MailboxId> {
        let state = self.lock();
        let mut identities: Vec<MailboxId> = state
            .groups
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|id| state.connections.get(id))
            .filter_map(|entry| {
                let identity = &entry.identity;
                identity
                    .user_id()
                    .map(MailboxId::user)
                    .or_else(|| identity.client_id().map(MailboxId::client))
            })
            .collect();
        identities.sort();
        identities.dedup();
        identities
    }

    /// Records what a connection's client said it reorders.
    pub(crate) fn set_receive_window(&self, id: &ConnectionId, window: usize) {
        if let Some(entry) = self.lock().connections.get_mut(id) {
            entry.receive_window = window;
        }
    }

    /// How many messages of one mailbox a connection's client reorders (1 unless it said otherwise).
    pub(crate) fn receive_window(&self, id: &ConnectionId) -> usize {
        self.lock()
            .connections
            .get(id)
            .map_or(1, |entry| entry.receive_window)
    }

    /// Tells one connection to stop.
    pub(crate) fn stop(&self, id: &ConnectionId, stop: Stop) {
        if let Some(entry) = self.lock().connections.get(id) {
            entry.stop.send_replace(Some(stop));
        }
    }

    /// Refuses new connections and tells every connection to shut down; the number still live.
    pub(crate) fn begin_shutdown(&self) -> usize {
        let mut state = self.lock();
        state.shutting_down = true;
        for entry in state.connections.values() {
            entry.stop.send_replace(Some(Stop::Shutdown));
        }
        state.connections.len()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Waits until no connection is left.
    pub(crate) async fn wait_empty(&self) {
        loop {
            let left = self.left.notified();
            if self.lock().connections.is_empty() {
                return;
            }
            left.await;
        }
    }

    /// Aborts every connection still live.
    pub(crate) fn abort_all(&self) {
        for entry in self.lock().connections.values() {
            entry.stop.send_replace(Some(Stop::Abort));
        }
    }

    fn recipients(&self, target: &Target) -> Vec<Recipient> {
        let state = self.lock();
        let recipient = |entry: &Entry| Recipient {
            protocol: entry.protocol,
            outbound: entry.outbound.clone(),
            stop: entry.stop.clone(),
        };
        let pick = |ids: &mut dyn Iterator<Item = &ConnectionId>, except: &[ConnectionId]| {
            ids.filter(|id| !except.contains(id))
                .filter_map(|id| state.connections.get(id))
                .map(recipient)
                .collect::<Vec<_>>()
        };
        match target {
            Target::All { except } => pick(&mut state.connections.keys(), except),
            Target::Connections(ids) => pick(&mut ids.iter(), &[]),
            Target::Group { name, except } => state
                .groups
                .get(name)
                .map(|members| pick(&mut members.iter(), except))
                .unwrap_or_default(),
            Target::User(user) => state
                .users
                .get(user)
                .map(|members| pick(&mut members.iter(), &[]))
                .unwrap_or_default(),
        }
    }

    /// Puts one message into the queue of every connection of `target`, encoding it once per protocol (the
    /// connections share the bytes). A full queue is waited on for up to `send_timeout`; then that connection is
    /// aborted (as .NET's `TransportSendTimeout`). Connections that end meanwhile are skipped.
    pub(crate) async fn send(
        &self,
        target: &Target,
        encode: impl Fn(Protocol) -> Result<BytesMut, ProtocolError>,
        send_timeout: Duration,
    ) -> Result<(), ProtocolError> {
        let recipients = self.recipients(target);
        // Encode for every protocol in use before delivering anything, so that a value one protocol cannot
        // encode fails the whole send rather than part of it.
        let mut encoded: [Option<Bytes>; 2] = [None, None];
        for recipient in &recipients {
            let slot = &mut encoded[usize::from(recipient.protocol == Protocol::MessagePack)];
            if slot.is_none() {
                *slot = Some(encode(recipient.protocol)?.freeze());
            }
        }
        let mut waiting = Vec::new();
        for recipient in recipients {
            let slot = &encoded[usize::from(recipient.protocol == Protocol::MessagePack)];
            let Some(bytes) = slot.clone() else { continue };
            match recipient.outbound.try_send(Outbound::Message(bytes)) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(message)) => waiting.push((recipient, message)),
            }
        }
        futures::future::join_all(waiting.into_iter().map(|(recipient, message)| async move {
            if tokio::time::timeout(send_timeout, recipient.outbound.send(message))
                .await
                .is_err()
            {
                recipient.stop.send_replace(Some(Stop::Abort));
            }
        }))
        .await;
        Ok(())
    }
}

fn remove_member(sets: &mut HashMap<String, HashSet<ConnectionId>>, key: &str, id: &ConnectionId) {
    if let Some(members) = sets.get_mut(key) {
        members.remove(id);
        if members.is_empty() {
            sets.remove(key);
        }
    }
}
