//! How messages are delimited in a byte stream (HUB-PROTOCOL.md §4): a record separator after
//! each JSON message, a varint length prefix before each MessagePack message.

use crate::ProtocolError;

/// The byte after every JSON message and handshake (ASCII record separator, U+001E). It cannot
/// occur inside JSON text, where control characters are always escaped.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// The largest body a MessagePack length prefix may announce (2^31 − 1 bytes).
const MAX_PREFIXED_LEN: u64 = i32::MAX as u64;

/// The position of the first record separator in `buf` (SIMD-accelerated: JSON payloads can be
/// long and are scanned once before they are parsed).
pub(crate) fn find_separator(buf: &[u8]) -> Option<usize> {
    memchr::memchr(RECORD_SEPARATOR, buf)
}

/// Reads a MessagePack length prefix at the start of `buf`: `Ok(Some((body_len, prefix_len)))`,
/// `Ok(None)` if the prefix is not complete yet, or an error if it is longer than 5 bytes or
/// announces 2 GiB or more.
pub(crate) fn read_length_prefix(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut len: u64 = 0;
    for (i, &byte) in buf.iter().take(5).enumerate() {
        if i == 4 && byte > 0x07 {
            return Err(ProtocolError::LengthPrefixTooLarge);
        }
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            debug_assert!(len <= MAX_PREFIXED_LEN);
            return Ok(Some((len as usize, i + 1)));
        }
    }
    Ok(None)
}

/// Encodes `len` as a MessagePack length prefix (little-endian base-128): the bytes and how many
/// of them are used. Fails for 2 GiB or more.
pub(crate) fn length_prefix(mut len: usize) -> Result<([u8; 5], usize), ProtocolError> {
    if len as u64 > MAX_PREFIXED_LEN {
        return Err(ProtocolError::LengthPrefixTooLarge);
    }
    let mut prefix = [0u8; 5];
    for (i, byte) in prefix.iter_mut().enumerate() {
        *byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            return Ok((prefix, i + 1));
        }
        *byte |= 0x80;
    }
    unreachable!("a length below 2^31 fits in 5 groups of 7 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_examples_from_the_spec() {
        for (len, hex) in [
            (0usize, &[0x00u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (5248, &[0x80, 0x29]),
        ]
        .into_iter()
        .chain([(i32::MAX as usize, &[0xff, 0xff, 0xff, 0xff, 0x07][..])])
        {
            let (prefix, size) = length_prefix(len).unwrap();
            assert_eq!(&prefix[..size], hex, "writing {len}");
            assert_eq!(
                read_length_prefix(hex).unwrap(),
                Some((len, hex.len())),
                "reading {len}"
            );
        }
    }

    #[test]
    fn length_prefix_limits() {
        assert_eq!(read_length_prefix(&[0x80, 0x80]).unwrap(), None);
        assert_eq!(
            read_length_prefix(&[0x80, 0x80, 0x80, 0x80, 0x08]),
            Err(ProtocolError::LengthPrefixTooLarge)
        );
        assert_eq!(
            length_prefix(1 << 31),
            Err(ProtocolError::LengthPrefixTooLarge)
        );
    }
}
