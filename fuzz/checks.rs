// The properties the fuzz targets check. Shared, unchanged, by the fuzz targets
// (`#[path] mod checks`) and by crates/protocol/tests/fuzz_corpus.rs (`include!`), which runs
// them on the seed corpus as an ordinary test. Every check panics on a violation.

use bytes::BytesMut;
use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use courier_protocol::negotiate::NegotiateResponse;
use courier_protocol::{HubMessage, MessageReader, Protocol, ProtocolError};

/// The size limit used by the checks: small, so that limit handling is exercised often.
const LIMIT: usize = 4096;

/// JSON hub messages: see [`check_messages`].
pub(crate) fn check_json(data: &[u8]) {
    check_messages(Protocol::Json, data);
}

/// MessagePack hub messages: see [`check_messages`].
pub(crate) fn check_msgpack(data: &[u8]) {
    check_messages(Protocol::MessagePack, data);
}

/// Reads `data` as a stream of messages. Checks that:
/// - reading it in one piece or in small chunks gives the same messages and the same error;
/// - the reader never buffers more than the limit plus the chunk just pushed;
/// - every decoded message encodes, the encoding decodes to the same message, and encoding that
///   again gives the same bytes (encoding is a canonical fixpoint).
fn check_messages(protocol: Protocol, data: &[u8]) {
    let whole = read(protocol, data, data.len().max(1));
    let chunk_size = 1 + data.first().map_or(0, |b| usize::from(b % 13));
    let chunked = read(protocol, data, chunk_size);
    assert_eq!(whole, chunked, "chunking changed the outcome");
    for message in whole.0 {
        let mut encoded = BytesMut::new();
        protocol
            .encode(&message, &mut encoded)
            .expect("a decoded message encodes");
        let encoded = encoded.freeze();
        let again = protocol
            .decode_message(&encoded)
            .expect("an encoded message decodes");
        assert_eq!(
            again.as_ref(),
            Some(&message),
            "re-decoding changed the message"
        );
        let mut twice = BytesMut::new();
        protocol
            .encode(&message, &mut twice)
            .expect("a decoded message encodes");
        assert_eq!(twice, encoded, "encoding is not deterministic");
    }
}

/// Feeds `data` in chunks of `chunk_size`; the messages read and the error that stopped reading.
fn read(
    protocol: Protocol,
    data: &[u8],
    chunk_size: usize,
) -> (Vec<HubMessage>, Option<ProtocolError>) {
    let mut reader = MessageReader::new(protocol, Some(LIMIT));
    let mut messages = Vec::new();
    for chunk in data.chunks(chunk_size) {
        reader.push(chunk);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => return (messages, Some(error)),
            }
        }
        assert!(
            reader.buffered_len() <= LIMIT + chunk.len(),
            "buffered past the limit"
        );
    }
    (messages, reader.finish().err())
}

/// Handshake requests and responses (and negotiate responses, also JSON documents). Checks that
/// whatever parses reports a sensible length, and that writing it back parses to the same value.
pub(crate) fn check_handshake(data: &[u8]) {
    for limit in [None, Some(LIMIT)] {
        let incomplete_allowed = !data.contains(&0x1e) && data.len() < limit.unwrap_or(usize::MAX);
        match HandshakeRequest::parse(data, limit) {
            Ok(Some((request, consumed))) => {
                assert_eq!(
                    data.get(consumed.wrapping_sub(1)),
                    Some(&0x1e),
                    "consumed must end at the separator"
                );
                let mut written = BytesMut::new();
                request.write(&mut written);
                let reparsed =
                    HandshakeRequest::parse(&written, None).expect("a written request parses");
                assert_eq!(reparsed, Some((request, written.len())));
            }
            Ok(None) => assert!(
                incomplete_allowed,
                "incomplete although a separator or the limit was reached"
            ),
            Err(_) => {}
        }
        match HandshakeResponse::parse(data, limit) {
            Ok(Some((response, consumed))) => {
                assert_eq!(
                    data.get(consumed.wrapping_sub(1)),
                    Some(&0x1e),
                    "consumed must end at the separator"
                );
                let mut written = BytesMut::new();
                response.write(&mut written);
                let reparsed =
                    HandshakeResponse::parse(&written, None).expect("a written response parses");
                assert_eq!(reparsed, Some((response, written.len())));
            }
            Ok(None) => assert!(
                incomplete_allowed,
                "incomplete although a separator or the limit was reached"
            ),
            Err(_) => {}
        }
    }
    if let Ok(response) = NegotiateResponse::parse(data) {
        let written = serde_json::to_vec(&response).expect("a negotiate response serializes");
        assert_eq!(NegotiateResponse::parse(&written).ok(), Some(response));
    }
}
