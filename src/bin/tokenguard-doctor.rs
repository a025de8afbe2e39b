//! `tokenguard-doctor`: why does a guard accept or refuse this access token?
//!
//! The doctor decides nothing itself. It builds a real [`TokenGuard`] with the
//! settings given (issuer, audience, JWKS URL, …), fetches its keys, and calls
//! [`TokenGuard::verify`]. When the refusal is one a builder setting relaxes,
//! it rebuilds the guard with that setting relaxed and verifies again, until
//! the token passes or fails a check no setting relaxes; so every failing
//! check is reported, each with the setting that would relax it. The token's
//! header and claims are decoded here for display only (never the signature).
//!
//! ```text
//! tokenguard-doctor <TOKEN|-> --issuer URL --audience AUD [--jwks URL]
//! ```
//!
//! Exit status: 0 accepted as configured, 1 refused, 2 usage or configuration
//! error (the builder's `BuildError`, keys or discovery unavailable).

// Panic-free like the library's request path: every error is printed and
// ends with exit status 2.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::panic
)]

use std::fmt::Write as _;
use std::io::Read as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use serde_json::Value;
use tokenguard::{
    AccessToken, Algorithm, AuthError, AuthErrorKind, DEFAULT_ALGORITHMS, InvalidToken,
    KeySetStatus, MAX_LEEWAY, NumericDate, TokenGuard, TokenGuardBuilder,
};

const AFTER_HELP: &str = "\
The token is never echoed, and its signature is never printed. Pass `-` as TOKEN to read it from
standard input, which keeps it out of the shell history:

    pbpaste | tokenguard-doctor - --issuer https://id.example.com --audience https://api.example.com

Exit status: 0 accepted as configured, 1 refused, 2 usage or configuration error (a setting the
builder refuses, discovery or keys unavailable).";

/// Explains why a tokenguard guard accepts or refuses an access token: every
/// check the guard makes, in order, each passed or failed with its reason and
/// the builder setting that would relax it.
#[derive(Parser, Debug)]
#[command(
    name = "tokenguard-doctor",
    version,
    after_help = AFTER_HELP,
    override_usage = "tokenguard-doctor [OPTIONS] --issuer <URL> --audience <AUD> <TOKEN|->"
)]
struct Args {
    /// The access token, without `Bearer `; `-` reads it from standard input
    /// (so that it stays out of the shell history).
    // Several values are collected, and refused without echoing them: a
    // pasted `Bearer <token>` would otherwise be printed back by clap.
    #[arg(value_name = "TOKEN", required = true, num_args = 1..)]
    token: Vec<String>,
    /// The issuer the guard trusts (`TokenGuardBuilder::issuer`); its keys
    /// are found through discovery unless `--jwks` is given.
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// An accepted audience (`TokenGuardBuilder::audience`); repeat for several.
    #[arg(long, value_name = "AUD", required = true)]
    audience: Vec<String>,
    /// Fetch the keys from this JWKS URL instead of through discovery
    /// (`TokenGuardBuilder::jwks_url`).
    #[arg(long, value_name = "URL")]
    jwks: Option<String>,
    /// Replaces the algorithm allowlist, as the guard under diagnosis is
    /// configured (`TokenGuardBuilder::algorithms`); repeat for several.
    #[arg(long = "algorithm", value_name = "ALG", value_parser = parse_algorithm)]
    algorithms: Vec<Algorithm>,
    /// As `TokenGuardBuilder::allow_untyped_tokens()`.
    #[arg(long)]
    allow_untyped: bool,
    /// Clock skew tolerance in seconds (`TokenGuardBuilder::leeway`; default
    /// 30, at most 300).
    #[arg(long, value_name = "SECS")]
    leeway: Option<u64>,
    /// Longest accepted lifetime in seconds, or `none`
    /// (`TokenGuardBuilder::max_lifetime`; default 24 h).
    #[arg(long, value_name = "SECS|none", value_parser = parse_max_lifetime)]
    max_lifetime: Option<MaxLifetime>,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s).map_err(|_| format!("unknown algorithm {s:?}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaxLifetime {
    Secs(u64),
    Unlimited,
}

fn parse_max_lifetime(s: &str) -> Result<MaxLifetime, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(MaxLifetime::Unlimited);
    }
    s.parse()
        .map(MaxLifetime::Secs)
        .map_err(|_| format!("expected seconds or `none`, not {s:?}"))
}

/// Why the doctor could not diagnose: exit status 2.
struct Fatal(String);

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokenguard-doctor: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok((report, accepted)) => {
            print!("{report}");
            ExitCode::from(if accepted { 0 } else { 1 })
        }
        Err(Fatal(why)) => {
            eprintln!("tokenguard-doctor: {why}");
            ExitCode::from(2)
        }
    }
}

/// Largest token read from standard input.
const MAX_STDIN: u64 = 1 << 20;

fn read_token(args: &[String]) -> Result<String, Fatal> {
    let arg = match args {
        [one] => one.as_str(),
        _ => {
            return Err(Fatal(format!(
                "expected one token, got {} arguments (give the token without `Bearer `, or `-` to read it from standard input)",
                args.len()
            )));
        }
    };
    let token = if arg == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .take(MAX_STDIN + 1)
            .read_to_string(&mut buf)
            .map_err(|e| Fatal(format!("cannot read the token from standard input: {e}")))?;
        if buf.len() as u64 > MAX_STDIN {
            return Err(Fatal(format!(
                "the token on standard input is longer than {MAX_STDIN} bytes"
            )));
        }
        buf
    } else {
        arg.to_owned()
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(Fatal("no token given".into()));
    }
    let scheme = token.split_once(' ').map(|(scheme, _)| scheme);
    if scheme.is_some_and(|s| s.eq_ignore_ascii_case("bearer") || s.eq_ignore_ascii_case("dpop")) {
        return Err(Fatal(
            "give the token without `Bearer ` (or `DPoP `)".into(),
        ));
    }
    Ok(token.to_owned())
}

// ---------------------------------------------------------------------------
// The checks, in the guard's order (src/verify/jwt.rs, then the binding step
// of `TokenGuard::verify`). Only the labels live here; the library decides.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Size,
    Segments,
    Header,
    Alg,
    Crit,
    Typ,
    Key,
    Signature,
    Claims,
    Iss,
    Aud,
    Exp,
    Nbf,
    Iat,
    Lifetime,
    Scopes,
    Binding,
    /// A refusal this doctor does not know (a newer library).
    Other,
}

const STEPS: [Step; 17] = [
    Step::Size,
    Step::Segments,
    Step::Header,
    Step::Alg,
    Step::Crit,
    Step::Typ,
    Step::Key,
    Step::Signature,
    Step::Claims,
    Step::Iss,
    Step::Aud,
    Step::Exp,
    Step::Nbf,
    Step::Iat,
    Step::Lifetime,
    Step::Scopes,
    Step::Binding,
];

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Segments => "segments",
            Self::Header => "header",
            Self::Alg => "alg",
            Self::Crit => "crit",
            Self::Typ => "typ",
            Self::Key => "key",
            Self::Signature => "signature",
            Self::Claims => "claims",
            Self::Iss => "iss",
            Self::Aud => "aud",
            Self::Exp => "exp",
            Self::Nbf => "nbf",
            Self::Iat => "iat",
            Self::Lifetime => "lifetime",
            Self::Scopes => "scopes",
            Self::Binding => "binding",
            Self::Other => "other",
        }
    }
}

// ---------------------------------------------------------------------------
// The token, decoded for display (and for naming the step a refusal belongs to).
// ---------------------------------------------------------------------------

enum Decoded {
    Absent,
    NotBase64,
    NotJson(String),
    Json(Value),
}

impl Decoded {
    fn of(segment: Option<&str>) -> Self {
        let Some(segment) = segment else {
            return Self::Absent;
        };
        match URL_SAFE_NO_PAD.decode(segment) {
            Err(_) => Self::NotBase64,
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Self::Json(v),
                Err(e) => Self::NotJson(e.to_string()),
            },
        }
    }

    fn member(&self, name: &str) -> Option<&Value> {
        match self {
            Self::Json(Value::Object(map)) => map.get(name),
            _ => None,
        }
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.member(name).and_then(Value::as_str)
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.member(name).and_then(Value::as_i64)
    }
}

struct View<'t> {
    len: usize,
    segments: Vec<&'t str>,
    header: Decoded,
    claims: Decoded,
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<'t> View<'t> {
    fn new(token: &'t str) -> Self {
        let segments: Vec<&str> = token.split('.').collect();
        let n = segments.len();
        let header = if n >= 2 {
            Decoded::of(segments.first().copied())
        } else {
            Decoded::Absent
        };
        let claims = if n == 2 || n == 3 {
            Decoded::of(segments.get(1).copied())
        } else {
            Decoded::Absent
        };
        Self {
            len: token.len(),
            segments,
            header,
            claims,
        }
    }

    fn signature(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [_, _, s] => Some(s),
            _ => None,
        }
    }

    fn shape_ok(&self) -> bool {
        matches!(self.segments.as_slice(), [h, p, s]
            if !h.is_empty() && !p.is_empty() && is_b64url(h) && is_b64url(p) && is_b64url(s))
    }

    /// The header's `alg`, as the library names algorithms (RFC 9864's
    /// `Ed25519` is EdDSA there).
    fn alg(&self) -> Option<Algorithm> {
        match self.header.str("alg")? {
            "Ed25519" => Some(Algorithm::EdDSA),
            other => Algorithm::from_str(other).ok(),
        }
    }

    /// Which step a `Malformed` refusal comes from: the label only.
    fn malformed_step(&self) -> Step {
        if !self.shape_ok() {
            return Step::Segments;
        }
        let string_or_absent = |name| {
            self.header
                .member(name)
                .is_none_or(|v: &Value| v.is_string())
        };
        let readable_header = matches!(&self.header, Decoded::Json(Value::Object(_)))
            && self.header.str("alg").is_some()
            && string_or_absent("typ")
            && string_or_absent("kid");
        if !readable_header {
            return Step::Header;
        }
        if self
            .signature()
            .is_some_and(|s| URL_SAFE_NO_PAD.decode(s).is_err())
        {
            return Step::Signature;
        }
        Step::Claims
    }

    fn lifetime(&self) -> Option<i64> {
        let exp = self.claims.int("exp")?;
        let start = self.claims.int("iat").or_else(|| self.claims.int("nbf"))?;
        Some(exp.saturating_sub(start))
    }
}

fn quoted(v: Option<&str>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "absent".into(),
    }
}

// ---------------------------------------------------------------------------
// The guard's settings, and the relaxations the doctor tries.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    issuer: String,
    audiences: Vec<String>,
    skip_audience: bool,
    jwks: Option<String>,
    algorithms: Option<Vec<Algorithm>>,
    rsa_algorithm: Option<Algorithm>,
    allow_untyped: bool,
    leeway: Option<Duration>,
    max_lifetime: Option<MaxLifetime>,
    max_token_size: Option<usize>,
}

impl Settings {
    fn from_args(args: &Args) -> Self {
        Self {
            issuer: args.issuer.clone(),
            audiences: args.audience.clone(),
            skip_audience: false,
            jwks: args.jwks.clone(),
            algorithms: (!args.algorithms.is_empty()).then(|| args.algorithms.clone()),
            rsa_algorithm: None,
            allow_untyped: args.allow_untyped,
            leeway: args.leeway.map(Duration::from_secs),
            max_lifetime: args.max_lifetime,
            max_token_size: None,
        }
    }

    fn allowed(&self) -> Vec<Algorithm> {
        self.algorithms
            .clone()
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.to_vec())
    }

    fn builder(&self) -> TokenGuardBuilder {
        let mut b = TokenGuard::builder().issuer(self.issuer.clone());
        for aud in &self.audiences {
            b = b.audience(aud.clone());
        }
        if self.skip_audience {
            b = b.insecure_skip_audience_check();
        }
        if let Some(url) = &self.jwks {
            b = b.jwks_url(url.clone());
        }
        if let Some(algs) = &self.algorithms {
            b = b.algorithms(algs.iter().copied());
        }
        if let Some(alg) = self.rsa_algorithm {
            b = b.rsa_algorithm(alg);
        }
        if self.allow_untyped {
            b = b.allow_untyped_tokens();
        }
        if let Some(leeway) = self.leeway {
            b = b.leeway(leeway);
        }
        match self.max_lifetime {
            Some(MaxLifetime::Secs(s)) => b = b.max_lifetime(Some(Duration::from_secs(s))),
            Some(MaxLifetime::Unlimited) => b = b.max_lifetime(None),
            None => {}
        }
        if let Some(bytes) = self.max_token_size {
            b = b.max_token_size(bytes);
        }
        b
    }

    fn describe(&self) -> String {
        let mut out = format!("issuer {}", self.issuer);
        for aud in &self.audiences {
            let _ = write!(out, ", audience {aud}");
        }
        match &self.jwks {
            Some(url) => {
                let _ = write!(out, ", keys from {url}");
            }
            None => out.push_str(", keys through discovery"),
        }
        if let Some(algs) = &self.algorithms {
            let _ = write!(out, ", algorithms {}", alg_list(algs));
        }
        if self.allow_untyped {
            out.push_str(", untyped tokens allowed");
        }
        if let Some(l) = self.leeway {
            let _ = write!(out, ", leeway {} s", l.as_secs());
        }
        match self.max_lifetime {
            Some(MaxLifetime::Secs(s)) => {
                let _ = write!(out, ", max lifetime {s} s");
            }
            Some(MaxLifetime::Unlimited) => out.push_str(", no max lifetime"),
            None => {}
        }
        out
    }
}

fn alg_list(algs: &[Algorithm]) -> String {
    let names: Vec<String> = algs.iter().map(|a| format!("Algorithm::{a:?}")).collect();
    format!("[{}]", names.join(", "))
}

/// One builder setting that relaxes one check.
#[derive(Debug, Clone)]
enum Relaxation {
    MaxTokenSize(usize),
    AddAlgorithm(Algorithm),
    RsaAlgorithm(Algorithm),
    AllowUntyped,
    /// Trust the token's `iss`, with the configured issuer's keys (the
    /// signature has been verified with them before `iss` is looked at).
    TrustIssuer {
        iss: String,
        jwks: String,
    },
    SkipAudience,
    MaxLeeway,
    NoMaxLifetime,
}

impl Relaxation {
    fn apply(&self, s: &Settings) -> Settings {
        let mut s = s.clone();
        match self {
            Self::MaxTokenSize(n) => s.max_token_size = Some(*n),
            Self::AddAlgorithm(alg) => {
                let mut algs = s.allowed();
                if !algs.contains(alg) {
                    algs.push(*alg);
                }
                s.algorithms = Some(algs);
            }
            Self::RsaAlgorithm(alg) => s.rsa_algorithm = Some(*alg),
            Self::AllowUntyped => s.allow_untyped = true,
            Self::TrustIssuer { iss, jwks } => {
                s.issuer = iss.clone();
                s.jwks = Some(jwks.clone());
            }
            Self::SkipAudience => s.skip_audience = true,
            Self::MaxLeeway => s.leeway = Some(MAX_LEEWAY),
            Self::NoMaxLifetime => s.max_lifetime = Some(MaxLifetime::Unlimited),
        }
        s
    }

    /// The setting to name, against the settings before it was applied.
    fn setting(&self, view: &View<'_>, before: &Settings) -> String {
        match self {
            Self::MaxTokenSize(n) => format!("TokenGuardBuilder::max_token_size({n})"),
            Self::AddAlgorithm(alg) => {
                let mut algs = before.allowed();
                algs.push(*alg);
                format!("TokenGuardBuilder::algorithms({})", alg_list(&algs))
            }
            Self::RsaAlgorithm(alg) => {
                format!("TokenGuardBuilder::rsa_algorithm(Algorithm::{alg:?})")
            }
            Self::AllowUntyped => "TokenGuardBuilder::allow_untyped_tokens()".into(),
            Self::TrustIssuer { iss, .. } => format!(
                "TokenGuardBuilder::issuer({iss:?}) if that issuer is trusted (the token's signature verified with the keys of {:?}); TokenGuard::multi_issuer(..) to trust both",
                before.issuer
            ),
            Self::SkipAudience => {
                let auds: Vec<String> = match view.claims.member("aud") {
                    Some(Value::String(a)) => vec![format!("TokenGuardBuilder::audience({a:?})")],
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|a| format!("TokenGuardBuilder::audience({a:?})"))
                        .collect(),
                    _ => Vec::new(),
                };
                if auds.is_empty() {
                    "TokenGuardBuilder::insecure_skip_audience_check()".into()
                } else {
                    format!(
                        "{} (the token's audience), or TokenGuardBuilder::insecure_skip_audience_check()",
                        auds.join(" or ")
                    )
                }
            }
            Self::MaxLeeway => format!(
                "TokenGuardBuilder::leeway(Duration::from_secs({})) (MAX_LEEWAY, the largest; better: fix the clocks)",
                MAX_LEEWAY.as_secs()
            ),
            Self::NoMaxLifetime => match view.lifetime() {
                Some(secs) if secs > 0 => format!(
                    "TokenGuardBuilder::max_lifetime(Some(Duration::from_secs({secs}))) or max_lifetime(None)"
                ),
                _ => "TokenGuardBuilder::max_lifetime(Some(..)) with a longer maximum, or max_lifetime(None)".into(),
            },
        }
    }
}

fn token_reason(e: &AuthError) -> Option<InvalidToken> {
    match e.kind() {
        AuthErrorKind::InvalidToken(t) => Some(*t),
        _ => None,
    }
}

/// The step a refusal belongs to, in the order of `src/verify/jwt.rs`.
fn step_of(e: &AuthError, view: &View<'_>, s: &Settings) -> Step {
    let Some(reason) = token_reason(e) else {
        return Step::Other;
    };
    match reason {
        InvalidToken::TooLarge => Step::Size,
        InvalidToken::Malformed => view.malformed_step(),
        // In the allowlist, yet refused: the key with that `kid` is pinned to
        // another algorithm.
        InvalidToken::UnsupportedAlgorithm => match view.alg() {
            Some(alg) if s.allowed().contains(&alg) => Step::Key,
            _ => Step::Alg,
        },
        InvalidToken::UnsupportedCritical => Step::Crit,
        InvalidToken::WrongType => Step::Typ,
        InvalidToken::UnknownKey => Step::Key,
        // An empty signature is refused when the token is split.
        InvalidToken::BadSignature if view.signature().is_some_and(str::is_empty) => Step::Segments,
        InvalidToken::BadSignature => Step::Signature,
        InvalidToken::InvalidClaim("claims") => Step::Claims,
        InvalidToken::InvalidClaim("cnf") => Step::Binding,
        InvalidToken::InvalidClaim(_) => Step::Scopes,
        InvalidToken::MissingClaim("iss") | InvalidToken::WrongIssuer => Step::Iss,
        InvalidToken::MissingClaim("aud") | InvalidToken::WrongAudience => Step::Aud,
        InvalidToken::MissingClaim(_) | InvalidToken::Expired => Step::Exp,
        InvalidToken::NotYetValid => Step::Nbf,
        InvalidToken::IssuedInTheFuture => Step::Iat,
        InvalidToken::LifetimeTooLong => Step::Lifetime,
        InvalidToken::SenderConstrained
        | InvalidToken::NotDpopBound
        | InvalidToken::DpopKeyMismatch
        | InvalidToken::DpopRequired
        | InvalidToken::CertificateMismatch
        | InvalidToken::CertificateRequired => Step::Binding,
        _ => Step::Other,
    }
}

/// The settings that may relax this refusal, to be tried in order.
fn candidates(
    e: &AuthError,
    step: Step,
    view: &View<'_>,
    discovered_jwks: Option<&str>,
    s: &Settings,
) -> Vec<Relaxation> {
    let Some(reason) = token_reason(e) else {
        return Vec::new();
    };
    match reason {
        InvalidToken::TooLarge => vec![Relaxation::MaxTokenSize(view.len)],
        InvalidToken::UnsupportedAlgorithm => match (view.alg(), step) {
            (Some(alg), Step::Alg) if !is_hmac(alg) => vec![Relaxation::AddAlgorithm(alg)],
            (Some(alg), Step::Key) if is_rsa(alg) => vec![Relaxation::RsaAlgorithm(alg)],
            _ => Vec::new(),
        },
        InvalidToken::WrongType => vec![Relaxation::AllowUntyped],
        InvalidToken::WrongIssuer => {
            let jwks = s.jwks.as_deref().or(discovered_jwks);
            match (view.claims.str("iss"), jwks) {
                (Some(iss), Some(jwks)) => vec![Relaxation::TrustIssuer {
                    iss: iss.to_owned(),
                    jwks: jwks.to_owned(),
                }],
                _ => Vec::new(),
            }
        }
        InvalidToken::WrongAudience | InvalidToken::MissingClaim("aud") => {
            vec![Relaxation::SkipAudience]
        }
        InvalidToken::Expired | InvalidToken::NotYetValid | InvalidToken::IssuedInTheFuture => {
            vec![Relaxation::MaxLeeway]
        }
        InvalidToken::LifetimeTooLong => vec![Relaxation::NoMaxLifetime],
        _ => Vec::new(),
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

/// Why a refusal that no tried setting relaxed stays a refusal.
fn why_final(e: &AuthError, step: Step, view: &View<'_>, keys: &[KeySetStatus]) -> String {
    let none = "no setting relaxes this";
    let Some(reason) = token_reason(e) else {
        return none.into();
    };
    match reason {
        InvalidToken::Malformed => format!(
            "{none}: not a JWT the guard can read (opaque tokens need TokenGuardBuilder::introspection(..))"
        ),
        InvalidToken::TooLarge => {
            format!("{none}: the claims are larger than the guard ever accepts")
        }
        InvalidToken::BadSignature if step == Step::Segments => {
            format!("{none}: an unsigned token is never accepted")
        }
        InvalidToken::BadSignature => {
            format!("{none}: the token was altered, or signed by another key under this kid")
        }
        InvalidToken::UnsupportedAlgorithm => match (view.alg(), step) {
            (Some(alg), Step::Alg) if is_hmac(alg) => format!(
                "{none} here: HMAC tokens need the shared secret, TokenGuardBuilder::hmac_secret(Algorithm::{alg:?}, ..) with static keys, which the doctor cannot check"
            ),
            (_, Step::Key) => format!(
                "{none}: the issuer's key with this kid is pinned to another algorithm (RFC 8725 §3.1)"
            ),
            _ => format!(
                "{none}: {} is never accepted",
                quoted(view.header.str("alg"))
            ),
        },
        InvalidToken::UnsupportedCritical => {
            format!("{none}: no JWS extension (`crit`) is understood")
        }
        InvalidToken::WrongType => format!(
            "{none}: typ {} names another kind of token",
            quoted(view.header.str("typ"))
        ),
        InvalidToken::UnknownKey => {
            let kids: Vec<&str> = keys
                .iter()
                .flat_map(|k| k.kids.iter().map(String::as_str))
                .collect();
            let kids = kids.join(", ");
            match view.header.str("kid") {
                Some(_) => format!(
                    "{none}: the issuer publishes no key for it (kids: {kids}); a retired key, or another issuer's token"
                ),
                None => format!(
                    "{none}: the token names no kid, and not exactly one of the issuer's keys (kids: {kids}) fits its alg"
                ),
            }
        }
        InvalidToken::MissingClaim("iss") => format!(
            "{none}: insecure_skip_issuer_check() needs static keys, and the builder refuses it with remote keys"
        ),
        InvalidToken::WrongIssuer => {
            format!("{none} while keeping the configured issuer")
        }
        InvalidToken::Expired => format!(
            "{none}: even the largest leeway (MAX_LEEWAY, {} s) does not cover it; get a new token",
            MAX_LEEWAY.as_secs()
        ),
        InvalidToken::NotYetValid | InvalidToken::IssuedInTheFuture => format!(
            "{none}: beyond the largest leeway (MAX_LEEWAY, {} s); check the clocks",
            MAX_LEEWAY.as_secs()
        ),
        InvalidToken::SenderConstrained => {
            let cnf = view.claims.member("cnf").and_then(Value::as_object);
            let has = |m: &str| cnf.is_some_and(|c| c.contains_key(m));
            let mut needs = Vec::new();
            if has("jkt") {
                needs.push("cnf.jkt: needs a DPoP proof (TokenGuardBuilder::dpop(..), Authorization: DPoP)");
            }
            if has("x5t#S256") {
                needs.push(
                    "cnf.x5t#S256: needs the client certificate (TokenGuardBuilder::mtls(..))",
                );
            }
            if ["jwk", "jwe", "jku", "kid"].iter().any(|m| has(m)) {
                needs.push("cnf names a key (jwk, jwe, jku or kid) tokenguard never verifies");
            }
            if needs.is_empty() {
                needs.push("its cnf names no binding tokenguard verifies");
            }
            format!(
                "a sender-constrained token: {}; cannot be checked offline",
                needs.join("; ")
            )
        }
        _ => none.into(),
    }
}

// ---------------------------------------------------------------------------
// Verification through the library.
// ---------------------------------------------------------------------------

enum Attempt {
    Accepted(std::sync::Arc<AccessToken>),
    Refused(AuthError),
}

enum AttemptError {
    /// The builder refused the settings.
    Build(tokenguard::BuildError),
    /// Keys or discovery unavailable.
    Keys(String),
}

async fn attempt(s: &Settings, token: &str) -> Result<(Attempt, TokenGuard), AttemptError> {
    let guard = s.builder().build().map_err(AttemptError::Build)?;
    guard
        .warm_up()
        .await
        .map_err(|e| AttemptError::Keys(e.to_string()))?;
    let result = match guard.verify(token).await {
        Ok(t) => Attempt::Accepted(t),
        Err(e) => match e.kind() {
            AuthErrorKind::KeysUnavailable { .. } => {
                return Err(AttemptError::Keys(e.to_string()));
            }
            _ => Attempt::Refused(e),
        },
    };
    Ok((result, guard))
}

fn fatal(e: AttemptError) -> Fatal {
    match e {
        AttemptError::Build(e) => Fatal(format!("the guard's settings are refused: {e}")),
        AttemptError::Keys(why) => Fatal(format!("cannot check the token: {why}")),
    }
}

struct Relaxed {
    step: Step,
    reason: String,
    setting: String,
}

enum End {
    Accepted(std::sync::Arc<AccessToken>),
    Refused {
        step: Step,
        reason: String,
        why: String,
    },
}

async fn run(args: Args) -> Result<(String, bool), Fatal> {
    let token = read_token(&args.token)?;
    let view = View::new(&token);
    let configured = Settings::from_args(&args);

    let (first, guard) = attempt(&configured, &token).await.map_err(fatal)?;
    let keys = guard.key_status();
    // Where discovery found the keys: the relaxed issuer check keeps them.
    let discovered_jwks = keys
        .first()
        .map(|k| k.source.clone())
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"));

    let mut settings = configured.clone();
    let mut result = first;
    let mut relaxed: Vec<Relaxed> = Vec::new();
    // Each relaxation changes the settings, and none is applied twice.
    let end = loop {
        let err = match result {
            Attempt::Accepted(t) => break End::Accepted(t),
            Attempt::Refused(e) => e,
        };
        let step = step_of(&err, &view, &settings);
        let mut next = None;
        for relaxation in candidates(&err, step, &view, discovered_jwks.as_deref(), &settings) {
            let trial = relaxation.apply(&settings);
            if trial == settings {
                continue;
            }
            let outcome = match attempt(&trial, &token).await {
                Ok((outcome, _)) => outcome,
                Err(AttemptError::Build(_)) => continue,
                Err(e) => return Err(fatal(e)),
            };
            // It helped if the token now passes, or fails elsewhere.
            let helped = match &outcome {
                Attempt::Accepted(_) => true,
                Attempt::Refused(e) => e.kind() != err.kind() || step_of(e, &view, &trial) != step,
            };
            if helped {
                next = Some((relaxation, trial, outcome));
                break;
            }
        }
        match next {
            Some((relaxation, trial, outcome)) if relaxed.len() < STEPS.len() => {
                relaxed.push(Relaxed {
                    step,
                    reason: err.to_string(),
                    setting: relaxation.setting(&view, &settings),
                });
                settings = trial;
                result = outcome;
            }
            _ => {
                break End::Refused {
                    step,
                    why: why_final(&err, step, &view, &keys),
                    reason: err.to_string(),
                };
            }
        }
    };

    let accepted = relaxed.is_empty() && matches!(end, End::Accepted(_));
    Ok((
        report(&view, &configured, &keys, &relaxed, &end, &settings),
        accepted,
    ))
}

// ---------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------

fn pretty(out: &mut String, title: &str, d: &Decoded) {
    match d {
        Decoded::Absent => {
            let _ = writeln!(out, "{title}: none");
        }
        Decoded::NotBase64 => {
            let _ = writeln!(out, "{title}: not valid base64url");
        }
        Decoded::NotJson(e) => {
            let _ = writeln!(out, "{title}: not JSON ({e})");
        }
        Decoded::Json(v) => {
            let _ = writeln!(out, "{title}:");
            let text = serde_json::to_string_pretty(v).unwrap_or_else(|e| e.to_string());
            for line in text.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
}

/// What a passed check saw.
fn passed(step: Step, view: &View<'_>, s: &Settings) -> String {
    let h = &view.header;
    let c = &view.claims;
    let absent = |name: &str| {
        if c.member(name).is_none() {
            "absent, not checked".to_owned()
        } else {
            format!(
                "{name} {}",
                c.int(name).map_or("?".into(), |v| v.to_string())
            )
        }
    };
    match step {
        Step::Size => format!("{} bytes", view.len),
        Step::Segments => "three base64url segments".into(),
        Step::Header => "a JSON object".into(),
        Step::Alg => format!("{} is allowed", quoted(h.str("alg"))),
        Step::Crit => "no crit".into(),
        Step::Typ => format!("typ {}", quoted(h.str("typ"))),
        Step::Key => format!(
            "kid {} ({})",
            quoted(h.str("kid")),
            h.str("alg").unwrap_or("?")
        ),
        Step::Signature => format!("verified ({})", h.str("alg").unwrap_or("?")),
        Step::Claims => "a JSON object of the expected types".into(),
        Step::Iss => format!("iss {}", quoted(c.str("iss"))),
        Step::Aud => match c.member("aud") {
            Some(aud) => format!("aud {aud}"),
            None => "aud absent".into(),
        },
        Step::Exp => absent("exp"),
        Step::Nbf => absent("nbf"),
        Step::Iat => absent("iat"),
        Step::Lifetime => match (s.max_lifetime, view.lifetime()) {
            (Some(MaxLifetime::Unlimited), _) => "not checked (max_lifetime(None))".into(),
            (_, Some(secs)) => format!("{secs} s"),
            _ => "within the maximum".into(),
        },
        Step::Scopes => format!("scope {}", quoted(c.str("scope"))),
        Step::Binding => "no cnf: a bearer token".into(),
        Step::Other => String::new(),
    }
}

/// The token's value behind a failed check, when it has one.
fn failed_detail(step: Step, view: &View<'_>) -> Option<String> {
    let h = &view.header;
    let c = &view.claims;
    let int = |name: &str| c.int(name).map(|v| format!("{name} {v}"));
    match step {
        Step::Size => Some(format!("{} bytes", view.len)),
        Step::Segments => Some(match (view.signature(), view.segments.len()) {
            (Some(""), _) => "the signature segment is empty".into(),
            (_, 1) => "1 segment".into(),
            (_, n) => format!("{n} segments"),
        }),
        Step::Header => Some(
            match &view.header {
                Decoded::Absent => "no header",
                Decoded::NotBase64 => "not valid base64url",
                Decoded::NotJson(_) => "not JSON",
                Decoded::Json(Value::Object(_)) => "not a JOSE header the guard reads",
                Decoded::Json(_) => "not a JSON object",
            }
            .into(),
        ),
        Step::Alg => Some(format!("alg {}", quoted(h.str("alg")))),
        Step::Typ => Some(format!("typ {}", quoted(h.str("typ")))),
        Step::Key => Some(format!(
            "kid {}, alg {}",
            quoted(h.str("kid")),
            h.str("alg").unwrap_or("?")
        )),
        Step::Iss => Some(format!("iss {}", quoted(c.str("iss")))),
        Step::Aud => Some(match c.member("aud") {
            Some(aud) => format!("aud {aud}"),
            None => "aud absent".into(),
        }),
        Step::Exp => int("exp").or_else(|| Some("exp absent".into())),
        Step::Nbf => int("nbf"),
        Step::Iat => int("iat"),
        Step::Lifetime => view.lifetime().map(|s| format!("{s} s")),
        _ => None,
    }
}

fn label(step: Step) -> String {
    format!("{:<11}", format!("{}:", step.name()))
}

fn report(
    view: &View<'_>,
    configured: &Settings,
    keys: &[KeySetStatus],
    relaxed: &[Relaxed],
    end: &End,
    last: &Settings,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Token: {} bytes, {} segment{} (the signature is never shown)",
        view.len,
        view.segments.len(),
        if view.segments.len() == 1 { "" } else { "s" }
    );
    out.push('\n');
    pretty(&mut out, "JOSE header", &view.header);
    pretty(&mut out, "Claims", &view.claims);
    let now = NumericDate::now().as_secs();
    let times: Vec<(&str, i64)> = ["iat", "nbf", "exp"]
        .iter()
        .filter_map(|n| view.claims.int(n).map(|v| (*n, v)))
        .collect();
    if !times.is_empty() {
        let _ = writeln!(out, "Times, against this machine's clock:");
        for (name, at) in times {
            let delta = at.saturating_sub(now);
            let when = match delta {
                0 => "now".to_owned(),
                d if d > 0 => format!("in {d} s"),
                d => format!("{} s ago", d.unsigned_abs()),
            };
            let _ = writeln!(out, "  {name} {at} ({when})");
        }
    }
    out.push('\n');
    let _ = writeln!(out, "Guard: {}", configured.describe());
    for k in keys {
        let _ = writeln!(
            out,
            "Keys: {} ({} keys: {})",
            k.source,
            k.keys_loaded,
            k.kids.join(", ")
        );
    }
    out.push('\n');
    let _ = writeln!(out, "Checks, in the guard's order:");
    let stopped = match end {
        End::Refused { step, .. } => Some(*step),
        End::Accepted(_) => None,
    };
    for step in STEPS {
        let name = label(step);
        if let Some(r) = relaxed.iter().find(|r| r.step == step) {
            let detail = failed_detail(step, view)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  [FAIL] {name}{}{detail} -- relax with {}",
                r.reason, r.setting
            );
            continue;
        }
        match (end, stopped) {
            (End::Refused { reason, why, .. }, Some(at)) if at == step => {
                let detail = failed_detail(step, view)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  [FAIL] {name}{reason}{detail} -- {why}");
            }
            (_, Some(Step::Other)) => {
                let _ = writeln!(out, "  [--]   {name}not determined");
            }
            (_, Some(at)) if step > at => {
                let _ = writeln!(out, "  [--]   {name}not reached");
            }
            _ => {
                let _ = writeln!(out, "  [ok]   {name}{}", passed(step, view, last));
            }
        }
    }
    if let End::Refused {
        step: Step::Other,
        reason,
        why,
    } = end
    {
        let _ = writeln!(out, "  [FAIL] {}{reason} -- {why}", label(Step::Other));
    }
    out.push('\n');
    let settings: Vec<&str> = relaxed.iter().map(|r| r.setting.as_str()).collect();
    match end {
        End::Accepted(t) if relaxed.is_empty() => {
            let _ = writeln!(
                out,
                "Result: ACCEPTED (sub {}, scopes {:?})",
                quoted(t.subject()),
                t.scopes().iter().collect::<Vec<_>>().join(" ")
            );
        }
        End::Accepted(_) => {
            let _ = writeln!(
                out,
                "Result: REFUSED; accepted once relaxed by {}",
                relaxed
                    .iter()
                    .map(|r| r.step.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for s in settings {
                let _ = writeln!(out, "  - {s}");
            }
        }
        End::Refused { step, reason, .. } => {
            let _ = writeln!(out, "Result: REFUSED at {}: {reason}", step.name());
            if !settings.is_empty() {
                let _ = writeln!(out, "  (after relaxing: {})", settings.join("; "));
            }
        }
    }
    out
}
