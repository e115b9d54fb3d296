//! The nine hub message types (HUB-PROTOCOL.md §5), independent of the wire protocol.

use bytestring::ByteString;

use crate::Payload;

/// One hub message, as sent in either direction after the handshake.
///
/// Decoded strings and payloads share the bytes of the buffer they were read from (no copies), so
/// keeping a message alive keeps that buffer alive.
#[derive(Debug, Clone, PartialEq)]
pub enum HubMessage {
    /// Type 1: call a method on the other side.
    Invocation(Invocation),
    /// Type 2: one item of a stream (server results or a client upload stream).
    StreamItem(StreamItem),
    /// Type 3: the end of an invocation or stream: a result, an error or nothing.
    Completion(Completion),
    /// Type 4: call a streaming hub method.
    StreamInvocation(StreamInvocation),
    /// Type 5: cancel a stream started with [`HubMessage::StreamInvocation`].
    CancelInvocation(CancelInvocation),
    /// Type 6: keep-alive.
    Ping,
    /// Type 7: the sender is closing the connection.
    Close(Close),
    /// Type 8: stateful reconnect acknowledgement (protocol version 2).
    Ack(Ack),
    /// Type 9: stateful reconnect replay start (protocol version 2).
    Sequence(Sequence),
}

impl HubMessage {
    /// The numeric `type` written on the wire (1 to 9).
    pub fn message_type(&self) -> u8 {
        match self {
            Self::Invocation(_) => 1,
            Self::StreamItem(_) => 2,
            Self::Completion(_) => 3,
            Self::StreamInvocation(_) => 4,
            Self::CancelInvocation(_) => 5,
            Self::Ping => 6,
            Self::Close(_) => 7,
            Self::Ack(_) => 8,
            Self::Sequence(_) => 9,
        }
    }

    /// Whether stateful reconnect numbers, buffers and replays this message (types 1 to 5, §7).
    pub fn is_trackable(&self) -> bool {
        self.message_type() <= 5
    }
}

/// Message headers: string keys and values in wire order.
///
/// Duplicate keys are kept as received; [`Headers::get`] returns the last one, as the .NET
/// dictionary (last write wins) would. Empty headers allocate nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(ByteString, ByteString)>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Whether there are no headers (then they are not written at all in JSON).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of entries, duplicates included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The value of `key`, or `None`. With duplicate keys, the last one wins.
    pub fn get(&self, key: &str) -> Option<&ByteString> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an existing entry with the same key.
    #[must_use]
    pub fn with(mut self, key: impl Into<ByteString>, value: impl Into<ByteString>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`, replacing an existing entry with the same key in place.
    pub fn insert(&mut self, key: impl Into<ByteString>, value: impl Into<ByteString>) {
        let (key, value) = (key.into(), value.into());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Appends an entry without looking for an existing key (used by the decoders, which keep
    /// the wire contents as they are).
    pub(crate) fn push(&mut self, key: ByteString, value: ByteString) {
        self.0.push((key, value));
    }

    /// The entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&ByteString, &ByteString)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Into<ByteString>, V: Into<ByteString>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Type 1: a method call. Without an invocation id it is non-blocking and must not be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Headers (usually empty).
    pub headers: Headers,
    /// The id the answering [`Completion`] will carry; `None` for a non-blocking call.
    /// An empty id on the wire reads as `None`, as in .NET.
    pub invocation_id: Option<ByteString>,
    /// The method name (non-empty; matched case-insensitively by the official peers).
    pub target: ByteString,
    /// The arguments, still encoded.
    pub arguments: Vec<Payload>,
    /// Ids of upload streams that the caller will feed with [`StreamItem`]s.
    pub stream_ids: Vec<ByteString>,
}

/// Type 4: a call of a streaming method; the results come back as [`StreamItem`]s and a [`Completion`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInvocation {
    /// Headers (usually empty).
    pub headers: Headers,
    /// The id of the stream (non-empty).
    pub invocation_id: ByteString,
    /// The method name (non-empty).
    pub target: ByteString,
    /// The arguments, still encoded.
    pub arguments: Vec<Payload>,
    /// Ids of upload streams that the caller will feed with [`StreamItem`]s.
    pub stream_ids: Vec<ByteString>,
}

/// Type 2: one stream item.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamItem {
    /// Headers (usually empty).
    pub headers: Headers,
    /// The stream (invocation id or upload stream id; non-empty).
    pub invocation_id: ByteString,
    /// The item, still encoded (may be `null`).
    pub item: Payload,
}

/// Type 3: the end of an invocation or a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Headers (usually empty).
    pub headers: Headers,
    /// The invocation or stream this completes (non-empty).
    pub invocation_id: ByteString,
    /// The outcome.
    pub result: CompletionResult,
}

/// The outcome carried by a [`Completion`]. A void completion is not the same as a `null` result.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionResult {
    /// No result at all (a `void` method, or the end of a stream).
    Void,
    /// A result value, still encoded (may be `null`).
    Value(Payload),
    /// The invocation failed with this message. Avoid empty messages: peers disagree about them.
    Error(ByteString),
}

/// Type 5: cancel a server-to-client stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelInvocation {
    /// Headers (usually empty).
    pub headers: Headers,
    /// The stream to cancel (non-empty).
    pub invocation_id: ByteString,
}

/// Type 7: the sender closes the connection, optionally with an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Close {
    /// Why the connection is closed; `None` for a normal close.
    pub error: Option<ByteString>,
    /// Whether the client should reconnect (written only when true in JSON).
    pub allow_reconnect: bool,
}

/// Type 8: acknowledges every trackable message up to and including `sequence_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The latest sequence id received (an int64 on the wire).
    pub sequence_id: i64,
}

/// Type 9: after a reconnect, the sequence id of the first message about to be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    /// The sequence id of the next message (an int64 on the wire).
    pub sequence_id: i64,
}
