//! A [`Store`] the server shares with the hub, so that it gets the [`RedbStore`] back to close it when the hub is
//! done with it ([`HubBuilder::store`](courier::server::HubBuilder::store) takes its store for good).

use std::sync::Arc;

use bytes::Bytes;
use courier::store::{
    ExpiredMessage, HistoryMessage, MailboxId, MailboxLimit, NewMessage, Store, StoreFuture,
    StoredMessage,
};
use courier_delivery::Timestamp;
use courier_redb::RedbStore;

/// The redb store, shared: every method is the store's own.
#[derive(Debug, Clone)]
pub(crate) struct SharedStore(pub(crate) Arc<RedbStore>);

impl Store for SharedStore {
    fn append<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
    ) -> StoreFuture<'a, u64> {
        self.0.append(mailbox, message, limit)
    }

    fn next_seq<'a>(&'a self, mailbox: &'a MailboxId) -> StoreFuture<'a, u64> {
        self.0.next_seq(mailbox)
    }

    fn read_pending<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        max: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        self.0.read_pending(mailbox, after, max)
    }

    fn record_attempt<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        attempts: u32,
    ) -> StoreFuture<'a, ()> {
        self.0.record_attempt(mailbox, seq, attempts)
    }

    fn ack<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        keep_until: Option<Timestamp>,
    ) -> StoreFuture<'a, bool> {
        self.0.ack(mailbox, seq, keep_until)
    }

    fn remove<'a>(&'a self, mailbox: &'a MailboxId, seq: u64) -> StoreFuture<'a, bool> {
        self.0.remove(mailbox, seq)
    }

    fn read_history<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        now: Timestamp,
        max: usize,
    ) -> StoreFuture<'a, Vec<HistoryMessage>> {
        self.0.read_history(mailbox, after, now, max)
    }

    fn expire(&self, now: Timestamp, max: usize) -> StoreFuture<'_, Vec<ExpiredMessage>> {
        self.0.expire(now, max)
    }

    fn get_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Bytes>> {
        self.0.get_result(mailbox, key, now)
    }

    fn put_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'a, Bytes> {
        self.0.put_result(mailbox, key, result, now, expires_at)
    }
}
