//! Behaviour of the public API beyond what the shared vectors cover.

use bytes::{Bytes, BytesMut};
use courier_protocol::negotiate::{NegotiateRequest, TransferFormat};
use courier_protocol::{
    Completion, CompletionResult, Headers, HubMessage, Invocation, MAX_NESTING_DEPTH,
    MessageReader, MessageWriter, Payload, Protocol, ProtocolError, StreamItem,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Point {
    x: i32,
    label: String,
}

#[test]
fn payloads_bind_to_rust_types_in_both_protocols() {
    let point = Point {
        x: 3,
        label: "p".into(),
    };
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let payload = Payload::from_value(protocol, &point).unwrap();
        assert_eq!(payload.deserialize::<Point>().unwrap(), point, "{protocol}");
        assert!(
            matches!(
                payload.deserialize::<Vec<u8>>(),
                Err(ProtocolError::Binding(_))
            ),
            "{protocol}"
        );
    }
    // MessagePack structs are maps with member names, as .NET writes them.
    let payload = Payload::from_value(Protocol::MessagePack, &point).unwrap();
    assert_eq!(payload.as_bytes().as_ref(), b"\x82\xa1X\x03\xa5Label\xa1p");
}

#[test]
fn a_payload_cannot_be_written_with_the_other_protocol() {
    let message = HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: "1".into(),
        item: Payload::null(Protocol::Json),
    });
    let mut out = BytesMut::from(&b"kept"[..]);
    let error = Protocol::MessagePack
        .encode(&message, &mut out)
        .unwrap_err();
    assert_eq!(
        error,
        ProtocolError::PayloadProtocolMismatch {
            message: Protocol::MessagePack,
            payload: Protocol::Json
        }
    );
    assert_eq!(
        &out[..],
        b"kept",
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn encoded_payloads_are_checked() {
    assert!(Payload::from_encoded(Protocol::Json, Bytes::from_static(b"[1,2]")).is_ok());
    assert!(Payload::from_encoded(Protocol::Json, Bytes::from_static(b"[1,2")).is_err());
    assert!(Payload::from_encoded(Protocol::Json, Bytes::from_static(b"1 2")).is_err());
    assert!(
        Payload::from_encoded(Protocol::MessagePack, Bytes::from_static(b"\x92\x01\x02")).is_ok()
    );
    assert!(Payload::from_encoded(Protocol::MessagePack, Bytes::from_static(b"\x92\x01")).is_err());
    assert!(Payload::from_encoded(Protocol::MessagePack, Bytes::from_static(b"\x01\x02")).is_err());
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let depth = 100_000;
    // JSON payloads are skipped without recursion (any depth is only checked for syntax); binding
    // one hits serde_json's recursion limit instead of the stack's.
    let nested = [vec![b'['; depth], vec![b']'; depth]].concat();
    let payload = Payload::from_encoded(Protocol::Json, Bytes::from(nested)).unwrap();
    assert!(matches!(
        payload.deserialize::<serde_json::Value>(),
        Err(ProtocolError::Binding(_))
    ));
    // The MessagePack skipper recurses, so it stops at MAX_NESTING_DEPTH levels.
    let nested = [vec![0x91; depth], vec![0xc0]].concat();
    assert!(Payload::from_encoded(Protocol::MessagePack, Bytes::from(nested)).is_err());
    let deepest = [vec![0x91; MAX_NESTING_DEPTH], vec![0xc0]].concat();
    assert!(Payload::from_encoded(Protocol::MessagePack, Bytes::from(deepest)).is_ok());
    let too_deep = [vec![0x91; MAX_NESTING_DEPTH + 1], vec![0xc0]].concat();
    assert!(Payload::from_encoded(Protocol::MessagePack, Bytes::from(too_deep)).is_err());
}

#[test]
fn a_msgpack_length_prefix_over_the_limit_fails_before_the_body_arrives() {
    let mut reader = MessageReader::new(Protocol::MessagePack, Some(100));
    reader.push(&[0x80, 0x01]); // 128-byte body announced
    assert_eq!(
        reader.next_message(),
        Err(ProtocolError::MessageTooLarge { limit: 100 })
    );
}

#[test]
fn a_json_message_without_separator_fails_once_it_reaches_the_limit() {
    let mut reader = MessageReader::new(Protocol::Json, Some(10));
    reader.push(b"{\"type\":");
    assert_eq!(reader.next_message(), Ok(None));
    reader.push(b"6  ");
    assert_eq!(
        reader.next_message(),
        Err(ProtocolError::MessageTooLarge { limit: 10 })
    );
    // Exactly the limit, separator included, is fine.
    let mut reader = MessageReader::new(Protocol::Json, Some(11));
    reader.push(b"{\"type\":6}\x1e");
    assert_eq!(reader.next_message(), Ok(Some(HubMessage::Ping)));
}

#[test]
fn unknown_message_types_are_skipped() {
    let mut reader = MessageReader::new(Protocol::Json, None);
    reader.push(b"{\"type\":42,\"x\":[1]}\x1e{\"type\":6}\x1e");
    assert_eq!(reader.next_message(), Ok(Some(HubMessage::Ping)));
    let mut reader = MessageReader::new(Protocol::MessagePack, None);
    reader.push(b"\x03\x92\x2a\xc0\x02\x91\x06");
    assert_eq!(reader.next_message(), Ok(Some(HubMessage::Ping)));
}

#[test]
fn decoded_strings_and_payloads_share_the_input() {
    let input =
        Bytes::from_static(b"{\"type\":1,\"target\":\"Send\",\"arguments\":[{\"a\":1}]}\x1e");
    let Some(HubMessage::Invocation(call)) = Protocol::Json.decode_message(&input).unwrap() else {
        panic!("expected an invocation");
    };
    let within = |bytes: &[u8]| input.as_ptr_range().contains(&bytes.as_ptr());
    assert!(within(call.target.as_bytes()));
    assert!(within(call.arguments[0].as_bytes()));
}

#[test]
fn decode_message_wants_exactly_one_framed_message() {
    let json = Bytes::from_static(b"{\"type\":6}\x1e{\"type\":6}\x1e");
    assert!(Protocol::Json.decode_message(&json).is_err());
    assert_eq!(
        Protocol::Json.decode_message(&json.slice(..11)),
        Ok(Some(HubMessage::Ping))
    );
    assert_eq!(
        Protocol::Json.decode_message(&json.slice(..10)),
        Err(ProtocolError::ConnectionTerminated)
    );
    let msgpack = Bytes::from_static(b"\x02\x91\x06\x00");
    assert!(Protocol::MessagePack.decode_message(&msgpack).is_err());
    assert_eq!(
        Protocol::MessagePack.decode_message(&msgpack.slice(..3)),
        Ok(Some(HubMessage::Ping))
    );
}

#[test]
fn long_messagepack_messages_get_a_longer_prefix() {
    let message = HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "1".into(),
        result: CompletionResult::Value(
            Payload::from_value(Protocol::MessagePack, &"x".repeat(20_000)).unwrap(),
        ),
    });
    let mut writer = MessageWriter::new(Protocol::MessagePack);
    writer.write(&HubMessage::Ping).unwrap();
    writer.write(&message).unwrap();
    let bytes = writer.take();
    let mut reader = MessageReader::new(Protocol::MessagePack, None);
    reader.push_bytes(bytes);
    assert_eq!(reader.next_message(), Ok(Some(HubMessage::Ping)));
    assert_eq!(reader.next_message(), Ok(Some(message)));
    assert_eq!(reader.finish(), Ok(()));
}

#[test]
fn json_strings_are_escaped_like_dotnet() {
    let message = HubMessage::Invocation(Invocation {
        headers: Headers::new().with("k", "v\u{1e}\"\\é"),
        invocation_id: None,
        target: "T".into(),
        arguments: Vec::new(),
        stream_ids: Vec::new(),
    });
    let mut out = BytesMut::new();
    Protocol::Json.encode(&message, &mut out).unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "{\"type\":1,\"headers\":{\"k\":\"v\\u001E\\\"\\\\é\"},\"target\":\"T\",\"arguments\":[]}\u{1e}"
    );
    assert_eq!(
        Protocol::Json.decode_message(&out.freeze()),
        Ok(Some(message))
    );
}

#[test]
fn headers_keep_order_and_the_last_duplicate_wins() {
    let mut reader = MessageReader::new(Protocol::Json, None);
    reader.push(b"{\"type\":5,\"invocationId\":\"1\",\"headers\":{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"}}\x1e");
    let Some(HubMessage::CancelInvocation(cancel)) = reader.next_message().unwrap() else {
        panic!("expected a cancel")
    };
    assert_eq!(cancel.headers.get("a").map(|v| &**v), Some("3"));
    assert_eq!(
        cancel.headers.iter().map(|(k, _)| &**k).collect::<Vec<_>>(),
        ["a", "b", "a"]
    );
    let headers = Headers::new().with("a", "1").with("b", "2").with("a", "3");
    assert_eq!(headers.len(), 2);
    assert_eq!(headers.get("a").map(|v| &**v), Some("3"));
}

#[test]
fn protocol_names_and_formats() {
    assert_eq!(Protocol::from_name("json"), Some(Protocol::Json));
    assert_eq!(
        Protocol::from_name("MessagePack"),
        Some(Protocol::MessagePack)
    );
    assert_eq!(Protocol::from_name("foo"), None);
    assert_eq!(Protocol::MessagePack.name(), "messagepack");
    assert_eq!(
        Protocol::MessagePack.transfer_format(),
        TransferFormat::Binary
    );
    assert_eq!(Protocol::Json.transfer_format(), TransferFormat::Text);
}

#[test]
fn negotiate_query_roundtrip() {
    let request =
        NegotiateRequest::from_query("NEGOTIATEVERSION=1&useStatefulReconnect=True&x=y").unwrap();
    assert_eq!(
        request,
        NegotiateRequest {
            negotiate_version: 1,
            use_stateful_reconnect: true
        }
    );
    assert_eq!(
        request.to_query(),
        "negotiateVersion=1&useStatefulReconnect=true"
    );
    assert_eq!(
        NegotiateRequest::from_query("").unwrap().negotiate_version,
        0
    );
}
