//! The scene of issue #5: bob (client 1) and alice (client 2) talk through the hub; bob drops, alice sends, the
//! message waits in bob's mailbox, is delivered when he comes back, retried until he acks it, and alice gets the
//! receipt. Then the same with a server restart between the send and bob's return.

use std::path::Path;

use courier::client::HubConnection;
use tokio::sync::mpsc;

use crate::Error;
use crate::client::{self, Inbox, Receipt};
use crate::message::{Delivery, SEND};
use crate::server::Server;
use crate::transcript::{Transcript, Voice};

/// The store's file in the data directory.
pub(crate) const STORE_FILE: &str = "chat.redb";

/// Plays the scene with its store in `data` (created if missing; a previous run's store there is replaced).
pub(crate) async fn run(data: &Path, transcript: &Transcript) -> Result<(), Error> {
    let server_voice = transcript.voice("server");
    let alice_voice = transcript.voice("alice");
    let bob_voice = transcript.voice("bob");

    std::fs::create_dir_all(data)
        .map_err(|error| format!("cannot create {}: {error}", data.display()))?;
    let store = data.join(STORE_FILE);
    if store.exists() {
        std::fs::remove_file(&store)
            .map_err(|error| format!("cannot remove {}: {error}", store.display()))?;
        server_voice.say(format_args!(
            "removed the previous run's {}: every run starts with empty mailboxes",
            store.display()
        ));
    }
    server_voice.say(format_args!("mailboxes in {}", store.display()));
    let server = Server::start(&store, &server_voice).await?;

    let (receipts_tx, mut receipts) = mpsc::unbounded_channel();
    let (received_tx, mut received) = mpsc::unbounded_channel();
    let inbox = Inbox::new(&bob_voice, received_tx);

    transcript.heading("part one: bob drops, alice sends, bob comes back");
    alice_voice.say("connecting");
    let alice = client::alice(server.url(), &alice_voice, receipts_tx.clone()).await?;
    bob_voice.say("connecting");
    let bob = inbox.connect(server.url()).await?;
    server.online("alice").await?;
    server.online("bob").await?;
    bob_voice.say("drops his connection");
    bob.stop().await;
    server.offline("bob").await?;
    let id = send(&alice, &alice_voice, "bob", "are you there?").await?;
    server_voice.say(format_args!(
        "bob is offline: {} in his mailbox",
        waiting(server.pending("bob").await?)
    ));
    bob_voice.say("comes back on a new connection");
    let bob = inbox.connect(server.url()).await?;
    shown(&mut received, &id).await?;
    receipt(&mut receipts, &id).await?;

    transcript
        .heading("part two: the same, with a server restart between the send and bob's return");
    bob_voice.say("drops his connection");
    bob.stop().await;
    server.offline("bob").await?;
    let id = send(&alice, &alice_voice, "bob", "still there?").await?;
    server.stop().await?;
    if let Some(error) = alice.closed().await {
        alice_voice.say(format_args!("lost the connection: {error}"));
    } else {
        alice_voice.say("the server closed her connection");
    }
    let server = Server::start(&store, &server_voice).await?;
    server_voice.say(format_args!(
        "started again on the same store: {} for bob",
        waiting(server.pending("bob").await?)
    ));
    bob_voice.say("connects to the new server");
    let bob = inbox.connect(server.url()).await?;
    shown(&mut received, &id).await?;
    alice_voice.say("reconnects to the new server");
    let alice = client::alice(server.url(), &alice_voice, receipts_tx).await?;
    receipt(&mut receipts, &id).await?;

    alice.stop().await;
    bob.stop().await;
    server.stop().await?;
    transcript.heading("done: each message was shown once and its sender got the receipt");
    Ok(())
}

/// "1 message waits", "2 messages wait".
fn waiting(count: usize) -> String {
    if count == 1 {
        "1 message waits".to_owned()
    } else {
        format!("{count} messages wait")
    }
}

/// Alice sends `text` to `to`; returns the message id.
async fn send(alice: &HubConnection, voice: &Voice, to: &str, text: &str) -> Result<String, Error> {
    let id: String = alice.invoke(SEND, (to.to_owned(), text.to_owned())).await?;
    voice.say(format_args!("sent {text:?} to {to}: id {id}"));
    Ok(id)
}

/// Waits until bob's app has shown message `id`.
async fn shown(received: &mut mpsc::UnboundedReceiver<Delivery>, id: &str) -> Result<(), Error> {
    while let Some(message) = received.recv().await {
        if message.id == id {
            return Ok(());
        }
    }
    Err("bob's inbox closed".into())
}

/// Waits until alice has a `delivered` receipt for message `id`.
async fn receipt(receipts: &mut mpsc::UnboundedReceiver<Receipt>, id: &str) -> Result<(), Error> {
    while let Some(receipt) = receipts.recv().await {
        if receipt.id == id {
            if receipt.status == "delivered" {
                return Ok(());
            }
            return Err(format!("the receipt for {id} says {}", receipt.status).into());
        }
    }
    Err("alice's receipts closed".into())
}
