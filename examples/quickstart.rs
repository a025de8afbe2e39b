//! A small invoices API protected by tokenguard.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Without configuration it starts an embedded development issuer (keys
//! generated in-process, served with its discovery document on a loopback
//! port, nothing external) and prints ready-to-paste `curl` lines with a
//! read-only and a read-write token. The API finds the issuer's keys through
//! discovery, exactly as it would with a real issuer.
//!
//! With `ISSUER_URL=https://id.example.com AUDIENCE=https://api.example.com`
//! it trusts that issuer instead, finding its keys through discovery, with the
//! crate's strict defaults. Adding `INTROSPECTION_CLIENT_ID` and
//! `INTROSPECTION_CLIENT_SECRET` makes it accept opaque tokens too, through
//! the issuer's discovered `introspection_endpoint` (RFC 7662,
//! `client_secret_basic`; `INTROSPECTION_SIGNED=1` asks for signed answers,
//! RFC 9701); `INTROSPECTION_CACHE_TTL_SECS` sets how long an
//! answer is cached (the revocation delay, default 30). `PORT` sets the port
//! (default 3000); the server listens on 127.0.0.1 only.
//!
//! DPoP-bound tokens (RFC 9449) are accepted with their proofs; `PUBLIC_URL`
//! is the origin clients call (default `http://127.0.0.1:$PORT`), against
//! which proofs' `htu` is checked. `DPOP=required` refuses bearer tokens,
//! `DPOP=off` turns DPoP off, `DPOP_NONCE=1` requires server nonces.
//!
//! Several processes as one deployment: built with `--features redis`,
//! `REDIS_URL=redis://127.0.0.1:6379` makes them share the DPoP replay store
//! and the introspection cache; give them one `DPOP_NONCE_SECRET` (at least
//! 32 bytes) so that each accepts the others' nonces.
//!
//! Certificate-bound tokens (RFC 8705): `CLIENT_CERT_HEADER=client-cert`
//! trusts that RFC 9440 header from a TLS-terminating proxy in front of the
//! quickstart (only behind such a proxy, which must strip it from clients).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokenguard::testing::TestIssuerServer;
use tokenguard::{
    AccessTokenClaims, Claims, ClientAuth, DpopConfig, IntrospectionConfig, MtlsConfig,
    NonceConfig, RequireScope, TokenGuard, TokenGuardBuilder, scopes,
};

scopes! {
    /// List invoices.
    pub ReadInvoices = "read:invoices";
    /// Create invoices.
    pub WriteInvoices = "write:invoices";
}

#[derive(Clone, Serialize)]
struct Invoice {
    id: u64,
    customer: String,
    amount_cents: u64,
    created_by: String,
}

#[derive(Deserialize)]
struct NewInvoice {
    customer: String,
    amount_cents: u64,
}

type Db = Arc<Mutex<Vec<Invoice>>>;

async fn list(_: RequireScope<ReadInvoices>, State(db): State<Db>) -> Json<Vec<Invoice>> {
    Json(db.lock().unwrap().clone())
}

async fn create(
    _: RequireScope<WriteInvoices>,
    Claims(claims): Claims<AccessTokenClaims>,
    State(db): State<Db>,
    Json(new): Json<NewInvoice>,
) -> (StatusCode, Json<Invoice>) {
    let mut db = db.lock().unwrap();
    let invoice = Invoice {
        id: db.len() as u64 + 1,
        customer: new.customer,
        amount_cents: new.amount_cents,
        created_by: claims.sub.clone().unwrap_or_default(),
    };
    db.push(invoice.clone());
    (StatusCode::CREATED, Json(invoice))
}

async fn me(Claims(claims): Claims<AccessTokenClaims>) -> Json<AccessTokenClaims> {
    Json((*claims).clone())
}

const DEV_AUDIENCE: &str = "http://127.0.0.1/invoices-api";

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// DPoP settings from `PUBLIC_URL`, `DPOP` and `DPOP_NONCE`.
fn dpop(port: u16) -> Option<DpopConfig> {
    let public_url = var("PUBLIC_URL").unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let config = DpopConfig::new(public_url);
    let config = match var("DPOP").as_deref() {
        None | Some("on") => config,
        Some("required") => config.required(),
        Some("off") => return None,
        Some(other) => fail(format!("DPOP={other:?}: use on, required or off")),
    };
    Some(match var("DPOP_NONCE").as_deref() {
        None | Some("0") => config,
        Some("1") => {
            // Replicas share `DPOP_NONCE_SECRET`; one process may use a random one.
            let secret = match var("DPOP_NONCE_SECRET") {
                Some(secret) => secret.into_bytes(),
                None => {
                    let mut secret = vec![0u8; 32];
                    aws_lc_rs::rand::fill(&mut secret)
                        .unwrap_or_else(|_| fail("no system randomness for the nonce secret"));
                    secret
                }
            };
            config.nonces(NonceConfig::new(secret).unwrap_or_else(|e| fail(e)))
        }
        Some(other) => fail(format!("DPOP_NONCE={other:?}: use 1 or 0")),
    })
}

/// DPoP and, with `CLIENT_CERT_HEADER`, certificate binding behind a proxy.
fn with_binding(builder: TokenGuardBuilder, dpop: &Option<DpopConfig>) -> TokenGuardBuilder {
    let builder = match dpop {
        Some(config) => builder.dpop(config.clone()),
        None => builder,
    };
    match var("CLIENT_CERT_HEADER") {
        Some(name) => {
            println!("Trusting the client certificate in the {name:?} header (RFC 9440).");
            builder.mtls(MtlsConfig::from_proxy_header(name))
        }
        None => builder,
    }
}

/// With `REDIS_URL`: the DPoP replay store and the introspection cache on
/// Redis, shared by every process pointed at it.
#[cfg(feature = "redis")]
fn shared_state(
    dpop: Option<DpopConfig>,
    introspection: Option<IntrospectionConfig>,
) -> (Option<DpopConfig>, Option<IntrospectionConfig>) {
    let Some(url) = var("REDIS_URL") else {
        return (dpop, introspection);
    };
    let store = std::sync::Arc::new(tokenguard::RedisStore::open(&url).unwrap_or_else(|e| fail(e)));
    println!("Sharing the DPoP replay store and the introspection cache on {url}.");
    (
        dpop.map(|d| d.replay_store(store.clone())),
        introspection.map(|i| i.shared_cache(store)),
    )
}

#[cfg(not(feature = "redis"))]
fn shared_state(
    dpop: Option<DpopConfig>,
    introspection: Option<IntrospectionConfig>,
) -> (Option<DpopConfig>, Option<IntrospectionConfig>) {
    if var("REDIS_URL").is_some() {
        fail("REDIS_URL needs the redis feature: cargo run --example quickstart --features redis");
    }
    (dpop, introspection)
}

/// Introspection settings from `INTROSPECTION_*`, if any are set.
fn introspection() -> Option<IntrospectionConfig> {
    let signed = match var("INTROSPECTION_SIGNED").as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => fail(format!("INTROSPECTION_SIGNED={other:?}: use 1 or 0")),
    };
    let ttl = var("INTROSPECTION_CACHE_TTL_SECS").map(|t| {
        t.parse().map(Duration::from_secs).unwrap_or_else(|_| {
            fail(format!(
                "INTROSPECTION_CACHE_TTL_SECS={t:?} is not a number of seconds"
            ))
        })
    });
    match (
        var("INTROSPECTION_CLIENT_ID"),
        var("INTROSPECTION_CLIENT_SECRET"),
    ) {
        (Some(id), Some(secret)) => {
            let config = IntrospectionConfig::new(ClientAuth::client_secret_basic(id, secret));
            let config = match ttl {
                Some(ttl) => config.max_ttl(ttl),
                None => config,
            };
            Some(if signed {
                config.signed_responses()
            } else {
                config
            })
        }
        (None, None) if ttl.is_none() && !signed => None,
        _ => fail(
            "set both INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET (and optionally INTROSPECTION_CACHE_TTL_SECS, INTROSPECTION_SIGNED), or none",
        ),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tokenguard=debug".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .unwrap_or_else(|_| fail(format!("PORT={p:?} is not a port number"))),
        Err(_) => 3000,
    };

    let introspection = introspection();
    let (dpop, introspection) = shared_state(dpop(port), introspection);
    let (guard, dev_issuer) = match (var("ISSUER_URL"), var("AUDIENCE")) {
        (Some(issuer), Some(audience)) => {
            let builder = with_binding(
                TokenGuard::builder().issuer(&issuer).audience(&audience),
                &dpop,
            );
            let opaque = introspection.is_some();
            let builder = match introspection {
                Some(config) => builder.introspection(config),
                None => builder,
            };
            let guard = builder.build().unwrap_or_else(|e| fail(e));
            println!("Trusting issuer {issuer} (keys through discovery) for audience {audience}.");
            if opaque {
                println!("Opaque tokens are introspected at the issuer's introspection_endpoint.");
            }
            (guard, None)
        }
        (None, None) if introspection.is_some() => {
            fail("introspection needs a real issuer: set ISSUER_URL and AUDIENCE too")
        }
        (None, None) => {
            let dev = TestIssuerServer::start()
                .await
                .unwrap_or_else(|e| fail(format!("cannot start the development issuer: {e}")));
            let guard = with_binding(dev.guard_builder(DEV_AUDIENCE), &dpop)
                .build()
                .unwrap_or_else(|e| fail(e));
            // Fail fast if discovery does not work.
            guard.warm_up().await.unwrap_or_else(|e| fail(e));
            (guard, Some(dev))
        }
        _ => fail("set both ISSUER_URL and AUDIENCE, or neither (for the development issuer)"),
    };

    let app = Router::new()
        .route("/invoices", get(list).post(create))
        .route("/me", get(me))
        .layer(guard.layer())
        // Added after the layer: public.
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Db::default());

    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| {
            fail(format!(
                "cannot listen on {addr}: {e} (set PORT to use another port)"
            ))
        });
    let base = format!("http://{addr}");

    if let Some(dev) = &dev_issuer {
        let issuer = dev.issuer();
        let hour = Duration::from_secs(3600);
        let read = issuer
            .token()
            .audience(DEV_AUDIENCE)
            .subject("alice")
            .scope("read:invoices")
            .expires_in(hour)
            .mint();
        let write = issuer
            .token()
            .audience(DEV_AUDIENCE)
            .subject("bob")
            .scope("read:invoices write:invoices")
            .expires_in(hour)
            .mint();
        println!(
            r#"
tokenguard quickstart: invoices API on {base}, trusting an embedded development issuer
at {issuer_url} (discovery: {issuer_url}/.well-known/openid-configuration).
Tokens below are valid for one hour. Paste these lines into a shell:

export READ_TOKEN='{read}'
export WRITE_TOKEN='{write}'

curl -i {base}/healthz                                              # 200, public
curl -i {base}/invoices                                             # 401, no token
curl -i {base}/invoices -H "Authorization: Bearer $READ_TOKEN"      # 200
curl -i -X POST {base}/invoices -H "Authorization: Bearer $READ_TOKEN" \
     -H 'content-type: application/json' -d '{{"customer":"ACME","amount_cents":1200}}'   # 403 insufficient_scope
curl -i -X POST {base}/invoices -H "Authorization: Bearer $WRITE_TOKEN" \
     -H 'content-type: application/json' -d '{{"customer":"ACME","amount_cents":1200}}'   # 201
curl -i {base}/me -H "Authorization: Bearer $WRITE_TOKEN"           # 200, the verified claims
curl -i {base}/me -H "Authorization: Bearer garbage"                # 401 invalid_token
"#,
            issuer_url = dev.url()
        );
    } else {
        println!("Listening on {base}: GET/POST /invoices, GET /me, GET /healthz.");
    }
    match &dpop {
        Some(config) => println!("DPoP: {config:?}"),
        None => println!("DPoP: off"),
    }

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        fail(e);
    }
}
