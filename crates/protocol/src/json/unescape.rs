//! Decoding the escapes of a JSON string, for the rare protocol strings that have any.

/// The text of a string whose content (between the quotes) is `raw`, already checked by the
/// scanner (every `\` starts a well-formed escape). Fails, naming what was expected, on a `\u`
/// escape of an unpaired UTF-16 surrogate, which no Rust string can hold.
pub(super) fn unescape(raw: &str) -> Result<String, &'static str> {
    // Escapes only make the text shorter, so this is the one allocation.
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => unicode_escape(&mut chars)?,
            _ => return Err(ESCAPE),
        };
        text.push(decoded);
    }
    Ok(text)
}

const ESCAPE: &str = "an escape: one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX";
const SURROGATE_PAIR: &str = "a \\u escape of a character, not half a surrogate pair";

/// The character of a `\uXXXX` escape (after the `u`), with the low half that must follow a
/// high surrogate.
fn unicode_escape(chars: &mut std::str::Chars<'_>) -> Result<char, &'static str> {
    let unit = hex4(chars)?;
    let code = match unit {
        0xD800..=0xDBFF => {
            if chars.next() != Some('\\') || chars.next() != Some('u') {
                return Err(SURROGATE_PAIR);
            }
            let low = hex4(chars)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(SURROGATE_PAIR);
            }
            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
        }
        0xDC00..=0xDFFF => return Err(SURROGATE_PAIR),
        _ => unit,
    };
    char::from_u32(code).ok_or(SURROGATE_PAIR)
}

/// Four hex digits as a UTF-16 code unit.
fn hex4(chars: &mut std::str::Chars<'_>) -> Result<u32, &'static str> {
    let mut unit = 0;
    for _ in 0..4 {
        let digit = chars.next().and_then(|c| c.to_digit(16)).ok_or(ESCAPE)?;
        unit = unit * 16 + digit;
    }
    Ok(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_escape_decodes() {
        assert_eq!(
            unescape(r#"a\"b\\c\/d\be\ff\ng\rh\ti"#).as_deref(),
            Ok("a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti")
        );
        assert_eq!(unescape(r"\u0041\u00e9\u20AC").as_deref(), Ok("Aé€"));
        assert_eq!(unescape(r"\u001e").as_deref(), Ok("\u{1e}"));
        assert_eq!(unescape("é😀 kept").as_deref(), Ok("é😀 kept"));
    }

    #[test]
    fn surrogate_pairs_combine_and_halves_are_rejected() {
        assert_eq!(unescape(r"\uD83D\uDE00").as_deref(), Ok("😀"));
        assert_eq!(unescape(r"\udbff\udfff").as_deref(), Ok("\u{10FFFF}"));
        for unpaired in [
            r"\uD83D",
            r"\uDE00",
            r"\uD83Dx",
            r"\uD83D\n",
            r"\uD83D\u0041",
            r"\uD83D\uD83D",
            r"\uDE00\uD83D",
        ] {
            assert_eq!(unescape(unpaired), Err(SURROGATE_PAIR), "{unpaired}");
        }
    }
}
