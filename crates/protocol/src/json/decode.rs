//! Reading one JSON message (without its record separator).
//!
//! Fields may come in any order (the JS client writes `type` last), so every known field is read
//! into [`Fields`] first and the message is built at the end. Strings without escapes and all
//! payloads are slices of the input; payloads are only checked for well-formedness here.
//! The [`Scanner`] does the JSON; this module maps properties to fields, with the .NET texts
//! for mistyped fields.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;

use super::scanner::{RawString, Scanner, SyntaxError};
use super::unescape::unescape;
use crate::{
    Ack, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage, Invocation,
    Payload, Protocol, ProtocolError, Sequence, StreamInvocation, StreamItem, rules,
};

/// Decodes one record. `Ok(None)` for an unknown message type, which the official codecs skip.
pub(crate) fn decode(record: &Bytes) -> Result<Option<HubMessage>, ProtocolError> {
    // Validating the whole record once (fast for the mostly-ASCII JSON text) lets the scanner
    // look at ASCII only and lets strings be cut out of `text` without checking them again.
    let text = ByteString::try_from(record.clone())
        .map_err(|e| ProtocolError::invalid(format!("The message is not valid UTF-8: {e}")))?;
    let mut reader = RecordReader {
        scanner: Scanner::new(text.as_bytes()),
        text: &text,
    };
    // Filled in place: `Fields` is large, and moving it out of a function costs a copy.
    let mut fields = Fields::default();
    reader.fields(&mut fields)?;
    reader.scanner.finish()?;
    fields.take_message()
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
    /// Builds the message, taking the fields out (in place: moving all of `Fields` costs a copy).
    fn take_message(&mut self) -> Result<Option<HubMessage>, ProtocolError> {
        let headers = self.headers.take().unwrap_or_default();
        let message = match self.message_type.ok_or_else(|| missing("type"))? {
            1 => HubMessage::Invocation(Invocation {
                headers,
                invocation_id: rules::optional_id(self.invocation_id.take()),
                target: rules::target(
                    self.target.take().ok_or_else(|| missing("target"))?,
                    "Invocation",
                )?,
                arguments: self.arguments.take().ok_or_else(|| missing("arguments"))?,
                stream_ids: self.stream_ids.take().unwrap_or_default(),
            }),
            2 => HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id: required_id(self.invocation_id.take(), "StreamItem")?,
                item: self.item.take().ok_or_else(|| missing("item"))?,
            }),
            3 => HubMessage::Completion(Completion {
                headers,
                invocation_id: required_id(self.invocation_id.take(), "Completion")?,
                result: match (self.error.take(), self.result.take()) {
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
                invocation_id: required_id(self.invocation_id.take(), "StreamInvocation")?,
                target: rules::target(
                    self.target.take().ok_or_else(|| missing("target"))?,
                    "StreamInvocation",
                )?,
                arguments: self.arguments.take().ok_or_else(|| missing("arguments"))?,
                stream_ids: self.stream_ids.take().unwrap_or_default(),
            }),
            5 => HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id: required_id(self.invocation_id.take(), "CancelInvocation")?,
            }),
            6 => HubMessage::Ping,
            7 => HubMessage::Close(Close {
                error: self.error.take(),
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

/// Reads the properties of one record into [`Fields`], sharing the record's bytes.
struct RecordReader<'r> {
    scanner: Scanner<'r>,
    text: &'r ByteString,
}

impl RecordReader<'_> {
    /// The top-level object.
    fn fields(&mut self, fields: &mut Fields) -> Result<(), ProtocolError> {
        self.open_record()?;
        if self.scanner.eat(b'}') {
            return Ok(());
        }
        loop {
            let name = self.scanner.string()?;
            self.scanner.expect(b':', "':'")?;
            self.field(&name, fields)?;
            if !self.scanner.more(b'}', "',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// The `{` that opens the record; anything else is named as .NET names it.
    fn open_record(&mut self) -> Result<(), ProtocolError> {
        if self.scanner.eat(b'{') {
            return Ok(());
        }
        let first = self.scanner.peek();
        // Not JSON at all is a syntax error; only a well-formed value has a token type.
        self.scanner.value()?;
        let token = match first {
            Some(b'"') => "String",
            Some(b'[') => "Array",
            Some(b't') => "True",
            Some(b'f') => "False",
            Some(b'n') => "Null",
            _ => "Number",
        };
        Err(ProtocolError::invalid(format!(
            "Unexpected JSON Token Type '{token}'. Expected a JSON Object."
        )))
    }

    /// Reads the value of property `name` into its field (the last of duplicates wins); the
    /// values of unknown properties are checked and skipped.
    fn field(&mut self, name: &RawString, fields: &mut Fields) -> Result<(), ProtocolError> {
        match &*self.property_name(name)? {
            "type" => fields.message_type = Some(self.integer("type")?),
            "headers" => fields.headers = Some(self.headers()?),
            "invocationId" => {
                fields.invocation_id = Some(self.string(Field::Named("invocationId"))?);
            }
            "target" => fields.target = Some(self.string(Field::Named("target"))?),
            "arguments" => fields.arguments = Some(self.arguments()?),
            "streamIds" => fields.stream_ids = Some(self.stream_ids()?),
            "item" => fields.item = Some(self.payload()?),
            "result" => fields.result = Some(self.payload()?),
            "error" => fields.error = Some(self.string(Field::Named("error"))?),
            "allowReconnect" => fields.allow_reconnect = Some(self.boolean("allowReconnect")?),
            "sequenceId" => fields.sequence_id = Some(self.integer("sequenceId")?),
            _ => {
                self.scanner.value()?;
            }
        }
        Ok(())
    }

    /// A property name, unescaped only if it has escapes (`"typ\u0065"` is `type`, as in .NET).
    fn property_name(&self, name: &RawString) -> Result<Cow<'_, str>, ProtocolError> {
        let raw = self.content(name)?;
        if name.escaped {
            Ok(Cow::Owned(unescape_string(name, raw)?))
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// The text between a string's quotes.
    fn content(&self, string: &RawString) -> Result<&str, ProtocolError> {
        self.text
            .get(string.content.clone())
            .ok_or_else(|| ProtocolError::invalid("Error reading JSON: a string out of bounds."))
    }

    /// A string field; `null` is rejected, as by .NET.
    fn string(&mut self, field: Field<'_>) -> Result<ByteString, ProtocolError> {
        if self.scanner.peek() != Some(b'"') {
            return Err(ProtocolError::invalid(format!(
                "Expected {field} to be of type String."
            )));
        }
        let string = self.scanner.string()?;
        self.string_value(&string)
    }

    /// A string token as a [`ByteString`]: a slice of the record unless it has escapes.
    fn string_value(&self, string: &RawString) -> Result<ByteString, ProtocolError> {
        let raw = self.content(string)?;
        if string.escaped {
            Ok(ByteString::from(unescape_string(string, raw)?))
        } else {
            Ok(self.text.slice_ref(raw))
        }
    }

    /// An integer field (`type`, `sequenceId`): a JSON number without fraction or exponent
    /// that fits an int64.
    fn integer(&mut self, name: &str) -> Result<i64, ProtocolError> {
        if !matches!(self.scanner.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(ProtocolError::invalid(format!(
                "Expected '{name}' to be of type Number."
            )));
        }
        let number = self.scanner.number()?;
        self.text
            .as_bytes()
            .get(number)
            .and_then(int64)
            .ok_or_else(|| {
                ProtocolError::invalid(format!("Expected '{name}' to be an integer (int64)."))
            })
    }

    /// A boolean field (`allowReconnect`).
    fn boolean(&mut self, name: &str) -> Result<bool, ProtocolError> {
        let value = match self.scanner.peek() {
            Some(b't') => true,
            Some(b'f') => false,
            _ => {
                return Err(ProtocolError::invalid(format!(
                    "Expected '{name}' to be true or false."
                )));
            }
        };
        // Checks the rest of the literal.
        self.scanner.value()?;
        Ok(value)
    }

    /// Any JSON value, checked and kept as a slice of the record.
    fn payload(&mut self) -> Result<Payload, ProtocolError> {
        let value = self.scanner.value()?;
        Ok(Payload::new_unchecked(Protocol::Json, self.share(value)?))
    }

    /// The bytes at `range` of the record, shared.
    fn share(&self, range: Range<usize>) -> Result<Bytes, ProtocolError> {
        let record = self.text.as_bytes();
        if range.start <= range.end && range.end <= record.len() {
            Ok(record.slice(range))
        } else {
            Err(ProtocolError::invalid(
                "Error reading JSON: a value out of bounds.",
            ))
        }
    }

    /// The `arguments` array, each element kept as a slice of the record.
    fn arguments(&mut self) -> Result<Vec<Payload>, ProtocolError> {
        if !self.scanner.eat(b'[') {
            return Err(ProtocolError::invalid(
                "Expected 'arguments' to be of type Array.",
            ));
        }
        if self.scanner.eat(b']') {
            return Ok(Vec::new());
        }
        // What the first push would reserve anyway, without the growth logic.
        let mut arguments = Vec::with_capacity(4);
        loop {
            arguments.push(self.payload()?);
            if !self.scanner.more(b']', "',' or ']'")? {
                return Ok(arguments);
            }
        }
    }

    /// The `streamIds` array of non-empty strings.
    fn stream_ids(&mut self) -> Result<Vec<ByteString>, ProtocolError> {
        if !self.scanner.eat(b'[') {
            return Err(ProtocolError::invalid(
                "Expected 'streamIds' to be of type Array.",
            ));
        }
        let mut ids = Vec::new();
        if self.scanner.eat(b']') {
            return Ok(ids);
        }
        loop {
            let id = match self.scanner.peek() {
                Some(b'"') => {
                    let string = self.scanner.string()?;
                    self.string_value(&string)?
                }
                Some(b'n') => {
                    return Err(ProtocolError::invalid(
                        "Null value for 'streamIds' is not valid.",
                    ));
                }
                _ => {
                    return Err(ProtocolError::invalid(
                        "Expected the elements of 'streamIds' to be of type String.",
                    ));
                }
            };
            ids.push(rules::stream_id(id)?);
            if !self.scanner.more(b']', "',' or ']'")? {
                return Ok(ids);
            }
        }
    }

    /// The `headers` object of string values, duplicates kept in wire order.
    fn headers(&mut self) -> Result<Headers, ProtocolError> {
        if !self.scanner.eat(b'{') {
            return Err(ProtocolError::invalid(
                "Expected 'headers' to be of type Object.",
            ));
        }
        let mut headers = Headers::new();
        if self.scanner.eat(b'}') {
            return Ok(headers);
        }
        loop {
            let name = self.scanner.string()?;
            let key = self.string_value(&name)?;
            self.scanner.expect(b':', "':'")?;
            let value = self.string(Field::HeaderValue(&key))?;
            headers.push(key, value);
            if !self.scanner.more(b'}', "',' or '}'")? {
                return Ok(headers);
            }
        }
    }
}

/// The value of a number token (checked by the scanner) if it is an integer that fits an int64:
/// no fraction, no exponent (as .NET's `GetInt64`; `-0` is 0).
fn int64(number: &[u8]) -> Option<i64> {
    let (negative, digits) = match number.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, number),
    };
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(digit - b'0');
        // Negative numbers are built downwards, so that i64::MIN fits.
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

/// The text of `string`, whose content is `raw`, with its escapes decoded.
fn unescape_string(string: &RawString, raw: &str) -> Result<String, ProtocolError> {
    unescape(raw).map_err(|expected| {
        SyntaxError {
            at: string.content.start,
            expected,
        }
        .into()
    })
}

/// Which string is being read, for error messages (formatted only when one is needed).
#[derive(Clone, Copy)]
enum Field<'k> {
    Named(&'static str),
    HeaderValue(&'k str),
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(name) => write!(f, "'{name}'"),
            Self::HeaderValue(key) => write!(f, "header '{key}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_text(text: &'static str) -> Result<Option<HubMessage>, ProtocolError> {
        decode(&Bytes::from_static(text.as_bytes()))
    }

    fn error_text(text: &'static str) -> String {
        match decode_text(text) {
            Err(error) => error.to_string(),
            Ok(message) => panic!("{text} decoded to {message:?}"),
        }
    }

    #[test]
    fn integers_are_json_integers_that_fit_an_int64() {
        for (text, expected) in [
            (r#"{"type":8,"sequenceId":0}"#, 0),
            (r#"{"type":8,"sequenceId":-0}"#, 0),
            (r#"{"type":8,"sequenceId":9223372036854775807}"#, i64::MAX),
            (r#"{"type":8,"sequenceId":-9223372036854775808}"#, i64::MIN),
        ] {
            assert_eq!(
                decode_text(text),
                Ok(Some(HubMessage::Ack(Ack {
                    sequence_id: expected
                }))),
                "{text}"
            );
        }
        for text in [
            r#"{"type":8,"sequenceId":9223372036854775808}"#,
            r#"{"type":8,"sequenceId":-9223372036854775809}"#,
            r#"{"type":8,"sequenceId":1.0}"#,
            r#"{"type":8,"sequenceId":1e5}"#,
        ] {
            assert_eq!(
                error_text(text),
                "Expected 'sequenceId' to be an integer (int64).",
                "{text}"
            );
        }
        assert!(decode_text(r#"{"type":01}"#).is_err());
        assert_eq!(decode_text(r#"{"type":10}"#), Ok(None));
    }

    #[test]
    fn property_names_and_strings_are_unescaped_only_when_needed() {
        let Ok(Some(HubMessage::Invocation(call))) =
            decode_text(r#"{"typ\u0065":1,"target":"Sen\u0064 \ud83d\ude00","arguments":[]}"#)
        else {
            panic!("expected an invocation");
        };
        assert_eq!(call.target, "Send 😀");
        assert_eq!(
            error_text(r#"{"type":1,"target":"\ud83d","arguments":[]}"#),
            "Error reading JSON at byte 20: expected a \\u escape of a character, not half a surrogate pair."
        );
        // Unknown properties may hold any JSON, lone surrogates included, but it must be JSON.
        assert_eq!(
            decode_text(r#"{"type":6,"x":{"a":["\udc00",-0.5e-3,null]}}"#),
            Ok(Some(HubMessage::Ping))
        );
        assert!(decode_text(r#"{"type":6,"x":[1,]}"#).is_err());
        assert!(decode_text(r#"{"type":6,"x":01}"#).is_err());
    }

    #[test]
    fn the_last_duplicate_property_wins() {
        assert_eq!(
            decode_text(r#"{"type":1,"type":6}"#),
            Ok(Some(HubMessage::Ping))
        );
        let Ok(Some(HubMessage::StreamItem(item))) =
            decode_text(r#"{"type":2,"invocationId":"a","item":1,"invocationId":"b","item":[2]}"#)
        else {
            panic!("expected a stream item");
        };
        assert_eq!(
            (&*item.invocation_id, item.item.as_bytes().as_ref()),
            ("b", &b"[2]"[..])
        );
    }

    #[test]
    fn only_whitespace_may_surround_the_object() {
        assert_eq!(
            decode_text(" \t\r\n{ \"type\" : 6 } \n"),
            Ok(Some(HubMessage::Ping))
        );
        assert!(decode_text(r#"{"type":6}x"#).is_err());
        assert!(decode_text(r#"{"type":6}{}"#).is_err());
        assert!(decode_text("{\"type\":6}\u{1e}").is_err());
        assert_eq!(
            error_text("true"),
            "Unexpected JSON Token Type 'True'. Expected a JSON Object."
        );
        assert_eq!(
            error_text("-1"),
            "Unexpected JSON Token Type 'Number'. Expected a JSON Object."
        );
        assert_eq!(
            error_text("nul"),
            "Error reading JSON at byte 0: expected a value."
        );
    }

    #[test]
    fn payloads_are_slices_of_the_record_without_surrounding_whitespace() {
        let Ok(Some(HubMessage::Invocation(call))) =
            decode_text(r#"{"type":1,"target":"T","arguments":[ 1 , "a\"b" ,{"k" : [ ] } ]}"#)
        else {
            panic!("expected an invocation");
        };
        let arguments: Vec<&[u8]> = call
            .arguments
            .iter()
            .map(|a| a.as_bytes().as_ref())
            .collect();
        assert_eq!(arguments, [&b"1"[..], br#""a\"b""#, br#"{"k" : [ ] }"#]);
    }

    #[test]
    fn stream_ids_are_non_empty_strings() {
        assert_eq!(
            error_text(r#"{"type":1,"target":"T","arguments":[],"streamIds":[1]}"#),
            "Expected the elements of 'streamIds' to be of type String."
        );
        assert_eq!(
            error_text(r#"{"type":1,"target":"T","arguments":[],"streamIds":[""]}"#),
            "Null or empty value in streamIds received."
        );
    }
}
