//! The writer thread: every change goes through it, and it commits them in groups.
//!
//! redb allows one write transaction at a time, and a durable commit costs an fsync. So one thread owns the
//! writing: it waits for a write, takes every other write already queued (up to [`MAX_BATCH`]), applies them all
//! in one transaction, commits once, and only then answers each of them. Under load, one fsync covers many
//! appends and acks; alone, a write waits for nothing but its own commit.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use bytes::Bytes;
use courier::StoreError;
use courier::store::{ExpiredMessage, MailboxId, MailboxLimit, NewMessage};
use courier_delivery::{StoredMessage, Timestamp};
use redb::{Database, Key, ReadableTable, Table, WriteTransaction};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::tables::{
    ATTEMPTS, EXPIRIES, Failed, HISTORY, HISTORY_ENDS, MAILBOXES, PENDING, RESULT_ENDS, RESULTS,
    decode_pending, decode_timed, pending_attempts, pending_header, timed_header,
};

/// Most writes applied in one transaction: bounds the work (and the wait) of a single commit.
pub(crate) const MAX_BATCH: usize = 4096;

/// Most `mailboxes` rows the writer keeps in memory between transactions (about 100 bytes each), checked after
/// each commit (so one batch may add up to [`MAX_BATCH`] more); beyond that it forgets them all and reads them
/// again as they are used.
const MAX_CACHED_ROWS: usize = 65_536;

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

/// Runs until every sender of `writes` is gone, then returns (dropping its handle on the database). Answers
/// go out on `runtime`, if given (see [`Committed`]).
#[expect(
    clippy::needless_pass_by_value,
    reason = "the thread owns its handle on the database until it exits"
)]
pub(crate) fn run(db: Arc<Database>, mut writes: mpsc::Receiver<Write>, runtime: Option<Handle>) {
    let mut rows = Rows::default();
    let mut scratch = Vec::new();
    while let Some(first) = writes.blocking_recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH.min(writes.len() + 1));
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(write) = writes.try_recv()
        {
            batch.push(write);
        }
        commit(&db, &mut rows, &mut scratch, batch, runtime.as_ref());
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
fn commit(
    db: &Database,
    rows: &mut Rows,
    scratch: &mut Vec<u8>,
    batch: Vec<Write>,
    runtime: Option<&Handle>,
) {
    let mut answers = Vec::with_capacity(batch.len());
    let mut writes = batch.into_iter();
    let outcome = (|| {
        let txn = db.begin_write().map_err(boxed)?;
        {
            let mut tables = Tables::open(&txn, rows, scratch).map_err(boxed)?;
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
            let committed = Committed(answers);
            match runtime {
                Some(runtime) => drop(runtime.spawn(async move { committed.send() })),
                None => committed.send(),
            }
        }
        Err(error) => {
            // The cached rows may hold changes that were never committed.
            rows.forget();
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

/// The answers of a committed batch.
///
/// They are sent from a task on the runtime the store was opened in, when there is one: waking hundreds of
/// tasks from the writer thread costs it a cross-thread wake-up (a system call) for many of them, while a
/// task sends them all from a worker, and the writer goes on to the next batch at once. If the runtime drops
/// the task unsent (it is shutting down), dropping sends them: a committed write is always answered.
struct Committed(Vec<Answer>);

impl Committed {
    fn send(mut self) {
        self.send_all();
    }

    fn send_all(&mut self) {
        for answer in self.0.drain(..) {
            answer(Ok(()));
        }
    }
}

impl Drop for Committed {
    fn drop(&mut self) {
        self.send_all();
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

/// A `mailboxes` row: (next sequence number, pending messages, pending payload bytes).
type MailboxRow = (u64, u64, u64);

/// The `mailboxes` rows the writer has read, kept between transactions: only the writer changes them, so a row
/// read once stays right as long as every transaction that changed it committed. A row used by a transaction
/// is written back once, at its end: a busy mailbox costs one write per commit, not two per message, and no
/// read at all while it stays cached.
#[derive(Default)]
pub(crate) struct Rows {
    cached: HashMap<MailboxId, CachedRow>,
    /// The rows the transaction under way has used, to write back.
    used: Vec<MailboxId>,
}

struct CachedRow {
    row: MailboxRow,
    /// Whether it is in [`Rows::used`].
    used: bool,
}

impl Rows {
    /// The row of `mailbox`, read from `table` unless cached; a new mailbox starts at number 1.
    fn get(
        &mut self,
        table: &Table<'_, &'static [u8], MailboxRow>,
        mailbox: &MailboxId,
    ) -> Result<&mut MailboxRow, Failed> {
        let cached = match self.cached.entry(mailbox.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let stored = table.get(mailbox.as_key().as_bytes())?;
                let row = stored.map_or((1, 0, 0), |row| row.value());
                entry.insert(CachedRow { row, used: false })
            }
        };
        if !cached.used {
            cached.used = true;
            self.used.push(mailbox.clone());
        }
        Ok(&mut cached.row)
    }

    /// Writes the rows this transaction used to `table`, and bounds the cache for the next one.
    fn flush(
        &mut self,
        table: &mut Table<'_, &'static [u8], MailboxRow>,
    ) -> Result<(), redb::StorageError> {
        for mailbox in self.used.drain(..) {
            let cached = self.cached.get_mut(&mailbox).expect("a used row is cached");
            cached.used = false;
            table.insert(mailbox.as_key().as_bytes(), cached.row)?;
        }
        if self.cached.len() > MAX_CACHED_ROWS {
            self.cached.clear();
        }
        Ok(())
    }

    /// Forgets every row, after a transaction that did not commit.
    fn forget(&mut self) {
        self.cached.clear();
        self.used.clear();
    }
}

/// Every table, opened once per transaction.
pub(crate) struct Tables<'a> {
    mailboxes: Table<'a, &'static [u8], MailboxRow>,
    pending: Table<'a, (&'static [u8], u64), &'static [u8]>,
    expiries: Table<'a, (u64, &'static [u8], u64), ()>,
    history: Table<'a, (&'static [u8], u64), &'static [u8]>,
    history_ends: Table<'a, (u64, &'static [u8], u64), ()>,
    results: Table<'a, (&'static [u8], &'static [u8]), &'static [u8]>,
    result_ends: Table<'a, (u64, &'static [u8], &'static [u8]), ()>,
    rows: &'a mut Rows,
    /// A buffer reused to rewrite a pending record.
    scratch: &'a mut Vec<u8>,
}

impl<'a> Tables<'a> {
    /// Opens (creating them if needed) every table.
    fn open(
        txn: &'a WriteTransaction,
        rows: &'a mut Rows,
        scratch: &'a mut Vec<u8>,
    ) -> Result<Self, redb::TableError> {
        Ok(Self {
            mailboxes: txn.open_table(MAILBOXES)?,
            pending: txn.open_table(PENDING)?,
            expiries: txn.open_table(EXPIRIES)?,
            history: txn.open_table(HISTORY)?,
            history_ends: txn.open_table(HISTORY_ENDS)?,
            results: txn.open_table(RESULTS)?,
            result_ends: txn.open_table(RESULT_ENDS)?,
            rows,
            scratch,
        })
    }

    /// The row of `mailbox` (see [`Rows`]).
    fn row(&mut self, mailbox: &MailboxId) -> Result<&mut MailboxRow, Failed> {
        self.rows.get(&self.mailboxes, mailbox)
    }

    /// Writes back the mailbox rows this transaction used.
    fn flush_mailboxes(&mut self) -> Result<(), redb::StorageError> {
        self.rows.flush(&mut self.mailboxes)
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
        let row = self.row(mailbox)?;
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
        insert_record(
            &mut self.pending,
            (key, seq),
            &pending_header(&stored),
            &stored.payload,
        )?;
        if stored.expires_at != Timestamp::MAX {
            self.expiries
                .insert((stored.expires_at.as_millis(), key, seq), ())?;
        }
        Ok(seq)
    }

    /// Rewrites the attempt count of pending message `seq` in its record, if the count grows.
    fn record_attempt(
        &mut self,
        mailbox: &MailboxId,
        seq: u64,
        attempts: u32,
    ) -> Result<(), Failed> {
        let id = (mailbox.as_key().as_bytes(), seq);
        let Some(stored) = self.pending.get(id)? else {
            return Ok(());
        };
        let record = stored.value();
        if pending_attempts(seq, record)? >= attempts {
            return Ok(());
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(record);
        drop(stored);
        self.scratch[ATTEMPTS].copy_from_slice(&attempts.to_le_bytes());
        self.pending.insert(id, self.scratch.as_slice())?;
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
        let row = self.row(mailbox)?;
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
            insert_record(
                &mut self.history,
                (key, seq),
                &timed_header(until),
                &message.payload,
            )?;
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
        insert_record(&mut self.results, id, &timed_header(expires_at), &result)?;
        self.result_ends
            .insert((expires_at.as_millis(), id.0, id.1), ())?;
        Ok(result)
    }
}

/// Inserts the record `header` then `body` under `key`, written straight into the table's page (no buffer).
fn insert_record<'k, K: Key + 'static>(
    table: &mut Table<'_, K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
    header: &[u8],
    body: &[u8],
) -> Result<(), Failed> {
    let len = header.len() + body.len();
    let reserved = u32::try_from(len).map_err(|_| redb::StorageError::ValueTooLarge(len))?;
    let mut value = table.insert_reserve(key, reserved)?;
    let (head, tail) = value.as_mut().split_at_mut(header.len());
    head.copy_from_slice(header);
    tail.copy_from_slice(body);
    Ok(())
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
