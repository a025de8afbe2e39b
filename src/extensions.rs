//! The contract between the guard's layer and its adapters (extractors,
//! scope layers): what the layer puts into the request extensions.
//!
//! - `Arc<AccessToken>`: the verified token, once per authenticated request;
//! - [`GuardContext`]: the challenge settings of the guard that handled the
//!   request, so that every refusal downstream renders like the guard's own.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use axum::{Router, body::Body, routing::get, Extension};
//! use http::Request;
//! use tokenguard::{AccessToken, testing::TestIssuer};
//! use tower::ServiceExt;
//!
//! let issuer = TestIssuer::new();
//! let app = Router::new()
//!     .route("/", get(|Extension(t): Extension<Arc<AccessToken>>| async move { t.subject().unwrap_or("").to_owned() }))
//!     .layer(issuer.guard("https://api").layer());
//! let token = issuer.token().audience("https://api").subject("u1").mint();
//! let req = Request::get("/").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
//! # }
//! ```

use std::sync::Arc;

use crate::challenge::ChallengeConfig;

/// The challenge settings of the guard that handled this request.
#[derive(Clone)]
pub(crate) struct GuardContext(pub(crate) Arc<ChallengeConfig>);

/// The challenge settings for a refusal of this request: the guard's, or the
/// defaults outside any guard.
pub(crate) fn challenge_config(ext: &http::Extensions) -> Arc<ChallengeConfig> {
    ext.get::<GuardContext>()
        .map(|g| g.0.clone())
        .unwrap_or_default()
}
