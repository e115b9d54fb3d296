//! Reading one MessagePack message body.

use bytes::Bytes;
use bytestring::ByteString;

use super::read::Cursor;
use crate::{
    Ack, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage, Invocation,
    Payload, Protocol, ProtocolError, Sequence, StreamInvocation, StreamItem, rules,
};

/// Decodes one message body (without its length prefix). `Ok(None)` for an unknown message type,
/// which the official codecs skip.
pub(crate) fn decode(body: &Bytes) -> Result<Option<HubMessage>, ProtocolError> {
    let mut cursor = Cursor::new(body);
    let len = cursor.array_len("message")?;
    if len == 0 {
        return Err(ProtocolError::invalid(
            "Invalid payload: the message array is empty.",
        ));
    }
    let mut fields = Elements {
        cursor,
        left: len - 1,
        kind: "",
    };
    let message_type = fields.cursor.int("messageType", "Int32")?;
    let message = match message_type {
        1 => {
            fields.kind = "Invocation";
            let headers = fields.headers()?;
            let invocation_id =
                rules::optional_id(fields.next("invocationId")?.opt_str("invocationId")?);
            let target = rules::target(fields.next("target")?.str("target")?, "Invocation")?;
            let arguments = fields.arguments()?;
            let stream_ids = fields.stream_ids()?;
            HubMessage::Invocation(Invocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            })
        }
        2 => {
            fields.kind = "StreamItem";
            let headers = fields.headers()?;
            let invocation_id = fields.invocation_id()?;
            let item = fields.payload("item")?;
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }
        3 => completion(&mut fields)?,
        4 => {
            fields.kind = "StreamInvocation";
            let headers = fields.headers()?;
            let invocation_id = fields.invocation_id()?;
            let target = rules::target(fields.next("target")?.str("target")?, "StreamInvocation")?;
            let arguments = fields.arguments()?;
            let stream_ids = fields.stream_ids()?;
            HubMessage::StreamInvocation(StreamInvocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            })
        }
        5 => {
            fields.kind = "CancelInvocation";
            let headers = fields.headers()?;
            let invocation_id = fields.invocation_id()?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id,
            })
        }
        6 => HubMessage::Ping,
        7 => close(&mut fields)?,
        8 => {
            fields.kind = "Ack";
            HubMessage::Ack(Ack {
                sequence_id: fields.sequence_id()?,
            })
        }
        9 => {
            fields.kind = "Sequence";
            HubMessage::Sequence(Sequence {
                sequence_id: fields.sequence_id()?,
            })
        }
        _ => return Ok(None),
    };
    fields.finish()?;
    Ok(Some(message))
}

fn completion(fields: &mut Elements<'_>) -> Result<HubMessage, ProtocolError> {
    fields.kind = "Completion";
    let headers = fields.headers()?;
    let invocation_id = fields.invocation_id()?;
    let result = match fields.next("resultKind")?.int("resultKind", "Int32")? {
        1 => CompletionResult::Error(fields.next("error")?.str("error")?),
        2 => CompletionResult::Void,
        3 => CompletionResult::Value(fields.payload("result")?),
        _ => return Err(ProtocolError::invalid("Invalid invocation result kind.")),
    };
    Ok(HubMessage::Completion(Completion {
        headers,
        invocation_id,
        result,
    }))
}

fn close(fields: &mut Elements<'_>) -> Result<HubMessage, ProtocolError> {
    fields.kind = "Close";
    let error = fields.next("error")?.opt_str("error")?;
    // .NET writes allowReconnect, JS does not.
    let allow_reconnect = match fields.next_if_present() {
        Some(cursor) => cursor.bool("allowReconnect")?,
        None => false,
    };
    Ok(HubMessage::Close(Close {
        error,
        allow_reconnect,
    }))
}

/// The elements of the message array that have not been read yet.
struct Elements<'a> {
    cursor: Cursor<'a>,
    left: usize,
    /// The message type's name, for error messages.
    kind: &'static str,
}

impl<'a> Elements<'a> {
    /// The cursor positioned at the next element, which must exist.
    fn next(&mut self, what: &str) -> Result<&mut Cursor<'a>, ProtocolError> {
        let kind = self.kind;
        self.next_if_present().ok_or_else(|| {
            ProtocolError::invalid(format!(
                "Invalid payload for {kind} message: '{what}' is missing."
            ))
        })
    }

    /// The cursor positioned at the next element, if the array has one more.
    fn next_if_present(&mut self) -> Option<&mut Cursor<'a>> {
        self.left = self.left.checked_sub(1)?;
        Some(&mut self.cursor)
    }

    /// Skips elements a newer peer may have added, then checks that nothing follows the array.
    fn finish(mut self) -> Result<(), ProtocolError> {
        for _ in 0..self.left {
            self.cursor.value("extra element")?;
        }
        if self.cursor.is_at_end() {
            Ok(())
        } else {
            Err(ProtocolError::invalid(
                "Invalid payload: bytes follow the message array.",
            ))
        }
    }

    fn headers(&mut self) -> Result<Headers, ProtocolError> {
        let cursor = self.next("headers")?;
        let len = cursor.map_len("headers")?;
        let mut headers = Headers::new();
        for i in 0..len {
            let key = cursor.str("header key").map_err(|_| {
                ProtocolError::invalid(format!("Reading 'headers[{i}].Key' as String failed."))
            })?;
            let value = cursor.str("header value").map_err(|_| {
                ProtocolError::invalid(format!("Reading 'headers[{i}].Value' as String failed."))
            })?;
            if key.is_empty() {
                return Err(ProtocolError::invalid("Null or empty key in header."));
            }
            if value.is_empty() {
                return Err(ProtocolError::invalid("Null or empty value in header."));
            }
            headers.push(key, value);
        }
        Ok(headers)
    }

    fn invocation_id(&mut self) -> Result<ByteString, ProtocolError> {
        let id = self.next("invocationId")?.opt_str("invocationId")?;
        rules::required_id(id, self.kind)
    }

    fn payload(&mut self, what: &str) -> Result<Payload, ProtocolError> {
        let bytes = self.next(what)?.value(what)?;
        Ok(Payload::new_unchecked(Protocol::MessagePack, bytes))
    }

    fn arguments(&mut self) -> Result<Vec<Payload>, ProtocolError> {
        let cursor = self.next("arguments")?;
        let len = cursor.array_len("arguments")?;
        // Every value takes at least one byte: never reserve more than the input can hold.
        let mut arguments = Vec::with_capacity(len.min(cursor.remaining()));
        for _ in 0..len {
            arguments.push(Payload::new_unchecked(
                Protocol::MessagePack,
                cursor.value("arguments")?,
            ));
        }
        Ok(arguments)
    }

    /// The optional last element of (stream) invocations: .NET writes it, JS omits it when empty.
    fn stream_ids(&mut self) -> Result<Vec<ByteString>, ProtocolError> {
        let Some(cursor) = self.next_if_present() else {
            return Ok(Vec::new());
        };
        let len = cursor.array_len("streamIds")?;
        let mut ids = Vec::with_capacity(len.min(cursor.remaining()));
        for _ in 0..len {
            ids.push(rules::stream_id(cursor.str("streamIds")?)?);
        }
        Ok(ids)
    }

    fn sequence_id(&mut self) -> Result<i64, ProtocolError> {
        self.next("sequenceId")?.int("sequenceId", "Int64")
    }
}
