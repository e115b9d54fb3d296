//! Sending to clients: [`Clients`] picks who, a proxy sends; [`Groups`] manages group membership.

use std::sync::Arc;

use bytes::BytesMut;
use courier_protocol::{Headers, HubMessage, Invocation, Protocol, ProtocolError};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::server::HubInner;
use crate::server::method::Arguments;
use crate::server::registry::{ClientInvocation, Outbound, Stop, Target};
use crate::server::{ClientResultError, ConnectionId, SendError};

/// Picks which connections a message goes to (ASP.NET Core's `IHubClients`).
///
/// Get it from [`HubContext::clients`](crate::server::HubContext::clients) outside a method, or from
/// [`Context::clients`](crate::server::Context::clients) inside one (which adds `caller` and `others`).
/// A send to connections that are gone, or to a group or user without connections, does nothing.
#[derive(Clone)]
pub struct Clients {
    hub: Arc<HubInner>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

impl Clients {
    pub(crate) fn new(hub: Arc<HubInner>) -> Self {
        Self { hub }
    }

    fn proxy(&self, target: Target) -> ClientProxy {
        ClientProxy {
            hub: self.hub.clone(),
            target,
        }
    }

    /// Every connection of the hub.
    pub fn all(&self) -> ClientProxy {
        self.proxy(Target::All { except: Vec::new() })
    }

    /// Every connection but these.
    pub fn all_except(&self, excluded: impl IntoIterator<Item = ConnectionId>) -> ClientProxy {
        self.proxy(Target::All {
            except: excluded.into_iter().collect(),
        })
    }

    /// One connection; it can also answer client-result invocations.
    pub fn client(&self, id: impl Into<ConnectionId>) -> SingleClientProxy {
        SingleClientProxy {
            hub: self.hub.clone(),
            id: id.into(),
        }
    }

    /// These connections.
    pub fn clients(&self, ids: impl IntoIterator<Item = ConnectionId>) -> ClientProxy {
        self.proxy(Target::Connections(ids.into_iter().collect()))
    }

    /// Every connection in the group.
    pub fn group(&self, name: impl Into<String>) -> ClientProxy {
        self.proxy(Target::Group {
            name: name.into(),
            except: Vec::new(),
        })
    }

    /// Every connection in the group but these.
    pub fn group_except(
        &self,
        name: impl Into<String>,
        excluded: impl IntoIterator<Item = ConnectionId>,
    ) -> ClientProxy {
        self.proxy(Target::Group {
            name: name.into(),
            except: excluded.into_iter().collect(),
        })
    }

    /// Every connection of the user (as the auth hook identified it).
    pub fn user(&self, user_id: impl Into<String>) -> ClientProxy {
        self.proxy(Target::User(user_id.into()))
    }
}

/// Encodes a non-blocking invocation of `method` for `protocol`.
fn encode_invocation(
    protocol: Protocol,
    method: &str,
    arguments: &impl Arguments,
) -> Result<BytesMut, ProtocolError> {
    let message = HubMessage::Invocation(Invocation {
        headers: Headers::new(),
        invocation_id: None,
        target: method.into(),
        arguments: arguments.encode(protocol)?,
        stream_ids: Vec::new(),
    });
    let mut out = BytesMut::new();
    protocol.encode(&message, &mut out)?;
    Ok(out)
}

/// A set of connections to send to, from [`Clients`].
#[derive(Clone)]
pub struct ClientProxy {
    hub: Arc<HubInner>,
    target: Target,
}

impl std::fmt::Debug for ClientProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientProxy")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ClientProxy {
    /// Invokes `method` on every connection of the set without waiting for answers (a non-blocking Invocation).
    ///
    /// The message is encoded once per protocol and shared. It returns once the message is in every connection's
    /// outbound queue; a connection whose queue stays full for the
    /// [`send_timeout`](crate::server::HubOptions::send_timeout) is aborted instead.
    pub async fn send(&self, method: &str, arguments: impl Arguments) -> Result<(), SendError> {
        self.hub
            .registry
            .send(
                &self.target,
                |protocol| encode_invocation(protocol, method, &arguments),
                self.hub.options.send_timeout,
            )
            .await?;
        Ok(())
    }
}

/// One connection, from [`Clients::client`] or [`Context::caller`](crate::server::Context::caller).
#[derive(Clone)]
pub struct SingleClientProxy {
    hub: Arc<HubInner>,
    id: ConnectionId,
}

impl std::fmt::Debug for SingleClientProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleClientProxy")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SingleClientProxy {
    /// The connection's id.
    pub fn id(&self) -> &ConnectionId {
        &self.id
    }

    /// Invokes `method` on the connection without waiting for an answer, as [`ClientProxy::send`].
    pub async fn send(&self, method: &str, arguments: impl Arguments) -> Result<(), SendError> {
        let target = Target::Connections(vec![self.id.clone()]);
        self.hub
            .registry
            .send(
                &target,
                |protocol| encode_invocation(protocol, method, &arguments),
                self.hub.options.send_timeout,
            )
            .await?;
        Ok(())
    }

    /// Invokes `method` on the client and waits for its result (a client result: an Invocation with an id such as
    /// `"s1"`, answered by the client's Completion).
    ///
    /// Fails with the client's error text ([`ClientResultError::Client`]), or when no answer arrives within
    /// [`client_result_timeout`](crate::server::HubOptions::client_result_timeout), or when the connection ends.
    /// A `void` answer reads as `null`. When called from a method of the same connection, let
    /// [`maximum_parallel_invocations_per_client`](crate::server::HubOptions::maximum_parallel_invocations_per_client)
    /// be above 1 if the client may invoke more methods meanwhile: otherwise that invocation waits, and with it
    /// the reading of the answer.
    pub async fn invoke<R: DeserializeOwned>(
        &self,
        method: &str,
        arguments: impl Arguments,
    ) -> Result<R, ClientResultError> {
        let timeout = self.hub.options.client_result_timeout;
        let result = tokio::time::timeout(timeout, self.invoke_payload(method, arguments)).await;
        match result {
            Ok(payload) => Ok(payload?.deserialize()?),
            Err(_) => Err(ClientResultError::Timeout),
        }
    }

    async fn invoke_payload(
        &self,
        method: &str,
        arguments: impl Arguments,
    ) -> Result<courier_protocol::Payload, ClientResultError> {
        let (protocol, outbound) = self
            .hub
            .registry
            .connection(&self.id)
            .ok_or(ClientResultError::ConnectionGone)?;
        let (reply, answer) = oneshot::channel();
        let request = Outbound::InvokeClient(Box::new(ClientInvocation {
            headers: Headers::new(),
            target: method.to_owned(),
            arguments: arguments.encode(protocol)?,
            reply,
        }));
        match tokio::time::timeout(self.hub.options.send_timeout, outbound.send(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ClientResultError::ConnectionGone),
            Err(_) => {
                self.hub.registry.stop(&self.id, Stop::Abort);
                return Err(ClientResultError::ConnectionGone);
            }
        }
        answer
            .await
            .map_err(|_| ClientResultError::ConnectionGone)?
    }
}

/// Group membership (ASP.NET Core's `IGroupManager`). Groups exist while they have members; a connection leaves
/// all its groups when it ends.
#[derive(Clone)]
pub struct Groups {
    hub: Arc<HubInner>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").finish_non_exhaustive()
    }
}

impl Groups {
    pub(crate) fn new(hub: Arc<HubInner>) -> Self {
        Self { hub }
    }

    /// Adds the connection to the group (nothing happens if the connection is gone).
    pub fn add(&self, connection: &ConnectionId, group: &str) {
        self.hub.registry.add_to_group(connection, group);
    }

    /// Removes the connection from the group.
    pub fn remove(&self, connection: &ConnectionId, group: &str) {
        self.hub.registry.remove_from_group(connection, group);
    }
}
