//! The negotiated connections of one endpoint, by the token clients put in `id=`.
//!
//! An entry is `Pending` from negotiate until its first WebSocket arrives, `Active` while a WebSocket carries it,
//! and `Detached` while a stateful connection whose WebSocket broke waits for a new one. Pending and detached
//! entries are reaped after the disconnect timeout; every state change bumps the entry's generation so that a
//! reaper armed for an older state leaves a newer one alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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
    Active(Option<Arc<C>>),
    Detached(Arc<C>),
}

/// What a WebSocket request for a token may do.
pub(crate) enum Claim<C> {
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
    /// A WebSocket is already active for it.
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
        let claim = match &entry.state {
            State::Active(_) => return Err(Refusal::Conflict),
            State::Pending => Claim::Start {
                connection_id: entry.connection_id.clone(),
                stateful: entry.stateful,
            },
            State::Detached(connection) => Claim::Reattach(Arc::clone(connection)),
        };
        entry.generation += 1;
        entry.state = State::Active(match &claim {
            Claim::Start { .. } => None,
            Claim::Reattach(connection) => Some(Arc::clone(connection)),
        });
        Ok(claim)
    }

    /// Stores the handle of a connection the handler has started.
    pub(crate) fn started(&self, token: &str, connection: Arc<C>) {
        if let Some(Entry {
            state: State::Active(slot @ None),
            ..
        }) = self.entries().get_mut(token)
        {
            *slot = Some(connection);
        }
    }

    /// The WebSocket of a claimed token is gone: a broken stateful connection waits to be re-attached, any other
    /// connection is forgotten.
    pub(crate) fn released(self: &Arc<Self>, token: &str, ending: Ending) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(token) else {
            return;
        };
        match (&entry.state, ending, entry.stateful) {
            (State::Active(Some(connection)), Ending::Broken, true) => {
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

    /// Forgets a token at once.
    pub(crate) fn remove(&self, token: &str) {
        self.entries().remove(token);
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
        assert!(matches!(registry.claim("t"), Ok(Claim::Start { .. })));
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(matches!(registry.claim("t"), Err(Refusal::Conflict)));
        assert!(matches!(registry.claim("u"), Err(Refusal::Unknown)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_stateful_connection_waits_then_expires() {
        let registry = registry();
        registry.negotiated("t".into(), "c".into(), true);
        assert!(registry.claim("t").is_ok());
        registry.started("t", Arc::new("hub connection"));
        registry.released("t", Ending::Broken);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(matches!(registry.claim("t"), Ok(Claim::Reattach(c)) if *c == "hub connection"));
        registry.released("t", Ending::Broken);
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert!(matches!(registry.claim("t"), Err(Refusal::Unknown)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_or_stateless_connection_is_forgotten_at_once() {
        let registry = registry();
        registry.negotiated("s".into(), "c".into(), true);
        registry.negotiated("n".into(), "d".into(), false);
        for token in ["s", "n"] {
            assert!(registry.claim(token).is_ok());
            registry.started(token, Arc::new("hub connection"));
        }
        registry.released("s", Ending::Closed);
        registry.released("n", Ending::Broken);
        assert!(!registry.contains("s"));
        assert!(!registry.contains("n"));
    }
}
