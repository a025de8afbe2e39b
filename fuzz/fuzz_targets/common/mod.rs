//! Checks shared by the fuzz targets that drive the whole layer.

use http::StatusCode;

/// `Bearer realm="api"(, name="value")*`: printable ASCII, no `"` or `\`
/// inside values, an `error` that fits the status and exactly the members
/// RFC 6750 §3 gives it. `bare_401`: a 401 may also be the bare challenge of
/// a request without any token.
pub fn check_challenge(ch: &str, status: StatusCode, bare_401: bool) {
    assert!(ch.bytes().all(|b| (0x20..=0x7E).contains(&b)), "{ch:?}");
    let mut rest = ch.strip_prefix("Bearer realm=\"api\"").expect(ch);
    let mut names = Vec::new();
    while !rest.is_empty() {
        rest = rest.strip_prefix(", ").expect(ch);
        let (name, after) = rest.split_once("=\"").expect(ch);
        let (value, after) = after.split_once('"').expect(ch);
        assert!(!value.contains('\\'), "{ch:?}");
        if name == "error" {
            let expected = match status {
                StatusCode::BAD_REQUEST => "invalid_request",
                StatusCode::UNAUTHORIZED => "invalid_token",
                _ => "insufficient_scope",
            };
            assert_eq!(value, expected, "{ch:?}");
        }
        names.push(name);
        rest = after;
    }
    let expected: &[&str] = match status {
        StatusCode::UNAUTHORIZED if bare_401 && names.is_empty() => &[],
        StatusCode::FORBIDDEN => &["error", "error_description", "scope"],
        _ => &["error", "error_description"],
    };
    assert_eq!(names, expected, "{ch:?}");
}
