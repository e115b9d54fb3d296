//! A durable [`Store`] in one file, on [redb](https://docs.rs/redb): Courier's mailboxes for a single server that
//! must survive a restart.
//!
//! ```
//! use courier::store::{MailboxId, MailboxLimit, NewMessage, Store};
//! use courier_delivery::Timestamp;
//! use courier_redb::RedbStore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = RedbStore::open(dir.path().join("courier.redb"))?;
//! let alice = MailboxId::user("alice");
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! // Ok means the message is on disk.
//! let seq = store.append(&alice, NewMessage::new("hi".into(), now), MailboxLimit::default()).await?;
//! store.close().await;
//!
//! let store = RedbStore::open(dir.path().join("courier.redb"))?;
//! assert_eq!(store.read_pending(&alice, 0, 10).await?[0].seq, seq);
//! # Ok(())
//! # }
//! ```
//!
//! # Durability and grouped commits
//!
//! A write (append, ack, attempt record, removal, expiry, stored result) is answered only after the transaction
//! that holds it is committed with redb's immediate durability, that is, synced to disk: an accepted message
//! survives a crash or a power cut. One writer thread owns every write and groups them: it takes every write
//! queued while it was busy (up to 1 024) into one transaction and one fsync, then answers them all. Under load a
//! commit covers many messages; a lone write pays one commit and waits for nothing else.
//!
//! # Threads
//!
//! redb blocks, so it never runs on the async runtime: writes go to the writer thread, reads run on tokio's
//! blocking pool ([`spawn_blocking`](tokio::task::spawn_blocking)), so the store must be used within a tokio
//! runtime. Reads see every write that has been answered.
//!
//! # Bounds
//!
//! Each mailbox is bounded by the [`MailboxLimit`] of each append; the file as a whole by the disk. At most
//! 4 096 writes wait for the writer; a caller beyond that waits for room (backpressure, never an unbounded queue).
#![forbid(unsafe_code)]

mod tables;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use courier::store::{
    ExpiredMessage, HistoryMessage, MailboxId, MailboxLimit, NewMessage, Store, StoreError,
    StoreFuture, check_key,
};
use courier_delivery::{StoredMessage, Timestamp};
use redb::{Database, ReadTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::tables::{
    Failed, HISTORY, MAILBOXES, PENDING, RESULTS, backend, decode_pending, decode_timed,
};
use crate::writer::{Reply, Tables, Write};

/// Writes that may wait for the writer thread before callers wait for room.
const QUEUE: usize = 4096;

/// A [`Store`] in a redb file. See the [crate documentation](crate) for its durability, threads and bounds.
///
/// Dropping it commits the writes already queued, stops the writer thread and waits for it (briefly blocking the
/// dropping thread), so that the file can be opened again at once; [`close`](Self::close) does the same without
/// blocking an async task.
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    writer: Option<thread::JoinHandle<()>>,
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // The writer exits once every sender is gone and the queue is drained.
            let (closed, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut self.writes, closed));
            let _ = writer.join();
        }
    }
}

impl RedbStore {
    /// Opens the store in the file at `path`, creating it if it does not exist. Blocks while redb opens the file
    /// (and, after a crash, checks it): call it at startup, or from [`spawn_blocking`](tokio::task::spawn_blocking).
    ///
    /// Fails if the file is not a redb database, is corrupt, or is already open (in this process or another).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Arc::new(Database::create(path).map_err(backend)?);
        // Create every table now, so that reads never meet a missing one.
        let txn = db.begin_write().map_err(backend)?;
        drop(Tables::open(&txn).map_err(backend)?);
        txn.commit().map_err(backend)?;

        let (writes, queue) = mpsc::channel(QUEUE);
        let writer_db = Arc::clone(&db);
        let writer = thread::Builder::new()
            .name("courier-redb-writer".into())
            .spawn(move || writer::run(writer_db, queue))
            .map_err(|error| StoreError::Backend(Box::new(error)))?;
        Ok(Self {
            db,
            writes,
            writer: Some(writer),
        })
    }

    /// Commits the writes already queued, stops the writer thread and waits for it. The file is released once
    /// reads still running (if any) have finished.
    pub async fn close(mut self) {
        let writer = self.writer.take();
        drop(self);
        if let Some(writer) = writer {
            // The writer has exited once the last sender is gone and the queue is drained.
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }

    /// Queues a write and waits for its answer, after its commit.
    async fn write<T>(&self, write: impl FnOnce(Reply<T>) -> Write) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(write(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `read` in a read transaction on tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(ReadTransaction) -> Result<T, Failed> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        let task = tokio::task::spawn_blocking(move || read(db.begin_read()?));
        match task.await {
            Ok(result) => result.map_err(StoreError::from),
            Err(error) => Err(StoreError::Backend(Box::new(error))),
        }
    }
}

impl Store for RedbStore {
    fn append<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
    ) -> StoreFuture<'a, u64> {
        Box::pin(self.write(move |reply| Write::Append {
            mailbox: mailbox.clone(),
            message,
            limit,
            reply,
        }))
    }

    fn next_seq<'a>(&'a self, mailbox: &'a MailboxId) -> StoreFuture<'a, u64> {
        let mailbox = mailbox.clone();
        Box::pin(self.read(move |txn| {
            let table = txn.open_table(MAILBOXES)?;
            let next = table
                .get(mailbox.as_key().as_bytes())?
                .map_or(1, |row| row.value().0);
            Ok(next)
        }))
    }

    fn read_pending<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        max: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        let mailbox = mailbox.clone();
        Box::pin(self.read(move |txn| {
            let table = txn.open_table(PENDING)?;
            let key = mailbox.as_key().as_bytes();
            let mut messages = Vec::new();
            for row in table
                .range((key, after.saturating_add(1))..=(key, u64::MAX))?
                .take(max)
            {
                let (id, value) = row?;
                messages.push(decode_pending(id.value().1, value.value())?);
            }
            Ok(messages)
        }))
    }

    fn record_attempt<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        attempts: u32,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.write(move |reply| Write::RecordAttempt {
            mailbox: mailbox.clone(),
            seq,
            attempts,
            reply,
        }))
    }

    fn ack<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        seq: u64,
        keep_until: Option<Timestamp>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.write(move |reply| Write::Ack {
            mailbox: mailbox.clone(),
            seq,
            keep_until,
            reply,
        }))
    }

    fn remove<'a>(&'a self, mailbox: &'a MailboxId, seq: u64) -> StoreFuture<'a, bool> {
        Box::pin(self.write(move |reply| Write::Remove {
            mailbox: mailbox.clone(),
            seq,
            reply,
        }))
    }

    fn read_history<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        after: u64,
        now: Timestamp,
        max: usize,
    ) -> StoreFuture<'a, Vec<HistoryMessage>> {
        let mailbox = mailbox.clone();
        Box::pin(self.read(move |txn| {
            let table = txn.open_table(HISTORY)?;
            let key = mailbox.as_key().as_bytes();
            let mut messages = Vec::new();
            for row in table.range((key, after.saturating_add(1))..=(key, u64::MAX))? {
                if messages.len() == max {
                    break;
                }
                let (id, value) = row?;
                let (until, payload) = decode_timed(value.value())?;
                if until > now {
                    let seq = id.value().1;
                    let payload = Bytes::copy_from_slice(payload);
                    messages.push(HistoryMessage { seq, payload });
                }
            }
            Ok(messages)
        }))
    }

    fn expire(&self, now: Timestamp, max: usize) -> StoreFuture<'_, Vec<ExpiredMessage>> {
        Box::pin(self.write(move |reply| Write::Expire { now, max, reply }))
    }

    fn get_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        now: Timestamp,
    ) -> StoreFuture<'a, Option<Bytes>> {
        let id = (mailbox.clone(), key.to_owned());
        Box::pin(async move {
            check_key(&id.1)?;
            self.read(move |txn| {
                let table = txn.open_table(RESULTS)?;
                let Some(row) = table.get((id.0.as_key().as_bytes(), id.1.as_bytes()))? else {
                    return Ok(None);
                };
                let (until, result) = decode_timed(row.value())?;
                Ok((until > now).then(|| Bytes::copy_from_slice(result)))
            })
            .await
        })
    }

    fn put_result<'a>(
        &'a self,
        mailbox: &'a MailboxId,
        key: &'a str,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'a, Bytes> {
        Box::pin(async move {
            check_key(key)?;
            self.write(|reply| Write::PutResult {
                mailbox: mailbox.clone(),
                key: key.to_owned(),
                result,
                now,
                expires_at,
                reply,
            })
            .await
        })
    }
}
