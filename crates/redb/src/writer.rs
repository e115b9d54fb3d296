//! The writer thread: every change goes through it, and it commits them in groups.
//!
//! redb allows one write transaction at a time, and a durable commit costs an fsync. So one thread owns the
//! writing: it waits for a write, takes every other write already queued (up to [`MAX_BATCH`]), applies them all
//! in one transaction, commits once, and only then answers each of them. Under load, one fsync covers many
//! appends and acks; alone, a write waits for nothing but its own commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use bytes::Bytes;
use courier::StoreError;
use courier::store::{ExpiredMessage, MailboxId, MailboxLimit, NewMessage};
use courier_delivery::{StoredMessage, Timestamp};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::tables::{
    EXPIRIES, Failed, HISTORY, HISTORY_ENDS, MAILBOXES, PENDING, RESULT_ENDS, RESULTS,
    decode_pending, decode_timed, encode_pending, encode_timed,
};

/// Most writes applied in one transaction: bounds the work (and the wait) of a single commit.
pub(crate) const MAX_BATCH: usize = 1024;

/// Where a write's outcome goes once its transaction has committed (or failed).
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A change to the store, queued for the writer thread.
pub(crate) enum Write {
    Append {
        mailbox: MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
        reply: Reply<u64>,
    },
    RecordAttempt {
        mailbox: MailboxId,
        seq: u64,
        attempts: u32,
        reply: Reply<()>,
    },
    Ack {
        mailbox: MailboxId,
        seq: u64,
        keep_until: Option<Timestamp>,
        reply: Reply<bool>,
    },
    Remove {
        mailbox: MailboxId,
        seq: u64,
        reply: Reply<bool>,
    },
    Expire {
        now: Timestamp,
        max: usize,
        reply: Reply<Vec<ExpiredMessage>>,
    },
    PutResult {
        mailbox: MailboxId,
        key: String,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
        reply: Reply<Bytes>,
    },
}

/// Runs until every sender of `writes` is gone, then returns (dropping its handle on the database).
#[expect(
    clippy::needless_pass_by_value,
    reason = "the thread owns its handle on the database until it exits"
)]
pub(crate) fn run(db: Arc<Database>, mut writes: mpsc::Receiver<Write>) {
    while let Some(first) = writes.blocking_recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH.min(writes.len() + 1));
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(write) = writes.try_recv()
        {
            batch.push(write);
        }
        commit(&db, batch);
    }
}

/// An answer held back until the commit: sends the write's own result if the commit succeeded, else the
/// commit's error.
type Answer = Box<dyn FnOnce(Result<(), &Arc<redb::Error>>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |committed| match committed {
        Ok(()) => send(reply, result),
        Err(error) => send_error(reply, error),
    })
}

fn send<T>(reply: Reply<T>, result: Result<T, StoreError>) {
    // The caller may have stopped waiting (its future was dropped): the write stands all the same.
    let _ = reply.send(result);
}

fn send_error<T>(reply: Reply<T>, error: &Arc<redb::Error>) {
    send(reply, Err(StoreError::Backend(Box::new(Arc::clone(error)))));
}

fn boxed(error: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(error.into())
}

/// The answer to a write and, if redb failed while applying it, the error that fails its whole transaction.
fn settle<T: Send + 'static>(
    reply: Reply<T>,
    outcome: Result<T, Failed>,
) -> (Answer, Option<Box<redb::Error>>) {
    match outcome {
        Ok(value) => (answer(reply, Ok(value)), None),
        Err(Failed::Refused(error)) => (answer(reply, Err(error)), None),
        // The transaction will not commit: the answer carries that error instead of this placeholder.
        Err(Failed::Redb(error)) => (answer(reply, Err(StoreError::Closed)), Some(error)),
    }
}

/// Applies `batch` in one transaction, commits, and answers every write in it. If anything fails, nothing of
/// the batch is written and every write in it gets the error.
fn commit(db: &Database, batch: Vec<Write>) {
    let mut answers = Vec::with_capacity(batch.len());
    let mut writes = batch.into_iter();
    let outcome = (|| {
        let txn = db.begin_write().map_err(boxed)?;
        {
            let mut tables = Tables::open(&txn).map_err(boxed)?;
            for write in writes.by_ref() {
                let (answer, failed) = tables.apply(write);
                answers.push(answer);
                if let Some(error) = failed {
                    return Err(error);
                }
            }
            tables.flush_mailboxes().map_err(boxed)?;
        }
        txn.commit().map_err(boxed)
    })();
    match outcome {
        Ok(()) => {
            for answer in answers {
                answer(Ok(()));
            }
        }
        Err(error) => {
            let error = Arc::from(error);
            for answer in answers {
                answer(Err(&error));
            }
            for write in writes {
                write.fail(&error);
            }
        }
    }
}

impl Write {
    /// Answers a write that was never applied with the error that stopped its transaction.
    fn fail(self, error: &Arc<redb::Error>) {
        match self {
            Self::Append { reply, .. } => send_error(reply, error),
            Self::RecordAttempt { reply, .. } => send_error(reply, error),
            Self::Ack { reply, .. } | Self::Remove { reply, .. } => send_error(reply, error),
            Self::Expire { reply, .. } => send_error(reply, error),
            Self::PutResult { reply, .. } => send_error(reply, error),
        }
    }
}

/// Every table, opened once per transaction.
pub(crate) struct Tables<'txn> {
    mailboxes: Table<'txn, &'static [u8], (u64, u64, u64)>,
    pending: Table<'txn, (&'static [u8], u64), &'static [u8]>,
    expiries: Table<'txn, (u64, &'static [u8], u64), ()>,
    history: Table<'txn, (&'static [u8], u64), &'static [u8]>,
    history_ends: Table<'txn, (u64, &'static [u8], u64), ()>,
    results: Table<'txn, (&'static [u8], &'static [u8]), &'static [u8]>,
    result_ends: Table<'txn, (u64, &'static [u8], &'static [u8]), ()>,
    /// The `mailboxes` rows this transaction read, changed in place and written back once by
    /// [`flush_mailboxes`](Self::flush_mailboxes): a busy mailbox costs one read and one write per commit, not
    /// two per message.
    rows: HashMap<Vec<u8>, MailboxRow>,
}

/// A `mailboxes` row: (next sequence number, pending messages, pending payload bytes).
type MailboxRow = (u64, u64, u64);

impl<'txn> Tables<'txn> {
    /// Opens (creating them if needed) every table.
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            mailboxes: txn.open_table(MAILBOXES)?,
            pending: txn.open_table(PENDING)?,
            expiries: txn.open_table(EXPIRIES)?,
            history: txn.open_table(HISTORY)?,
            history_ends: txn.open_table(HISTORY_ENDS)?,
            results: txn.open_table(RESULTS)?,
            result_ends: txn.open_table(RESULT_ENDS)?,
            rows: HashMap::new(),
        })
    }

    /// The row of mailbox `key`, read once per transaction; a new mailbox starts at number 1.
    fn row(&mut self, key: &[u8]) -> Result<&mut MailboxRow, Failed> {
        Ok(match self.rows.entry(key.to_vec()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let stored = self.mailboxes.get(key)?.map(|row| row.value());
                entry.insert(stored.unwrap_or((1, 0, 0)))
            }
        })
    }

    /// Writes back the mailbox rows this transaction changed (and the few it only read).
    fn flush_mailboxes(&mut self) -> Result<(), redb::StorageError> {
        for (key, row) in self.rows.drain() {
            self.mailboxes.insert(key.as_slice(), row)?;
        }
        Ok(())
    }

    /// Applies one write. A refusal (a full mailbox, a corrupt record) is the write's own answer; a redb error
    /// fails the whole transaction.
    fn apply(&mut self, write: Write) -> (Answer, Option<Box<redb::Error>>) {
        match write {
            Write::Append {
                mailbox,
                message,
                limit,
                reply,
            } => settle(reply, self.append(&mailbox, message, limit)),
            Write::RecordAttempt {
                mailbox,
                seq,
                attempts,
                reply,
            } => settle(reply, self.record_attempt(&mailbox, seq, attempts)),
            Write::Ack {
                mailbox,
                seq,
                keep_until,
                reply,
            } => settle(reply, self.ack(&mailbox, seq, keep_until)),
            Write::Remove {
                mailbox,
                seq,
                reply,
            } => {
                let removed = self.take_pending(&mailbox, seq);
                settle(reply, removed.map(|message| message.is_some()))
            }
            Write::Expire { now, max, reply } => settle(reply, self.expire(now, max)),
            Write::PutResult {
                mailbox,
                key,
                result,
                now,
                expires_at,
                reply,
            } => settle(
                reply,
                self.put_result(&mailbox, &key, result, now, expires_at),
            ),
        }
    }

    fn append(
        &mut self,
        mailbox: &MailboxId,
        message: NewMessage,
        limit: MailboxLimit,
    ) -> Result<u64, Failed> {
        let key = mailbox.as_key().as_bytes();
        let len = message.payload.len();
        let row = self.row(key)?;
        let (seq, count, bytes) = *row;
        let fits = usize::try_from(count)
            .ok()
            .zip(usize::try_from(bytes).ok())
            .is_some_and(|(count, bytes)| limit.admits(count, bytes, len));
        if !fits {
            let mailbox = mailbox.clone();
            return Err(StoreError::MailboxFull { mailbox }.into());
        }
        *row = (seq + 1, count + 1, bytes + len as u64);
        let stored = StoredMessage {
            seq,
            payload: message.payload,
            key: message.key,
            enqueued_at: message.enqueued_at,
            expires_at: message.expires_at,
            attempts: 0,
        };
        self.pending
            .insert((key, seq), encode_pending(&stored).as_slice())?;
        if stored.expires_at != Timestamp::MAX {
            self.expiries
                .insert((stored.expires_at.as_millis(), key, seq), ())?;
        }
        Ok(seq)
    }

    /// Reads pending message `seq`, if there is one.
    fn pending(&self, mailbox: &MailboxId, seq: u64) -> Result<Option<StoredMessage>, Failed> {
        match self.pending.get((mailbox.as_key().as_bytes(), seq))? {
            Some(row) => Ok(Some(decode_pending(seq, row.value())?)),
            None => Ok(None),
        }
    }

    fn record_attempt(
        &mut self,
        mailbox: &MailboxId,
        seq: u64,
        attempts: u32,
    ) -> Result<(), Failed> {
        if let Some(mut message) = self.pending(mailbox, seq)?
            && message.attempts < attempts
        {
            message.attempts = attempts;
            self.pending.insert(
                (mailbox.as_key().as_bytes(), seq),
                encode_pending(&message).as_slice(),
            )?;
        }
        Ok(())
    }

    /// Takes pending message `seq` out of the mailbox, its expiry index and its counts. A corrupt record is
    /// removed all the same (the caller asked for it to go) and reported.
    fn take_pending(
        &mut self,
        mailbox: &MailboxId,
        seq: u64,
    ) -> Result<Option<StoredMessage>, Failed> {
        let key = mailbox.as_key().as_bytes();
        let Some(removed) = self.pending.remove((key, seq))? else {
            return Ok(None);
        };
        let message = decode_pending(seq, removed.value());
        drop(removed);
        let message = message?;
        if message.expires_at != Timestamp::MAX {
            self.expiries
                .remove((message.expires_at.as_millis(), key, seq))?;
        }
        let row = self.row(key)?;
        // The row's next number is above `seq` unless the file was damaged; keep it so regardless.
        row.0 = row.0.max(seq + 1);
        row.1 = row.1.saturating_sub(1);
        row.2 = row.2.saturating_sub(message.payload.len() as u64);
        Ok(Some(message))
    }

    fn ack(
        &mut self,
        mailbox: &MailboxId,
        seq: u64,
        keep_until: Option<Timestamp>,
    ) -> Result<bool, Failed> {
        let Some(message) = self.take_pending(mailbox, seq)? else {
            return Ok(false);
        };
        if let Some(until) = keep_until {
            let key = mailbox.as_key().as_bytes();
            self.history
                .insert((key, seq), encode_timed(until, &message.payload).as_slice())?;
            self.history_ends
                .insert((until.as_millis(), key, seq), ())?;
        }
        Ok(true)
    }

    fn expire(&mut self, now: Timestamp, max: usize) -> Result<Vec<ExpiredMessage>, Failed> {
        let now = now.as_millis();
        let mut expired = Vec::new();
        for (at, key, seq) in first_due(&self.expiries, now, max)? {
            let Some(mailbox) = std::str::from_utf8(&key).ok().and_then(MailboxId::from_key) else {
                let key = String::from_utf8_lossy(&key);
                return Err(
                    StoreError::Backend(format!("unknown mailbox key {key:?}").into()).into(),
                );
            };
            // Removes the index entry even if its message is gone.
            self.expiries.remove((at, key.as_slice(), seq))?;
            if let Some(message) = self.take_pending(&mailbox, seq)? {
                expired.push(ExpiredMessage { mailbox, message });
            }
        }
        for (at, key, seq) in first_due(&self.history_ends, now, max)? {
            self.history_ends.remove((at, key.as_slice(), seq))?;
            self.history.remove((key.as_slice(), seq))?;
        }
        let mut ended = Vec::new();
        for row in self.result_ends.iter()?.take(max) {
            let (row, _) = row?;
            let (at, mailbox, key) = row.value();
            if at > now {
                break;
            }
            ended.push((at, mailbox.to_vec(), key.to_vec()));
        }
        for (at, mailbox, key) in ended {
            self.result_ends
                .remove((at, mailbox.as_slice(), key.as_slice()))?;
            self.results.remove((mailbox.as_slice(), key.as_slice()))?;
        }
        Ok(expired)
    }

    fn put_result(
        &mut self,
        mailbox: &MailboxId,
        key: &str,
        result: Bytes,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Bytes, Failed> {
        let id = (mailbox.as_key().as_bytes(), key.as_bytes());
        let existing = self.results.get(id)?.map(|row| row.value().to_vec());
        if let Some(existing) = existing {
            let (until, stored) = decode_timed(&existing)?;
            if until > now {
                return Ok(Bytes::copy_from_slice(stored));
            }
            self.result_ends.remove((until.as_millis(), id.0, id.1))?;
        }
        self.results
            .insert(id, encode_timed(expires_at, &result).as_slice())?;
        self.result_ends
            .insert((expires_at.as_millis(), id.0, id.1), ())?;
        Ok(result)
    }
}

/// The first `max` entries of a time index that are due at `now`: (time, mailbox key, seq).
fn first_due(
    index: &Table<'_, (u64, &'static [u8], u64), ()>,
    now: u64,
    max: usize,
) -> Result<Vec<(u64, Vec<u8>, u64)>, Failed> {
    let mut due = Vec::new();
    for row in index.iter()?.take(max) {
        let (row, _) = row?;
        let (at, mailbox, seq) = row.value();
        if at > now {
            break;
        }
        due.push((at, mailbox.to_vec(), seq));
    }
    Ok(due)
}
