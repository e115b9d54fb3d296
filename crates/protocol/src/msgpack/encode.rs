//! Writing MessagePack messages with their length prefix, in the layout .NET writes (§5.2):
//! 6-element (stream) invocations and 3-element Close messages, smallest integer and string formats.

use bytes::{BufMut, BytesMut};

use crate::framing::length_prefix;
use crate::{CompletionResult, Headers, HubMessage, Payload, Protocol, ProtocolError};

/// Appends `message` with its length prefix to `out`. On error `out` is left as it was.
pub(crate) fn encode(message: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
    let start = out.len();
    // Most messages are shorter than 128 bytes: reserve a one-byte prefix and move the body
    // only when a longer prefix is needed.
    out.put_u8(0);
    let framed = write_body(message, out).and_then(|()| {
        let body_len = out.len() - start - 1;
        let (prefix, size) = length_prefix(body_len)?;
        if size > 1 {
            out.put_bytes(0, size - 1);
            out.copy_within(start + 1..start + 1 + body_len, start + size);
        }
        out[start..start + size].copy_from_slice(&prefix[..size]);
        Ok(())
    });
    if framed.is_err() {
        out.truncate(start);
    }
    framed
}

fn write_body(message: &HubMessage, out: &mut BytesMut) -> Result<(), ProtocolError> {
    match message {
        HubMessage::Invocation(m) => {
            write_array_len(6, out);
            write_int(1, out);
            write_headers(&m.headers, out);
            match &m.invocation_id {
                Some(id) => write_str(id, out),
                None => out.put_u8(0xc0),
            }
            write_str(&m.target, out);
            write_arguments(&m.arguments, out)?;
            write_stream_ids(&m.stream_ids, out);
        }
        HubMessage::StreamItem(m) => {
            write_array_len(4, out);
            write_int(2, out);
            write_headers(&m.headers, out);
            write_str(&m.invocation_id, out);
            write_payload(&m.item, out)?;
        }
        HubMessage::Completion(m) => {
            write_array_len(
                if matches!(m.result, CompletionResult::Void) {
                    4
                } else {
                    5
                },
                out,
            );
            write_int(3, out);
            write_headers(&m.headers, out);
            write_str(&m.invocation_id, out);
            match &m.result {
                CompletionResult::Error(error) => {
                    write_int(1, out);
                    write_str(error, out);
                }
                CompletionResult::Void => write_int(2, out),
                CompletionResult::Value(value) => {
                    write_int(3, out);
                    write_payload(value, out)?;
                }
            }
        }
        HubMessage::StreamInvocation(m) => {
            write_array_len(6, out);
            write_int(4, out);
            write_headers(&m.headers, out);
            write_str(&m.invocation_id, out);
            write_str(&m.target, out);
            write_arguments(&m.arguments, out)?;
            write_stream_ids(&m.stream_ids, out);
        }
        HubMessage::CancelInvocation(m) => {
            write_array_len(3, out);
            write_int(5, out);
            write_headers(&m.headers, out);
            write_str(&m.invocation_id, out);
        }
        HubMessage::Ping => {
            write_array_len(1, out);
            write_int(6, out);
        }
        HubMessage::Close(m) => {
            write_array_len(3, out);
            write_int(7, out);
            match &m.error {
                Some(error) => write_str(error, out),
                None => out.put_u8(0xc0),
            }
            out.put_u8(if m.allow_reconnect { 0xc3 } else { 0xc2 });
        }
        HubMessage::Ack(m) => {
            write_array_len(2, out);
            write_int(8, out);
            write_int(m.sequence_id, out);
        }
        HubMessage::Sequence(m) => {
            write_array_len(2, out);
            write_int(9, out);
            write_int(m.sequence_id, out);
        }
    }
    Ok(())
}

fn write_payload(payload: &Payload, out: &mut BytesMut) -> Result<(), ProtocolError> {
    out.put_slice(payload.expect_protocol(Protocol::MessagePack)?);
    Ok(())
}

fn write_arguments(arguments: &[Payload], out: &mut BytesMut) -> Result<(), ProtocolError> {
    write_array_len(arguments.len(), out);
    arguments
        .iter()
        .try_for_each(|argument| write_payload(argument, out))
}

fn write_stream_ids(ids: &[bytestring::ByteString], out: &mut BytesMut) {
    write_array_len(ids.len(), out);
    for id in ids {
        write_str(id, out);
    }
}

fn write_headers(headers: &Headers, out: &mut BytesMut) {
    write_collection_len(headers.len(), 0x80, 0xde, out);
    for (key, value) in headers.iter() {
        write_str(key, out);
        write_str(value, out);
    }
}

fn write_array_len(len: usize, out: &mut BytesMut) {
    write_collection_len(len, 0x90, 0xdc, out);
}

/// Writes an array or map header: fix format, then 16-bit (`marker16`), then 32-bit.
fn write_collection_len(len: usize, fix: u8, marker16: u8, out: &mut BytesMut) {
    match len {
        0..16 => out.put_u8(fix | len as u8),
        16..0x1_0000 => {
            out.put_u8(marker16);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(marker16 + 1);
            out.put_u32(len as u32);
        }
    }
}

fn write_str(s: &str, out: &mut BytesMut) {
    let len = s.len();
    match len {
        0..32 => out.put_u8(0xa0 | len as u8),
        32..0x100 => {
            out.put_u8(0xd9);
            out.put_u8(len as u8);
        }
        0x100..0x1_0000 => {
            out.put_u8(0xda);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(0xdb);
            out.put_u32(len as u32);
        }
    }
    out.put_slice(s.as_bytes());
}

/// Writes an integer in its smallest format, as MessagePack-CSharp and @msgpack/msgpack do.
fn write_int(value: i64, out: &mut BytesMut) {
    let unsigned = value.cast_unsigned();
    match value {
        0..=0x7f => out.put_u8(unsigned as u8),
        0x80..=0xff => {
            out.put_u8(0xcc);
            out.put_u8(unsigned as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xcd);
            out.put_u16(unsigned as u16);
        }
        0x1_0000..=0xffff_ffff => {
            out.put_u8(0xce);
            out.put_u32(unsigned as u32);
        }
        0x1_0000_0000.. => {
            out.put_u8(0xcf);
            out.put_u64(unsigned);
        }
        -32..=-1 => out.put_i8(value as i8),
        -0x80..=-33 => {
            out.put_u8(0xd0);
            out.put_i8(value as i8);
        }
        -0x8000..=-0x81 => {
            out.put_u8(0xd1);
            out.put_i16(value as i16);
        }
        -0x8000_0000..=-0x8001 => {
            out.put_u8(0xd2);
            out.put_i32(value as i32);
        }
        _ => {
            out.put_u8(0xd3);
            out.put_i64(value);
        }
    }
}
