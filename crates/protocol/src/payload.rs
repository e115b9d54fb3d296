//! Encoded values: invocation arguments, stream items and completion results.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Protocol, ProtocolError, msgpack};

/// One value (an argument, a stream item or a result) in its encoded form: JSON text for
/// [`Protocol::Json`], one MessagePack value for [`Protocol::MessagePack`].
///
/// Decoding a message does not parse its payloads; the hub layer binds them to Rust types with
/// [`Payload::deserialize`] once it knows which types it wants. A payload only fits messages of
/// its own protocol: writing it with the other protocol fails with
/// [`ProtocolError::PayloadProtocolMismatch`] (there is no silent conversion).
///
/// ```
/// use courier_protocol::{Payload, Protocol};
///
/// let payload = Payload::from_value(Protocol::Json, &("hi", 42))?;
/// assert_eq!(payload.as_bytes().as_ref(), br#"["hi",42]"#);
/// let (text, number): (String, u32) = payload.deserialize()?;
/// assert_eq!((text.as_str(), number), ("hi", 42));
/// # Ok::<(), courier_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Payload {
    protocol: Protocol,
    bytes: Bytes,
}

impl Payload {
    /// Encodes `value` for `protocol`: JSON with `serde_json`; MessagePack with `rmp_serde`, writing
    /// structs as maps with their field names, as .NET expects (HUB-PROTOCOL.md §5.2).
    pub fn from_value<T: Serialize + ?Sized>(
        protocol: Protocol,
        value: &T,
    ) -> Result<Self, ProtocolError> {
        let bytes = match protocol {
            Protocol::Json => {
                serde_json::to_vec(value).map_err(|e| ProtocolError::Binding(e.to_string()))?
            }
            Protocol::MessagePack => {
                rmp_serde::to_vec_named(value).map_err(|e| ProtocolError::Binding(e.to_string()))?
            }
        };
        Ok(Self::new_unchecked(protocol, Bytes::from(bytes)))
    }

    /// Wraps bytes that already hold exactly one encoded value, after checking that they do
    /// (well-formed JSON, or one well-formed MessagePack value with nothing after it).
    pub fn from_encoded(protocol: Protocol, bytes: Bytes) -> Result<Self, ProtocolError> {
        match protocol {
            Protocol::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                    .map_err(|e| ProtocolError::invalid(format!("Invalid JSON payload: {e}")))?;
            }
            Protocol::MessagePack => msgpack::check_single_value(&bytes)?,
        }
        Ok(Self::new_unchecked(protocol, bytes))
    }

    /// `null` in `protocol`.
    pub fn null(protocol: Protocol) -> Self {
        let bytes = match protocol {
            Protocol::Json => Bytes::from_static(b"null"),
            Protocol::MessagePack => Bytes::from_static(&[0xc0]),
        };
        Self::new_unchecked(protocol, bytes)
    }

    /// Wraps bytes that the caller has already checked (the decoders do).
    pub(crate) fn new_unchecked(protocol: Protocol, bytes: Bytes) -> Self {
        Self { protocol, bytes }
    }

    /// The protocol this value is encoded in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The encoded value.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Binds the value to a Rust type: `serde_json` for JSON, `rmp_serde` for MessagePack
    /// (which accepts structs written as maps, the .NET convention, or as arrays).
    pub fn deserialize<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ProtocolError> {
        match self.protocol {
            Protocol::Json => serde_json::from_slice(&self.bytes)
                .map_err(|e| ProtocolError::Binding(e.to_string())),
            Protocol::MessagePack => rmp_serde::from_slice(&self.bytes)
                .map_err(|e| ProtocolError::Binding(e.to_string())),
        }
    }

    /// Checks that this payload can be written into a message of `protocol`.
    pub(crate) fn expect_protocol(&self, protocol: Protocol) -> Result<&Bytes, ProtocolError> {
        if self.protocol == protocol {
            Ok(&self.bytes)
        } else {
            Err(ProtocolError::PayloadProtocolMismatch {
                message: protocol,
                payload: self.protocol,
            })
        }
    }
}
