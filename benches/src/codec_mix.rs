//! The realistic message mix that the codec benchmark and the allocation test measure: the same
//! messages for both protocols, so JSON and MessagePack (and Rust and JavaScript) are compared on
//! equal work.

use bytes::{Bytes, BytesMut};
use courier_protocol::{
    Completion, CompletionResult, Headers, HubMessage, Invocation, Payload, Protocol,
    ProtocolError, StreamItem,
};
use serde_json::{Value, json};

/// One message of the mix, ready to be decoded and encoded.
#[derive(Debug, Clone)]
pub struct MixMessage {
    /// A short name for tables and benchmark ids (`small_invocation`, ...).
    pub name: &'static str,
    /// The message, its payloads encoded for the protocol of the mix it belongs to.
    pub message: HubMessage,
    /// The message with its framing, as it travels on the wire.
    pub framed: Bytes,
}

/// The names of the mix's messages, in order.
pub const MESSAGE_NAMES: [&str; 4] = [
    "small_invocation",
    "completion_result",
    "stream_item",
    "invocation_4k",
];

/// The mix for `protocol`:
///
/// - `small_invocation`: a chat message sent to the server (about 100 bytes in JSON);
/// - `completion_result`: the result of an invocation, a small object;
/// - `stream_item`: one item of a price stream;
/// - `invocation_4k`: a server broadcast carrying a batch of 30 chat messages (about 4 KiB of
///   JSON payload).
pub fn mix(protocol: Protocol) -> Result<Vec<MixMessage>, ProtocolError> {
    let messages = [
        invocation(
            Some("42"),
            "SendMessage",
            &[json!("alice"), json!("Lunch at noon in room 4?")],
            protocol,
        )?,
        HubMessage::Completion(Completion {
            headers: Headers::new(),
            invocation_id: "42".into(),
            result: CompletionResult::Value(Payload::from_value(
                protocol,
                &json!({
                    "id": 90_417,
                    "status": "delivered",
                    "deliveredAt": "2025-06-01T12:34:56.789Z",
                    "recipients": ["bob", "carol"],
                }),
            )?),
        }),
        HubMessage::StreamItem(StreamItem {
            headers: Headers::new(),
            invocation_id: "7".into(),
            item: Payload::from_value(
                protocol,
                &json!({"sequence": 1017, "symbol": "MSFT", "price": 431.27, "volume": 1200}),
            )?,
        }),
        invocation(None, "ReceiveBatch", &[chat_batch(30)], protocol)?,
    ];
    MESSAGE_NAMES
        .into_iter()
        .zip(messages)
        .map(|(name, message)| {
            let mut framed = BytesMut::new();
            protocol.encode(&message, &mut framed)?;
            Ok(MixMessage {
                name,
                message,
                framed: framed.freeze(),
            })
        })
        .collect()
}

fn invocation(
    invocation_id: Option<&str>,
    target: &str,
    arguments: &[Value],
    protocol: Protocol,
) -> Result<HubMessage, ProtocolError> {
    Ok(HubMessage::Invocation(Invocation {
        headers: Headers::new(),
        invocation_id: invocation_id.map(Into::into),
        target: target.into(),
        arguments: arguments
            .iter()
            .map(|value| Payload::from_value(protocol, value))
            .collect::<Result<_, _>>()?,
        stream_ids: Vec::new(),
    }))
}

/// `count` chat messages, about 135 bytes each in JSON.
fn chat_batch(count: u64) -> Value {
    (0..count)
        .map(|i| {
            json!({
                "id": 1_000_000 + i,
                "room": "general",
                "author": format!("user-{}", i % 7),
                "sentAt": 1_748_781_296_000_u64 + i * 1375,
                "text": "Has anyone seen the latest build? It fails on CI.",
            })
        })
        .collect()
}
