//! The `htu` comparison (RFC 9449 §4.3 step 9): the request's URI without
//! query and fragment, built from the configured public URL (never from
//! `Host` or `X-Forwarded-*`), compared after syntax- and scheme-based
//! normalization (RFC 3986 §6.2.2–6.2.3).

use reqwest::Url;

/// Normalizes an absolute URI for comparison: scheme and host lowercased,
/// default port dropped, dot segments removed, an empty path made `/` (all
/// by the WHATWG parser), percent-encodings uppercased and unreserved
/// characters decoded; query and fragment dropped.
pub(crate) fn normalize(uri: &str) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = normalize_percent(url.path());
    url.set_path(&path);
    Some(url.into())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §6.2.2.1–6.2.2.2: uppercase hex digits, decode unreserved.
fn normalize_percent(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(decoded) if is_unreserved(decoded) => {
                out.push(char::from(decoded));
                i += 3;
            }
            Some(decoded) => {
                out.push('%');
                out.push_str(&format!("{decoded:02X}"));
                i += 3;
            }
            None => {
                // The path of a parsed URL is ASCII.
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    out
}

/// Whether `path` is already in normal form: only unreserved characters,
/// sub-delimiters, `:`, `@` and `/`, no dot segment. Most request paths are,
/// and need no parser.
fn is_normal_path(path: &str) -> bool {
    path.starts_with('/')
        && path.bytes().all(|b| {
            is_unreserved(b)
                || matches!(
                    b,
                    b'/' | b':'
                        | b'@'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        })
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// The public URL a request was made to: `base` (normalized) followed by
/// the request's path.
pub(crate) fn request_uri(base: &str, path: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    let path = if path.starts_with('/') { path } else { "/" };
    if is_normal_path(path) {
        return Some(format!("{base}{path}"));
    }
    normalize(&format!("{base}{path}"))
}

/// Whether a proof's `htu` names `expected` (a [`request_uri`]).
pub(crate) fn matches(htu: &str, expected: &str) -> bool {
    // The common case: the client sent exactly the normal form (perhaps with
    // a query or fragment, which do not count).
    let bare = htu.split(['?', '#']).next().unwrap_or(htu);
    if bare == expected {
        return true;
    }
    normalize(htu).as_deref() == Some(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        let n = |s| normalize(s).unwrap();
        assert_eq!(
            n("HTTPS://API.Example.COM:443/a/b?x=1#f"),
            "https://api.example.com/a/b"
        );
        assert_eq!(n("http://api.example.com:80"), "http://api.example.com/");
        assert_eq!(
            n("https://api.example.com/a/./b/../c"),
            "https://api.example.com/a/c"
        );
        assert_eq!(
            n("https://api.example.com/%7euser/%2f%41"),
            "https://api.example.com/~user/%2FA"
        );
        assert_ne!(
            n("https://api.example.com:8443/"),
            n("https://api.example.com/")
        );
        assert_ne!(n("http://api.example.com/"), n("https://api.example.com/"));
        assert!(normalize("ftp://api.example.com/").is_none());
        assert!(normalize("https://user:pw@api.example.com/").is_none());
        assert!(normalize("/relative").is_none());
        assert_eq!(
            request_uri("https://api.example.com/", "/invoices").unwrap(),
            "https://api.example.com/invoices"
        );
        assert_eq!(
            request_uri("https://example.com/api", "/invoices").unwrap(),
            "https://example.com/api/invoices"
        );
        // Paths that need the parser get it.
        assert_eq!(
            request_uri("https://example.com", "/a/../%7eb").unwrap(),
            "https://example.com/~b"
        );
        assert_eq!(
            request_uri("https://example.com", "/a/./b").unwrap(),
            "https://example.com/a/b"
        );
        let expected = request_uri("https://api.example.com", "/invoices").unwrap();
        assert!(matches("https://api.example.com/invoices", &expected));
        assert!(matches("https://api.example.com/invoices?x=1#y", &expected));
        assert!(matches("HTTPS://api.EXAMPLE.com:443/invoices", &expected));
        assert!(!matches("https://api.example.com/invoices/", &expected));
        assert!(!matches("https://api.example.com:8443/invoices", &expected));
        assert!(!matches("http://api.example.com/invoices", &expected));
    }
}
