//! Every vector in shared/protocol/vectors: valid input decodes to the listed message,
//! canonical vectors encode to exactly their bytes, invalid input is rejected.

mod common;

use bytes::{Bytes, BytesMut};
use common::{normalize, str_field, unhex, vectors, view};
use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use courier_protocol::negotiate::{NegotiateRequest, NegotiateResponse};
use courier_protocol::{HubMessage, MessageReader, Protocol, ProtocolError};
use serde_json::{Value, json};

/// Decodes every message in `bytes`, all at once and byte by byte (which must agree), and checks
/// that the input ends on a message boundary.
fn decode_all(protocol: Protocol, bytes: &[u8]) -> Result<Vec<HubMessage>, ProtocolError> {
    let mut reader = MessageReader::new(protocol, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE));
    reader.push_bytes(Bytes::copy_from_slice(bytes));
    let mut messages = Vec::new();
    while let Some(message) = reader.next_message()? {
        messages.push(message);
    }
    reader.finish()?;

    let mut reader = MessageReader::new(protocol, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE));
    let mut one_by_one = Vec::new();
    for byte in bytes {
        reader.push(std::slice::from_ref(byte));
        while let Some(message) = reader.next_message()? {
            one_by_one.push(message);
        }
    }
    reader.finish()?;
    assert_eq!(messages, one_by_one, "byte-by-byte decoding differs");
    Ok(messages)
}

fn encode_all(protocol: Protocol, messages: &[HubMessage]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for message in messages {
        protocol
            .encode(message, &mut out)
            .expect("decoded messages encode");
    }
    out.to_vec()
}

/// Fails with every problem found, naming the vectors.
fn report(file: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failing vectors in {file}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Checks one json.json / msgpack.json entry; returns a description of what is wrong.
fn check_message_vector(
    protocol: Protocol,
    entry: &Value,
    write_check: WriteCheck,
) -> Result<(), String> {
    let bytes = unhex(str_field(entry, "encoded_hex"));
    let mut expected: Vec<Value> = match &entry["message"] {
        Value::Array(list) => list.clone(),
        single => vec![single.clone()],
    };
    let mut rest = &bytes[..];
    if let Some(handshake) = expected.first().and_then(|m| m.get("$handshakeResponse")) {
        let (response, consumed) = HandshakeResponse::parse(rest, None)
            .map_err(|e| format!("handshake response: {e}"))?
            .ok_or("handshake response incomplete")?;
        let got = response
            .error
            .map_or_else(|| json!({}), |e| json!({ "error": e }));
        if &got != handshake {
            return Err(format!("handshake response {got}, expected {handshake}"));
        }
        rest = &rest[consumed..];
        expected.remove(0);
    }
    let messages = decode_all(protocol, rest).map_err(|e| format!("decoding failed: {e}"))?;
    let got: Vec<Value> = messages.iter().map(view).collect();
    let expected: Vec<Value> = expected.iter().map(normalize).collect();
    if got != expected {
        return Err(format!(
            "decoded {}\n    expected {}",
            Value::from(got),
            Value::from(expected)
        ));
    }
    let encoded = encode_all(protocol, &messages);
    match write_check {
        WriteCheck::Exact if encoded != rest => Err(format!(
            "encodes to {}\n    expected {}",
            common::hex(&encoded),
            common::hex(rest)
        )),
        WriteCheck::DotNetLayoutInstead if encoded == rest => {
            Err("now encodes to exactly the vector: remove it from JS_LAYOUT_VECTORS".into())
        }
        _ => {
            // Whatever the layout, what is written must read back as the same messages.
            let again =
                decode_all(protocol, &encoded).map_err(|e| format!("re-decoding failed: {e}"))?;
            if again == messages {
                Ok(())
            } else {
                Err("re-encoded messages decode differently".into())
            }
        }
    }
}

#[derive(Clone, Copy)]
enum WriteCheck {
    /// `roundtrip: true`: the encoder must produce exactly the vector's bytes.
    Exact,
    /// Decode-only vector: re-encoding must decode to the same messages.
    ReadBack,
    /// A JS-written vector whose messages this crate writes in the .NET layout.
    DotNetLayoutInstead,
}

/// `roundtrip: true` MessagePack vectors written by the JS client in its shorter layout. This
/// crate writes what .NET writes (6-element invocations, 3-element Close; HUB-PROTOCOL.md §5.2
/// and §10: "Invocation 5|6 and Close 2|3 elements in, 6/3 out"), which every peer accepts, so
/// these only have to decode exactly and re-encode to something that decodes the same.
const JS_LAYOUT_VECTORS: &[&str] = &[
    "JS_WriteInvocationNoStreamIds",
    "JS_WriteNonBlockingInvocationNoStreamIds",
    "JS_WriteStreamInvocationNoStreamIds",
    "JS_WriteClose",
];

fn check_message_file(file: &str, protocol: Protocol) {
    let mut failures = Vec::new();
    for entry in vectors(file) {
        let name = str_field(&entry, "name");
        let write_check = if JS_LAYOUT_VECTORS.contains(&name) && protocol == Protocol::MessagePack
        {
            WriteCheck::DotNetLayoutInstead
        } else if entry["roundtrip"] == json!(true) {
            WriteCheck::Exact
        } else {
            WriteCheck::ReadBack
        };
        if let Err(problem) = check_message_vector(protocol, &entry, write_check) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    report(file, &failures);
}

#[test]
fn json_vectors_decode_and_roundtrip() {
    check_message_file("json.json", Protocol::Json);
}

#[test]
fn msgpack_vectors_decode_and_roundtrip() {
    check_message_file("msgpack.json", Protocol::MessagePack);
}

#[test]
fn handshake_vectors_parse_and_roundtrip() {
    let mut failures = Vec::new();
    for entry in vectors("handshake.json") {
        let name = str_field(&entry, "name");
        let bytes = unhex(str_field(&entry, "encoded_hex"));
        let mut out = BytesMut::new();
        let parsed =
            match str_field(&entry, "direction") {
                "client->server" => {
                    HandshakeRequest::parse(&bytes, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE))
                        .map(|r| {
                            r.map(|(request, consumed)| {
                    request.write(&mut out);
                    (json!({ "protocol": request.protocol, "version": request.version }), consumed)
                })
                        })
                }
                "server->client" => {
                    HandshakeResponse::parse(&bytes, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE))
                        .map(|r| {
                            r.map(|(response, consumed)| {
                                response.write(&mut out);
                                (
                                    response
                                        .error
                                        .map_or_else(|| json!({}), |e| json!({ "error": e })),
                                    consumed,
                                )
                            })
                        })
                }
                other => panic!("{name}: unknown direction {other}"),
            };
        match parsed {
            Ok(Some((got, consumed))) => {
                if got != entry["parsed"] {
                    failures.push(format!(
                        "{name}: parsed {got}, expected {}",
                        entry["parsed"]
                    ));
                } else if consumed != bytes.len() {
                    failures.push(format!(
                        "{name}: consumed {consumed} of {} bytes",
                        bytes.len()
                    ));
                } else if entry["canonical_output"] == json!(true) && out[..] != bytes[..] {
                    failures.push(format!(
                        "{name}: writes {:?}",
                        String::from_utf8_lossy(&out)
                    ));
                }
            }
            Ok(None) => failures.push(format!("{name}: reported incomplete")),
            Err(e) => failures.push(format!("{name}: rejected: {e}")),
        }
    }
    report("handshake.json", &failures);
}

#[test]
fn negotiate_vectors_parse_and_serialize_in_dotnet_key_order() {
    let mut failures = Vec::new();
    for entry in vectors("negotiate.json") {
        let name = str_field(&entry, "name");
        let body = str_field(&entry, "body_text");
        let query = str_field(&entry, "request")
            .split_once('?')
            .map_or("", |(_, q)| q);
        let request = NegotiateRequest::from_query(query);
        match (&request, entry["body"]["error"].as_str()) {
            (Err(e), Some(error)) if e.to_string() == error => {}
            (Err(e), _) => failures.push(format!("{name}: query {query:?} rejected: {e}")),
            (Ok(request), _)
                if request.use_stateful_reconnect
                    != (entry["body"]["useStatefulReconnect"] == json!(true)) =>
            {
                failures.push(format!("{name}: query {query:?} read as {request:?}"));
            }
            (Ok(_), _) => {}
        }
        let parsed = NegotiateResponse::parse(body.as_bytes());
        if name == "Legacy_AspNetSignalR" {
            // A response of the old, incompatible ASP.NET SignalR: clients must refuse it.
            match parsed {
                Err(e)
                    if e.to_string().starts_with(
                        "Detected a connection attempt to an ASP.NET SignalR Server.",
                    ) => {}
                other => failures.push(format!(
                    "{name}: expected the legacy-server error, got {other:?}"
                )),
            }
            continue;
        }
        match parsed {
            Ok(response) => {
                let written = serde_json::to_string(&response).expect("serializes");
                if written != body {
                    failures.push(format!("{name}: writes {written}"));
                }
            }
            Err(e) => failures.push(format!("{name}: rejected: {e}")),
        }
    }
    report("negotiate.json", &failures);
}

/// invalid.json entries that are not codec errors, with the reason. The codec must accept them
/// (they are rejected later, by the hub layer or the server's policy).
const NOT_CODEC_ERRORS: &[(&str, &str)] = &[
    (
        "Json_Bind_TooFewArgs",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Json_Bind_TooFewArgs_ArgsFirst",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Json_Bind_WrongTypes",
        "argument types bound to the hub method (hub layer)",
    ),
    (
        "Json_Bind_StreamInvocationTooFew",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Json_Bind_TooManyArgs",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Json_Bind_NestedArrayForString",
        "argument types bound to the hub method (hub layer)",
    ),
    (
        "Msgpack_Bind_InvocationArgumentArraySizeMismatchEmpty",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Msgpack_Bind_InvocationArgumentArraySizeMismatchTooLarge",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Msgpack_Bind_InvocationArgumentTypeMismatch",
        "argument types bound to the hub method (hub layer)",
    ),
    (
        "Msgpack_Bind_StreamInvocationArgumentArraySizeMismatchTooLarge",
        "argument count checked against the hub method (hub layer)",
    ),
    (
        "Msgpack_Bind_StreamInvocationArgumentTypeMismatch",
        "argument types bound to the hub method (hub layer)",
    ),
    ("Semantic_UnknownHubMethod", "method lookup (hub layer)"),
    (
        "Semantic_NonStreamingMethodViaStreamInvocation",
        "method kind check (hub layer)",
    ),
    (
        "Semantic_StreamingMethodViaInvocation",
        "method kind check (hub layer)",
    ),
    (
        "Semantic_StreamIdCountMismatch",
        "stream parameter count (hub layer)",
    ),
    ("Semantic_HubMethodThrows", "hub method outcome (hub layer)"),
    (
        "Semantic_StreamingMethodThrows",
        "hub method outcome (hub layer)",
    ),
    (
        "Semantic_DuplicateStreamInvocationId",
        "active stream bookkeeping (hub layer)",
    ),
    (
        "HandshakeRequest_Semantic_127",
        "protocol availability is server policy; the request itself is well-formed",
    ),
    (
        "HandshakeRequest_Semantic_128",
        "version support is server policy; the request itself is well-formed",
    ),
    (
        "HandshakeRequest_Semantic_129",
        "transport/transfer-format check is server policy; the request is well-formed",
    ),
    (
        "JsClient_HandshakeResponse_Error",
        "a well-formed error response; start() failing on it is client behaviour",
    ),
];

/// invalid.json entries without input bytes: conditions of a connection, checked here directly.
const CONDITIONS: &[&str] = &[
    "Semantic_MessageTooLarge",
    "Semantic_TruncatedAtEndOfStream",
    "HandshakeRequest_Timeout",
];

/// Feeds `bytes` to a reader; the error it reports (while reading or at the end), if any.
fn reader_error(protocol: Protocol, bytes: &[u8]) -> Option<ProtocolError> {
    let mut reader = MessageReader::new(protocol, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE));
    reader.push(bytes);
    loop {
        match reader.next_message() {
            Ok(Some(_)) => {}
            Ok(None) => return reader.finish().err(),
            Err(e) => return Some(e),
        }
    }
}

#[test]
fn invalid_vectors_are_rejected() {
    let mut failures = Vec::new();
    let mut exact_text = 0;
    let mut rejected = 0;
    for entry in vectors("invalid.json") {
        let name = str_field(&entry, "name");
        let bytes = unhex(str_field(&entry, "encoded_hex"));
        if CONDITIONS.contains(&name) {
            continue;
        }
        let error = match str_field(&entry, "protocol") {
            "json" => reader_error(Protocol::Json, &bytes),
            "msgpack" | "framing" => reader_error(Protocol::MessagePack, &bytes),
            "handshake-request" => HandshakeRequest::parse(&bytes, None).err(),
            "handshake-response" => HandshakeResponse::parse(&bytes, None).err(),
            "negotiate-response" => NegotiateResponse::parse(&bytes).err(),
            other => panic!("{name}: unknown protocol {other}"),
        };
        if let Some((_, reason)) = NOT_CODEC_ERRORS.iter().find(|(n, _)| *n == name) {
            if let Some(e) = error {
                failures.push(format!(
                    "{name}: is not a codec error ({reason}) but was rejected: {e}"
                ));
            }
            continue;
        }
        match error {
            None => failures.push(format!("{name}: accepted")),
            Some(e) if e.to_string().is_empty() => {
                failures.push(format!("{name}: empty error text"));
            }
            Some(e) => {
                rejected += 1;
                if e.to_string() == str_field(&entry, "error") {
                    exact_text += 1;
                }
            }
        }
    }
    report("invalid.json", &failures);
    eprintln!("{rejected} codec-level vectors rejected, {exact_text} with the exact .NET/JS text");
}

#[test]
fn message_size_limit_matches_dotnet() {
    let expected = vectors("invalid.json")
        .into_iter()
        .find(|e| e["name"] == "Semantic_MessageTooLarge")
        .expect("Semantic_MessageTooLarge vector");
    let big = format!(
        "{{\"type\":1,\"target\":\"x\",\"arguments\":[\"{}\"]}}\x1e",
        "a".repeat(40_000)
    );
    let error = reader_error(Protocol::Json, big.as_bytes()).expect("rejected");
    assert_eq!(error.to_string(), str_field(&expected, "error"));
    // The handshake obeys the limit too (.NET answers "Handshake was canceled." then).
    let long_request = format!(
        "{{\"protocol\":\"{}\",\"version\":1}}\x1e",
        "j".repeat(40_000)
    );
    assert!(matches!(
        HandshakeRequest::parse(
            long_request.as_bytes(),
            Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE)
        ),
        Err(ProtocolError::MessageTooLarge { limit: 32_768 })
    ));
}

#[test]
fn truncated_stream_matches_dotnet() {
    let expected = vectors("invalid.json")
        .into_iter()
        .find(|e| e["name"] == "Semantic_TruncatedAtEndOfStream")
        .expect("Semantic_TruncatedAtEndOfStream vector");
    let error = reader_error(Protocol::Json, b"{\"type\":6}\x1e{\"type\"").expect("rejected");
    assert_eq!(error.to_string(), str_field(&expected, "error"));
}
