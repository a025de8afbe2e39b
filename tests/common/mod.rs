//! Helpers shared by the integration tests.
#![allow(dead_code)]

use axum::body::Body;
use axum::response::Response;
use axum::{Router, routing::get};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokenguard::{AccessTokenClaims, Claims, TokenGuard};
use tower::ServiceExt;

pub const AUD: &str = "https://api.example.com";

/// A router with `GET /me` (returns `sub`) behind `guard`.
pub fn app(guard: &TokenGuard) -> Router {
    Router::new()
        .route(
            "/me",
            get(|Claims(c): Claims<AccessTokenClaims>| async move { c.sub.clone().unwrap_or_default() }),
        )
        .layer(guard.layer())
}

/// Sends `GET path` with the given `Authorization` header values.
pub async fn send(app: &Router, path: &str, authorization: &[&str]) -> Response {
    let mut req = Request::get(path);
    for value in authorization {
        req = req.header(header::AUTHORIZATION, *value);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Sends `GET path` with `Authorization: Bearer token`.
pub async fn bearer(app: &Router, path: &str, token: &str) -> Response {
    send(app, path, &[&format!("Bearer {token}")]).await
}

/// The `WWW-Authenticate` header, if any.
pub fn challenge(res: &Response) -> Option<String> {
    res.headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Asserts a 401 `invalid_token` with the given description.
pub fn assert_invalid_token(res: &Response, description: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(res).as_deref(),
        Some(
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
            )
            .as_str()
        )
    );
}

/// The response body as a string.
pub async fn body(res: Response) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// A loopback JWKS and discovery server whose answers a test controls.
#[cfg(feature = "redis")]
pub mod redis_server;

pub mod server {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};

    /// What `/jwks` answers.
    #[derive(Clone)]
    pub enum Answer {
        Jwks(serde_json::Value),
        Status(StatusCode),
    }

    pub struct Shared {
        pub answer: Mutex<Answer>,
        pub issuer: Mutex<String>,
        pub cache_control: Mutex<Option<String>>,
        pub jwks_hits: AtomicUsize,
        pub discovery_hits: AtomicUsize,
    }

    /// A running server; stops when dropped.
    pub struct JwksServer {
        pub base: String,
        pub shared: Arc<Shared>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for JwksServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl JwksServer {
        /// Starts serving `jwks` at `/jwks`, and discovery naming `base` as issuer.
        pub async fn start(jwks: serde_json::Value) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let shared = Arc::new(Shared {
                answer: Mutex::new(Answer::Jwks(jwks)),
                issuer: Mutex::new(base.clone()),
                cache_control: Mutex::new(None),
                jwks_hits: AtomicUsize::new(0),
                discovery_hits: AtomicUsize::new(0),
            });
            let app = Router::new()
                .route("/jwks", get(jwks_handler))
                .route("/.well-known/openid-configuration", get(discovery))
                .with_state(shared.clone());
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self { base, shared, task }
        }

        pub fn jwks_url(&self) -> String {
            format!("{}/jwks", self.base)
        }

        pub fn set(&self, answer: Answer) {
            *self.shared.answer.lock().unwrap() = answer;
        }

        pub fn set_cache_control(&self, value: &str) {
            *self.shared.cache_control.lock().unwrap() = Some(value.to_owned());
        }

        pub fn jwks_hits(&self) -> usize {
            self.shared.jwks_hits.load(Ordering::SeqCst)
        }

        pub fn discovery_hits(&self) -> usize {
            self.shared.discovery_hits.load(Ordering::SeqCst)
        }
    }

    async fn jwks_handler(State(s): State<Arc<Shared>>) -> Response {
        s.jwks_hits.fetch_add(1, Ordering::SeqCst);
        let answer = s.answer.lock().unwrap().clone();
        let cache_control = s.cache_control.lock().unwrap().clone();
        match answer {
            Answer::Jwks(v) => match cache_control {
                Some(cc) => ([(axum::http::header::CACHE_CONTROL, cc)], Json(v)).into_response(),
                None => Json(v).into_response(),
            },
            Answer::Status(code) => code.into_response(),
        }
    }

    async fn discovery(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
        s.discovery_hits.fetch_add(1, Ordering::SeqCst);
        let issuer = s.issuer.lock().unwrap().clone();
        // The jwks_uri is on this same server.
        let base = issuer.clone();
        Json(serde_json::json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks")}))
    }
}
