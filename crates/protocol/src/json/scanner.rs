//! A cursor over one JSON text that checks the grammar of RFC 8259 as it reads.
//!
//! The decoder asks for one token at a time (a punctuation byte, a string, a number, or a whole
//! value to skip); a text that stops being JSON gives a [`SyntaxError`] with the byte offset.
//! The text has already been checked as UTF-8, so only ASCII needs looking at: multi-byte
//! characters are only valid inside strings, where every byte from 0x20 up is allowed.
//!
//! Nothing recurses: nested arrays and objects are skipped with an explicit [`Nesting`] stack,
//! so any depth is only a question of syntax. Every read goes through `get`, so hostile input
//! ends in an error, never in a panic.

use std::fmt;
use std::ops::Range;

use crate::ProtocolError;

/// Where and why a text is not (the expected) JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SyntaxError {
    /// Byte offset into the text.
    pub(super) at: usize,
    /// What should have been there.
    pub(super) expected: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error reading JSON at byte {}: expected {}.",
            self.at, self.expected
        )
    }
}

impl From<SyntaxError> for ProtocolError {
    fn from(error: SyntaxError) -> Self {
        ProtocolError::invalid(error.to_string())
    }
}

/// A string token: where its content (between the quotes) is, and whether that content has
/// escapes (only then does it need [`unescape`](super::unescape::unescape)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawString {
    pub(super) content: Range<usize>,
    pub(super) escaped: bool,
}

/// The read position in one JSON text.
pub(super) struct Scanner<'t> {
    text: &'t [u8],
    pos: usize,
}

#[allow(
    clippy::inline_always,
    reason = "the small methods make up one hot loop: inlining them measured 10-20% fewer instructions per decode"
)]
impl<'t> Scanner<'t> {
    pub(super) fn new(text: &'t [u8]) -> Self {
        Self { text, pos: 0 }
    }

    #[cold]
    fn error(&self, expected: &'static str) -> SyntaxError {
        SyntaxError {
            at: self.pos,
            expected,
        }
    }

    /// Skips whitespace and returns the next byte without consuming it (`None` at the end).
    #[inline(always)]
    pub(super) fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.text.get(self.pos) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.pos += 1;
        }
        None
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    #[inline(always)]
    pub(super) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Skips whitespace and consumes `byte`, which must come next.
    #[inline(always)]
    pub(super) fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), SyntaxError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// After a member of an array or object: `true` if a `,` announces another member, `false`
    /// if `close` ends the container. `expected` names both for the error.
    #[inline(always)]
    pub(super) fn more(&mut self, close: u8, expected: &'static str) -> Result<bool, SyntaxError> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(byte) if byte == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.error(expected)),
        }
    }

    /// Checks that only whitespace follows the value just read.
    pub(super) fn finish(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("the end of the message after the object")),
        }
    }

    /// Reads a string, which must come next. Escapes are checked for syntax, not decoded.
    #[inline(always)]
    pub(super) fn string(&mut self) -> Result<RawString, SyntaxError> {
        if !self.eat(b'"') {
            return Err(self.error("a string"));
        }
        self.string_body()
    }

    /// The rest of a string whose opening `"` was just consumed.
    #[inline(always)]
    fn string_body(&mut self) -> Result<RawString, SyntaxError> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.text.get(self.pos) {
                Some(b'"') => {
                    let content = start..self.pos;
                    self.pos += 1;
                    return Ok(RawString { content, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return Err(self.error("a control character to be escaped")),
                None => return Err(self.error("'\"' at the end of the string")),
            }
        }
    }

    /// Moves over plain string content, up to the next `"`, `\\` or control character (or the
    /// end of the text).
    #[inline(always)]
    fn skip_plain(&mut self) {
        // Names, ids and short texts end within the first 32 bytes: word-sized tests find the
        // end faster than a call to `memchr2` would.
        for _ in 0..4 {
            let Some(word) = self.text.get(self.pos..).and_then(<[u8]>::first_chunk) else {
                break;
            };
            let special = special_bytes(u64::from_le_bytes(*word));
            if special != 0 {
                // The lowest flagged byte is the first special one (see `special_bytes`).
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        if self.text.len().saturating_sub(self.pos) >= 8 {
            self.skip_long_plain();
        } else {
            while let Some(&byte) = self.text.get(self.pos) {
                if is_special(byte) {
                    return;
                }
                self.pos += 1;
            }
        }
    }

    /// Moves over the rest of a long run of plain string content: `memchr2` (SIMD) finds the
    /// next `"` or `\\`, then a test without early exit, which the compiler vectorizes, looks
    /// for control characters before it. Well under an instruction per byte.
    #[inline(never)]
    #[allow(
        clippy::needless_bitwise_bool,
        reason = "`|` has no early exit, which lets the loop vectorize"
    )]
    fn skip_long_plain(&mut self) {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let run = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
        let plain = rest.get(..run).unwrap_or_default();
        if plain
            .iter()
            .fold(false, |found, &byte| found | (byte < 0x20))
        {
            // Not JSON: stop at the control character, which `string` reports.
            self.pos += plain.iter().position(|&byte| byte < 0x20).unwrap_or(run);
        } else {
            self.pos += run;
        }
    }

    /// Steps over the escape sequence that starts at the current `\`.
    fn escape(&mut self) -> Result<(), SyntaxError> {
        let after = self.pos + 1;
        let length = match self.text.get(after) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
            Some(b'u')
                if self
                    .text
                    .get(after + 1..after + 5)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
            {
                6
            }
            _ => {
                return Err(
                    self.error("an escape: one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")
                );
            }
        };
        self.pos += length;
        Ok(())
    }

    /// Reads a number, which must come next; returns where its text is. The grammar is RFC
    /// 8259's: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, so `01`, `1.`, `.5`
    /// and `+1` are not numbers.
    #[inline(always)]
    pub(super) fn number(&mut self) -> Result<Range<usize>, SyntaxError> {
        self.peek();
        self.number_here()
    }

    /// A number that starts exactly at the current position (whitespace already skipped).
    #[inline(always)]
    fn number_here(&mut self) -> Result<Range<usize>, SyntaxError> {
        let start = self.pos;
        self.eat_byte(b'-');
        match self.text.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("a digit")),
        }
        if self.eat_byte(b'.') {
            self.at_least_one_digit()?;
        }
        if self.eat_byte(b'e') || self.eat_byte(b'E') {
            if !self.eat_byte(b'+') {
                self.eat_byte(b'-');
            }
            self.at_least_one_digit()?;
        }
        Ok(start..self.pos)
    }

    /// Consumes `byte` if it is the very next one (no whitespace: inside a token).
    #[inline(always)]
    fn eat_byte(&mut self, byte: u8) -> bool {
        let found = self.text.get(self.pos) == Some(&byte);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Moves over a run of ASCII digits, eight at a time where possible.
    #[inline(always)]
    fn digits(&mut self) {
        while let Some(word) = self.text.get(self.pos..).and_then(<[u8]>::first_chunk) {
            let others = non_digit_bytes(u64::from_le_bytes(*word));
            if others != 0 {
                self.pos += (others.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while self.text.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    #[inline(always)]
    fn at_least_one_digit(&mut self) -> Result<(), SyntaxError> {
        if self.text.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.digits();
            Ok(())
        } else {
            Err(self.error("a digit"))
        }
    }

    /// Skips one whole value, checking it, and returns where its text is.
    pub(super) fn value(&mut self) -> Result<Range<usize>, SyntaxError> {
        let first = self.peek();
        let start = self.pos;
        if matches!(first, Some(b'[' | b'{')) {
            self.container()?;
        } else {
            self.scalar(first)?;
        }
        Ok(start..self.pos)
    }

    /// Skips an array or object, which must come next, with everything in it. Kept out of
    /// [`Scanner::value`] so that scalar values do not pay for its setup.
    #[inline(never)]
    fn container(&mut self) -> Result<(), SyntaxError> {
        let mut nesting = Nesting::default();
        loop {
            // A value starts here: a scalar, or an array or object whose first member follows.
            let first = self.peek();
            match first {
                Some(b'[') => {
                    self.pos += 1;
                    if !self.eat(b']') {
                        nesting.push(Container::Array);
                        continue;
                    }
                }
                Some(b'{') => {
                    self.pos += 1;
                    if !self.eat(b'}') {
                        nesting.push(Container::Object);
                        self.member_name()?;
                        continue;
                    }
                }
                _ => self.scalar(first)?,
            }
            // A value ended: close the containers it completes, up to the next member.
            loop {
                let Some(container) = nesting.innermost() else {
                    return Ok(());
                };
                let (close, expected) = match container {
                    Container::Array => (b']', "',' or ']'"),
                    Container::Object => (b'}', "',' or '}'"),
                };
                if self.more(close, expected)? {
                    if container == Container::Object {
                        self.member_name()?;
                    }
                    break;
                }
                nesting.pop();
            }
        }
    }

    /// A member name in an object and its `:`.
    #[inline(always)]
    fn member_name(&mut self) -> Result<(), SyntaxError> {
        self.string()?;
        self.expect(b':', "':'")
    }

    /// A string, number, `true`, `false` or `null`, whose `first` byte is the next one (as
    /// [`Scanner::peek`] returned it: the callers have looked already).
    #[inline(always)]
    fn scalar(&mut self, first: Option<u8>) -> Result<(), SyntaxError> {
        match first {
            Some(b'"') => {
                self.pos += 1;
                self.string_body().map(drop)
            }
            Some(b'-' | b'0'..=b'9') => self.number_here().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.error("a value")),
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        if self
            .text
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("a value"))
        }
    }
}

/// Whether `byte` ends plain string content: `"`, `\\` or a control character.
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// Flags (with its high bit) each byte of `word` that is `"`, `\\` or below 0x20.
///
/// The classic "has zero byte" tests: `(x - 0x01..) & !x & 0x80..` flags bytes that are zero,
/// `(x - 0x20..) & !x & 0x80..` bytes below 0x20. A borrow can only flag a byte *above* one that
/// is truly flagged, so the lowest flag is always exact, which is all the callers use. Bytes
/// from 0x80 up (UTF-8 sequences) never match: `!x` clears their high bit.
fn special_bytes(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(ONES) & !quote;
    let zero_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (zero_quote | zero_backslash | control) & HIGH
}

/// Flags (with its high bit) each byte of `word` that is not an ASCII digit; as in
/// [`special_bytes`], the lowest flag is exact (a carry only reaches bytes above a flagged one).
fn non_digit_bytes(word: u64) -> u64 {
    // Digits become 0..=9. Adding 0x76 sets the high bit of 10..=0x89; `| offset` flags the rest.
    let offset = word ^ (ONES * u64::from(b'0'));
    (offset.wrapping_add(ONES * 0x76) | offset) & HIGH
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Object,
}

/// The arrays and objects open around the scanner, innermost last: one bit per level for the
/// first 64 levels (set for an object), then one entry per level in `deeper`. Only unusually deep
/// values allocate, one byte per level, and each level took at least one byte of input.
#[derive(Default)]
struct Nesting {
    depth: usize,
    first_levels: u64,
    deeper: Vec<Container>,
}

impl Nesting {
    const BITS: usize = u64::BITS as usize;

    fn push(&mut self, container: Container) {
        if self.depth < Self::BITS {
            let bit = 1 << self.depth;
            match container {
                Container::Object => self.first_levels |= bit,
                Container::Array => self.first_levels &= !bit,
            }
        } else {
            self.deeper.push(container);
        }
        self.depth += 1;
    }

    fn innermost(&self) -> Option<Container> {
        match self.depth {
            0 => None,
            depth if depth <= Self::BITS => Some(if self.first_levels & (1 << (depth - 1)) == 0 {
                Container::Array
            } else {
                Container::Object
            }),
            _ => self.deeper.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.depth > Self::BITS {
            self.deeper.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skips one value and checks that nothing follows; the value's text.
    fn skip(text: &str) -> Result<&str, SyntaxError> {
        let mut scanner = Scanner::new(text.as_bytes());
        let span = scanner.value()?;
        scanner.finish()?;
        Ok(&text[span])
    }

    #[test]
    fn values_are_skipped_whole_without_surrounding_whitespace() {
        for (text, value) in [
            (" true ", "true"),
            ("\tnull\r\n", "null"),
            ("false", "false"),
            ("\"\"", "\"\""),
            (
                " [ 1 , [ ] , { } , { \"a\" : [ null ] } ] ",
                "[ 1 , [ ] , { } , { \"a\" : [ null ] } ]",
            ),
            (
                "{\"a\":{\"b\":{\"c\":\"d\"}},\"e\":[[[]]]}",
                "{\"a\":{\"b\":{\"c\":\"d\"}},\"e\":[[[]]]}",
            ),
        ] {
            assert_eq!(skip(text), Ok(value), "{text:?}");
        }
    }

    #[test]
    fn numbers_follow_rfc_8259() {
        for valid in [
            "0",
            "-0",
            "1e5",
            "1E+5",
            "-1.5e-3",
            "10",
            "0.0",
            "123456789012345678901234567890",
        ] {
            assert_eq!(skip(valid), Ok(valid), "{valid}");
        }
        for invalid in [
            "01", "-01", "+1", ".5", "1.", "1.e5", "1e", "1e+", "-", "--1", "0x10", "1_000", "NaN",
            "Infinity",
        ] {
            assert!(skip(invalid).is_err(), "{invalid} was accepted");
        }
    }

    #[test]
    fn digit_runs_stop_at_the_first_other_byte_in_any_position() {
        for length in 1..30 {
            for other in [b'.', b'e', b'/', b':', b',', b' ', 0x00, 0x80, 0xff] {
                let mut bytes: Vec<u8> = (0..length).map(|i| b'0' + (i % 10) as u8).collect();
                bytes.extend([other, b'1', b'2']);
                bytes.extend([0xff; 9]);
                let mut scanner = Scanner::new(&bytes);
                scanner.digits();
                assert_eq!(scanner.pos, length, "{length} {other:#x}");
            }
        }
    }

    #[test]
    fn string_escapes_are_checked() {
        for valid in [
            r#""\"\\\/\b\f\n\r\t""#,
            r#""\u00e9\uD83D\uDE00""#,
            r#""\uDE00 lone surrogates are valid JSON""#,
            "\"é 😀\"",
        ] {
            assert_eq!(skip(valid), Ok(valid), "{valid}");
        }
        for invalid in [
            r#""\a""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\x41""#,
            r#""\""#,
            "\"\\",
            "\"abc",
        ] {
            assert!(skip(invalid).is_err(), "{invalid} was accepted");
        }
    }

    #[test]
    fn strings_report_escapes_and_reject_control_characters() {
        let mut scanner = Scanner::new(br#"  "plain" "with \n escape""#);
        assert_eq!(
            scanner.string(),
            Ok(RawString {
                content: 3..8,
                escaped: false
            })
        );
        assert_eq!(
            scanner.string(),
            Ok(RawString {
                content: 11..25,
                escaped: true
            })
        );
        for control in 0..0x20_u8 {
            let text = [b'"', b'a', control, b'"'];
            assert_eq!(
                Scanner::new(&text).string(),
                Err(SyntaxError {
                    at: 2,
                    expected: "a control character to be escaped"
                }),
                "{control:#x}"
            );
        }
        // DEL and everything above it may appear unescaped.
        assert!(skip("\"\u{7f}\"").is_ok());
        // Also deep inside a long string, before its end.
        let long = format!("\"{}\u{1}{}\"", "a".repeat(50), "b".repeat(50));
        assert_eq!(
            skip(&long),
            Err(SyntaxError {
                at: 51,
                expected: "a control character to be escaped"
            })
        );
    }

    #[test]
    fn plain_content_stops_at_the_first_special_byte_in_any_position() {
        // Past 32 bytes the long-run path (memchr2 and the control-character test) takes over.
        for length in 0..100 {
            for special in [b'"', b'\\', 0x00, 0x1f] {
                let mut bytes = vec![b'a'; length];
                bytes.extend([special, b'"', 0x01, b'\\']);
                bytes.extend([b'z'; 9]);
                let mut scanner = Scanner::new(&bytes);
                scanner.skip_plain();
                assert_eq!(scanner.pos, length, "{length} {special:#x}");
            }
            let non_ascii = "é".repeat(length);
            let mut scanner = Scanner::new(non_ascii.as_bytes());
            scanner.skip_plain();
            assert_eq!(scanner.pos, non_ascii.len());
        }
    }

    #[test]
    fn malformed_structure_is_rejected() {
        for invalid in [
            "",
            " ",
            "[",
            "[1",
            "[1,",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:1}",
            "{\"a\":1]",
            "[1}",
            "]",
            "}",
            "tru",
            "nul",
            "nulll",
            "[true false]",
            "1 2",
            "\u{1e}",
        ] {
            assert!(skip(invalid).is_err(), "{invalid:?} was accepted");
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            skip("[1,]"),
            Err(SyntaxError {
                at: 3,
                expected: "a value"
            })
        );
        assert_eq!(
            skip("{\"a\":1 \"b\"}"),
            Err(SyntaxError {
                at: 7,
                expected: "',' or '}'"
            })
        );
        assert_eq!(
            SyntaxError {
                at: 3,
                expected: "a value"
            }
            .to_string(),
            "Error reading JSON at byte 3: expected a value."
        );
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion() {
        let depth = 10_000;
        let arrays = "[".repeat(depth) + &"]".repeat(depth);
        assert_eq!(skip(&arrays).map(str::len), Ok(2 * depth));
        let mixed = "[{\"a\":".repeat(depth) + "1" + &"}]".repeat(depth);
        assert_eq!(skip(&mixed).map(str::len), Ok(mixed.len()));
        // Unbalanced at any depth is still an error, also past the first 64 levels.
        assert!(skip(&"[".repeat(depth)).is_err());
        let crossed = "[".repeat(100) + "{\"a\":1" + &"]".repeat(101);
        assert!(skip(&crossed).is_err());
        let crossed_deeper = "{\"a\":".repeat(70) + "1" + &"}".repeat(69) + "]";
        assert!(skip(&crossed_deeper).is_err());
    }
}
