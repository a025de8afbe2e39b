//! Character sets of the grammars the crate reads: token68 (RFC 7235
//! §2.1, now RFC 9110 §11.2), base64url (RFC 4648 §5), scope-token (RFC 6749
//! §3.3) and the quoted-string contents a challenge may hold. A leaf: it
//! imports nothing of the crate.
//!
//! ```
//! use tokenguard::__private::{is_token68, is_valid_scope_token};
//! assert!(is_token68(b"abc.def-_~+/=="));
//! assert!(!is_token68(b"a b"));
//! assert!(is_valid_scope_token("read:invoices"));
//! ```

/// Whether `b` is a base64url character (RFC 4648 §5): arithmetic, no
/// branch (every request's token is scanned on the hot path).
#[inline(always)]
fn is_b64url_byte(b: u8) -> bool {
    // `| 0x20` folds A–Z onto a–z and nothing else onto a–z.
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'-') | (b == b'_')
}

/// Whether `b` may appear in a token68 before its trailing `=` padding.
#[inline(always)]
fn is_token68_byte(b: u8) -> bool {
    is_b64url_byte(b) | (b == b'.') | (b == b'~') | (b == b'+') | (b == b'/')
}

/// Whether every byte of `bytes` passes `ok`: no branch per byte, one per
/// 32-byte chunk, whose fixed length lets the compiler vectorize it.
#[inline(always)]
fn all_bytes(bytes: &[u8], ok: impl Fn(u8) -> bool + Copy) -> bool {
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        let bad = chunk.iter().fold(0u8, |acc, &b| acc | u8::from(!ok(b)));
        if bad != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| ok(b))
}

/// Whether `s` is a token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(s: &[u8]) -> bool {
    // Most tokens have no padding: the whole of it first.
    let unpadded = s
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |last| last + 1);
    unpadded > 0
        && s.get(..unpadded)
            .is_some_and(|body| all_bytes(body, is_token68_byte))
}

/// Whether `c` may appear in an RFC 6749 scope-token:
/// `%x21 / %x23-5B / %x5D-7E` (printable ASCII except space, `"` and `\`).
pub const fn is_scope_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// Scope-token characters plus space: what a quoted `realm` or `scope` may hold.
pub(crate) fn is_scope_char_or_space(c: char) -> bool {
    c == ' ' || is_scope_char(c)
}

/// Whether `s` is a valid RFC 6749 scope-token. Used by [`scopes!`](crate::scopes)
/// to refuse invalid names at compile time.
pub const fn is_valid_scope_token(s: &str) -> bool {
    let mut rest = s.as_bytes();
    if rest.is_empty() {
        return false;
    }
    while let [first, tail @ ..] = rest {
        if !is_scope_char(*first as char) {
            return false;
        }
        rest = tail;
    }
    true
}

/// Whether every byte of `s` is base64url, without padding (RFC 4648 §5).
pub(crate) fn is_b64url(s: &str) -> bool {
    all_bytes(s.as_bytes(), is_b64url_byte)
}

/// The authentication scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Scheme {
    /// `Bearer` (RFC 6750), or a token from the query, a cookie or a form.
    #[default]
    Bearer,
    /// `DPoP` (RFC 9449 §7.1).
    Dpop,
}

#[cfg(test)]
mod char_set_tests {
    use super::*;

    /// The fast checks agree with the grammar, byte for byte.
    #[test]
    fn byte_classes_match_the_grammar() {
        for b in 0..=255u8 {
            let b64 = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_b64url_byte(b), b64, "{b:#x}");
            let t68 = b64 || matches!(b, b'.' | b'~' | b'+' | b'/');
            assert_eq!(is_token68_byte(b), t68, "{b:#x}");
        }
    }

    #[test]
    fn token68_and_padding() {
        for (s, ok) in [
            ("abc", true),
            ("abc==", true),
            ("a.b-c_d~e+f/g=", true),
            ("", false),
            ("=", false),
            ("==", false),
            ("a=b", false),
            ("a b", false),
            ("a\u{e9}", false),
        ] {
            assert_eq!(is_token68(s.as_bytes()), ok, "{s:?}");
        }
        // Every position of a long token, past a chunk boundary.
        let long = "a".repeat(200);
        assert!(is_token68(long.as_bytes()));
        for i in 0..200 {
            let mut bad = long.clone().into_bytes();
            bad[i] = b' ';
            assert!(!is_token68(&bad), "{i}");
            bad[i] = b'=';
            // A trailing `=` is padding.
            assert_eq!(is_token68(&bad), i == 199, "{i}");
            assert!(!is_b64url(std::str::from_utf8(&bad).unwrap()), "{i}");
        }
    }
}
