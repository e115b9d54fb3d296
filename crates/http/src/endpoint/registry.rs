//! The negotiated connections of one endpoint, by the token clients put in `id=`.
//!
//! An entry is `Pending` from negotiate until its first WebSocket arrives, `Active` while a WebSocket carries it,
//! and `Detached` while a stateful connection whose WebSocket broke waits for a new one. Pending and detached
//! entries are reaped after the disconnect timeout; every state change bumps the entry's generation so that a
//! reaper armed for an older state leaves a newer one alone.
//!
//! Each WebSocket that claims a token holds a lease (the generation it claimed at): what it reports when it ends
//! counts only while no newer WebSocket took the connection over. A stateful connection's new WebSocket takes
//! over from an active one, as ASP.NET Core lets it (the client may notice a dead network before the server
//! does): the old transport is told to fail as if its connection had dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::server_transport::Ending;

/// The registry, shared by the endpoint's handlers and its reaper tasks.
pub(crate) struct Registry<C> {
    entries: Mutex<HashMap<String, Entry<C>>>,
    disconnect_timeout: Duration,
}

struct Entry<C> {
    connection_id: String,
    stateful: bool,
    generation: u64,
    state: State<C>,
}

enum State<C> {
    Pending,
    /// A WebSocket carries the connection; the handle is `None` until the handler has started it.
    Active {
        connection: Option<Arc<C>>,
        /// Fails the WebSocket's transport when another one takes over.
        supersede: oneshot::Sender<()>,
    },
    Detached(Arc<C>),
}

/// What a WebSocket request for a token may do.
pub(crate) struct Claim<C> {
    /// Start the connection, or hand it the new WebSocket.
    pub(crate) action: Action<C>,
    /// The generation claimed, for [`Registry::started`] and [`Registry::released`].
    pub(crate) lease: u64,
    /// Fires when a newer WebSocket takes the connection over.
    pub(crate) superseded: oneshot::Receiver<()>,
}

/// What the new WebSocket is for.
pub(crate) enum Action<C> {
    /// Start the negotiated connection.
    Start {
        connection_id: String,
        stateful: bool,
    },
    /// Hand the connection its new WebSocket (stateful reconnect).
    Reattach(Arc<C>),
}

/// Why a WebSocket request for a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such token, or it expired.
    Unknown,
    /// A WebSocket is already active for a connection without stateful reconnect (or one still starting).
    Conflict,
}

impl<C: Send + Sync + 'static> Registry<C> {
    pub(crate) fn new(disconnect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(HashMap::new()),
            disconnect_timeout,
        })
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry<C>>> {
        // No code path panics while holding the lock; a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a negotiated connection and arms its reaper.
    pub(crate) fn negotiated(
        self: &Arc<Self>,
        token: String,
        connection_id: String,
        stateful: bool,
    ) {
        let entry = Entry {
            connection_id,
            stateful,
            generation: 0,
            state: State::Pending,
        };
        self.entries().insert(token.clone(), entry);
        self.reap_later(token, 0);
    }

    /// Whether the token names a live connection.
    pub(crate) fn contains(&self, token: &str) -> bool {
        self.entries().contains_key(token)
    }

    /// Claims the token for a new WebSocket.
    pub(crate) fn claim(&self, token: &str) -> Result<Claim<C>, Refusal> {
        let mut entries = self.entries();
        let entry = entries.get_mut(token).ok_or(Refusal::Unknown)?;
        let action = match &entry.state {
            State::Pending => Action::Start {
                connection_id: entry.connection_id.clone(),
                stateful: entry.stateful,
            },
            State::Detached(connection) => Action::Reattach(Arc::clone(connection)),
            State::Active {
                connection: Some(connection),
                ..
            } if entry.stateful => Action::Reattach(Arc::clone(connection)),
            State::Active { .. } => return Err(Refusal::Conflict),
        };
        let (supersede, superseded) = oneshot::channel();
        let connection = match &action {
            Action::Start { .. } => None,
            Action::Reattach(connection) => Some(Arc::clone(connection)),
        };
        let previous = std::mem::replace(
            &mut entry.state,
            State::Active {
                connection,
                supersede,
            },
        );
        if let State::Active { supersede, .. } = previous {
            // The old WebSocket may have ended already; then there is nobody to tell.
            let _ = supersede.send(());
        }
        entry.generation += 1;
        Ok(Claim {
            action,
            lease: entry.generation,
            superseded,
        })
    }

    /// Stores the handle of a connection the handler has started on the WebSocket holding `lease`.
    pub(crate) fn started(&self, token: &str, lease: u64, started: Arc<C>) {
        if let Some(entry) = self.entries().get_mut(token)
            && entry.generation == lease
            && let State::Active {
                connection: slot @ None,
                ..
            } = &mut entry.state
        {
            *slot = Some(started);
        }
    }

    /// The WebSocket holding `lease` is gone: a broken stateful connection waits to be re-attached, any other
    /// connection is forgotten. Nothing changes when a newer WebSocket holds the token.
    pub(crate) fn released(self: &Arc<Self>, token: &str, lease: u64, ending: Ending) {
        let mut entries = self.entries();
        let Some(entry) = entries
            .get_mut(token)
            .filter(|entry| entry.generation == lease)
        else {
            return;
        };
        match (&entry.state, ending, entry.stateful) {
            (
                State::Active {
                    connection: Some(connection),
                    ..
                },
                Ending::Broken,
                true,
            ) => {
                entry.state = State::Detached(Arc::clone(connection));
                entry.generation += 1;
                let generation = entry.generation;
                drop(entries);
                self.reap_later(token.to_owned(), generation);
            }
            _ => {
                entries.remove(token);
            }
        }
    }

    /// Forgets a token unless a newer WebSocket holds it.
    pub(crate) fn remove(&self, token: &str, lease: u64) {
        let mut entries = self.entries();
        if entries
            .get(token)
            .is_some_and(|entry| entry.generation == lease)
        {
            entries.remove(token);
        }
    }

    /// Removes the entry after the disconnect timeout unless it changed state meanwhile.
    fn reap_later(self: &Arc<Self>, token: String, generation: u64) {
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(registry.disconnect_timeout).await;
            let mut entries = registry.entries();
            if entries
                .get(&token)
                .is_some_and(|entry| entry.generation == generation)
            {
                entries.remove(&token);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Arc<Registry<&'static str>> {
        Registry::new(Duration::from_secs(15))
    }

    /// Claims and starts the token's connection; returns the lease and the superseded signal.
    fn start(registry: &Arc<Registry<&'static str>>, token: &str) -> (u64, oneshot::Receiver<()>) {
        let claim = registry.claim(token).unwrap();
        assert!(matches!(claim.action, Action::Start { .. }));
        registry.started(token, claim.lease, Arc::new("hub connection"));
        (claim.lease, claim.superseded)
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_connection_is_reaped_after_the_disconnect_timeout() {
        let registry = registry();
        registry.negotiated("t".into(), "c".into(), false);
        tokio::time::sleep(Duration::from_millis(14_900)).await;
        assert!(registry.contains("t"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!registry.contains("t"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_active_connection_is_not_reaped_and_refuses_a_second_websocket() {
        let registry = registry();
        registry.negotiated("t".into(), "c".into(), false);
        start(&registry, "t");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(registry.claim("t").err(), Some(Refusal::Conflict));
        assert_eq!(registry.claim("u").err(), Some(Refusal::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_stateful_connection_waits_then_expires() {
        let registry = registry();
        registry.negotiated("t".into(), "c".into(), true);
        let (lease, _) = start(&registry, "t");
        registry.released("t", lease, Ending::Broken);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let claim = registry.claim("t").unwrap();
        assert!(matches!(claim.action, Action::Reattach(c) if *c == "hub connection"));
        registry.released("t", claim.lease, Ending::Broken);
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(registry.claim("t").err(), Some(Refusal::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_websocket_takes_a_stateful_connection_over() {
        let registry = registry();
        registry.negotiated("t".into(), "c".into(), true);
        let (old_lease, mut old_superseded) = start(&registry, "t");
        let claim = registry.claim("t").unwrap();
        assert!(matches!(claim.action, Action::Reattach(_)));
        assert_eq!(old_superseded.try_recv(), Ok(()));
        // The old WebSocket's end no longer counts.
        registry.released("t", old_lease, Ending::Broken);
        registry.remove("t", old_lease);
        assert!(registry.contains("t"));
        assert_eq!(registry.claim("t").err(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_or_stateless_connection_is_forgotten_at_once() {
        let registry = registry();
        registry.negotiated("s".into(), "c".into(), true);
        registry.negotiated("n".into(), "d".into(), false);
        let (stateful, _) = start(&registry, "s");
        let (stateless, _) = start(&registry, "n");
        registry.released("s", stateful, Ending::Closed);
        registry.released("n", stateless, Ending::Broken);
        assert!(!registry.contains("s"));
        assert!(!registry.contains("n"));
    }
}
