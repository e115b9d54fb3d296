//! Checks that both decoders apply to the fields they read, with the .NET parser's wording.

use bytestring::ByteString;

use crate::ProtocolError;

/// An invocation id that must be present and non-empty (message types 2 to 5).
pub(crate) fn required_id(id: Option<ByteString>, kind: &str) -> Result<ByteString, ProtocolError> {
    id.filter(|id| !id.is_empty()).ok_or_else(|| {
        ProtocolError::invalid(format!("Null or empty invocation ID for {kind} message."))
    })
}

/// The optional id of an [`Invocation`](crate::Invocation): empty reads as absent, as in .NET.
pub(crate) fn optional_id(id: Option<ByteString>) -> Option<ByteString> {
    id.filter(|id| !id.is_empty())
}

/// A method name, which must not be empty.
pub(crate) fn target(target: ByteString, kind: &str) -> Result<ByteString, ProtocolError> {
    if target.is_empty() {
        Err(ProtocolError::invalid(format!(
            "Null or empty target for {kind} message."
        )))
    } else {
        Ok(target)
    }
}

/// An upload stream id, which must not be empty.
pub(crate) fn stream_id(id: ByteString) -> Result<ByteString, ProtocolError> {
    if id.is_empty() {
        Err(ProtocolError::invalid(
            "Null or empty value in streamIds received.",
        ))
    } else {
        Ok(id)
    }
}
