//! What a mailbox stores per message: the store's payload bytes.
//!
//! A mailbox may be read by connections of either hub protocol, and across restarts, so a message is stored in one
//! protocol-neutral form: each argument as JSON text, in a small MessagePack record with the message id, the client
//! method, and where the receipt goes. A MessagePack connection gets the arguments transcoded at each attempt.

use bytes::Bytes;
use courier_protocol::{Payload, Protocol, ProtocolError};
use serde::{Deserialize, Serialize};

/// The first byte of every stored payload: the record's format, so that a later layout can be told apart.
const FORMAT: u8 = 1;

/// One reliable message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Envelope {
    /// The message id (receipts and the `courier-id` header name it).
    pub(crate) id: String,
    /// The client method to invoke.
    pub(crate) target: String,
    /// Each argument, as JSON text.
    pub(crate) arguments: Vec<String>,
    /// The key of the identity mailbox that gets the receipt, if one was asked for.
    pub(crate) receipt_to: Option<String>,
}

/// A stored payload that is not an [`Envelope`]: the store was written by something else, or is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("stored message is not a Courier envelope: {0}")]
pub(crate) struct BadEnvelope(String);

impl Envelope {
    /// The arguments as JSON text, from each argument's JSON payload.
    pub(crate) fn json_arguments(arguments: &[Payload]) -> Vec<String> {
        arguments
            .iter()
            .map(|argument| String::from_utf8_lossy(argument.as_bytes()).into_owned())
            .collect()
    }

    /// Encodes an envelope from its parts, borrowed (what [`decode`](Self::decode) reads back).
    pub(crate) fn encode_parts(
        id: &str,
        target: &str,
        arguments: &[String],
        receipt_to: Option<&str>,
    ) -> Bytes {
        /// The same record as [`Envelope`], borrowed: MessagePack writes both alike (an array of the fields).
        #[derive(Serialize)]
        struct Parts<'a> {
            id: &'a str,
            target: &'a str,
            arguments: &'a [String],
            receipt_to: Option<&'a str>,
        }
        let mut out = vec![FORMAT];
        // Strings and a slice of strings always serialize.
        rmp_serde::encode::write(
            &mut out,
            &Parts {
                id,
                target,
                arguments,
                receipt_to,
            },
        )
        .expect("an envelope always serializes");
        out.into()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, BadEnvelope> {
        match bytes.split_first() {
            Some((&FORMAT, record)) => {
                rmp_serde::from_slice(record).map_err(|error| BadEnvelope(error.to_string()))
            }
            _ => Err(BadEnvelope("unknown format".into())),
        }
    }

    /// The arguments encoded for `protocol`, and the message id after them when `with_id`.
    pub(crate) fn arguments(
        &self,
        protocol: Protocol,
        with_id: bool,
    ) -> Result<Vec<Payload>, ProtocolError> {
        let mut arguments = self.encoded_arguments(protocol)?;
        if with_id {
            arguments.push(Payload::from_value(protocol, &self.id)?);
        }
        Ok(arguments)
    }

    fn encoded_arguments(&self, protocol: Protocol) -> Result<Vec<Payload>, ProtocolError> {
        self.arguments
            .iter()
            .map(|json| match protocol {
                Protocol::Json => Payload::from_encoded(protocol, Bytes::from(json.clone())),
                Protocol::MessagePack => {
                    let value: serde_json::Value = serde_json::from_str(json)
                        .map_err(|error| ProtocolError::InvalidMessage(error.to_string()))?;
                    Payload::from_value(protocol, &value)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_serve_both_protocols() {
        let arguments =
            [
                Payload::from_value(Protocol::Json, &serde_json::json!({"text": "hi", "n": 3}))
                    .expect("json"),
            ];
        let envelope = Envelope {
            id: "m1".into(),
            target: "Deliver".into(),
            arguments: Envelope::json_arguments(&arguments),
            receipt_to: Some("user:bob".into()),
        };
        let encoded = Envelope::encode_parts(
            &envelope.id,
            &envelope.target,
            &envelope.arguments,
            envelope.receipt_to.as_deref(),
        );
        let decoded = Envelope::decode(&encoded).expect("decodes");
        assert_eq!(decoded, envelope);
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            let payloads = decoded.arguments(protocol, true).expect("encodes");
            let id: String = payloads[1].deserialize().expect("the id");
            assert_eq!(id, "m1");
            let value: serde_json::Value = payloads[0].deserialize().expect("reads back");
            assert_eq!(value, serde_json::json!({"text": "hi", "n": 3}));
        }
        assert!(Envelope::decode(b"\x02junk").is_err());
        assert!(Envelope::decode(b"").is_err());
    }
}
