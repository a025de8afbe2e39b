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

/// The bytes that may appear in a token68 before its trailing `=` padding.
/// A table, because every request's token is scanned once on the hot path.
#[allow(
    clippy::indexing_slicing,
    reason = "compile-time loop over the table's own 256 indices"
)]
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Whether `s` is a token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(s: &[u8]) -> bool {
    // One pass: the token68 characters, then only padding.
    let body = s
        .iter()
        .position(|&b| TOKEN68.get(usize::from(b)) != Some(&true))
        .unwrap_or(s.len());
    body > 0 && s.iter().skip(body).all(|&b| b == b'=')
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
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
