//! Property tests: random messages survive encode → split into random chunks → incremental
//! decode in both protocols; random bytes never panic and never make the reader buffer more
//! than the limit plus one chunk.

use bytes::{Bytes, BytesMut};
use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use courier_protocol::{
    Ack, ByteString, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage,
    Invocation, MessageReader, Payload, Protocol, Sequence, StreamInvocation, StreamItem,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Non-empty strings with the characters that need escaping in JSON (quote, backslash, control
/// characters including the record separator) and multi-byte UTF-8.
fn text() -> impl Strategy<Value = ByteString> {
    "[a-z0-9 \"\\\\\n\r\t\u{1}\u{1e}é€😀]{1,12}".prop_map(ByteString::from)
}

fn headers() -> impl Strategy<Value = Headers> {
    vec((text(), text()), 0..3).prop_map(|entries| entries.into_iter().collect())
}

/// A value of a few shapes, encoded for `protocol`.
fn payload(protocol: Protocol) -> impl Strategy<Value = Payload> {
    prop_oneof![
        any::<i64>().prop_map(move |v| Payload::from_value(protocol, &v)),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(move |v| Payload::from_value(protocol, &v)),
        ".{0,20}".prop_map(move |v| Payload::from_value(protocol, &v)),
        any::<Option<bool>>().prop_map(move |v| Payload::from_value(protocol, &v)),
        vec(any::<i32>(), 0..5).prop_map(move |v| Payload::from_value(protocol, &v)),
        vec((".{0,5}", any::<u8>()), 0..3).prop_map(move |v| Payload::from_value(protocol, &v)),
    ]
    .prop_map(|payload| payload.expect("plain values serialize"))
}

fn message(protocol: Protocol) -> impl Strategy<Value = HubMessage> {
    let arguments = move || vec(payload(protocol), 0..4);
    prop_oneof![
        (
            headers(),
            proptest::option::of(text()),
            text(),
            arguments(),
            vec(text(), 0..3)
        )
            .prop_map(|(headers, invocation_id, target, arguments, stream_ids)| {
                HubMessage::Invocation(Invocation {
                    headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                })
            }),
        (headers(), text(), payload(protocol)).prop_map(|(headers, invocation_id, item)| {
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }),
        (
            headers(),
            text(),
            prop_oneof![
                Just(CompletionResult::Void),
                payload(protocol).prop_map(CompletionResult::Value),
                text().prop_map(CompletionResult::Error),
            ]
        )
            .prop_map(|(headers, invocation_id, result)| HubMessage::Completion(
                Completion {
                    headers,
                    invocation_id,
                    result
                }
            )),
        (headers(), text(), text(), arguments(), vec(text(), 0..3)).prop_map(
            |(headers, invocation_id, target, arguments, stream_ids)| {
                HubMessage::StreamInvocation(StreamInvocation {
                    headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                })
            }
        ),
        (headers(), text()).prop_map(|(headers, invocation_id)| HubMessage::CancelInvocation(
            CancelInvocation {
                headers,
                invocation_id
            }
        )),
        Just(HubMessage::Ping),
        (proptest::option::of(text()), any::<bool>()).prop_map(|(error, allow_reconnect)| {
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            })
        }),
        any::<i64>().prop_map(|sequence_id| HubMessage::Ack(Ack { sequence_id })),
        any::<i64>().prop_map(|sequence_id| HubMessage::Sequence(Sequence { sequence_id })),
    ]
}

/// A protocol and a batch of messages for it.
fn batch() -> impl Strategy<Value = (Protocol, Vec<HubMessage>)> {
    prop_oneof![Just(Protocol::Json), Just(Protocol::MessagePack)]
        .prop_flat_map(|protocol| (Just(protocol), vec(message(protocol), 1..6)))
}

/// Splits `bytes` into chunks at the given (unsorted, possibly repeated) cut points.
fn chunks(bytes: &[u8], cuts: &[prop::sample::Index]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn messages_roundtrip_through_chunked_reading(
        (protocol, messages) in batch(),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
        copy in any::<bool>(),
    ) {
        let mut encoded = BytesMut::new();
        for message in &messages {
            protocol.encode(message, &mut encoded).unwrap();
        }
        let mut reader = MessageReader::new(protocol, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE));
        let mut decoded = Vec::new();
        for chunk in chunks(&encoded, &cuts) {
            if copy { reader.push(&chunk) } else { reader.push_bytes(chunk) }
            while let Some(message) = reader.next_message().unwrap() {
                decoded.push(message);
            }
        }
        reader.finish().unwrap();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_within_the_limit(
        json in any::<bool>(),
        data in vec(any::<u8>(), 0..600),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
        limit in 1usize..200,
    ) {
        let protocol = if json { Protocol::Json } else { Protocol::MessagePack };
        let mut reader = MessageReader::new(protocol, Some(limit));
        'feed: for chunk in chunks(&data, &cuts) {
            reader.push(&chunk);
            loop {
                match reader.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(reader.buffered_len() <= limit + chunk.len(),
                "buffered {} with limit {limit} and a chunk of {}", reader.buffered_len(), chunk.len());
        }
        let framed = Bytes::from(data.clone());
        let _ = protocol.decode_message(&framed);
        let _ = HandshakeRequest::parse(&data, Some(limit));
        let _ = HandshakeResponse::parse(&data, Some(limit));
        let _ = Payload::from_encoded(protocol, framed);
    }

    /// Valid messages with one byte changed: rejected, or decoded into something that encodes.
    #[test]
    fn corrupted_messages_never_panic(
        (protocol, messages) in batch(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut encoded = BytesMut::new();
        for message in &messages {
            protocol.encode(message, &mut encoded).unwrap();
        }
        let index = position.index(encoded.len());
        encoded[index] = byte;
        let mut reader = MessageReader::new(protocol, None);
        reader.push(&encoded);
        while let Ok(Some(message)) = reader.next_message() {
            let mut out = BytesMut::new();
            protocol.encode(&message, &mut out).unwrap();
            prop_assert_eq!(protocol.decode_message(&out.freeze()).unwrap(), Some(message));
        }
    }
}
