//! Client-to-server calls that run once per idempotency key (the `courier-idempotency-key` invocation header).
//!
//! The Courier client sends each reliable call with a key and resends it, with the same key, until it gets a
//! Completion. The hub runs the method for the first arrival only, stores its outcome in the store under the
//! caller's identity, and answers every repeat with the stored outcome: the same result or the same error. A
//! repeat that arrives while the first run is still going waits for it rather than running the method again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};
use courier_protocol::{Payload, Protocol};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::Mailboxes;
use crate::server::method::Output;
use crate::server::{HubError, Identity};
use crate::store::{MailboxId, check_key};

/// The invocation header that carries the key.
pub(crate) const KEY_HEADER: &str = "courier-idempotency-key";

/// Runs of keyed calls still going: each repeat waits for the first run's stored outcome.
pub(crate) type Running = Mutex<HashMap<(MailboxId, String), Vec<oneshot::Sender<Bytes>>>>;

/// A stored outcome: a tag byte, then the text it needs.
const VOID: u8 = b'V';
const VALUE: u8 = b'R';
const HUB_ERROR: u8 = b'H';
const INTERNAL_ERROR: u8 = b'I';

fn encode(outcome: &Result<Output, HubError>) -> Bytes {
    let mut out = BytesMut::new();
    match outcome {
        Ok(Output::Void) => out.put_u8(VOID),
        Ok(Output::Value(payload)) => {
            out.put_u8(VALUE);
            // Stored as JSON, so that a repeat over the other protocol is answered alike.
            let value: serde_json::Value = payload.deserialize().unwrap_or(serde_json::Value::Null);
            out.extend_from_slice(&serde_json::to_vec(&value).unwrap_or_default());
        }
        Err(HubError::Hub(message)) => {
            out.put_u8(HUB_ERROR);
            out.extend_from_slice(message.as_bytes());
        }
        Err(HubError::Internal(error)) => {
            out.put_u8(INTERNAL_ERROR);
            out.extend_from_slice(error.to_string().as_bytes());
        }
    }
    out.freeze()
}

fn decode(stored: &[u8], protocol: Protocol) -> Result<Output, HubError> {
    let (tag, text) = stored.split_first().unwrap_or((&VOID, &[]));
    let text = String::from_utf8_lossy(text);
    match *tag {
        VALUE => {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(HubError::internal)?;
            Payload::from_value(protocol, &value)
                .map(Output::Value)
                .map_err(HubError::internal)
        }
        HUB_ERROR => Err(HubError::Hub(text.into_owned())),
        INTERNAL_ERROR => Err(HubError::internal(text.into_owned())),
        _ => Ok(Output::Void),
    }
}

impl Mailboxes {
    /// Wraps a method call so that it runs once per `key` of the caller's identity. Anonymous callers have no
    /// identity to scope keys to: their calls run every time.
    pub(crate) fn run_once(
        self: &Arc<Self>,
        identity: &Identity,
        protocol: Protocol,
        key: &str,
        call: BoxFuture<'static, Result<Output, HubError>>,
    ) -> BoxFuture<'static, Result<Output, HubError>> {
        let Some(caller) = identity
            .user_id()
            .map(MailboxId::user)
            .or_else(|| identity.client_id().map(MailboxId::client))
        else {
            return call;
        };
        if let Err(error) = check_key(key) {
            return futures::future::ready(Err(HubError::new(error.to_string()))).boxed();
        }
        let this = self.clone();
        let key = key.to_owned();
        async move {
            let now = this.now();
            if let Some(stored) = this
                .store
                .get_result(&caller, &key, now)
                .await
                .map_err(HubError::internal)?
            {
                return decode(&stored, protocol);
            }
            let running = (caller.clone(), key.clone());
            let first = {
                let mut runs = this.running.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(waiters) = runs.get_mut(&running) {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Err(rx)
                } else {
                    runs.insert(running.clone(), Vec::new());
                    Ok(())
                }
            };
            if let Err(first_run) = first {
                let stored = first_run
                    .await
                    .map_err(|_| HubError::internal("the first run of this call ended without an outcome"))?;
                return decode(&stored, protocol);
            }
            let outcome = call.await;
            let mine = encode(&outcome);
            let expires_at = now + this.options.result_retention;
            let stored = this
                .store
                .put_result(&caller, &key, mine.clone(), this.now(), expires_at)
                .await;
            let waiters = this
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&running)
                .unwrap_or_default();
            let stored = match stored {
                Ok(stored) => stored,
                Err(error) => {
                    // Not stored: a later repeat runs the method again. This run's answer still stands.
                    tracing::warn!(%caller, %error, "cannot store the result of an idempotent call");
                    mine.clone()
                }
            };
            for waiter in waiters {
                let _ = waiter.send(stored.clone());
            }
            if stored == mine {
                outcome
            } else {
                // Another server's run of the same key stored its outcome first: answer alike.
                decode(&stored, protocol)
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_outcomes_answer_both_protocols_alike() {
        let value =
            Payload::from_value(Protocol::MessagePack, &serde_json::json!({"n": 1})).unwrap();
        for outcome in [
            Ok(Output::Void),
            Ok(Output::Value(value)),
            Err(HubError::new("no such room")),
            Err(HubError::internal("disk full")),
        ] {
            let stored = encode(&outcome);
            for protocol in [Protocol::Json, Protocol::MessagePack] {
                let again = decode(&stored, protocol);
                assert_eq!(encode(&again), stored);
            }
        }
    }
}
