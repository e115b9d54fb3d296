//! The MessagePack hub protocol (HUB-PROTOCOL.md §5.2): every message is one array whose first
//! element is the message type.

mod decode;
mod encode;
mod read;

pub(crate) use decode::decode;
pub(crate) use encode::encode;
pub(crate) use read::MAX_DEPTH;

use bytes::Bytes;

use crate::ProtocolError;

/// Checks that `bytes` hold exactly one well-formed MessagePack value.
pub(crate) fn check_single_value(bytes: &Bytes) -> Result<(), ProtocolError> {
    let mut cursor = read::Cursor::new(bytes);
    cursor.value("payload")?;
    if cursor.is_at_end() {
        Ok(())
    } else {
        Err(ProtocolError::invalid(
            "Invalid MessagePack payload: bytes follow the value.",
        ))
    }
}
