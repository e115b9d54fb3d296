//! A bounds-checked MessagePack cursor: reads the few types the message layout needs and finds the
//! extent of any other value without materialising it.

use bytes::Bytes;
use bytestring::ByteString;

use crate::ProtocolError;

/// How deeply arrays and maps may nest inside one value. Deeper input is rejected instead of
/// recursing further, so untrusted input cannot exhaust the stack. Matches serde_json's limit.
pub(crate) const MAX_DEPTH: usize = 128;

/// A position in a MessagePack buffer. Every read checks bounds and fails with a message naming
/// the field (`what`) that was being read, in the style of the .NET parser.
pub(crate) struct Cursor<'a> {
    data: &'a Bytes,
    pos: usize,
}

fn failed(what: &str, kind: &str) -> ProtocolError {
    ProtocolError::invalid(format!("Reading '{what}' as {kind} failed."))
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a Bytes) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// Takes `n` bytes, or `None` if fewer are left.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let end = self.pos.checked_add(n)?;
        let slice = data.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        self.take(n)
            .map(|b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Reads an array header.
    pub(crate) fn array_len(&mut self, what: &str) -> Result<usize, ProtocolError> {
        let len = match self.peek() {
            Some(b @ 0x90..=0x9f) => {
                self.pos += 1;
                Some(u64::from(b & 0x0f))
            }
            Some(0xdc) => self.skip_marker().be(2),
            Some(0xdd) => self.skip_marker().be(4),
            _ => None,
        };
        len.map(|n| n as usize).ok_or_else(|| {
            ProtocolError::invalid(format!("Reading array length for '{what}' failed."))
        })
    }

    /// Reads a map header.
    pub(crate) fn map_len(&mut self, what: &str) -> Result<usize, ProtocolError> {
        let len = match self.peek() {
            Some(b @ 0x80..=0x8f) => {
                self.pos += 1;
                Some(u64::from(b & 0x0f))
            }
            Some(0xde) => self.skip_marker().be(2),
            Some(0xdf) => self.skip_marker().be(4),
            _ => None,
        };
        len.map(|n| n as usize).ok_or_else(|| {
            ProtocolError::invalid(format!("Reading map length for '{what}' failed."))
        })
    }

    fn skip_marker(&mut self) -> &mut Self {
        self.pos += 1;
        self
    }

    /// Reads an integer in any MessagePack integer format.
    pub(crate) fn int(&mut self, what: &str, kind: &str) -> Result<i64, ProtocolError> {
        let value = match self.peek() {
            Some(b @ (0x00..=0x7f | 0xe0..=0xff)) => {
                self.pos += 1;
                Some(i64::from(b.cast_signed()))
            }
            Some(0xcc) => self.skip_marker().be(1).map(u64::cast_signed),
            Some(0xcd) => self.skip_marker().be(2).map(u64::cast_signed),
            Some(0xce) => self.skip_marker().be(4).map(u64::cast_signed),
            Some(0xcf) => self.skip_marker().be(8).and_then(|v| i64::try_from(v).ok()),
            Some(0xd0) => self
                .skip_marker()
                .be(1)
                .map(|v| i64::from((v as u8).cast_signed())),
            Some(0xd1) => self
                .skip_marker()
                .be(2)
                .map(|v| i64::from((v as u16).cast_signed())),
            Some(0xd2) => self
                .skip_marker()
                .be(4)
                .map(|v| i64::from((v as u32).cast_signed())),
            Some(0xd3) => self.skip_marker().be(8).map(u64::cast_signed),
            _ => None,
        };
        value.ok_or_else(|| failed(what, kind))
    }

    /// Reads `nil`, returning whether it was there.
    pub(crate) fn nil(&mut self) -> bool {
        let is_nil = self.peek() == Some(0xc0);
        if is_nil {
            self.pos += 1;
        }
        is_nil
    }

    /// Reads a boolean.
    pub(crate) fn bool(&mut self, what: &str) -> Result<bool, ProtocolError> {
        let value = match self.peek() {
            Some(0xc2) => false,
            Some(0xc3) => true,
            _ => return Err(failed(what, "Boolean")),
        };
        self.pos += 1;
        Ok(value)
    }

    /// Reads a string, sharing the buffer's bytes.
    pub(crate) fn str(&mut self, what: &str) -> Result<ByteString, ProtocolError> {
        let len = match self.peek() {
            Some(b @ 0xa0..=0xbf) => {
                self.pos += 1;
                Some(u64::from(b & 0x1f))
            }
            Some(0xd9) => self.skip_marker().be(1),
            Some(0xda) => self.skip_marker().be(2),
            Some(0xdb) => self.skip_marker().be(4),
            _ => None,
        };
        let start = self.pos;
        len.and_then(|n| self.take(n as usize))
            .ok_or_else(|| failed(what, "String"))?;
        ByteString::try_from(self.data.slice(start..self.pos))
            .map_err(|_| ProtocolError::invalid(format!("'{what}' is not valid UTF-8.")))
    }

    /// Reads a string or `nil`.
    pub(crate) fn opt_str(&mut self, what: &str) -> Result<Option<ByteString>, ProtocolError> {
        if self.nil() {
            Ok(None)
        } else {
            self.str(what).map(Some)
        }
    }

    /// Reads any one value and returns its encoded bytes (shared with the buffer).
    pub(crate) fn value(&mut self, what: &str) -> Result<Bytes, ProtocolError> {
        let start = self.pos;
        self.skip(MAX_DEPTH).map_err(|e| match e {
            SkipError::Truncated => {
                ProtocolError::invalid(format!("Reading '{what}' failed: the value is incomplete."))
            }
            SkipError::InvalidMarker(b) => ProtocolError::invalid(format!(
                "Reading '{what}' failed: 0x{b:02x} is not a valid MessagePack type marker."
            )),
            SkipError::TooDeep => ProtocolError::invalid(format!(
                "Reading '{what}' failed: the value nests deeper than {MAX_DEPTH} levels."
            )),
        })?;
        Ok(self.data.slice(start..self.pos))
    }

    /// Skips one value. `depth` is how many more levels of arrays and maps may be entered.
    fn skip(&mut self, depth: usize) -> Result<(), SkipError> {
        let marker = self.peek().ok_or(SkipError::Truncated)?;
        self.pos += 1;
        let (payload_len, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (self.length(1)?, 0),
            0xc5 | 0xda => (self.length(2)?, 0),
            0xc6 | 0xdb => (self.length(4)?, 0),
            0xc7 => (self.length(1)? + 1, 0),
            0xc8 => (self.length(2)? + 1, 0),
            0xc9 => (self.length(4)? + 1, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 | 0xd4 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, self.length(2)?),
            0xdd => (0, self.length(4)?),
            0xde => (0, self.length(2)?.saturating_mul(2)),
            0xdf => (0, self.length(4)?.saturating_mul(2)),
            0xc1 => return Err(SkipError::InvalidMarker(marker)),
        };
        self.take(payload_len).ok_or(SkipError::Truncated)?;
        if children > 0 {
            let depth = depth.checked_sub(1).ok_or(SkipError::TooDeep)?;
            // Each child takes at least one byte, so a count larger than the rest of the buffer is
            // cut short by `Truncated` after at most that many iterations.
            for _ in 0..children {
                self.skip(depth)?;
            }
        }
        Ok(())
    }

    fn length(&mut self, n: usize) -> Result<usize, SkipError> {
        self.be(n).map(|v| v as usize).ok_or(SkipError::Truncated)
    }
}

/// Why a value could not be skipped.
enum SkipError {
    Truncated,
    InvalidMarker(u8),
    TooDeep,
}
