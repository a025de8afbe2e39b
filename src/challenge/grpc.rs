//! Refusals of gRPC requests as gRPC answers: HTTP 200, trailers-only (the
//! status in the headers, an empty body), `grpc-status` and `grpc-message`
//! (gRPC over HTTP/2, "Responses"), keeping `WWW-Authenticate` and
//! `Retry-After`, so that gRPC clients see UNAUTHENTICATED, PERMISSION_DENIED
//! or UNAVAILABLE instead of a transport error.

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use super::{ChallengeBody, ChallengeConfig};
use crate::error::AuthError;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// gRPC status codes (`google.rpc.Code`) of the refusals.
const INVALID_ARGUMENT: u16 = 3;
const PERMISSION_DENIED: u16 = 7;
const INTERNAL: u16 = 13;
const UNAVAILABLE: u16 = 14;
const UNAUTHENTICATED: u16 = 16;

/// The request's gRPC content type (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web…`), if it is a gRPC request.
pub(crate) fn grpc_content_type(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(header::CONTENT_TYPE).filter(|v| {
        v.as_bytes()
            .get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
    })
}

/// The gRPC status code for an HTTP refusal status.
fn code(status: StatusCode) -> u16 {
    match status {
        StatusCode::UNAUTHORIZED => UNAUTHENTICATED,
        StatusCode::FORBIDDEN => PERMISSION_DENIED,
        StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
        s if s.is_client_error() => INVALID_ARGUMENT,
        _ => INTERNAL,
    }
}

/// Percent-encodes `message` as `grpc-message` requires (bytes outside
/// 0x20–0x7E, and `%`).
fn encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AuthError {
    /// The refusal as a trailers-only gRPC response; `content_type` is the
    /// request's (a gRPC-Web client expects its own back). A custom error
    /// body is not sent: gRPC bodies are framed messages.
    pub(crate) fn to_grpc_response<B: ChallengeBody>(
        &self,
        ctx: &ChallengeConfig,
        content_type: HeaderValue,
    ) -> Response<B> {
        let http: Response<()> = self.to_response(ctx);
        let (parts, ()) = http.into_parts();
        let mut headers = parts.headers;
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(GRPC_STATUS.clone(), HeaderValue::from(code(parts.status)));
        if let Ok(message) = HeaderValue::try_from(encode(self.description())) {
            headers.insert(GRPC_MESSAGE.clone(), message);
        }
        let mut response = Response::new(B::from_bytes(bytes::Bytes::new()));
        *response.headers_mut() = headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::InvalidToken;

    #[test]
    fn statuses_and_messages() {
        assert_eq!(code(StatusCode::UNAUTHORIZED), 16);
        assert_eq!(code(StatusCode::FORBIDDEN), 7);
        assert_eq!(code(StatusCode::SERVICE_UNAVAILABLE), 14);
        assert_eq!(code(StatusCode::BAD_REQUEST), 3);
        assert_eq!(encode("100% sure, é"), "100%25 sure, %C3%A9");

        let ctx = ChallengeConfig::default();
        let res: Response<()> = AuthError::invalid_token(InvalidToken::Expired)
            .to_grpc_response(&ctx, HeaderValue::from_static("application/grpc+proto"));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["content-type"], "application/grpc+proto");
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }

    #[test]
    fn grpc_requests_are_told_by_their_content_type() {
        let with = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            grpc_content_type(&h).is_some()
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC-web+proto"));
        assert!(!with("application/json"));
        assert!(!with("application/grp"));
        assert!(grpc_content_type(&HeaderMap::new()).is_none());
    }
}
