//! The two clients, Courier `HubConnection`s over WebSockets whose access token is their user id: alice sends
//! and reads receipts, bob reads messages.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use courier::client::HubConnection;
use courier_http::HttpConnector;
use tokio::sync::mpsc;

use crate::Error;
use crate::message::{DELIVER, Delivery, RECEIPT};
use crate::transcript::Voice;

/// A receipt as alice's app sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// The message it is about.
    pub(crate) id: String,
    /// `delivered`, `expired` or `dead-lettered`.
    pub(crate) status: String,
}

/// Connects alice to the hub at `url`; her receipts go to `receipts` once she has printed them.
pub(crate) async fn alice(
    url: &str,
    voice: &Voice,
    receipts: mpsc::UnboundedSender<Receipt>,
) -> Result<HubConnection, Error> {
    let voice = voice.clone();
    let connection = HubConnection::builder(HttpConnector::new(url)?.access_token("alice"))
        .on(RECEIPT, move |(id, status): (String, String)| {
            voice.say(format_args!("receipt: {id} {status}"));
            let _ = receipts.send(Receipt { id, status });
            // Returning is the ack: the receipt is not sent again.
            async { Ok::<_, String>("ok") }
        })
        .start()
        .await?;
    Ok(connection)
}

/// Bob's app: the messages it has shown, kept across his connections (a real app keeps them on disk).
///
/// To show a retry, it fails the first try of every message, as an app that crashed before showing it would.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    voice: Voice,
    tries: Arc<Mutex<HashMap<String, u32>>>,
    shown: Arc<Mutex<HashSet<String>>>,
    received: mpsc::UnboundedSender<Delivery>,
}

impl Inbox {
    /// An empty inbox whose shown messages also go to `received`.
    pub(crate) fn new(voice: &Voice, received: mpsc::UnboundedSender<Delivery>) -> Self {
        Self {
            voice: voice.clone(),
            tries: Arc::default(),
            shown: Arc::default(),
            received,
        }
    }

    /// Connects bob to the hub at `url`.
    pub(crate) async fn connect(&self, url: &str) -> Result<HubConnection, Error> {
        let inbox = self.clone();
        let connection = HubConnection::builder(HttpConnector::new(url)?.access_token("bob"))
            .on(DELIVER, move |(message,): (Delivery,)| {
                let answer = inbox.take(message);
                async move { answer }
            })
            .start()
            .await?;
        Ok(connection)
    }

    /// Handles one delivery: `Ok` acks it, `Err` nacks it (the hub tries again later).
    fn take(&self, message: Delivery) -> Result<&'static str, String> {
        let Delivery { id, from, text } = &message;
        let tries = {
            let mut tries = self.tries.lock().unwrap_or_else(PoisonError::into_inner);
            let count = tries.entry(id.clone()).or_default();
            *count += 1;
            *count
        };
        if tries == 1 {
            self.voice.say(format_args!(
                "got {id} {text:?} from {from}, try 1: failing it on purpose (nack)"
            ));
            return Err("not shown yet, try again".to_owned());
        }
        let new = self
            .shown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if new {
            self.voice.say(format_args!(
                "got {id} {text:?} from {from}, try {tries}: shown it (ack)"
            ));
            let _ = self.received.send(message);
        } else {
            // At-least-once: an ack that was lost means the message comes again; it is shown once.
            self.voice
                .say(format_args!("got {id} again, already shown (ack)"));
        }
        Ok("ok")
    }
}
