//! The ASP.NET Core SignalR wire protocol, byte-compatible with the official .NET and
//! JavaScript implementations: hub messages in the JSON and MessagePack protocols (versions 1
//! and 2), their framing, the handshake, and the negotiate documents.
//!
//! It is sans-IO: no async runtime, no clock, no sockets. A server or client feeds it the bytes
//! its transport receives and sends the bytes it produces. The reference for every rule is
//! `HUB-PROTOCOL.md` in the project's shared folder; section numbers (§) below point there.
//!
//! # Reading and writing messages
//!
//! [`MessageReader`] takes bytes as they arrive and yields whole [`HubMessage`]s;
//! [`Protocol::encode`] (or [`MessageWriter`]) appends framed messages to a buffer.
//!
//! ```
//! use bytes::BytesMut;
//! use courier_protocol::{
//!     Completion, CompletionResult, Headers, HubMessage, Invocation, MessageReader, Payload, Protocol,
//! };
//!
//! // A JS client invokes `Send("hi", 42)`; JS writes `type` last, which is fine.
//! let mut reader = MessageReader::new(Protocol::Json, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE));
//! reader.push(b"{\"target\":\"Send\",\"arguments\":[\"hi\",42],\"invocationId\":\"0\",\"type\":1}\x1e");
//! let Some(HubMessage::Invocation(call)) = reader.next_message()? else { panic!("expected an invocation") };
//! assert_eq!(call.target, "Send");
//! let text: String = call.arguments[0].deserialize()?;
//! let number: i32 = call.arguments[1].deserialize()?;
//! assert_eq!((text.as_str(), number), ("hi", 42));
//!
//! // Answer with a result, encoded from any `Serialize`.
//! let reply = HubMessage::Completion(Completion {
//!     headers: Headers::new(),
//!     invocation_id: call.invocation_id.expect("a blocking call"),
//!     result: CompletionResult::Value(Payload::from_value(Protocol::Json, &["ok"])?),
//! });
//! let mut out = BytesMut::new();
//! Protocol::Json.encode(&reply, &mut out)?;
//! assert_eq!(&out[..], b"{\"type\":3,\"invocationId\":\"0\",\"result\":[\"ok\"]}\x1e");
//!
//! // The same message in MessagePack.
//! let reply = HubMessage::Invocation(Invocation {
//!     headers: Headers::new(),
//!     invocation_id: None,
//!     target: "Notify".into(),
//!     arguments: vec![Payload::from_value(Protocol::MessagePack, &1)?],
//!     stream_ids: Vec::new(),
//! });
//! out.clear();
//! Protocol::MessagePack.encode(&reply, &mut out)?;
//! assert_eq!(&out[..], b"\x0e\x96\x01\x80\xc0\xa6Notify\x91\x01\x90");
//! # Ok::<(), courier_protocol::ProtocolError>(())
//! ```
//!
//! # Design
//!
//! - **Zero copy.** Input is [`bytes::Bytes`]; decoded strings ([`ByteString`]) and payloads
//!   ([`Payload`]) are slices of it. Only JSON strings with escapes are copied. Decoding a small
//!   invocation allocates its argument vector and nothing else.
//! - **Payloads stay encoded.** Arguments, stream items and results are checked for
//!   well-formedness but not parsed; the hub layer binds them with [`Payload::deserialize`].
//! - **What is accepted vs written** (§10): JSON properties in any order, unknown properties and
//!   unknown message types ignored; MessagePack (stream) invocations of 5 or 6 elements, Close
//!   of 2 or 3, extra trailing elements ignored, any integer format. Written: exactly what .NET
//!   writes (6-element invocations, 3-element Close, smallest formats, .NET key order).
//! - **Hostile input** never panics and never allocates more than its own size: the size limit
//!   is checked before buffering (see [`MessageReader`]) and no capacity is reserved from a
//!   length field before the bytes exist. Deep nesting cannot exhaust the stack: JSON payloads
//!   are checked and skipped without recursion (the JSON scanner keeps its own stack of open
//!   arrays and objects), the MessagePack skipper stops at
//!   [`MAX_NESTING_DEPTH`] levels of arrays and maps, and binding a payload with
//!   [`Payload::deserialize`] is bounded by serde_json's and rmp_serde's own recursion limits.
//! - **Errors** are [`ProtocolError`]s; their text follows the .NET parser where it has one.
#![forbid(unsafe_code)]

mod error;
mod framing;
pub mod handshake;
mod json;
mod message;
mod msgpack;
pub mod negotiate;
mod payload;
mod protocol;
mod reader;
mod rules;
mod writer;

pub use bytestring::ByteString;
pub use error::ProtocolError;
pub use framing::RECORD_SEPARATOR;
pub use message::{
    Ack, CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage, Invocation,
    Sequence, StreamInvocation, StreamItem,
};
pub use payload::Payload;
pub use protocol::Protocol;
pub use reader::MessageReader;
pub use writer::MessageWriter;

/// How deeply arrays and maps may nest inside a MessagePack value (128, serde_json's own limit
/// for parsing into Rust types). Deeper input is rejected rather than recursed into.
pub const MAX_NESTING_DEPTH: usize = msgpack::MAX_DEPTH;
