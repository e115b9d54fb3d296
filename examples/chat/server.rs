//! The server: the chat hub on the redb store, served over negotiate + WebSockets on a loopback port.
//!
//! Each server runs on a thread and tokio runtime of its own, as it would in a process of its own, so that a
//! restart can reopen the store file at once. The hub owns its store and releases it when its last handle goes;
//! after [`Hub::shutdown`] the last handles are in tasks that are still finishing (a WebSocket's, a mailbox's),
//! and releasing the store (its drop commits, syncs and closes the file) then happens in one of them, a moment
//! later. Stopping the server ends its runtime, which drops every task it started: when [`Server::stop`]
//! returns, the store is closed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use courier::server::Hub;
use courier::store::MailboxId;
use courier_http::HubEndpoint;
use courier_redb::RedbStore;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use crate::Error;
use crate::hub::{self, Presence};
use crate::transcript::Voice;

/// How long connections get to finish what they are doing when the server stops.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);

/// A running server, for the scene (which runs on another runtime).
pub(crate) struct Server {
    url: String,
    hub: Hub,
    runtime: Handle,
    presence: watch::Receiver<Presence>,
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<Result<(), Error>>,
    voice: Voice,
}

/// What the server thread hands back once it listens.
struct Listening {
    url: String,
    hub: Hub,
    runtime: Handle,
    presence: watch::Receiver<Presence>,
}

impl Server {
    /// Opens the store at `store` (creating the file if need be) and serves the hub at `/chat` on a free loopback
    /// port, on a thread of its own.
    pub(crate) async fn start(store: &Path, voice: &Voice) -> Result<Self, Error> {
        let (listening_tx, listening) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let (path, thread_voice) = (store.to_owned(), voice.clone());
        std::thread::Builder::new()
            .name("chat-server".to_owned())
            .spawn(move || {
                let _ = stopped_tx.send(run(&path, &thread_voice, listening_tx, stop_rx));
            })?;
        let Ok(listening) = listening.await else {
            // The thread ended before it listened: its error says why.
            return Err(match stopped.await {
                Ok(Err(error)) => error,
                _ => "the server ended before it listened".into(),
            });
        };
        voice.say(format_args!("listening on {}", listening.url));
        Ok(Self {
            url: listening.url,
            hub: listening.hub,
            runtime: listening.runtime,
            presence: listening.presence,
            stop,
            stopped,
            voice: voice.clone(),
        })
    }

    /// The hub's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// How many messages wait in `user`'s mailboxes.
    pub(crate) async fn pending(&self, user: &str) -> Result<usize, Error> {
        // On the server's runtime: asking may load the mailbox, whose task belongs with the server's.
        let reliable = self.hub.context().reliable();
        let user = MailboxId::user(user);
        Ok(self
            .runtime
            .spawn(async move { reliable.pending(&user).await })
            .await??)
    }

    /// Waits until `user` has a connection open (the hub ran its connect hook).
    pub(crate) async fn online(&self, user: &str) -> Result<(), Error> {
        self.until(|online| online.contains_key(user)).await
    }

    /// Waits until `user` has no connection open.
    pub(crate) async fn offline(&self, user: &str) -> Result<(), Error> {
        self.until(|online| !online.contains_key(user)).await
    }

    async fn until(&self, holds: impl FnMut(&Presence) -> bool) -> Result<(), Error> {
        let mut presence = self.presence.clone();
        presence.wait_for(holds).await?;
        Ok(())
    }

    /// Closes every connection (with a Close message), stops serving, and ends the server's runtime, which closes
    /// the store.
    pub(crate) async fn stop(self) -> Result<(), Error> {
        self.voice.say("shutting down");
        // This handle too holds the store: it goes first, so that the store is closed on the server's thread.
        drop(self.hub);
        let _ = self.stop.send(());
        self.stopped.await.map_err(|_| "the server thread died")??;
        self.voice.say("stopped; the store is closed");
        Ok(())
    }
}

/// The server thread: serves until told to stop, then ends the runtime with everything on it, the store included.
fn run(
    path: &Path,
    voice: &Voice,
    listening: oneshot::Sender<Listening>,
    stop: oneshot::Receiver<()>,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = RedbStore::open(path)
        .map_err(|error| format!("cannot open the store {}: {error}", path.display()))?;
    let served = runtime.block_on(serve(store, voice, listening, stop));
    // Drops what is left of the hub in the runtime's tasks; the last of it closes the store.
    drop(runtime);
    served
}

/// Serves the hub on `store` until `stop`, then shuts it down.
async fn serve(
    store: RedbStore,
    voice: &Voice,
    listening: oneshot::Sender<Listening>,
    stop: oneshot::Receiver<()>,
) -> Result<(), Error> {
    let (presence_tx, presence) = watch::channel(Presence::new());
    let hub = hub::build(store, voice, presence_tx);
    let app = HubEndpoint::new(hub.clone()).router::<()>("/chat");
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/chat", listener.local_addr()?);
    let _ = listening.send(Listening {
        url,
        hub: hub.clone(),
        runtime: Handle::current(),
        presence,
    });
    let stopping = async move {
        let _ = stop.await;
        hub.shutdown(SHUTDOWN_DEADLINE).await;
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopping)
    .await?;
    Ok(())
}
