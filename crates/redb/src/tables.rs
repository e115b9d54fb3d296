//! The file's layout: one table per kind of record, each with an index by time where something expires, and the
//! byte encodings of the values.
//!
//! Mailboxes are keyed by the bytes of [`MailboxId::as_key`](courier::MailboxId::as_key), idempotency keys by
//! their bytes: byte strings rather than `&str`, so that comparing keys in the B-trees never re-validates UTF-8
//! (a measured cost). Times are milliseconds, numbers little-endian.

use bytes::Bytes;
use courier::StoreError;
use courier_delivery::{StoredMessage, Timestamp};
use redb::{TableDefinition, WriteTransaction};

/// Mailbox → (next sequence number, pending messages, pending payload bytes). A mailbox stays once created: its
/// next number must never be given again.
pub(crate) const MAILBOXES: TableDefinition<'_, &[u8], (u64, u64, u64)> =
    TableDefinition::new("mailboxes");
/// (mailbox, seq) → pending message ([`pending_header`], then the payload).
pub(crate) const PENDING: TableDefinition<'_, (&[u8], u64), &[u8]> =
    TableDefinition::new("pending");
/// (expires_at, mailbox, seq) for each pending message that expires.
pub(crate) const EXPIRIES: TableDefinition<'_, (u64, &[u8], u64), ()> =
    TableDefinition::new("expiries");
/// (mailbox, seq) → acked message kept for resync ([`timed_header`]: keep-until, then the payload).
pub(crate) const HISTORY: TableDefinition<'_, (&[u8], u64), &[u8]> =
    TableDefinition::new("history");
/// (keep_until, mailbox, seq) for each history entry.
pub(crate) const HISTORY_ENDS: TableDefinition<'_, (u64, &[u8], u64), ()> =
    TableDefinition::new("history_ends");
/// (mailbox, idempotency key) → stored result ([`timed_header`]: expiry, then the result).
pub(crate) const RESULTS: TableDefinition<'_, (&[u8], &[u8]), &[u8]> =
    TableDefinition::new("results");
/// (expires_at, mailbox, key) for each stored result.
pub(crate) const RESULT_ENDS: TableDefinition<'_, (u64, &[u8], &[u8]), ()> =
    TableDefinition::new("result_ends");

/// Creates every table that does not exist yet, so that reads never meet a missing one.
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(MAILBOXES)?;
    txn.open_table(PENDING)?;
    txn.open_table(EXPIRIES)?;
    txn.open_table(HISTORY)?;
    txn.open_table(HISTORY_ENDS)?;
    txn.open_table(RESULTS)?;
    txn.open_table(RESULT_ENDS)?;
    Ok(())
}

/// Fixed part of a pending record: enqueued_at (8), expires_at (8), attempts (4), has key (1), key (8).
pub(crate) const PENDING_HEADER: usize = 29;
/// Where the attempt count sits in a pending record: recording an attempt rewrites only these bytes.
pub(crate) const ATTEMPTS: std::ops::Range<usize> = 16..20;

/// The fixed part of a pending record for `message` (its payload follows it).
pub(crate) fn pending_header(message: &StoredMessage) -> [u8; PENDING_HEADER] {
    let mut out = [0; PENDING_HEADER];
    out[..8].copy_from_slice(&message.enqueued_at.as_millis().to_le_bytes());
    out[8..16].copy_from_slice(&message.expires_at.as_millis().to_le_bytes());
    out[ATTEMPTS].copy_from_slice(&message.attempts.to_le_bytes());
    out[20] = u8::from(message.key.is_some());
    out[21..].copy_from_slice(&message.key.unwrap_or(0).to_le_bytes());
    out
}

/// Reads back a pending record ([`pending_header`], then the payload); a record too short is corrupt.
pub(crate) fn decode_pending(seq: u64, bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    let Some((header, payload)) = bytes.split_at_checked(PENDING_HEADER) else {
        return Err(corrupt("pending message", seq));
    };
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let attempts = u32::from_le_bytes(header[ATTEMPTS].try_into().expect("4 bytes"));
    Ok(StoredMessage {
        seq,
        payload: Bytes::copy_from_slice(payload),
        key: (header[20] != 0).then(|| u64_at(21)),
        enqueued_at: Timestamp::from_millis(u64_at(0)),
        expires_at: Timestamp::from_millis(u64_at(8)),
        attempts,
    })
}

/// The attempt count of a pending record; a record too short is corrupt.
pub(crate) fn pending_attempts(seq: u64, bytes: &[u8]) -> Result<u32, StoreError> {
    match bytes.get(ATTEMPTS) {
        Some(attempts) if bytes.len() >= PENDING_HEADER => {
            Ok(u32::from_le_bytes(attempts.try_into().expect("4 bytes")))
        }
        _ => Err(corrupt("pending message", seq)),
    }
}

/// The header of a payload with a time (a history entry's keep-until, a result's expiry): the payload follows.
pub(crate) fn timed_header(at: Timestamp) -> [u8; 8] {
    at.as_millis().to_le_bytes()
}

/// Reads back a payload with a time ([`timed_header`], then the payload).
pub(crate) fn decode_timed(bytes: &[u8]) -> Result<(Timestamp, &[u8]), StoreError> {
    let Some((at, payload)) = bytes.split_first_chunk::<8>() else {
        return Err(StoreError::Backend(
            "a stored record is shorter than its header".into(),
        ));
    };
    Ok((Timestamp::from_millis(u64::from_le_bytes(*at)), payload))
}

fn corrupt(what: &str, seq: u64) -> StoreError {
    StoreError::Backend(format!("{what} {seq} is shorter than its header").into())
}

/// A redb failure as a store error.
pub(crate) fn backend(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(Box::new(error.into()))
}

/// Why an operation inside a transaction stopped.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The store refused this one operation (a full mailbox, a corrupt record); the transaction goes on.
    Refused(StoreError),
    /// redb failed: the whole transaction fails.
    Redb(Box<redb::Error>),
}

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Self {
        Self::Refused(error)
    }
}

impl From<Failed> for StoreError {
    fn from(failed: Failed) -> Self {
        match failed {
            Failed::Refused(error) => error,
            Failed::Redb(error) => StoreError::Backend(error),
        }
    }
}

/// Every redb error converts, so that `?` works inside transactions.
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for Failed {
            fn from(error: $error) -> Self {
                Self::Redb(Box::new(error.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError
);
