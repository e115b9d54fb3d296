//! [`MemoryStore`]: mailboxes in memory, for tests and throwaway servers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use courier_delivery::{StoredMessage, Timestamp};

use super::{
    ExpiredMessage, HistoryMessage, MailboxId, MailboxLimit, NewMessage, Store, StoreError,
    StoreFuture, check_key,
};

/// What every entry (a message, a history entry, a stored result, a mailbox) is counted as on top of its bytes,
/// so that many empty entries cannot slip past the memory bound.
const ENTRY_OVERHEAD: usize = 64;

/// A [`Store`] in memory: fast, shared by every task of a process, and gone when the process ends.
///
/// # Bounds
///
/// Each mailbox is bounded by the [`MailboxLimit`] of each append. The whole store is bounded by
/// [`max_bytes`](Self::max_bytes) (default 256 MiB), counting payloads, stored results, keys and mailbox names,
/// plus 64 bytes per entry: an append or a stored result that would pass it fails with
/// [`StoreError::StoreFull`]. Acked messages kept as history stay counted until they are dropped by
/// [`expire`](Store::expire). A mailbox, once appended to, stays (its next number must never be reused), so it
/// keeps its name's bytes counted.
///
/// Every method completes at once (the futures never wait). Clones share the same mailboxes (a hub restarted on a
/// clone finds what the first one stored, as it would on disk).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    max_bytes: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    mailboxes: HashMap<MailboxId, Mailbox>,
    /// Pending messages that expire, by expiry.
    expiries: BTreeSet<(Timestamp, MailboxId, u64)>,
    /// History entries, by the time they are dropped.
    history_ends: BTreeSet<(Timestamp, MailboxId, u64)>,
    results: HashMap<(MailboxId, String), (Bytes, Timestamp)>,
    result_ends: BTreeSet<(Timestamp, MailboxId, String)>,
    /// Bytes counted against `max_bytes`.
    bytes: usize,
}

#[derive(Debug)]
struct Mailbox {
    next_seq: u64,
    pending: BTreeMap<u64, StoredMessage>,
    pending_bytes: usize,
    /// Acked messages kept for resync: payload and the time they are dropped.
    history: BTreeMap<u64, (Bytes, Timestamp)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store bounded to 256 MiB.
    pub fn new() -> Self {
        Self {
            max_bytes: 256 << 20,
            state: Arc::default(),
        }
    }

    /// Sets the bound on the memory the store holds, in bytes (see [Bounds](#bounds)).
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements that panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(
        &self,
        mailbox: &MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let state = &mut *state;
        let len = message.payload.len();
        let mut cost = len + ENTRY_OVERHEAD;
        if !state.mailboxes.contains_key(mailbox) {
            cost += mailbox.as_key().len() + ENTRY_OVERHEAD;
        }
        let entry = state.mailboxes.get(mailbox);
        let (count, bytes) = entry.map_or((0, 0), |m| (m.pending.len(), m.pending_bytes));
        if !limit.admits(count, bytes, len) {
            return Err(StoreError::MailboxFull {
                mailbox: mailbox.clone(),
            });
        }
        if state.bytes.saturating_add(cost) > self.max_bytes {
            return Err(StoreError::StoreFull);
        }
        state.bytes += cost;
        let entry = state
            .mailboxes
            .entry(mailbox.clone())
            .or_insert_with(|| Mailbox {
                next_seq: 1,
                pending: BTreeMap::new(),
                pending_bytes: 0,
                history: BTreeMap::new(),
            });
        let seq = entry.next_seq;
        entry.next_seq += 1;
        entry.pending_bytes += len;
        entry.pending.insert(
            seq,
            StoredMessage {
                seq,
                payload: message.payload,
                key: message.key,
                enqueued_at: message.enqueued_at,
                expires_at: message.expires_at,
                attempts: 0,
            },
        );
        if message.expires_at != Timestamp::MAX {
            state
                .expiries
                .insert((message.expires_at, mailbox.clone(), seq));
        }
        Ok(seq)
    }

    /// Takes pending message `seq` out of its mailbox and its expiry index.
    fn take_pending(state: &mut State, mailbox: &MailboxId, seq: u64) -> Option<StoredMessage> {
        let entry = state.mailboxes.get_mut(mailbox)?;
        let message = entry.pending.remove(&seq)?;
        entry.pending_bytes -= message.payload.len();
        state
            .expiries
            .remove(&(message.expires_at, mailbox.clone(), seq));
        Some(message)
    }

    fn ack_now(&self, mailbox: &MailboxId, seq: u64, keep_until: Option<Timestamp>) -> bool {
        let mut state = self.state();
        let state = &mut *state;
        let Some(message) = Self::take_pending(state, mailbox, seq) else {
            return false;
        };
        match keep_until {
            // The entry moves from pending to history: its bytes stay counted.
            Some(until) => {
                if let Some(entry) = state.mailboxes.get_mut(mailbox) {
                    entry.history.insert(seq, (message.payload, until));
                    state.history_ends.insert((until, mailbox.clone(), seq));
                }
            }
            None => state.bytes -= message.payload.len() + ENTRY_OVERHEAD,
        }
        true
    }

    fn remove_now(&self, mailbox: &MailboxId, seq: u64) -> bool {
        let mut state = self.state();
        let state = &mut *state;
        let Some(message) = Self::take_pending(state, mailbox, seq) else {
            return false;
        };
        state.bytes -= message.payload.len() + ENTRY_OVERHEAD;
        true
    }

    fn expire_now(&self, now: Timestamp, max: usize) -> Vec<ExpiredMessage> {
        let mut state = self.state();
        let state = &mut *state;
        let due = |until: Timestamp| until <= now;

        let expired: Vec<_> = state
            .expiries
            .iter()
            .take_while(|(at, ..)| due(*at))
            .take(max)
            .map(|(_, mailbox, seq)| (mailbox.clone(), *seq))
            .collect();
        let mut messages = Vec::with_capacity(expired.len());
        for (mailbox, seq) in expired {
            if let Some(message) = Self::take_pending(state, &mailbox, seq) {
                state.bytes -= message.payload.len() + ENTRY_OVERHEAD;
                messages.push(ExpiredMessage { mailbox, message });
            }
        }

        for _ in 0..max {
            let Some(first) = state
                .history_ends
                .first()
                .filter(|(at, ..)| due(*at))
                .cloned()
            else {
                break;
            };
            state.history_ends.remove(&first);
            let (_, mailbox, seq) = first;
            if let Some(entry) = state.mailboxes.get_mut(&mailbox)
                && let Some((payload, _)) = entry.history.remove(&seq)
            {
                state.bytes -= payload.len() + ENTRY_OVERHEAD;
            }
        }

        for _ in 0..max {
            let Some(first) = state
                .result_ends
                .first()
                .filter(|(at, ..)| due(*at))
                .cloned()
            else {
                break;
            };
            state.result_ends.remove(&first);
            let (_, mailbox, key) = first;
            let cost = key.len() + ENTRY_OVERHEAD;
            if let Some((result, _)) = state.results.remove(&(mailbox, key)) {
                state.bytes -= cost + result.len();
            }
        }
        messages
    }

    fn put_result_now(
        &self,
        mailbox: &MailboxId,
        key: &str,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Bytes, StoreError> {
        check_key(key)?;
        let mut state = self.state();
        let state = &mut *state;
        let id = (mailbox.clone(), key.to_owned());
        let cost = key.len() + result.len() + ENTRY_OVERHEAD;
        // An expired result not yet dropped by `expire` is replaced: its bytes are returned first.
        let freed = match state.results.get(&id) {
            Some((stored, until)) if *until > now => return Ok(stored.clone()),
            Some((stored, _)) => key.len() + stored.len() + ENTRY_OVERHEAD,
            None => 0,
        };
        if (state.bytes - freed).saturating_add(cost) > self.max_bytes {
            return Err(StoreError::StoreFull);
        }
        if let Some((_, until)) = state.results.remove(&id) {
            state
                .result_ends
                .remove(&(until, id.0.clone(), id.1.clone()));
        }
        state.bytes = state.bytes - freed + cost;
        state
            .result_ends
            .insert((expires_at, id.0.clone(), id.1.clone()));
        state.results.insert(id, (result.clone(), expires_at));
        Ok(result)
    }
}

impl Store for MemoryStore {
    fn append<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
    ) -> StoreFuture<'a, u64> {
        Box::pin(std::future::ready(self.append_now(mailbox, message, limit)))
    }

    fn next_seq<'a>(&'a self, mailbox: &'a MailboxId) -> StoreFuture<'a, u64> {
        let next = self
            .state()
            .mailboxes
            .get(mailbox)
            .map_or(1, |m| m.next_seq);
        Box::pin(std::future::ready(Ok(next)))
    }

    fn read_pending<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        max: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        let state = self.state();
        let messages = state.mailboxes.get(mailbox).map_or_else(Vec::new, |m| {
            let from = after.saturating_add(1);
            m.pending
                .range(from..)
                .take(max)
                .map(|(_, message)| message.clone())
                .collect()
        });
        Box::pin(std::future::ready(Ok(messages)))
    }

    fn record_attempt<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        attempts: u32,
    ) -> StoreFuture<'a, ()> {
        let mut state = self.state();
        if let Some(message) = state
            .mailboxes
            .get_mut(mailbox)
            .and_then(|m| m.pending.get_mut(&seq))
        {
            message.attempts = message.attempts.max(attempts);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn ack<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        keep_until: Option<Timestamp>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(
            self.ack_now(mailbox, seq, keep_until)
        )))
    }

    fn remove<'a>(&'a self, mailbox: &'a MailboxId, seq: u64) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.remove_now(mailbox, seq))))
    }

    fn read_history<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        now: Timestamp,
        max: usize,
    ) -> StoreFuture<'a, Vec<HistoryMessage>> {
        let state = self.state();
        let messages = state.mailboxes.get(mailbox).map_or_else(Vec::new, |m| {
            m.history
                .range(after.saturating_add(1)..)
                .filter(|(_, (_, until))| *until > now)
                .take(max)
                .map(|(seq, (payload, _))| HistoryMessage {
                    seq: *seq,
                    payload: payload.clone(),
                })
                .collect()
        });
        Box::pin(std::future::ready(Ok(messages)))
    }

    fn expire(&self, now: Timestamp, max: usize) -> StoreFuture<'_, Vec<ExpiredMessage>> {
        Box::pin(std::future::ready(Ok(self.expire_now(now, max))))
    }

    fn get_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Bytes>> {
        let result = check_key(key).map(|()| {
            let state = self.state();
            let stored = state.results.get(&(mailbox.clone(), key.to_owned()));
            stored
                .filter(|(_, until)| *until > now)
                .map(|(result, _)| result.clone())
        });
        Box::pin(std::future::ready(result))
    }

    fn put_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'a, Bytes> {
        Box::pin(std::future::ready(
            self.put_result_now(mailbox, key, result, now, expires_at),
        ))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use courier_delivery::Timestamp;

    use super::MemoryStore;
    use crate::store::{MailboxId, MailboxLimit, NewMessage, Store, StoreError, testing};

    #[tokio::test]
    async fn numbering_and_order() {
        testing::numbering_and_order(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn read_from_sequence() {
        testing::read_from_sequence(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn ack_is_idempotent() {
        testing::ack_is_idempotent(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn limits() {
        testing::limits(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn expiry() {
        testing::expiry(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn dedup() {
        testing::dedup(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn history_window() {
        testing::history_window(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn rebuild_outbox() {
        testing::rebuild_outbox(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn concurrent_appends() {
        testing::concurrent_appends(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn the_memory_bound_refuses_what_does_not_fit_and_frees_what_is_settled() {
        // One mailbox (64 + 9 bytes) and two 100-byte messages (64 + 100 each) fit in 500 bytes; a third does not.
        let store = MemoryStore::new().max_bytes(500);
        let mailbox = MailboxId::user("bounded");
        let message = || NewMessage::new(Bytes::from_static(&[0; 100]), Timestamp::ZERO);
        for expected in 1..=2 {
            let seq = store
                .append(&mailbox, message(), MailboxLimit::default())
                .await
                .unwrap();
            assert_eq!(seq, expected);
        }
        let error = store
            .append(&mailbox, message(), MailboxLimit::default())
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::StoreFull), "{error}");
        let result = Bytes::from_static(&[0; 150]);
        let error = store
            .put_result(
                &mailbox,
                "k",
                result.clone(),
                Timestamp::ZERO,
                Timestamp::MAX,
            )
            .await;
        assert!(matches!(error, Err(StoreError::StoreFull)));

        // Kept as history, an acked message still counts; acked without history, it is freed.
        store
            .ack(&mailbox, 1, Some(Timestamp::from_millis(10)))
            .await
            .unwrap();
        let error = store
            .append(&mailbox, message(), MailboxLimit::default())
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::StoreFull), "{error}");
        store.expire(Timestamp::from_millis(10), 10).await.unwrap();
        assert_eq!(
            store
                .append(&mailbox, message(), MailboxLimit::default())
                .await
                .unwrap(),
            3
        );
        store.remove(&mailbox, 2).await.unwrap();
        store
            .put_result(&mailbox, "k", result, Timestamp::ZERO, Timestamp::MAX)
            .await
            .unwrap();
    }
}
