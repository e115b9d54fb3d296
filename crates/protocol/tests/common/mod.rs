//! Helpers shared by the integration tests: loading the shared vectors and a protocol-neutral
//! `serde_json::Value` view of decoded messages to compare with them.

#![allow(dead_code, unreachable_pub)]

use courier_protocol::{CompletionResult, HubMessage, Payload, Protocol};
use serde_json::{Map, Value, json};

/// The entries of a vector file in `shared/protocol/vectors`. Fails if the file is missing or empty.
pub fn vectors(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../../shared/protocol/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let entries: Vec<Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not a JSON array: {e}"));
    assert!(!entries.is_empty(), "{path} holds no vectors");
    entries
}

/// Decodes a hex string.
pub fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("bad hex {hex}: {e}"))
        })
        .collect()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut text, b| {
            let _ = write!(text, "{b:02x}");
            text
        })
}

/// A field of a vector entry as a string.
pub fn str_field<'a>(entry: &'a Value, field: &str) -> &'a str {
    entry[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector without '{field}': {entry}"))
}

/// The message in the vectors' notation: JSON field names, empty headers/streamIds omitted,
/// MessagePack-only values tagged as `{"$float32":x}`, `{"$bin":"hex"}`, `{"$timestamp":"ISO"}`.
pub fn view(message: &HubMessage) -> Value {
    let mut object = Map::new();
    object.insert("type".into(), json!(message.message_type()));
    let mut headers = |h: &courier_protocol::Headers| {
        if !h.is_empty() {
            let map: Map<String, Value> = h
                .iter()
                .map(|(k, v)| (k.to_string(), json!(&**v)))
                .collect();
            object.insert("headers".into(), Value::Object(map));
        }
    };
    match message {
        HubMessage::Invocation(m) => {
            headers(&m.headers);
            if let Some(id) = &m.invocation_id {
                object.insert("invocationId".into(), json!(&**id));
            }
            object.insert("target".into(), json!(&*m.target));
            object.insert(
                "arguments".into(),
                m.arguments.iter().map(payload_view).collect(),
            );
            if !m.stream_ids.is_empty() {
                object.insert(
                    "streamIds".into(),
                    m.stream_ids.iter().map(|s| json!(&**s)).collect(),
                );
            }
        }
        HubMessage::StreamInvocation(m) => {
            headers(&m.headers);
            object.insert("invocationId".into(), json!(&*m.invocation_id));
            object.insert("target".into(), json!(&*m.target));
            object.insert(
                "arguments".into(),
                m.arguments.iter().map(payload_view).collect(),
            );
            if !m.stream_ids.is_empty() {
                object.insert(
                    "streamIds".into(),
                    m.stream_ids.iter().map(|s| json!(&**s)).collect(),
                );
            }
        }
        HubMessage::StreamItem(m) => {
            headers(&m.headers);
            object.insert("invocationId".into(), json!(&*m.invocation_id));
            object.insert("item".into(), payload_view(&m.item));
        }
        HubMessage::Completion(m) => {
            headers(&m.headers);
            object.insert("invocationId".into(), json!(&*m.invocation_id));
            match &m.result {
                CompletionResult::Void => {}
                CompletionResult::Value(value) => {
                    object.insert("result".into(), payload_view(value));
                }
                CompletionResult::Error(error) => {
                    object.insert("error".into(), json!(&**error));
                }
            }
        }
        HubMessage::CancelInvocation(m) => {
            headers(&m.headers);
            object.insert("invocationId".into(), json!(&*m.invocation_id));
        }
        HubMessage::Ping => {}
        HubMessage::Close(m) => {
            if let Some(error) = &m.error {
                object.insert("error".into(), json!(&**error));
            }
            if m.allow_reconnect {
                object.insert("allowReconnect".into(), json!(true));
            }
        }
        HubMessage::Ack(m) => {
            object.insert("sequenceId".into(), json!(m.sequence_id));
        }
        HubMessage::Sequence(m) => {
            object.insert("sequenceId".into(), json!(m.sequence_id));
        }
    }
    Value::Object(object)
}

/// Puts an expected message from a vector in the form [`view`] produces: empty `headers` and
/// `streamIds` dropped, and a `null` result next to an error dropped (decoders accept that pair
/// as an error, as the JS client does).
pub fn normalize(expected: &Value) -> Value {
    let mut expected = expected.clone();
    if let Some(object) = expected.as_object_mut() {
        if object
            .get("headers")
            .is_some_and(|h| h.as_object().is_some_and(Map::is_empty))
        {
            object.remove("headers");
        }
        if object
            .get("streamIds")
            .is_some_and(|s| s.as_array().is_some_and(Vec::is_empty))
        {
            object.remove("streamIds");
        }
        if object.contains_key("error") && object.get("result") == Some(&Value::Null) {
            object.remove("result");
        }
    }
    expected
}

/// A payload as a JSON value (MessagePack values converted to the tagged notation).
pub fn payload_view(payload: &Payload) -> Value {
    match payload.protocol() {
        Protocol::Json => serde_json::from_slice(payload.as_bytes())
            .expect("decoded JSON payloads are valid JSON"),
        Protocol::MessagePack => {
            let mut input: &[u8] = payload.as_bytes();
            let value = msgpack_view(&mut input);
            assert!(input.is_empty(), "bytes after a MessagePack payload");
            value
        }
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n);
    *input = tail;
    head
}

fn be(input: &mut &[u8], n: usize) -> u64 {
    take(input, n)
        .iter()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Converts one MessagePack value (test code: panics on malformed input, which the decoder
/// has already rejected).
fn msgpack_view(input: &mut &[u8]) -> Value {
    let marker = take(input, 1)[0];
    match marker {
        0x00..=0x7f => json!(marker),
        0xe0..=0xff => json!(i64::from(marker.cast_signed())),
        0x80..=0x8f => map_view(input, usize::from(marker & 0x0f)),
        0x90..=0x9f => array_view(input, usize::from(marker & 0x0f)),
        0xa0..=0xbf => str_view(input, usize::from(marker & 0x1f)),
        0xc0 => Value::Null,
        0xc2 => json!(false),
        0xc3 => json!(true),
        0xc4..=0xc6 => {
            let len = be(input, 1 << (marker - 0xc4)) as usize;
            json!({ "$bin": hex(take(input, len)) })
        }
        0xc7..=0xc9 => {
            let len = be(input, 1 << (marker - 0xc7)) as usize;
            ext_view(input, len)
        }
        0xca => json!({ "$float32": f64::from(f32::from_bits(be(input, 4) as u32)) }),
        0xcb => json!(f64::from_bits(be(input, 8))),
        0xcc..=0xcf => json!(be(input, 1 << (marker - 0xcc))),
        0xd0 => json!(i64::from((be(input, 1) as u8).cast_signed())),
        0xd1 => json!(i64::from((be(input, 2) as u16).cast_signed())),
        0xd2 => json!(i64::from((be(input, 4) as u32).cast_signed())),
        0xd3 => json!(be(input, 8).cast_signed()),
        0xd4..=0xd8 => ext_view(input, 1 << (marker - 0xd4)),
        0xd9..=0xdb => {
            let len = be(input, 1 << (marker - 0xd9)) as usize;
            str_view(input, len)
        }
        0xdc | 0xdd => {
            let len = be(input, 2 << (marker - 0xdc)) as usize;
            array_view(input, len)
        }
        0xde | 0xdf => {
            let len = be(input, 2 << (marker - 0xde)) as usize;
            map_view(input, len)
        }
        0xc1 => panic!("invalid marker 0xc1"),
    }
}

fn str_view(input: &mut &[u8], len: usize) -> Value {
    json!(std::str::from_utf8(take(input, len)).expect("UTF-8"))
}

fn array_view(input: &mut &[u8], len: usize) -> Value {
    (0..len).map(|_| msgpack_view(input)).collect()
}

fn map_view(input: &mut &[u8], len: usize) -> Value {
    let mut map = Map::new();
    for _ in 0..len {
        let key = match msgpack_view(input) {
            Value::String(key) => key,
            other => other.to_string(),
        };
        map.insert(key, msgpack_view(input));
    }
    Value::Object(map)
}

/// An extension value: type −1 is the timestamp, shown as ISO-8601 UTC.
fn ext_view(input: &mut &[u8], len: usize) -> Value {
    let ext_type = take(input, 1)[0].cast_signed();
    let data = take(input, len);
    if ext_type != -1 {
        return json!({ "$ext": [ext_type, hex(data)] });
    }
    let mut data = data;
    let (seconds, nanos) = match len {
        4 => (be(&mut data, 4).cast_signed(), 0),
        8 => {
            let v = be(&mut data, 8);
            ((v & 0x3_ffff_ffff).cast_signed(), (v >> 34) as u32)
        }
        12 => {
            let nanos = be(&mut data, 4) as u32;
            (be(&mut data, 8).cast_signed(), nanos)
        }
        _ => panic!("bad timestamp length {len}"),
    };
    json!({ "$timestamp": iso8601(seconds, nanos) })
}

/// `seconds` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
fn iso8601(seconds: i64, nanos: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if nanos != 0 {
        text.push_str(format!(".{nanos:09}").trim_end_matches('0'));
    }
    text.push('Z');
    text
}
