//! The two hub protocols and their single-message entry points.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::framing::{RECORD_SEPARATOR, find_separator, read_length_prefix};
use crate::negotiate::TransferFormat;
use crate::{HubMessage, ProtocolError, json, msgpack};

/// A hub protocol, as named in the handshake request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `json`: UTF-8 JSON objects, each followed by the record separator `0x1E`.
    Json,
    /// `messagepack`: MessagePack arrays, each preceded by a varint length.
    MessagePack,
}

impl Protocol {
    /// The highest protocol version this crate speaks, for both protocols: 2 (version 1 plus the
    /// Ack and Sequence messages of stateful reconnect). Servers accept any lower version too.
    pub const VERSION: i32 = 2;

    /// The name used in the handshake: `"json"` or `"messagepack"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "messagepack",
        }
    }

    /// The protocol with this handshake name (compared ignoring ASCII case, as .NET does).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Json, Self::MessagePack]
            .into_iter()
            .find(|protocol| protocol.name().eq_ignore_ascii_case(name))
    }

    /// The transfer format a transport must support to carry this protocol.
    pub fn transfer_format(self) -> TransferFormat {
        match self {
            Self::Json => TransferFormat::Text,
            Self::MessagePack => TransferFormat::Binary,
        }
    }

    /// Appends `message` with its framing to `out`. Call it repeatedly to batch several messages
    /// into one transport message (or use [`MessageWriter`](crate::MessageWriter)).
    ///
    /// Fails only if a payload was encoded with the other protocol or a MessagePack message would
    /// exceed 2 GiB; `out` is then left unchanged. Field values are written as given (e.g. an
    /// empty target is not refused here, but the peer will reject it).
    pub fn encode(self, message: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            Self::Json => json::encode(message, out),
            Self::MessagePack => msgpack::encode(message, out),
        }
    }

    /// Decodes exactly one framed message (JSON with its trailing `0x1E`, MessagePack with its
    /// length prefix), applying no size limit. `Ok(None)` means the message has a type this
    /// crate does not know, which peers must skip. For a stream of bytes use
    /// [`MessageReader`](crate::MessageReader).
    pub fn decode_message(self, framed: &Bytes) -> Result<Option<HubMessage>, ProtocolError> {
        match self {
            // The JSON decoder rejects a separator inside the record (it is neither whitespace
            // nor allowed unescaped in a string), so only a failed decode needs to look for one.
            Self::Json => match framed.split_last() {
                Some((&RECORD_SEPARATOR, record)) => json::decode(&framed.slice(..record.len()))
                    .map_err(|error| match find_separator(record) {
                        Some(_) => bytes_after_separator(),
                        None => error,
                    }),
                _ => match find_separator(framed) {
                    Some(_) => Err(bytes_after_separator()),
                    None => Err(ProtocolError::ConnectionTerminated),
                },
            },
            Self::MessagePack => match read_length_prefix(framed)? {
                Some((len, prefix)) if prefix + len == framed.len() => {
                    msgpack::decode(&framed.slice(prefix..))
                }
                Some((len, prefix)) if prefix + len < framed.len() => Err(ProtocolError::invalid(
                    "Bytes follow the end of the message.",
                )),
                _ => Err(ProtocolError::ConnectionTerminated),
            },
        }
    }
}

fn bytes_after_separator() -> ProtocolError {
    ProtocolError::invalid("Bytes follow the record separator of the message.")
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
