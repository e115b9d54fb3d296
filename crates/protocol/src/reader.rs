//! The incremental reader: bytes in as they arrive, whole messages out.

use bytes::{Buf, Bytes, BytesMut};

use crate::framing::{find_separator, read_length_prefix};
use crate::{HubMessage, Protocol, ProtocolError, json, msgpack};

/// Splits a byte stream into hub messages and decodes them.
///
/// Feed it bytes as the transport delivers them with [`push`](Self::push) (several messages per
/// buffer and messages split over several buffers are both fine), then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`. Decoded messages share the
/// reader's buffer, so they cost no copies.
///
/// **Size limit.** With a limit of `n` bytes, a message whose framed size (record plus separator,
/// or length prefix plus body) exceeds `n` is an error
/// ([`ProtocolError::MessageTooLarge`]) detected before the message is buffered in full: a
/// MessagePack length prefix is checked as soon as it is complete, and for JSON the reader fails
/// as soon as `n` bytes are buffered without a separator. So when messages are drained after each
/// push, the buffer never holds more than `n` bytes plus the last pushed chunk.
///
/// **Errors** are fatal for the connection, as with the official server: after one, drop the
/// reader and close the connection (a framing error repeats on every later call).
///
/// ```
/// use courier_protocol::{HubMessage, MessageReader, Protocol};
///
/// let mut reader = MessageReader::new(Protocol::Json, Some(MessageReader::DEFAULT_MAX_MESSAGE_SIZE));
/// reader.push(b"{\"type\":6}\x1e{\"type\":");
/// assert_eq!(reader.next_message()?, Some(HubMessage::Ping));
/// assert_eq!(reader.next_message()?, None); // the second message is incomplete
/// reader.push(b"6}\x1e");
/// assert_eq!(reader.next_message()?, Some(HubMessage::Ping));
/// reader.finish()?; // nothing left over
/// # Ok::<(), courier_protocol::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct MessageReader {
    protocol: Protocol,
    max_message_size: Option<usize>,
    buffer: BytesMut,
    /// JSON only: the first `scanned` buffered bytes are known to hold no separator, so a message
    /// arriving in many small pieces is not searched from its start every time.
    scanned: usize,
}

impl MessageReader {
    /// The default limit, ASP.NET Core's `MaximumReceiveMessageSize`: 32 768 bytes.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024;

    /// A reader for `protocol` rejecting messages larger than `max_message_size` bytes
    /// (framing included); `None` means no limit.
    pub fn new(protocol: Protocol, max_message_size: Option<usize>) -> Self {
        Self {
            protocol,
            max_message_size,
            buffer: BytesMut::new(),
            scanned: 0,
        }
    }

    /// The protocol this reader decodes.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The configured size limit.
    pub fn max_message_size(&self) -> Option<usize> {
        self.max_message_size
    }

    /// Appends received bytes (copied into the reader's buffer).
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Appends received bytes, taking the buffer over without a copy when nothing else is
    /// buffered and no one else holds a reference to `data`.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.buffer.is_empty() {
            match data.try_into_mut() {
                Ok(data) => self.buffer = data,
                Err(data) => self.buffer.extend_from_slice(&data),
            }
        } else {
            self.buffer.extend_from_slice(&data);
        }
    }

    /// How many bytes are buffered and not yet returned as messages.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. Messages of unknown types
    /// are skipped, as the official codecs do.
    pub fn next_message(&mut self) -> Result<Option<HubMessage>, ProtocolError> {
        loop {
            let Some(frame) = self.next_frame()? else {
                return Ok(None);
            };
            let message = match self.protocol {
                Protocol::Json => json::decode(&frame)?,
                Protocol::MessagePack => msgpack::decode(&frame)?,
            };
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    /// Checks that the stream ended on a message boundary: fails with
    /// [`ProtocolError::ConnectionTerminated`] if part of a message is still buffered.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::ConnectionTerminated)
        }
    }

    /// Removes the next complete message (without its framing) from the buffer.
    fn next_frame(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let limit = self.max_message_size.unwrap_or(usize::MAX);
        match self.protocol {
            Protocol::Json => {
                let Some(end) =
                    find_separator(&self.buffer[self.scanned..]).map(|i| self.scanned + i)
                else {
                    self.scanned = self.buffer.len();
                    // A separator arriving later would make the message at least `len + 1` bytes.
                    return if self.buffer.len() >= limit {
                        Err(ProtocolError::MessageTooLarge { limit })
                    } else {
                        Ok(None)
                    };
                };
                if end >= limit {
                    return Err(ProtocolError::MessageTooLarge { limit });
                }
                self.scanned = 0;
                let record = self.buffer.split_to(end).freeze();
                self.buffer.advance(1);
                Ok(Some(record))
            }
            Protocol::MessagePack => {
                let Some((len, prefix)) = read_length_prefix(&self.buffer)? else {
                    return Ok(None);
                };
                if len.saturating_add(prefix) > limit {
                    return Err(ProtocolError::MessageTooLarge { limit });
                }
                if self.buffer.len() - prefix < len {
                    return Ok(None);
                }
                self.buffer.advance(prefix);
                Ok(Some(self.buffer.split_to(len).freeze()))
            }
        }
    }
}
