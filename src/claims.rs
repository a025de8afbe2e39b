//! Claims of a verified access token.
//!
//! [`AccessTokenClaims`] holds the claims of RFC 9068 §2.2 and keeps every
//! other claim in a JSON map. Any type of your own that implements
//! `DeserializeOwned` works too, through [`Claims<C>`](crate::Claims).
//!
//! ```
//! use tokenguard::AccessTokenClaims;
//!
//! let claims: AccessTokenClaims = serde_json::from_str(r#"{
//!     "iss": "https://id.example.com", "sub": "u1", "aud": ["a", "b"],
//!     "exp": 1700000300.5, "iat": 1700000000, "scope": "read", "tenant": "t9"
//! }"#).unwrap();
//! assert_eq!(claims.exp.unwrap().as_secs(), 1700000300);
//! assert!(claims.aud.as_ref().unwrap().contains("b"));
//! assert_eq!(claims.extra["tenant"], "t9");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scope::Scopes;

/// The largest NumericDate accepted: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// A JWT NumericDate (RFC 7519 §2): seconds since the Unix epoch.
///
/// Integers and floats are accepted (fractions are dropped); strings,
/// negative values and values past the year 9999 are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NumericDate(i64);

impl NumericDate {
    /// From seconds since the epoch, if in range.
    pub fn from_secs(secs: i64) -> Option<Self> {
        (0..=MAX_NUMERIC_DATE).contains(&secs).then_some(Self(secs))
    }

    /// Seconds since the epoch.
    pub fn as_secs(self) -> i64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0 as u64)
    }

    /// The current time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(secs.min(MAX_NUMERIC_DATE as u64) as i64)
    }
}

impl Serialize for NumericDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate (non-negative number of seconds)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(NumericDate::from_secs)
                    .ok_or_else(|| E::custom("NumericDate out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                NumericDate::from_secs(v).ok_or_else(|| E::custom("NumericDate out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v >= 0.0 && v <= MAX_NUMERIC_DATE as f64 {
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("NumericDate out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(Audiences);

/// One audience is kept without a list: it is the usual case, and this is
/// read for every token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Audiences {
    One(String),
    /// Two or more.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` holds `audience` (exact match).
    pub fn contains(&self, audience: &str) -> bool {
        self.as_slice().iter().any(|a| a == audience)
    }

    /// The audiences.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.as_slice().iter().map(String::as_str)
    }

    fn as_slice(&self) -> &[String] {
        match &self.0 {
            Audiences::One(one) => std::slice::from_ref(one),
            Audiences::Many(many) => many,
        }
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    // A visitor rather than `#[serde(untagged)]`, which buffers the value
    // before trying each shape: this runs on every verification.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a non-empty array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience(Audiences::One(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Audience, E> {
                Ok(Audience(Audiences::One(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let Some(first) = seq.next_element::<String>()? else {
                    return Err(de::Error::custom("empty audience"));
                };
                let Some(second) = seq.next_element::<String>()? else {
                    return Ok(Audience(Audiences::One(first)));
                };
                let mut all = vec![first, second];
                while let Some(a) = seq.next_element::<String>()? {
                    all.push(a);
                }
                Ok(Audience(Audiences::Many(all)))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<&str> for Audience {
    fn from(s: &str) -> Self {
        Audience(Audiences::One(s.to_owned()))
    }
}

/// The claims of an RFC 9068 JWT access token; other claims are kept in
/// [`extra`](Self::extra).
///
/// Fields are optional so that relaxed policies can accept tokens that lack
/// them; the guard's policy decides which are required (by default `iss`,
/// `aud` and `exp`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AccessTokenClaims {
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject: the resource owner, or the client for client-credentials tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience(s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<NumericDate>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<NumericDate>,
    /// Not before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<NumericDate>,
    /// Token identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The OAuth client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the user authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<NumericDate>,
    /// Authentication context class reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods references.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Confirmation (RFC 7800), e.g. the DPoP key thumbprint `jkt` or the
    /// certificate thumbprint `x5t#S256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Map<String, serde_json::Value>>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for AccessTokenClaims {
    // Hand-written so that a duplicated member is an error (RFC 7519 §4:
    // duplicate Claim Names must be rejected or the last one taken; we
    // reject) and so that unknown members go to `extra` without serde's slow
    // `flatten` buffering.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AccessTokenClaims;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut c = AccessTokenClaims::default();
                macro_rules! set {
                    ($field:ident, $name:literal) => {{
                        if c.$field.is_some() {
                            return Err(de::Error::duplicate_field($name));
                        }
                        c.$field = Some(map.next_value().map_err(|e: A::Error| {
                            de::Error::custom(format_args!("claim `{}`: {}", $name, e))
                        })?);
                    }};
                }
                while let Some(ClaimName(key)) = map.next_key()? {
                    match &*key {
                        "iss" => set!(iss, "iss"),
                        "sub" => set!(sub, "sub"),
                        "aud" => set!(aud, "aud"),
                        "exp" => set!(exp, "exp"),
                        "iat" => set!(iat, "iat"),
                        "nbf" => set!(nbf, "nbf"),
                        "jti" => set!(jti, "jti"),
                        "client_id" => set!(client_id, "client_id"),
                        "scope" => set!(scope, "scope"),
                        "auth_time" => set!(auth_time, "auth_time"),
                        "acr" => set!(acr, "acr"),
                        "amr" => set!(amr, "amr"),
                        "cnf" => set!(cnf, "cnf"),
                        _ => {
                            let value: serde_json::Value = map.next_value()?;
                            if c.extra.insert(key.into_owned(), value).is_some() {
                                return Err(de::Error::custom("duplicate claim"));
                            }
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// A claim name, borrowed from the JSON text unless it holds escapes:
/// serde's own `Cow<str>` always copies, one allocation per claim.
struct ClaimName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for ClaimName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClaimName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ClaimName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ClaimName(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(ClaimName(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A verified access token, as the layer stores it in the request extensions
/// (`Arc<AccessToken>`, inserted once per request).
///
/// Extract it whole with [`Token`](crate::Token), or its parts with
/// [`Claims`](crate::Claims) and [`RequireScope`](crate::RequireScope).
pub struct AccessToken {
    pub(crate) claims: Arc<AccessTokenClaims>,
    pub(crate) scopes: Scopes,
    pub(crate) payload: Box<[u8]>,
}

impl AccessToken {
    /// The standard claims.
    pub fn claims(&self) -> &Arc<AccessTokenClaims> {
        &self.claims
    }

    /// The scopes the token grants, read from the configured
    /// [`ScopeSource`](crate::ScopeSource).
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Deserializes the verified claims into a type of your own.
    pub fn claims_as<C: DeserializeOwned>(&self) -> Result<C, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// The subject (`sub`), if any.
    pub fn subject(&self) -> Option<&str> {
        self.claims.sub.as_deref()
    }
}

impl fmt::Debug for AccessToken {
    // The claims are verified and belong to the app; no raw token is held.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("sub", &self.claims.sub)
            .field("client_id", &self.claims.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Where a token's scopes are read from.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ScopeSource {
    /// The space-separated `scope` claim (RFC 9068, RFC 8693). The default.
    #[default]
    Scope,
    /// The `scp` claim, as a space-separated string or an array of strings
    /// (Microsoft Entra ID, Okta).
    Scp,
    /// The `permissions` claim, an array of strings (Auth0 RBAC).
    Permissions,
    /// A custom function of the verified claims.
    Custom(Arc<dyn Fn(&AccessTokenClaims) -> Scopes + Send + Sync>),
    /// A claim nested in objects, a space-separated string or an array of
    /// strings: see [`claim_path`](Self::claim_path).
    Path(Arc<[Box<str>]>),
    /// The scopes of every source together: see [`union`](Self::union).
    Union(Arc<[ScopeSource]>),
}

impl ScopeSource {
    /// A custom source.
    pub fn custom(f: impl Fn(&AccessTokenClaims) -> Scopes + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// The claim at `path`, member names from the top-level claim down, as
    /// a space-separated string or an array of strings; absent anywhere on
    /// the way: no scopes; another JSON type: the token is refused
    /// (`InvalidClaim`). Names are taken as they are (a client ID with dots
    /// is one name).
    ///
    /// ```
    /// use tokenguard::ScopeSource;
    /// // Keycloak realm roles, and one client's roles.
    /// let realm = ScopeSource::claim_path(["realm_access", "roles"]);
    /// let client = ScopeSource::claim_path(["resource_access", "invoices.api", "roles"]);
    /// // Microsoft Entra ID: application permissions (`roles`) and delegated ones (`scp`).
    /// let entra = ScopeSource::union([ScopeSource::Scp, ScopeSource::claim_path(["roles"])]);
    /// # let _ = (realm, client, entra);
    /// ```
    ///
    /// # Panics
    /// If `path` is empty (a configuration error).
    pub fn claim_path<'a>(path: impl IntoIterator<Item = &'a str>) -> Self {
        let path: Arc<[Box<str>]> = path.into_iter().map(Box::from).collect();
        assert!(
            !path.is_empty(),
            "ScopeSource::claim_path needs at least one name"
        );
        Self::Path(path)
    }

    /// The scopes of every one of `sources` together (e.g. `scope` and a
    /// roles claim). A source that refuses the token refuses it.
    pub fn union(sources: impl IntoIterator<Item = ScopeSource>) -> Self {
        Self::Union(sources.into_iter().collect())
    }

    /// Reads the scopes of `claims`. A claim of the wrong JSON type yields
    /// `Err(claim name)`.
    pub(crate) fn read(&self, claims: &AccessTokenClaims) -> Result<Scopes, &'static str> {
        match self {
            Self::Scope => Ok(claims
                .scope
                .as_deref()
                .map(Scopes::from_space_separated)
                .unwrap_or_default()),
            Self::Scp => string_or_array(claims.extra.get("scp"), true).ok_or("scp"),
            Self::Permissions => {
                string_or_array(claims.extra.get("permissions"), false).ok_or("permissions")
            }
            Self::Custom(f) => Ok(f(claims)),
            Self::Path(path) => {
                let mut names = path.iter();
                let mut at = names.next().and_then(|first| claims.extra.get(&**first));
                for name in names {
                    at = match at {
                        None => None,
                        Some(serde_json::Value::Object(members)) => members.get(&**name),
                        Some(_) => return Err("scope claim path"),
                    };
                }
                string_or_array(at, true).ok_or("scope claim path")
            }
            Self::Union(sources) => {
                let mut all = Vec::new();
                for source in sources.iter() {
                    all.push(source.read(claims)?);
                }
                Ok(all.iter().flat_map(Scopes::iter).collect())
            }
        }
    }
}

fn string_or_array(v: Option<&serde_json::Value>, allow_string: bool) -> Option<Scopes> {
    match v {
        None => Some(Scopes::default()),
        Some(serde_json::Value::String(s)) if allow_string => Some(Scopes::from_space_separated(s)),
        Some(serde_json::Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                names.push(item.as_str()?);
            }
            Some(names.into_iter().collect())
        }
        Some(_) => None,
    }
}

impl fmt::Debug for ScopeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scope => f.write_str("Scope"),
            Self::Scp => f.write_str("Scp"),
            Self::Permissions => f.write_str("Permissions"),
            Self::Custom(_) => f.write_str("Custom(<fn>)"),
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Self::Union(sources) => f.debug_tuple("Union").field(sources).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates() {
        let ok = |s: &str| {
            serde_json::from_str::<NumericDate>(s)
                .map(|d| d.as_secs())
                .ok()
        };
        assert_eq!(ok("1700000000"), Some(1_700_000_000));
        assert_eq!(ok("1700000000.999"), Some(1_700_000_000));
        assert_eq!(ok("1.7e9"), Some(1_700_000_000));
        assert_eq!(ok("\"1700000000\""), None);
        assert_eq!(ok("-1"), None);
        assert_eq!(ok("1e300"), None);
        assert_eq!(ok("253402300800"), None);
        assert_eq!(ok("null"), None);
    }

    #[test]
    fn duplicate_members_are_refused() {
        let dup = r#"{"exp": 1, "exp": 2}"#;
        assert!(serde_json::from_str::<AccessTokenClaims>(dup).is_err());
        let dup_extra = r#"{"x": 1, "x": 2}"#;
        assert!(serde_json::from_str::<AccessTokenClaims>(dup_extra).is_err());
    }

    #[test]
    fn escaped_claim_names_are_read() {
        // Names with escapes cannot be borrowed from the text: they are copied.
        let c: AccessTokenClaims =
            serde_json::from_str(r#"{"i\u0073s":"i","sub":"s","t\u0065nant":"t9"}"#).unwrap();
        assert_eq!(c.iss.as_deref(), Some("i"));
        assert_eq!(c.sub.as_deref(), Some("s"));
        assert_eq!(c.extra["tenant"], "t9");
        let dup = r#"{"iss":"a","i\u0073s":"b"}"#;
        assert!(serde_json::from_str::<AccessTokenClaims>(dup).is_err());
        assert!(serde_json::from_str::<AccessTokenClaims>(r#"{"iss":"a",1:2}"#).is_err());
    }

    #[test]
    fn audience_forms() {
        let c: AccessTokenClaims = serde_json::from_str(r#"{"aud":"x"}"#).unwrap();
        assert_eq!(c.aud.unwrap().iter().collect::<Vec<_>>(), ["x"]);
        assert!(serde_json::from_str::<AccessTokenClaims>(r#"{"aud":[]}"#).is_err());
        assert!(serde_json::from_str::<AccessTokenClaims>(r#"{"aud":[1]}"#).is_err());
        let many: AccessTokenClaims = serde_json::from_str(r#"{"aud":["a","b\u0063"]}"#).unwrap();
        assert_eq!(many.aud.unwrap().iter().collect::<Vec<_>>(), ["a", "bc"]);
        for bad in [
            r#"["a",1]"#,
            "null",
            r#"{"a":1}"#,
            "1",
            "true",
            r#"[["a"]]"#,
        ] {
            let json = format!(r#"{{"aud":{bad}}}"#);
            assert!(
                serde_json::from_str::<AccessTokenClaims>(&json).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn round_trip_keeps_extra() {
        let src = r#"{"iss":"i","aud":"a","exp":5,"roles":["x"]}"#;
        let c: AccessTokenClaims = serde_json::from_str(src).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v, serde_json::from_str::<serde_json::Value>(src).unwrap());
    }
}
