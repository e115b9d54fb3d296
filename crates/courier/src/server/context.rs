//! What a hub method knows: its connection, and handles to send to clients.

use std::sync::Arc;

use courier_protocol::Protocol;

use crate::TransportInfo;
use crate::server::registry::Stop;
use crate::server::reliable::{DeadLetter, Reliable};
use crate::server::{
    ClientProxy, Clients, ConnectionId, Groups, HubInner, Identity, SingleClientProxy,
};
use crate::store::MailboxId;

/// A handle on a hub for the application, outside hub methods (ASP.NET Core's `IHubContext`): send to clients and
/// manage groups. Cheap to clone.
#[derive(Clone)]
pub struct HubContext {
    pub(crate) hub: Arc<HubInner>,
}

impl std::fmt::Debug for HubContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubContext").finish_non_exhaustive()
    }
}

impl HubContext {
    /// Picks connections to send to.
    pub fn clients(&self) -> Clients {
        Clients::new(self.hub.clone())
    }

    /// Manages group membership.
    pub fn groups(&self) -> Groups {
        Groups::new(self.hub.clone())
    }

    /// Reliable sends to mailboxes (they need a hub built with a [`store`](crate::server::HubBuilder::store)).
    /// Sends from here cannot ask for receipts: there is no caller.
    pub fn reliable(&self) -> Reliable {
        Reliable {
            hub: self.hub.clone(),
            caller: None,
        }
    }

    /// Subscribes to dead-lettered reliable messages, as they happen (none without a store). A subscriber that
    /// falls more than [`dead_letter_capacity`](crate::server::ReliableOptions::dead_letter_capacity) behind
    /// skips the oldest and reads `Lagged`.
    pub fn dead_letters(&self) -> tokio::sync::broadcast::Receiver<DeadLetter> {
        match &self.hub.mailboxes {
            Some(mailboxes) => mailboxes.dead_letters(),
            None => tokio::sync::broadcast::channel(1).1,
        }
    }
}

/// The connection a hub method or hook runs for.
#[derive(Debug)]
pub(crate) struct ConnectionInfo {
    pub(crate) id: ConnectionId,
    pub(crate) identity: Identity,
    pub(crate) protocol: Protocol,
    pub(crate) transport: TransportInfo,
}

/// What a hub method (or lifecycle hook) gets about its call: the caller's connection and identity, and handles to
/// reach clients and groups (ASP.NET Core's `HubCallerContext` plus `Clients` and `Groups`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Context {
    hub: HubContext,
    connection: Arc<ConnectionInfo>,
}

impl Context {
    pub(crate) fn new(hub: HubContext, connection: Arc<ConnectionInfo>) -> Self {
        Self { hub, connection }
    }

    /// The caller's connection id.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.connection.id
    }

    /// The caller's user id, as the auth hook returned it (`None` for anonymous connections).
    pub fn user_id(&self) -> Option<&str> {
        self.connection.identity.user_id()
    }

    /// The caller's client id, as the auth hook returned it (see [`Identity`]).
    pub fn client_id(&self) -> Option<&str> {
        self.connection.identity.client_id()
    }

    /// The caller's identity, as the auth hook returned it.
    pub fn identity(&self) -> &Identity {
        &self.connection.identity
    }

    /// The hub protocol of the caller's connection.
    pub fn protocol(&self) -> Protocol {
        self.connection.protocol
    }

    /// What the transport knew of the connection (address, token, headers).
    pub fn transport_info(&self) -> &TransportInfo {
        &self.connection.transport
    }

    /// Ends the caller's connection (ASP.NET Core's `Context.Abort()`): it sends a plain Close (`{"type":7}`: no
    /// error, no `allowReconnect`) and closes its transport, for good even under stateful reconnect. Its
    /// streams stop, its running invocations finish unheard, and the disconnect hook runs without an error. The method that calls it still
    /// returns; its Completion may or may not reach the client before the Close. Does nothing if the connection
    /// has ended already.
    pub fn abort(&self) {
        self.hub.hub.registry.stop(&self.connection.id, Stop::Close);
    }

    /// The hub, for sends that outlive the call.
    pub fn hub(&self) -> &HubContext {
        &self.hub
    }

    /// Picks connections to send to.
    pub fn clients(&self) -> Clients {
        self.hub.clients()
    }

    /// Manages group membership.
    pub fn groups(&self) -> Groups {
        self.hub.groups()
    }

    /// Reliable sends to mailboxes; [`ReliableSend::with_receipt`](crate::server::ReliableSend::with_receipt)
    /// sends the receipt to the caller's identity (its user id, else its client id).
    pub fn reliable(&self) -> Reliable {
        let identity = &self.connection.identity;
        Reliable {
            hub: self.hub.hub.clone(),
            caller: identity
                .user_id()
                .map(MailboxId::user)
                .or_else(|| identity.client_id().map(MailboxId::client)),
        }
    }

    /// The caller's connection.
    pub fn caller(&self) -> SingleClientProxy {
        self.clients().client(self.connection.id.clone())
    }

    /// Every connection but the caller's.
    pub fn others(&self) -> ClientProxy {
        self.clients().all_except([self.connection.id.clone()])
    }

    /// Every connection in the group but the caller's.
    pub fn others_in_group(&self, group: impl Into<String>) -> ClientProxy {
        self.clients()
            .group_except(group, [self.connection.id.clone()])
    }
}
