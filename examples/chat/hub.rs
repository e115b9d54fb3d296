//! The chat hub: `Send` stores a message in the recipient's mailbox with a receipt for the sender; `Deliver` and
//! `Receipt` are delivered reliably. The access token is the user id.

use std::collections::HashMap;
use std::time::Duration;

use courier::server::{Context, Hub, HubError, MessageId, Outcome};
use courier::store::Store;
use courier_delivery::{Backoff, Policy};
use tokio::sync::watch;

use crate::message::{DELIVER, Delivery, RECEIPT, SEND};
use crate::transcript::Voice;

/// How many connections each user has open, as the hub's connect and disconnect hooks saw them.
pub(crate) type Presence = HashMap<String, usize>;

/// The policy of `Deliver` and `Receipt`: at-least-once, in order (one in flight), an answer expected within 5 s,
/// a failed attempt retried after 500 ms (doubling up to 5 s), for up to 10 minutes.
fn delivery_policy() -> Policy {
    Policy::default()
        .window(1)
        .ack_timeout(Some(Duration::from_secs(5)))
        .backoff(Backoff::new(
            Duration::from_millis(500),
            2.0,
            Duration::from_secs(5),
        ))
        .ttl(Some(Duration::from_secs(600)))
}

/// The hub on `store`; it reports on `voice` and keeps `presence` up to date.
pub(crate) fn build(store: impl Store, voice: &Voice, presence: watch::Sender<Presence>) -> Hub {
    let presence_on = presence.clone();
    let (connected, disconnected, sending) = (voice.clone(), voice.clone(), voice.clone());
    Hub::builder()
        .store(store)
        .client_method(DELIVER, delivery_policy())
        .client_method(RECEIPT, delivery_policy())
        .authenticate(|info| async move {
            match info.access_token {
                Some(user) if !user.is_empty() => Ok(Some(user)),
                _ => Err("the access token is the user id: none was given".to_owned()),
            }
        })
        .on_connected(move |ctx: Context| {
            let user = ctx.user_id().unwrap_or_default().to_owned();
            connected.say(format_args!("{user} connected"));
            presence_on.send_modify(|online| *online.entry(user).or_default() += 1);
            async { Ok(()) }
        })
        .on_disconnected(move |ctx: Context, _error: Option<String>| {
            let user = ctx.user_id().unwrap_or_default();
            disconnected.say(format_args!("{user} disconnected"));
            presence.send_modify(|online| {
                if let Some(count) = online.get_mut(user) {
                    *count -= 1;
                    if *count == 0 {
                        online.remove(user);
                    }
                }
            });
            async {}
        })
        .method(SEND, move |ctx: Context, (to, text): (String, String)| {
            send(ctx, to, text, sending.clone())
        })
        .build()
}

/// `Send`: stores `{id, from, text}` in `to`'s mailbox with a receipt for the caller, and reports the outcome
/// when this hub learns it.
async fn send(ctx: Context, to: String, text: String, voice: Voice) -> Result<String, HubError> {
    let from = ctx.user_id().unwrap_or_default().to_owned();
    let id = MessageId::generate();
    let delivery = Delivery {
        id: id.to_string(),
        from: from.clone(),
        text,
    };
    let sent = ctx
        .reliable()
        .user(&to)
        .id(id.clone())
        .with_receipt()
        .send(DELIVER, (delivery,))
        .await
        .map_err(HubError::internal)?;
    voice.say(format_args!(
        "{id} from {from} is in {to}'s mailbox (seq {}), on disk",
        sent.seq()
    ));
    let answer = id.to_string();
    tokio::spawn(async move {
        // `None`: this hub stopped before the outcome; the message stays in the store and the receipt still goes.
        if let Some(outcome) = sent.outcome().await {
            voice.say(format_args!("{id} {}", describe(&outcome)));
        }
    });
    Ok(answer)
}

/// An outcome as the server reports it: `delivered after 2 attempts, 480 ms after the send`, or its status word.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered { attempts, latency } => format!(
            "delivered after {attempts} attempt{}, {} ms after the send",
            if *attempts == 1 { "" } else { "s" },
            latency.as_millis()
        ),
        other => other.status().to_owned(),
    }
}
