//! Batching several messages into one transport message.

use bytes::{Bytes, BytesMut};

use crate::{HubMessage, Protocol, ProtocolError};

/// Encodes messages back to back into one buffer, to be sent as one transport message
/// (WebSocket frame, HTTP body). Peers accept several messages per transport message; never
/// split one message over two.
///
/// ```
/// use courier_protocol::{HubMessage, MessageWriter, Protocol};
///
/// let mut writer = MessageWriter::new(Protocol::MessagePack);
/// writer.write(&HubMessage::Ping)?;
/// writer.write(&HubMessage::Ping)?;
/// assert_eq!(writer.take().as_ref(), [0x02, 0x91, 0x06, 0x02, 0x91, 0x06]);
/// assert!(writer.is_empty());
/// # Ok::<(), courier_protocol::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct MessageWriter {
    protocol: Protocol,
    buffer: BytesMut,
}

impl MessageWriter {
    /// An empty writer for `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            buffer: BytesMut::new(),
        }
    }

    /// The protocol this writer encodes.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Appends one message with its framing. On error nothing is appended.
    pub fn write(&mut self, message: &HubMessage) -> Result<(), ProtocolError> {
        self.protocol.encode(message, &mut self.buffer)
    }

    /// How many bytes are waiting to be taken.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether nothing has been written since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Everything written so far, leaving the writer empty (its spare capacity is reused).
    pub fn take(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }
}
