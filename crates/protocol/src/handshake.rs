//! The handshake (HUB-PROTOCOL.md §3): one JSON object plus `0x1E` in each direction, for both
//! protocols, before any hub message.
//!
//! ```
//! use bytes::BytesMut;
//! use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
//! use courier_protocol::{HubMessage, MessageReader, Protocol};
//!
//! // Client side: write the request.
//! let mut out = BytesMut::new();
//! HandshakeRequest::new(Protocol::Json, 1).write(&mut out);
//! assert_eq!(&out[..], b"{\"protocol\":\"json\",\"version\":1}\x1e");
//!
//! // The server's response may share a transport message with the first hub messages.
//! let received = b"{}\x1e{\"type\":6}\x1e";
//! let (response, consumed) = HandshakeResponse::parse(received, None)?.expect("complete");
//! assert_eq!(response, HandshakeResponse::success());
//! let mut reader = MessageReader::new(Protocol::Json, None);
//! reader.push(&received[consumed..]);
//! assert_eq!(reader.next_message()?, Some(HubMessage::Ping));
//! # Ok::<(), courier_protocol::ProtocolError>(())
//! ```

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};

use crate::framing::{RECORD_SEPARATOR, find_separator};
use crate::{Protocol, ProtocolError, json};

/// The client's first message: which protocol and version it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The protocol name as sent (`"json"`, `"messagepack"` or anything else a client wrote).
    pub protocol: String,
    /// The requested protocol version (clients send 1, or 2 for stateful reconnect).
    pub version: i32,
}

impl HandshakeRequest {
    /// A request for `protocol` at `version`.
    pub fn new(protocol: Protocol, version: i32) -> Self {
        Self {
            protocol: protocol.name().to_owned(),
            version,
        }
    }

    /// The requested protocol, if it is one this crate knows.
    pub fn known_protocol(&self) -> Option<Protocol> {
        Protocol::from_name(&self.protocol)
    }

    /// Parses a request from the start of `buf`: the request and the number of bytes it took
    /// (separator included), or `Ok(None)` if the separator has not arrived yet. As in .NET,
    /// unknown properties are ignored, a repeated property's last value wins and anything after
    /// the first object up to the separator is ignored. A request larger than
    /// `max_size` (separator included) is an error even before it is complete.
    pub fn parse(
        buf: &[u8],
        max_size: Option<usize>,
    ) -> Result<Option<(Self, usize)>, ProtocolError> {
        let Some(end) = find_record(buf, max_size)? else {
            return Ok(None);
        };
        let record = &buf[..end];
        let fields = parse_object(record, RequestVisitor)?;
        let missing = |name: &str| {
            ProtocolError::InvalidHandshake(format!(
                "Missing required property '{name}'. Message content: {}",
                String::from_utf8_lossy(record)
            ))
        };
        let protocol = fields.protocol.ok_or_else(|| missing("protocol"))?;
        let version = fields.version.ok_or_else(|| missing("version"))?;
        Ok(Some((Self { protocol, version }, end + 1)))
    }

    /// Appends the request and its separator to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"protocol\":");
        json::write_str(&self.protocol, out);
        out.put_slice(b",\"version\":");
        out.put_slice(self.version.to_string().as_bytes());
        out.put_slice(b"}\x1e");
    }
}

/// The server's answer: success, or an error after which the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    /// Why the handshake failed; `None` on success. (An empty string counts as an error for
    /// .NET clients but not for JS clients: never send one.)
    pub error: Option<String>,
}

impl HandshakeResponse {
    /// The success response, `{}`.
    pub fn success() -> Self {
        Self { error: None }
    }

    /// A failure response carrying `error`.
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
        }
    }

    /// Parses a response from the start of `buf`: the response and the number of bytes it took
    /// (separator included), or `Ok(None)` if the separator has not arrived yet. Bytes after
    /// that are hub messages. An object with a `type` property is a hub message, not a response
    /// ([`ProtocolError::NotAHandshakeResponse`]). `max_size` limits the response as for
    /// [`HandshakeRequest::parse`].
    pub fn parse(
        buf: &[u8],
        max_size: Option<usize>,
    ) -> Result<Option<(Self, usize)>, ProtocolError> {
        let Some(end) = find_record(buf, max_size)? else {
            return Ok(None);
        };
        let fields = parse_object(&buf[..end], ResponseVisitor)?;
        if fields.has_type {
            return Err(ProtocolError::NotAHandshakeResponse);
        }
        Ok(Some((
            Self {
                error: fields.error,
            },
            end + 1,
        )))
    }

    /// Appends the response and its separator to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        match &self.error {
            None => out.put_slice(b"{}"),
            Some(error) => {
                out.put_slice(b"{\"error\":");
                json::write_str(error, out);
                out.put_u8(b'}');
            }
        }
        out.put_u8(RECORD_SEPARATOR);
    }
}

/// The position of the separator ending the handshake record, enforcing the size limit.
fn find_record(buf: &[u8], max_size: Option<usize>) -> Result<Option<usize>, ProtocolError> {
    let limit = max_size.unwrap_or(usize::MAX);
    match find_separator(buf) {
        Some(end) if end < limit => Ok(Some(end)),
        Some(_) => Err(ProtocolError::MessageTooLarge { limit }),
        None if buf.len() >= limit => Err(ProtocolError::MessageTooLarge { limit }),
        None => Ok(None),
    }
}

/// Reads the first JSON object of `record`, ignoring whatever follows it (as .NET does).
fn parse_object<'a, V: Visitor<'a>>(
    record: &'a [u8],
    visitor: V,
) -> Result<V::Value, ProtocolError> {
    serde_json::Deserializer::from_slice(record)
        .deserialize_map(visitor)
        .map_err(|e| ProtocolError::InvalidHandshake(e.to_string()))
}

#[derive(Default)]
struct RequestFields {
    protocol: Option<String>,
    version: Option<i32>,
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = RequestFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestFields, A::Error> {
        let mut fields = RequestFields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "protocol" => fields.protocol = Some(map.next_value_seed(StringSeed("protocol"))?),
                "version" => fields.version = Some(map.next_value_seed(VersionSeed)?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

#[derive(Default)]
struct ResponseFields {
    error: Option<String>,
    has_type: bool,
}

struct ResponseVisitor;

impl<'de> Visitor<'de> for ResponseVisitor {
    type Value = ResponseFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResponseFields, A::Error> {
        let mut fields = ResponseFields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "error" => fields.error = Some(map.next_value_seed(StringSeed("error"))?),
                "type" => {
                    fields.has_type = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A non-null string property.
struct StringSeed(&'static str);

impl<'de> DeserializeSeed<'de> for StringSeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl Visitor<'_> for StringSeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' to be of type String", self.0)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<String, E> {
        Ok(value)
    }
}

/// The `version` property: an integer that fits in 32 bits.
struct VersionSeed;

impl<'de> DeserializeSeed<'de> for VersionSeed {
    type Value = i32;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<i32, D::Error> {
        deserializer.deserialize_i32(self)
    }
}

impl Visitor<'_> for VersionSeed {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'version' to be of type Number (a 32-bit integer)")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i32, E> {
        i32::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i32, E> {
        i32::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }
}
