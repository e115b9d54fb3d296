//! Writing JSON messages in the property order .NET writes (§5.1): `type`, `headers` (if any),
//! `invocationId` (if any), then the type's own fields; followed by the record separator.

use bytes::{BufMut, BytesMut};

use crate::framing::RECORD_SEPARATOR;
use crate::{CompletionResult, Headers, HubMessage, Payload, Protocol, ProtocolError};

/// Appends `message` and its record separator to `out`. On error `out` is left as it was.
pub(crate) fn encode(message: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
    let start = out.len();
    let written = write_object(message, out);
    match written {
        Ok(()) => out.put_u8(RECORD_SEPARATOR),
        Err(_) => out.truncate(start),
    }
    written
}

fn write_object(message: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
    out.put_slice(b"{\"type\":");
    write_int(i64::from(message.message_type()), out);
    match message {
        HubMessage::Invocation(m) => {
            write_headers(&m.headers, out);
            if let Some(id) = &m.invocation_id {
                write_invocation_id(id, out);
            }
            write_call(&m.target, &m.arguments, &m.stream_ids, out)?;
        }
        HubMessage::StreamItem(m) => {
            write_headers(&m.headers, out);
            write_invocation_id(&m.invocation_id, out);
            out.put_slice(b",\"item\":");
            write_payload(&m.item, out)?;
        }
        HubMessage::Completion(m) => {
            write_headers(&m.headers, out);
            write_invocation_id(&m.invocation_id, out);
            match &m.result {
                CompletionResult::Void => {}
                CompletionResult::Value(value) => {
                    out.put_slice(b",\"result\":");
                    write_payload(value, out)?;
                }
                CompletionResult::Error(error) => {
                    out.put_slice(b",\"error\":");
                    write_str(error, out);
                }
            }
        }
        HubMessage::StreamInvocation(m) => {
            write_headers(&m.headers, out);
            write_invocation_id(&m.invocation_id, out);
            write_call(&m.target, &m.arguments, &m.stream_ids, out)?;
        }
        HubMessage::CancelInvocation(m) => {
            write_headers(&m.headers, out);
            write_invocation_id(&m.invocation_id, out);
        }
        HubMessage::Ping => {}
        HubMessage::Close(m) => {
            if let Some(error) = &m.error {
                out.put_slice(b",\"error\":");
                write_str(error, out);
            }
            if m.allow_reconnect {
                out.put_slice(b",\"allowReconnect\":true");
            }
        }
        HubMessage::Ack(m) => write_sequence_id(m.sequence_id, out),
        HubMessage::Sequence(m) => write_sequence_id(m.sequence_id, out),
    }
    out.put_u8(b'}');
    Ok(())
}

fn write_headers(headers: &Headers, out: &mut BytesMut) {
    if headers.is_empty() {
        return;
    }
    out.put_slice(b",\"headers\":{");
    for (i, (key, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_str(key, out);
        out.put_u8(b':');
        write_str(value, out);
    }
    out.put_u8(b'}');
}

fn write_invocation_id(id: &str, out: &mut BytesMut) {
    // .NET omits empty ids as well as absent ones.
    if !id.is_empty() {
        out.put_slice(b",\"invocationId\":");
        write_str(id, out);
    }
}

/// The fields shared by invocations and stream invocations.
fn write_call(
    target: &str,
    arguments: &[Payload],
    stream_ids: &[bytestring::ByteString],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    out.put_slice(b",\"target\":");
    write_str(target, out);
    out.put_slice(b",\"arguments\":[");
    for (i, argument) in arguments.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_payload(argument, out)?;
    }
    out.put_u8(b']');
    if !stream_ids.is_empty() {
        out.put_slice(b",\"streamIds\":[");
        for (i, id) in stream_ids.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            write_str(id, out);
        }
        out.put_u8(b']');
    }
    Ok(())
}

fn write_sequence_id(id: i64, out: &mut BytesMut) {
    out.put_slice(b",\"sequenceId\":");
    write_int(id, out);
}

fn write_payload(payload: &Payload, out: &mut BytesMut) -> Result<(), ProtocolError> {
    out.put_slice(payload.expect_protocol(Protocol::Json)?);
    Ok(())
}

fn write_int(value: i64, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let mut magnitude = value.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[start..]);
}

/// Writes `s` as a JSON string the way .NET's relaxed encoder does: quotes, backslashes and
/// control characters escaped (short forms where JSON has them, else `\u00XX` in upper case),
/// everything else — non-ASCII included — as raw UTF-8. U+001E is therefore always escaped.
pub(crate) fn write_str(s: &str, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    out.put_u8(b'"');
    let mut run_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.put_slice(&bytes[run_start..i]);
        run_start = i + 1;
        if short == 0 {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.put_slice(&[b'\\', short]);
        }
    }
    out.put_slice(&bytes[run_start..]);
    out.put_u8(b'"');
}
