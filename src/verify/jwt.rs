//! JWT access token verification (RFC 9068 profile, RFC 8725 practices).
//!
//! Order of checks, cheapest first, so that junk is refused before any
//! cryptography: size → shape (three base64url parts) → header (`alg` in the
//! allowlist, `crit`, `typ`) → key (by `kid`, pinned to its algorithm) →
//! signature (through `jsonwebtoken`'s crypto provider) → claims (`iss`,
//! `aud`, `exp`, `nbf`, `iat`, lifetime) → scopes. `tokenguard-doctor` lists
//! the checks in this order (`STEPS` in its source): keep the two in step.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::cache::TokenCache;
use super::{Verification, Verifier, VerifyResult};
use crate::claims::ScopeSource;
use crate::claims::{AccessToken, AccessTokenClaims, NumericDate};
use crate::error::{AuthError, InvalidToken};
use crate::keys::remote::{RefreshError, RemoteKeys};
use crate::keys::{KeySet, NoKey, VerifyingKey, header_alg};
use crate::syntax::is_b64url;

/// The verification rules.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) issuer: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) leeway: i64,
    pub(crate) require_typ: bool,
    pub(crate) max_lifetime: Option<i64>,
    pub(crate) max_token_len: usize,
    pub(crate) scope_source: ScopeSource,
    /// Scopes that imply others, when configured.
    pub(crate) hierarchy: Option<Arc<crate::scope::ScopeHierarchy>>,
    /// The last JOSE header that passed, parsed.
    pub(crate) header_memo: HeaderMemo,
}

/// The last JOSE header segment that passed [`Policy::parse`], with what it
/// says. An issuer's tokens share a few headers (one per key), so the
/// base64url decoding and JSON parsing of the header are skipped for most
/// tokens; the memo is the exact segment, so nothing else can match it.
#[derive(Default)]
pub(crate) struct HeaderMemo(arc_swap::ArcSwapOption<MemoEntry>);

struct MemoEntry {
    segment: Box<str>,
    alg: Algorithm,
    kid: Option<Arc<str>>,
}

/// Headers longer than this (base64url) are not memorised.
const MAX_MEMO_SEGMENT: usize = 512;

impl HeaderMemo {
    /// What `segment` says, if it is the memorised one.
    fn get(&self, segment: &str) -> Option<(Algorithm, Option<Arc<str>>)> {
        let guard = self.0.load();
        let entry = guard.as_deref()?;
        (*entry.segment == *segment).then(|| (entry.alg, entry.kid.clone()))
    }

    fn put(&self, segment: &str, alg: Algorithm, kid: Option<Arc<str>>) {
        if segment.len() <= MAX_MEMO_SEGMENT {
            self.0.store(Some(Arc::new(MemoEntry {
                segment: Box::from(segment),
                alg,
                kid,
            })));
        }
    }
}

impl Clone for HeaderMemo {
    /// An empty memo: a copy of the policy learns its own headers.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for HeaderMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderMemo")
    }
}

impl Policy {
    /// The scopes `claims` grant: the scope source, then the hierarchy.
    /// `Err(claim)` for a claim of the wrong type.
    pub(crate) fn scopes(
        &self,
        claims: &AccessTokenClaims,
    ) -> Result<crate::scope::Scopes, &'static str> {
        let scopes = self.scope_source.read(claims)?;
        Ok(match &self.hierarchy {
            Some(h) => h.expand(&scopes),
            None => scopes,
        })
    }
}

/// Which claims must be present for [`Policy::check_claims`] (`exp` always is).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Required {
    pub(crate) iss: bool,
    pub(crate) aud: bool,
}

impl Required {
    /// Everything: the rule for JWTs.
    pub(crate) const ALL: Self = Self {
        iss: true,
        aud: true,
    };
}

/// Where the keys come from.
#[derive(Clone)]
pub(crate) enum KeySource {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

pub(crate) struct JwtVerifier {
    pub(crate) policy: Policy,
    pub(crate) keys: KeySource,
    pub(crate) cache: Option<TokenCache>,
}

/// The JOSE header members this crate reads, of access tokens and of
/// signed introspection answers.
#[derive(Deserialize)]
pub(crate) struct Header<'a> {
    #[serde(borrow)]
    pub(crate) alg: std::borrow::Cow<'a, str>,
    // `typ` (RFC 7515 §4.1.9) and `kid` (§4.1.4), when present, are strings:
    // `null` is malformed, not absent.
    #[serde(default, deserialize_with = "present_string")]
    pub(crate) typ: Option<String>,
    #[serde(default, deserialize_with = "present_string")]
    pub(crate) kid: Option<String>,
    // Any `crit` member counts, whatever its value (`null` included).
    #[serde(default, deserialize_with = "present")]
    pub(crate) crit: bool,
}

impl<'a> Header<'a> {
    /// Reads a decoded JOSE header: a JSON object (serde would also fill the
    /// struct from an array), all of it valid UTF-8, even the members this
    /// crate does not read (RFC 7515 §5.2).
    pub(crate) fn parse(json: &'a [u8]) -> Option<Self> {
        let is_object = json.trim_ascii_start().first() == Some(&b'{');
        if !is_object || std::str::from_utf8(json).is_err() {
            return None;
        }
        serde_json::from_slice(json).ok()
    }
}

fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A token split and its header checked; not yet verified.
struct Parsed<'t> {
    alg: Algorithm,
    kid: Option<Arc<str>>,
    signing_input: &'t str,
    /// The claims, decoded.
    payload: Vec<u8>,
    /// Decoded onto the heap: a parsed token moves through several calls,
    /// and a buffer on the stack (1 KiB) would be copied each time.
    signature: Vec<u8>,
}

/// Room for the largest signature of an accepted key (RSA, 8192 bits).
const MAX_SIGNATURE_LEN: usize = 1024;

/// Decodes unpadded base64url into a buffer of exactly the decoded size, so
/// that the token keeps it without reallocating. `None` for bad base64url.
fn decode_exact(segment: &str) -> Option<Vec<u8>> {
    let len = match segment.len() % 4 {
        1 => return None,
        rest => segment.len() / 4 * 3 + rest.saturating_sub(1),
    };
    let mut out = vec![0; len];
    let written = URL_SAFE_NO_PAD.decode_slice(segment, &mut out).ok()?;
    out.truncate(written);
    Some(out)
}

fn invalid(reason: InvalidToken) -> AuthError {
    AuthError::invalid_token(reason)
}

/// Largest decoded JOSE header accepted.
const MAX_HEADER_LEN: usize = 2048;
/// Largest decoded claims set accepted, whatever the token size limit.
const MAX_CLAIMS_LEN: usize = 64 * 1024;

impl Policy {
    fn parse<'t>(&self, token: &'t str) -> Result<Parsed<'t>, AuthError> {
        if token.len() > self.max_token_len {
            return Err(invalid(InvalidToken::TooLarge));
        }
        let Some((signing_input, signature)) = token.rsplit_once('.') else {
            return Err(invalid(InvalidToken::Malformed));
        };
        let Some((header, payload)) = signing_input.split_once('.') else {
            return Err(invalid(InvalidToken::Malformed));
        };
        if header.is_empty() || payload.is_empty() || !is_b64url(header) {
            return Err(invalid(InvalidToken::Malformed));
        }
        // Refused before any decoding or cryptography.
        if payload.len() > MAX_CLAIMS_LEN * 4 / 3 + 4 {
            return Err(invalid(InvalidToken::TooLarge));
        }
        // Decoding checks the claims' syntax: one pass, not two.
        let payload = decode_exact(payload).ok_or_else(|| invalid(InvalidToken::Malformed))?;
        // No key makes a signature this long.
        if signature.len() > (MAX_SIGNATURE_LEN * 4).div_ceil(3) {
            return Err(invalid(if is_b64url(signature) {
                InvalidToken::BadSignature
            } else {
                InvalidToken::Malformed
            }));
        }
        // Decoding checks the signature's syntax: one pass, not two.
        let signature = decode_exact(signature).ok_or_else(|| invalid(InvalidToken::Malformed))?;
        // An unsigned token (`alg: none` or a stripped signature).
        if signature.is_empty() {
            return Err(invalid(InvalidToken::BadSignature));
        }
        if header.len() > MAX_HEADER_LEN * 4 / 3 + 4 {
            return Err(invalid(InvalidToken::Malformed));
        }
        let (alg, kid) = match self.header_memo.get(header) {
            Some(known) => known,
            None => self.parse_header(header)?,
        };
        Ok(Parsed {
            alg,
            kid,
            signing_input,
            payload,
            signature,
        })
    }

    /// Decodes and checks a JOSE header segment: its algorithm and `kid`.
    /// A header that passes is memorised.
    fn parse_header(&self, header: &str) -> Result<(Algorithm, Option<Arc<str>>), AuthError> {
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| invalid(InvalidToken::Malformed))?;
        let h = Header::parse(&header_json).ok_or_else(|| invalid(InvalidToken::Malformed))?;
        let alg = header_alg(&h.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| invalid(InvalidToken::UnsupportedAlgorithm))?;
        if h.crit {
            // No JWS extension is understood here: listed extensions make the
            // JWS invalid, an empty or malformed `crit` may be refused (RFC
            // 7515 §4.1.11); both are.
            return Err(invalid(InvalidToken::UnsupportedCritical));
        }
        check_typ(h.typ.as_deref(), self.require_typ)?;
        let kid: Option<Arc<str>> = h.kid.map(Arc::from);
        self.header_memo.put(header, alg, kid.clone());
        Ok((alg, kid))
    }

    /// Verifies the signature with `key`, then the claims.
    /// Takes the decoded claims out of `parsed`: called once per parse.
    fn finish(&self, parsed: &mut Parsed<'_>, key: &VerifyingKey) -> VerifyResult {
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(invalid(InvalidToken::BadSignature));
        }
        let payload = std::mem::take(&mut parsed.payload);
        let claims: AccessTokenClaims = serde_json::from_slice(&payload)
            .map_err(|_| invalid(InvalidToken::InvalidClaim("claims")))?;
        self.check_claims(&claims, NumericDate::now().as_secs(), Required::ALL)?;
        let scopes = self
            .scopes(&claims)
            .map_err(|claim| invalid(InvalidToken::InvalidClaim(claim)))?;
        Ok(Arc::new(AccessToken {
            claims: Arc::new(claims),
            scopes,
            payload: payload.into_boxed_slice(),
        }))
    }

    /// `iss`, `aud` and the time claims. `required` says whether a missing
    /// `iss` or `aud` is refused (a JWT must carry both; an introspection
    /// response may omit them, RFC 7662 §2.2).
    pub(crate) fn check_claims(
        &self,
        c: &AccessTokenClaims,
        now: i64,
        required: Required,
    ) -> Result<(), AuthError> {
        if let Some(expected) = &self.issuer {
            match &c.iss {
                None if required.iss => return Err(invalid(InvalidToken::MissingClaim("iss"))),
                None => {}
                Some(iss) if iss != expected => return Err(invalid(InvalidToken::WrongIssuer)),
                Some(_) => {}
            }
        }
        if !self.audiences.is_empty() {
            match &c.aud {
                None if required.aud => return Err(invalid(InvalidToken::MissingClaim("aud"))),
                None => {}
                Some(aud) if !self.audiences.iter().any(|a| aud.contains(a)) => {
                    return Err(invalid(InvalidToken::WrongAudience));
                }
                Some(_) => {}
            }
        }
        let exp = c
            .exp
            .ok_or_else(|| invalid(InvalidToken::MissingClaim("exp")))?
            .as_secs();
        // RFC 7519 §4.1.4: not accepted on or after `exp` (plus the leeway).
        if now >= exp.saturating_add(self.leeway) {
            return Err(invalid(InvalidToken::Expired));
        }
        if let Some(nbf) = c.nbf
            && nbf.as_secs() > now.saturating_add(self.leeway)
        {
            return Err(invalid(InvalidToken::NotYetValid));
        }
        if let Some(iat) = c.iat
            && iat.as_secs() > now.saturating_add(self.leeway)
        {
            return Err(invalid(InvalidToken::IssuedInTheFuture));
        }
        if let Some(max) = self.max_lifetime {
            // Lifetime from issuance; without `iat`, from `nbf`; without
            // either, what is left of it from now.
            let start = c.iat.or(c.nbf).map_or(now, NumericDate::as_secs);
            if exp.saturating_sub(start) > max {
                return Err(invalid(InvalidToken::LifetimeTooLong));
            }
        }
        Ok(())
    }
}

/// RFC 9068 §2.1 / RFC 8725 §3.11: access tokens are typed `at+jwt`. Media
/// type names compare case-insensitively, with or without `application/`.
fn check_typ(typ: Option<&str>, require: bool) -> Result<(), AuthError> {
    match typ {
        Some(t) if typ_is(t, "at+jwt") => Ok(()),
        // Untyped tokens, when allowed: no `typ`, or the generic `JWT`.
        None if !require => Ok(()),
        Some(t) if !require && typ_is(t, "jwt") => Ok(()),
        _ => Err(invalid(InvalidToken::WrongType)),
    }
}

/// Whether a JOSE `typ` names the media type `application/{name}`, with or
/// without `application/`, case-insensitively (RFC 7515 §4.1.9).
pub(crate) fn typ_is(typ: &str, name: &str) -> bool {
    // Compared as bytes: `typ` is request data, and a byte offset can fall
    // inside a multi-byte character.
    let t = typ.as_bytes();
    let subtype = match t.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"application/") => rest,
        _ => t,
    };
    subtype.eq_ignore_ascii_case(name.as_bytes())
}

impl JwtVerifier {
    fn with_keys(
        &self,
        token: &str,
        parsed: &mut Parsed<'_>,
        keys: &KeySet,
    ) -> Result<VerifyResult, NoKey> {
        let key = keys.select(parsed.kid.as_deref(), parsed.alg)?;
        let verified = self.policy.finish(parsed, key);
        if let (Ok(t), Some(cache)) = (&verified, &self.cache) {
            let claims = t.claims();
            let leeway = self.policy.leeway;
            if let Some(exp) = claims.exp {
                cache.insert(
                    token,
                    t,
                    NumericDate::now().as_secs(),
                    exp.as_secs().saturating_add(leeway),
                    claims.nbf.map(|n| n.as_secs().saturating_sub(leeway)),
                    key.fingerprint,
                );
            }
        }
        Ok(verified)
    }

    /// A cached verification of exactly this token, still valid now and
    /// made with a key that is still published.
    fn lookup(&self, token: &[u8]) -> Option<Arc<AccessToken>> {
        let cache = self.cache.as_ref()?;
        let now = NumericDate::now().as_secs();
        match &self.keys {
            KeySource::Static(_) => cache.get(token, now, |_| true),
            KeySource::Remote(remote) => cache.get(token, now, |fingerprint| {
                remote
                    .cached()
                    .is_some_and(|keys| keys.contains_fingerprint(fingerprint))
            }),
        }
    }
}

fn no_key(reason: NoKey) -> AuthError {
    match reason {
        NoKey::Unknown => invalid(InvalidToken::UnknownKey),
        NoKey::AlgorithmMismatch => invalid(InvalidToken::UnsupportedAlgorithm),
    }
}

// On the `Arc` so that a pending verification can own the verifier.
impl Verifier for Arc<JwtVerifier> {
    fn cached(&self, token: &[u8]) -> Option<Arc<AccessToken>> {
        self.lookup(token)
    }

    fn verify(&self, token: &str) -> Verification {
        match self.policy.parse(token) {
            Ok(parsed) => verify_parsed(self, token, parsed),
            Err(e) => Verification::Done(Err(e)),
        }
    }

    fn verify_request(
        &self,
        token: &str,
        syntax: &dyn Fn() -> Result<(), AuthError>,
    ) -> Verification {
        match self.policy.parse(token) {
            // Parsed: three base64url segments, so a token68 (one scan, not two).
            Ok(parsed) => verify_parsed(self, token, parsed),
            // A malformed request is refused as one (400), not as a bad token.
            Err(e) => Verification::Done(Err(syntax().err().unwrap_or(e))),
        }
    }
}

/// Verification after parsing: the keys, then the signature and the claims.
fn verify_parsed(this: &Arc<JwtVerifier>, token: &str, mut parsed: Parsed<'_>) -> Verification {
    let remote = match &this.keys {
        KeySource::Static(keys) => {
            return Verification::Done(
                this.with_keys(token, &mut parsed, keys)
                    .unwrap_or_else(|r| Err(no_key(r))),
            );
        }
        KeySource::Remote(remote) => remote,
    };
    if let Some(keys) = remote.cached() {
        match this.with_keys(token, &mut parsed, &keys) {
            Ok(done) => return Verification::Done(done),
            // A key pinned to another algorithm will not change with a refetch.
            Err(NoKey::AlgorithmMismatch) => {
                return Verification::Done(Err(no_key(NoKey::AlgorithmMismatch)));
            }
            Err(NoKey::Unknown) => {}
        }
    }
    // No keys yet, or an unknown `kid`: fetch (rate-limited), then retry once.
    let this = this.clone();
    let remote = remote.clone();
    let token = token.to_owned();
    Verification::Pending(Box::pin(async move {
        let keys = match remote.refresh().await {
            Ok(keys) => keys,
            // Cooling down or failed: the keys cached now (perhaps just
            // fetched for another request) decide.
            Err(e) => match remote.cached() {
                Some(keys) => keys,
                None => {
                    let wait = match e {
                        RefreshError::CoolingDown(wait) => wait,
                        RefreshError::Failed(e) => {
                            tracing::debug!(error = %e, "no keys for a token: fetch failed");
                            remote.next_attempt_in()
                        }
                    };
                    return Err(AuthError::keys_unavailable(wait));
                }
            },
        };
        let mut parsed = this.policy.parse(&token)?;
        this.with_keys(&token, &mut parsed, &keys)
            .unwrap_or_else(|r| Err(no_key(r)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_into_exactly_sized_buffers() {
        for n in 0..70 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let decoded = decode_exact(&URL_SAFE_NO_PAD.encode(&bytes)).unwrap();
            assert_eq!(decoded, bytes);
            assert_eq!(decoded.capacity(), n);
        }
        // Padding, a dangling character, standard-alphabet and trailing bits.
        for bad in ["eyJ9=", "eyJ9e", "a+b/", "ab-_x", "AB", "eyJ9\n"] {
            assert!(decode_exact(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn typ_rules() {
        assert!(check_typ(Some("at+jwt"), true).is_ok());
        assert!(check_typ(Some("application/at+jwt"), true).is_ok());
        assert!(check_typ(Some("AT+JWT"), true).is_ok());
        assert!(check_typ(Some("JWT"), true).is_err());
        assert!(check_typ(None, true).is_err());
        assert!(check_typ(Some("dpop+jwt"), true).is_err());
        assert!(check_typ(None, false).is_ok());
        assert!(check_typ(Some("JWT"), false).is_ok());
        assert!(check_typ(Some("application/jwt"), false).is_ok());
        assert!(check_typ(Some("dpop+jwt"), false).is_err());
        assert!(check_typ(Some("logout+jwt"), false).is_err());
        // A multi-byte character across the prefix boundary (byte 12).
        assert!(check_typ(Some("applicationé+jwt"), true).is_err());
        assert!(check_typ(Some("applicationét+jwt"), true).is_err());
        assert!(check_typ(Some("applicationé/jwt"), false).is_err());
        assert!(check_typ(Some("application/"), false).is_err());
    }

    fn policy() -> Policy {
        Policy {
            issuer: None,
            audiences: Vec::new(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway: 30,
            require_typ: true,
            max_lifetime: None,
            max_token_len: 8192,
            scope_source: ScopeSource::default(),
            hierarchy: None,
            header_memo: HeaderMemo::default(),
        }
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The memo answers only for the exact segment that passed; every other
    /// header is parsed and judged as if there were none.
    #[test]
    fn the_header_memo_remembers_only_what_passed() {
        let p = policy();
        let good = b64(r#"{"alg":"RS256","typ":"at+jwt","kid":"k1"}"#);
        let token = |h: &str| format!("{h}.e30.c2ln");
        let kid =
            |r: Result<Parsed<'_>, AuthError>| r.map(|p| (p.alg, p.kid.map(|k| k.to_string())));
        assert_eq!(
            kid(p.parse(&token(&good))),
            Ok((Algorithm::RS256, Some("k1".into())))
        );
        assert!(p.header_memo.get(&good).is_some());
        // From the memo, the same answer.
        assert_eq!(
            kid(p.parse(&token(&good))),
            Ok((Algorithm::RS256, Some("k1".into())))
        );
        // Refused headers are judged afresh and not remembered.
        for bad in [
            r#"{"alg":"RS256","typ":"at+jwt","kid":"k1","crit":["x"]}"#,
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"RS256","typ":"at+jwt","kid":null}"#,
        ] {
            let bad = b64(bad);
            assert!(p.parse(&token(&bad)).is_err(), "{bad}");
            assert!(p.header_memo.get(&bad).is_none());
            assert!(p.header_memo.get(&good).is_some());
        }
        // Another good header replaces the memo.
        let other = b64(r#"{"alg":"ES256","typ":"at+jwt"}"#);
        assert_eq!(kid(p.parse(&token(&other))), Ok((Algorithm::ES256, None)));
        assert!(p.header_memo.get(&good).is_none());
        // A copy of the policy starts empty.
        assert!(p.clone().header_memo.get(&other).is_none());
    }
}
