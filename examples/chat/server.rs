//! The server: the chat hub on the redb store, served over negotiate + WebSockets on a loopback port.
//!
//! Each server runs on a thread and tokio runtime of its own, as it would in a process of its own: stopping it
//! ends the runtime, and with it every task the hub left behind. That matters here because the hub's mailbox
//! tasks (a mailbox with messages waiting stays loaded) outlive [`Hub::shutdown`] and hold the store: only when
//! they are gone can the store be closed and its file opened again by the next server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use courier::server::Hub;
use courier::store::MailboxId;
use courier_http::HubEndpoint;
use courier_redb::RedbStore;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use crate::Error;
use crate::hub::{self, Presence};
use crate::shared_store::SharedStore;
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
    stopped: oneshot::Receiver<Result<RedbStore, Error>>,
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

    /// Waits until `user` has no connection open.
    pub(crate) async fn offline(&self, user: &str) -> Result<(), Error> {
        let mut presence = self.presence.clone();
        presence
            .wait_for(|online| !online.contains_key(user))
            .await?;
        Ok(())
    }

    /// Closes every connection (with a Close message), stops serving, ends the server's runtime and closes the
    /// store.
    pub(crate) async fn stop(self) -> Result<(), Error> {
        self.voice.say("shutting down");
        drop(self.hub);
        let _ = self.stop.send(());
        let store = self.stopped.await.map_err(|_| "the server thread died")??;
        store.close().await;
        self.voice.say("stopped; the store is closed");
        Ok(())
    }
}

/// The server thread: serves until told to stop, then returns the store for closing.
fn run(
    path: &Path,
    voice: &Voice,
    listening: oneshot::Sender<Listening>,
    stop: oneshot::Receiver<()>,
) -> Result<RedbStore, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = Arc::new(
        RedbStore::open(path)
            .map_err(|error| format!("cannot open the store {}: {error}", path.display()))?,
    );
    let served = runtime.block_on(serve(SharedStore(store.clone()), voice, listening, stop));
    // Ends every task left on the runtime, mailbox tasks included: they hold the last references to the store.
    drop(runtime);
    served?;
    Arc::into_inner(store)
        .ok_or_else(|| "the store is still in use after the server stopped".into())
}

/// Serves the hub on `store` until `stop`, then shuts it down.
async fn serve(
    store: SharedStore,
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
