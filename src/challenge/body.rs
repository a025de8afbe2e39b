//! [`ChallengeBody`]: the response body types a refusal can be built with.

use bytes::Bytes;

use super::ChallengeConfig;
use crate::error::AuthError;

/// Response bodies that tokenguard can build its error responses with.
///
/// Implemented for the common body types; a service whose response body is
/// another type needs a body that implements this trait.
pub trait ChallengeBody: Sized {
    /// Builds a body holding `bytes` (empty for the default challenge). Body
    /// types that cannot carry bytes may ignore them.
    fn from_bytes(bytes: Bytes) -> Self;
}

#[cfg(feature = "axum")]
impl ChallengeBody for axum::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum::body::Body::from(bytes)
    }
}

#[cfg(feature = "tonic")]
impl ChallengeBody for tonic::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            tonic::body::Body::empty()
        } else {
            tonic::body::Body::new(http_body_util::Full::new(bytes))
        }
    }
}

impl ChallengeBody for http_body_util::Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        http_body_util::Full::new(bytes)
    }
}

impl ChallengeBody for http_body_util::Empty<Bytes> {
    fn from_bytes(_: Bytes) -> Self {
        http_body_util::Empty::new()
    }
}

impl<E: 'static> ChallengeBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt;
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

impl<E: 'static> ChallengeBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt;
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed()
    }
}

impl ChallengeBody for String {
    fn from_bytes(bytes: Bytes) -> Self {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl ChallengeBody for Bytes {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes
    }
}

impl ChallengeBody for Vec<u8> {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes.to_vec()
    }
}

impl ChallengeBody for () {
    fn from_bytes(_: Bytes) -> Self {}
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AuthError {
    /// Renders with realm `api` and an empty body. Inside the guard's layer,
    /// extractors render with the guard's realm and body renderer instead.
    fn into_response(self) -> axum::response::Response {
        self.to_response(&ChallengeConfig::default())
    }
}
