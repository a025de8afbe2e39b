//! gRPC behind the guard: a real tonic server (the standard health service,
//! `grpc.health.v1`) wrapped in the guard's layer and a scope layer, called
//! by a real tonic client over HTTP/2 on loopback. Refusals arrive as gRPC
//! statuses (trailers-only, HTTP 200), not as transport errors.

#![cfg(all(feature = "tonic", feature = "testing"))]

use tokenguard::testing::TestIssuer;
use tokenguard::{TokenGuard, require_scope};
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const AUD: &str = "grpc://health.example";

/// Serves the health service behind `guard` (and `health:read` required) on
/// a free loopback port; the channel to it.
async fn serve(guard: &TokenGuard) -> Channel {
    let (_, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream_shim(listener);
    let router = Server::builder()
        .layer(guard.layer())
        .layer(require_scope("health:read"))
        .add_service(health);
    tokio::spawn(async move {
        router.serve_with_incoming(incoming).await.unwrap();
    });
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The listener's connections as the stream tonic serves.
fn tokio_stream_shim(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| stream);
        Some((conn, listener))
    })
}

/// `Check` with `authorization` set to `auth` (if any).
async fn check(channel: &Channel, auth: Option<String>) -> Result<(), Status> {
    let mut req = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(auth) = auth {
        req.metadata_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    HealthClient::new(channel.clone())
        .check(req)
        .await
        .map(|_| ())
}

fn www_authenticate(status: &Status) -> &str {
    status
        .metadata()
        .get("www-authenticate")
        .expect("www-authenticate kept")
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn refusals_are_grpc_statuses_with_their_challenge() {
    let issuer = TestIssuer::new();
    let guard = issuer.guard(AUD);
    let channel = serve(&guard).await;
    let token = |scope: &str| issuer.token().audience(AUD).scope(scope).mint();

    // Accepted: the service answers.
    check(&channel, Some(format!("Bearer {}", token("health:read"))))
        .await
        .unwrap();

    // No token: UNAUTHENTICATED.
    let status = check(&channel, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(www_authenticate(&status), r#"Bearer realm="api""#);

    // An invalid token: UNAUTHENTICATED with the reason.
    let expired = issuer
        .token()
        .audience(AUD)
        .scope("health:read")
        .expired()
        .mint();
    let status = check(&channel, Some(format!("Bearer {expired}")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "The access token expired");
    assert!(
        www_authenticate(&status).contains(r#"error="invalid_token""#),
        "{status:?}"
    );

    // A scope missing: PERMISSION_DENIED, from the scope layer.
    let status = check(&channel, Some(format!("Bearer {}", token("other"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "The access token does not grant the required scope"
    );
    assert!(
        www_authenticate(&status).contains(r#"scope="health:read""#),
        "{status:?}"
    );

    // A malformed header: INVALID_ARGUMENT.
    let status = check(&channel, Some("Bearer a b".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn keys_unavailable_is_unavailable_with_retry_after() {
    // A JWKS URL on a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let guard = TokenGuard::builder()
        .issuer("https://issuer.example")
        .audience(AUD)
        .jwks_url(format!("http://127.0.0.1:{port}/jwks"))
        .build()
        .unwrap();
    let channel = serve(&guard).await;
    let token = TestIssuer::new().token().audience(AUD).mint();
    let status = check(&channel, Some(format!("Bearer {token}")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "The token issuer's keys are unavailable; try again later"
    );
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
}
