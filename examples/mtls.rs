//! Certificate-bound access tokens (RFC 8705) over mutual TLS.
//!
//! ```text
//! cargo run --example mtls
//! ```
//!
//! At start it generates a CA, a server certificate for 127.0.0.1 and
//! localhost, and two client certificates (rcgen), writes them as PEM files
//! to a new temporary directory (removed on Ctrl-C), and mints, with the
//! embedded test issuer, an access token bound to the first client
//! certificate: its `cnf["x5t#S256"]` is the certificate's thumbprint. It
//! then prints `curl` lines: with that certificate the token is accepted;
//! with the other certificate, or none, it is refused (401).
//!
//! The server speaks HTTPS (rustls through tokio-rustls, HTTP/1.1 and HTTP/2
//! through hyper-util) on 127.0.0.1 only, port `PORT` (default 3443). It asks
//! every client for a certificate, verifies the one it gets against the CA,
//! and serves clients without one too (the guard then refuses bound tokens).
//! [`serve_mtls`] is the part to copy: it puts each connection's verified
//! certificate into the extensions of every request of that connection as a
//! [`ClientCertificate`], where `MtlsConfig::from_connection()` finds it.
//!
//! Behind a TLS-terminating proxy that forwards the certificate in the
//! RFC 9440 `Client-Cert` header, use
//! `MtlsConfig::from_proxy_header("client-cert")` instead (and no TLS here).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokenguard::testing::TestIssuer;
use tokenguard::{AccessTokenClaims, Claims, ClientCertificate, MtlsConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tower::ServiceBuilder;

type Error = Box<dyn std::error::Error + Send + Sync>;

const AUDIENCE: &str = "https://api.example.com";

/// Serves `app` over TLS: the reusable part. `tls` decides which client
/// certificates are acceptable (its client verifier); the end-entity
/// certificate a connection was verified with is put into the extensions
/// of each of its requests, as [`ClientCertificate`]. Never returns.
async fn serve_mtls(listener: TcpListener, tls: Arc<ServerConfig>, app: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A client that never finishes its handshake does not hold a
            // task forever.
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(tls)) = handshake.await else { return };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| ClientCertificate::from_der(der.to_vec()));
            // Each request of this connection gets the certificate (none
            // for a client that presented none).
            let app = ServiceBuilder::new()
                .option_layer(cert.map(Extension))
                .service(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let port: u16 = std::env::var("PORT").map_or(Ok(3443), |p| p.parse())?;

    // The certificates, as PEM files for curl.
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tokenguard example CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let issue = |name: &str, sans: &[&str], eku| -> Result<_, Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![eku];
        Ok((params.signed_by(&key, &ca)?, key))
    };
    let server_names = ["127.0.0.1", "localhost"];
    let (server_cert, server_key) = issue("localhost", &server_names, ServerAuth)?;
    let (alice, alice_key) = issue("alice", &[], ClientAuth)?;
    let (mallory, mallory_key) = issue("mallory", &[], ClientAuth)?;
    let dir = tempfile::Builder::new()
        .prefix("tokenguard-mtls-")
        .tempdir()?;
    let write = |name: &str, pem: String| -> std::io::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, pem)?;
        Ok(path.display().to_string())
    };
    let ca_pem = write("ca.pem", ca.pem())?;
    let alice_pem = write("alice.pem", alice.pem())?;
    let alice_key_pem = write("alice-key.pem", alice_key.serialize_pem())?;
    let mallory_pem = write("mallory.pem", mallory.pem())?;
    let mallory_key_pem = write("mallory-key.pem", mallory_key.serialize_pem())?;

    // TLS: a server certificate, and client certificates of the CA asked for
    // but not required.
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let mut tls = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        )?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    // The issuer, a token bound to alice's certificate, and the API.
    let issuer = TestIssuer::new();
    let thumbprint = ClientCertificate::from_der(alice.der().to_vec()).thumbprint();
    let token = issuer
        .token()
        .audience(AUDIENCE)
        .subject("alice")
        .claim("cnf", json!({ "x5t#S256": thumbprint }))
        .expires_in(Duration::from_secs(3600))
        .mint();
    let guard = issuer
        .guard_builder(AUDIENCE)
        .mtls(MtlsConfig::from_connection())
        .build()?;
    let app = Router::new()
        .route(
            "/whoami",
            get(
                |Claims(claims): Claims<AccessTokenClaims>,
                 cert: Option<Extension<ClientCertificate>>| async move {
                    let sub = claims.sub.clone().unwrap_or_default();
                    match cert {
                        Some(Extension(cert)) => {
                            format!("{sub}, certificate {}\n", cert.thumbprint())
                        }
                        None => format!("{sub}, no certificate\n"),
                    }
                },
            ),
        )
        .layer(guard.layer());

    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let url = format!("https://127.0.0.1:{port}/whoami");
    println!("listening on {url}, PEM files in {}", dir.path().display());
    println!("token bound to alice's certificate (x5t#S256 {thumbprint}):\n");
    println!("TOKEN={token}\n");
    println!("# 200, alice's certificate:");
    println!(
        "curl --cacert {ca_pem} --cert {alice_pem} --key {alice_key_pem} \
         -H \"Authorization: Bearer $TOKEN\" {url}"
    );
    println!("# 401, mallory's certificate:");
    println!(
        "curl -i --cacert {ca_pem} --cert {mallory_pem} --key {mallory_key_pem} \
         -H \"Authorization: Bearer $TOKEN\" {url}"
    );
    println!("# 401, no certificate:");
    println!("curl -i --cacert {ca_pem} -H \"Authorization: Bearer $TOKEN\" {url}");

    tokio::select! {
        () = serve_mtls(listener, Arc::new(tls), app) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // `dir` is dropped here: the PEM files are removed.
    Ok(())
}
