//! Reading one JSON message (without its record separator).
//!
//! Fields may come in any order (the JS client writes `type` last), so every known field is read
//! into [`Fields`] first and the message is built at the end. Strings without escapes and all
//! payloads are slices of the input; payloads are only checked for well-formedness here.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use crate::{
    Ack, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage, Invocation,
    Payload, Protocol, ProtocolError, Sequence, StreamInvocation, StreamItem, rules,
};

/// Decodes one record. `Ok(None)` for an unknown message type, which the official codecs skip.
pub(crate) fn decode(record: &Bytes) -> Result<Option<HubMessage>, ProtocolError> {
    // Validating the whole record once (fast for the mostly-ASCII JSON text) lets serde_json skip
    // its per-string check and lets strings be cut out of `text` without checking them again.
    let text = ByteString::try_from(record.clone())
        .map_err(|e| ProtocolError::invalid(format!("The message is not valid UTF-8: {e}")))?;
    let record = &text;
    let mut deserializer = serde_json::Deserializer::from_str(record);
    let fields = deserializer
        .deserialize_map(FieldsVisitor { record })
        .and_then(|fields| deserializer.end().map(|()| fields))
        .map_err(|e| ProtocolError::invalid(e.to_string()))?;
    fields.into_message()
}

/// Every field the protocol defines, as found in the object (duplicates: the last one wins).
#[derive(Default)]
struct Fields {
    message_type: Option<i64>,
    headers: Option<Headers>,
    invocation_id: Option<ByteString>,
    target: Option<ByteString>,
    arguments: Option<Vec<Payload>>,
    stream_ids: Option<Vec<ByteString>>,
    item: Option<Payload>,
    result: Option<Payload>,
    error: Option<ByteString>,
    allow_reconnect: Option<bool>,
    sequence_id: Option<i64>,
}

fn missing(name: &str) -> ProtocolError {
    ProtocolError::invalid(format!("Missing required property '{name}'."))
}

impl Fields {
    fn into_message(self) -> Result<Option<HubMessage>, ProtocolError> {
        let headers = self.headers.unwrap_or_default();
        let message = match self.message_type.ok_or_else(|| missing("type"))? {
            1 => HubMessage::Invocation(Invocation {
                headers,
                invocation_id: rules::optional_id(self.invocation_id),
                target: rules::target(self.target.ok_or_else(|| missing("target"))?, "Invocation")?,
                arguments: self.arguments.ok_or_else(|| missing("arguments"))?,
                stream_ids: self.stream_ids.unwrap_or_default(),
            }),
            2 => HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id: required_id(self.invocation_id, "StreamItem")?,
                item: self.item.ok_or_else(|| missing("item"))?,
            }),
            3 => HubMessage::Completion(Completion {
                headers,
                invocation_id: required_id(self.invocation_id, "Completion")?,
                result: match (self.error, self.result) {
                    (None, None) => CompletionResult::Void,
                    (None, Some(result)) => CompletionResult::Value(result),
                    // The JS client accepts an error next to a null result; .NET rejects any result.
                    (Some(error), None) => CompletionResult::Error(error),
                    (Some(error), Some(result)) if result.as_bytes().as_ref() == b"null" => {
                        CompletionResult::Error(error)
                    }
                    (Some(_), Some(_)) => {
                        return Err(ProtocolError::invalid(
                            "The 'error' and 'result' properties are mutually exclusive.",
                        ));
                    }
                },
            }),
            4 => HubMessage::StreamInvocation(StreamInvocation {
                headers,
                invocation_id: required_id(self.invocation_id, "StreamInvocation")?,
                target: rules::target(
                    self.target.ok_or_else(|| missing("target"))?,
                    "StreamInvocation",
                )?,
                arguments: self.arguments.ok_or_else(|| missing("arguments"))?,
                stream_ids: self.stream_ids.unwrap_or_default(),
            }),
            5 => HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id: required_id(self.invocation_id, "CancelInvocation")?,
            }),
            6 => HubMessage::Ping,
            7 => HubMessage::Close(Close {
                error: self.error,
                allow_reconnect: self.allow_reconnect.unwrap_or(false),
            }),
            8 => HubMessage::Ack(Ack {
                sequence_id: self.sequence_id.ok_or_else(|| missing("sequenceId"))?,
            }),
            9 => HubMessage::Sequence(Sequence {
                sequence_id: self.sequence_id.ok_or_else(|| missing("sequenceId"))?,
            }),
            _ => return Ok(None),
        };
        Ok(Some(message))
    }
}

fn required_id(id: Option<ByteString>, kind: &str) -> Result<ByteString, ProtocolError> {
    rules::required_id(Some(id.ok_or_else(|| missing("invocationId"))?), kind)
}

/// Reads the top-level object into [`Fields`].
struct FieldsVisitor<'r> {
    record: &'r ByteString,
}

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let record = self.record;
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => fields.message_type = Some(map.next_value_seed(IntSeed("type"))?),
                Key::Headers => fields.headers = Some(map.next_value_seed(HeadersSeed { record })?),
                Key::InvocationId => {
                    fields.invocation_id = Some(map.next_value_seed(StrSeed {
                        record,
                        field: Field::Named("invocationId"),
                    })?);
                }
                Key::Target => {
                    fields.target = Some(map.next_value_seed(StrSeed {
                        record,
                        field: Field::Named("target"),
                    })?);
                }
                Key::Arguments => {
                    fields.arguments = Some(map.next_value_seed(ArgumentsSeed { record })?);
                }
                Key::StreamIds => {
                    fields.stream_ids = Some(map.next_value_seed(StreamIdsSeed { record })?);
                }
                Key::Item => fields.item = Some(map.next_value_seed(PayloadSeed { record })?),
                Key::Result => fields.result = Some(map.next_value_seed(PayloadSeed { record })?),
                Key::Error => {
                    fields.error = Some(map.next_value_seed(StrSeed {
                        record,
                        field: Field::Named("error"),
                    })?);
                }
                Key::AllowReconnect => {
                    fields.allow_reconnect = Some(map.next_value_seed(BoolSeed("allowReconnect"))?);
                }
                Key::SequenceId => {
                    fields.sequence_id = Some(map.next_value_seed(IntSeed("sequenceId"))?);
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A property name (case-sensitive, as in .NET).
enum Key {
    Type,
    Headers,
    InvocationId,
    Target,
    Arguments,
    StreamIds,
    Item,
    Result,
    Error,
    AllowReconnect,
    SequenceId,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "type" => Key::Type,
            "headers" => Key::Headers,
            "invocationId" => Key::InvocationId,
            "target" => Key::Target,
            "arguments" => Key::Arguments,
            "streamIds" => Key::StreamIds,
            "item" => Key::Item,
            "result" => Key::Result,
            "error" => Key::Error,
            "allowReconnect" => Key::AllowReconnect,
            "sequenceId" => Key::SequenceId,
            _ => Key::Other,
        })
    }
}

/// A string field. Unescaped strings share the record's bytes; escaped ones are unescaped into
/// a new allocation. `null` is rejected, as by .NET.
#[derive(Clone, Copy)]
struct StrSeed<'r> {
    record: &'r ByteString,
    field: Field<'r>,
}

/// Which string is being read, for error messages (formatted only when one is needed).
#[derive(Clone, Copy)]
enum Field<'r> {
    Named(&'static str),
    HeaderValue(&'r str),
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(name) => write!(f, "'{name}'"),
            Self::HeaderValue(key) => write!(f, "header '{key}'"),
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = ByteString;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<ByteString, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed<'_> {
    type Value = ByteString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to be of type String", self.field)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<ByteString, E> {
        // `value` borrows from the record, which `from_str` reads: share those bytes.
        Ok(self.record.slice_ref(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ByteString, E> {
        Ok(ByteString::from(value))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<ByteString, E> {
        Ok(ByteString::from(value))
    }
}

/// An integer field (`type`, `sequenceId`).
struct IntSeed(&'static str);

impl<'de> DeserializeSeed<'de> for IntSeed {
    type Value = i64;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_i64(self)
    }
}

impl Visitor<'_> for IntSeed {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' to be of type Number (an integer)", self.0)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }
}

/// A boolean field (`allowReconnect`).
struct BoolSeed(&'static str);

impl<'de> DeserializeSeed<'de> for BoolSeed {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_bool(self)
    }
}

impl Visitor<'_> for BoolSeed {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' to be true or false", self.0)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }
}

/// Any JSON value, kept as a slice of the record.
struct PayloadSeed<'r> {
    record: &'r ByteString,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Payload;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Payload, D::Error> {
        let raw = <&'de RawValue as de::Deserialize<'de>>::deserialize(deserializer)?;
        Ok(raw_payload(self.record, raw))
    }
}

fn raw_payload(record: &ByteString, raw: &RawValue) -> Payload {
    Payload::new_unchecked(
        Protocol::Json,
        record.as_bytes().slice_ref(raw.get().as_bytes()),
    )
}

/// The `arguments` array, each element kept as a slice of the record.
struct ArgumentsSeed<'r> {
    record: &'r ByteString,
}

impl<'de> DeserializeSeed<'de> for ArgumentsSeed<'_> {
    type Value = Vec<Payload>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Vec<Payload>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArgumentsSeed<'_> {
    type Value = Vec<Payload>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'arguments' to be of type Array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Payload>, A::Error> {
        let mut arguments = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            arguments.push(raw_payload(self.record, raw));
        }
        Ok(arguments)
    }
}

/// The `streamIds` array of non-null strings.
struct StreamIdsSeed<'r> {
    record: &'r ByteString,
}

impl<'de> DeserializeSeed<'de> for StreamIdsSeed<'_> {
    type Value = Vec<ByteString>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Vec<ByteString>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for StreamIdsSeed<'_> {
    type Value = Vec<ByteString>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'streamIds' to be of type Array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<ByteString>, A::Error> {
        let mut ids = Vec::new();
        let seed = StrSeed {
            record: self.record,
            field: Field::Named("streamIds"),
        };
        while let Some(id) = seq.next_element_seed(seed)? {
            ids.push(rules::stream_id(id).map_err(de::Error::custom)?);
        }
        Ok(ids)
    }
}

/// The `headers` object of string values.
struct HeadersSeed<'r> {
    record: &'r ByteString,
}

impl<'de> DeserializeSeed<'de> for HeadersSeed<'_> {
    type Value = Headers;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Headers, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadersSeed<'_> {
    type Value = Headers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'headers' to be of type Object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
        let mut headers = Headers::new();
        while let Some(key) = map.next_key_seed(StrSeed {
            record: self.record,
            field: Field::Named("header name"),
        })? {
            let value = map.next_value_seed(StrSeed {
                record: self.record,
                field: Field::HeaderValue(&key),
            })?;
            headers.push(key, value);
        }
        Ok(headers)
    }
}
