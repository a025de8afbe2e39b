//! Reading an introspection answer (RFC 7662 §2.2): `active` must be the JSON
//! boolean `true`; then the same claims rules as a JWT's, except that `iss`
//! and (when allowed) `aud` may be absent.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::claims::{AccessToken, AccessTokenClaims, NumericDate};
use crate::error::{AuthError, InvalidToken};
use crate::verify::jwt::{Policy, Required};

/// What the authorization server's answer means.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Active, and every check passed.
    Active(Arc<AccessToken>),
    /// Not active, or active but refused by the checks.
    Refused(AuthError),
}

/// An answer that is not a valid introspection response: an outage of the
/// authorization server, never a verdict on the token.
#[derive(Debug)]
pub(crate) struct Garbage(pub(crate) &'static str);

#[derive(Deserialize)]
struct Active {
    active: serde_json::Value,
    #[serde(default)]
    token_type: Option<serde_json::Value>,
}

/// Reads `body` under `policy`; `require_aud`: an answer without `aud` is
/// refused.
pub(crate) fn read(body: Bytes, policy: &Policy, require_aud: bool) -> Result<Answer, Garbage> {
    let is_object = body.trim_ascii_start().first() == Some(&b'{');
    if !is_object {
        return Err(Garbage("the answer is not a JSON object"));
    }
    let head: Active =
        serde_json::from_slice(&body).map_err(|_| Garbage("the answer is not valid JSON"))?;
    match head.active {
        serde_json::Value::Bool(true) => {}
        serde_json::Value::Bool(false) => {
            return Ok(Answer::Refused(AuthError::invalid_token(
                InvalidToken::Inactive,
            )));
        }
        _ => return Err(Garbage("`active` is not a boolean")),
    }
    let claims: AccessTokenClaims = serde_json::from_slice(&body)
        .map_err(|_| Garbage("the answer's claims have the wrong types"))?;
    let refuse = |reason| Ok(Answer::Refused(AuthError::invalid_token(reason)));
    match head.token_type {
        None => {}
        // RFC 7662 §2.2 / RFC 6749 §7.1: type names compare case-insensitively.
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        // RFC 9449 §6.2: a DPoP-bound token; its `cnf.jkt` is checked by
        // the binding step (as a bearer token it is refused there). Without
        // `cnf.jkt` its key is unknown.
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("dpop") => {
            let bound = claims.cnf.as_ref().is_some_and(|c| c.contains_key("jkt"));
            if !bound {
                return refuse(InvalidToken::SenderConstrained);
            }
        }
        Some(serde_json::Value::String(_)) => return refuse(InvalidToken::WrongType),
        // Like any other claim of the wrong JSON type: the server's fault.
        Some(_) => return Err(Garbage("`token_type` is not a string")),
    }
    let required = Required {
        iss: false,
        aud: require_aud,
    };
    if let Err(e) = policy.check_claims(&claims, NumericDate::now().as_secs(), required) {
        return Ok(Answer::Refused(e));
    }
    let scopes = match policy.scopes(&claims) {
        Ok(scopes) => scopes,
        Err(claim) => return refuse(InvalidToken::InvalidClaim(claim)),
    };
    Ok(Answer::Active(Arc::new(AccessToken {
        claims: Arc::new(claims),
        scopes,
        payload: body.to_vec().into_boxed_slice(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ScopeSource;
    use crate::error::AuthErrorKind;

    fn policy() -> Policy {
        Policy {
            issuer: Some("https://id".into()),
            audiences: vec!["https://api".into()],
            algorithms: Vec::new(),
            leeway: 30,
            require_typ: true,
            max_lifetime: Some(24 * 3600),
            max_token_len: 8192,
            scope_source: ScopeSource::default(),
            hierarchy: None,
            header_memo: Default::default(),
        }
    }

    fn answer(json: serde_json::Value) -> Result<Answer, Garbage> {
        read(Bytes::from(json.to_string()), &policy(), true)
    }

    fn refused(json: serde_json::Value) -> InvalidToken {
        match answer(json) {
            Ok(Answer::Refused(e)) => match e.kind() {
                AuthErrorKind::InvalidToken(r) => *r,
                other => panic!("{other:?}"),
            },
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn active_must_be_the_boolean_true() {
        let now = NumericDate::now().as_secs();
        let good = serde_json::json!({"active": true, "aud": "https://api", "exp": now + 60, "scope": "a b"});
        match answer(good) {
            Ok(Answer::Active(t)) => assert!(t.scopes().contains("b")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            refused(serde_json::json!({"active": false})),
            InvalidToken::Inactive
        );
        for bad in [
            serde_json::json!({"active": "true"}),
            serde_json::json!({"active": 1}),
            serde_json::json!({"active": null}),
            serde_json::json!({"scope": "a"}),
            serde_json::json!([{"active": true}]),
        ] {
            assert!(answer(bad).is_err());
        }
        assert!(read(Bytes::from_static(b"not json"), &policy(), true).is_err());
        // Duplicate members are malformed JSON here, not last-one-wins.
        assert!(
            read(
                Bytes::from_static(br#"{"active":false,"active":true}"#),
                &policy(),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn claims_are_checked_like_a_jwt() {
        let now = NumericDate::now().as_secs();
        let base = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"active": true, "aud": "https://api", "exp": now + 60});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert_eq!(
            refused(base(serde_json::json!({"exp": now - 100}))),
            InvalidToken::Expired
        );
        assert_eq!(
            refused(base(serde_json::json!({"iss": "https://evil"}))),
            InvalidToken::WrongIssuer
        );
        assert_eq!(
            refused(base(serde_json::json!({"aud": "https://other"}))),
            InvalidToken::WrongAudience
        );
        assert_eq!(
            refused(base(serde_json::json!({"token_type": "DPoP"}))),
            InvalidToken::SenderConstrained
        );
        assert_eq!(
            refused(base(serde_json::json!({"token_type": "mac"}))),
            InvalidToken::WrongType
        );
        assert_eq!(
            refused(serde_json::json!({"active": true, "exp": now + 60})),
            InvalidToken::MissingClaim("aud")
        );
        assert_eq!(
            refused(serde_json::json!({"active": true, "aud": "https://api"})),
            InvalidToken::MissingClaim("exp")
        );
        assert!(matches!(
            answer(base(
                serde_json::json!({"iss": "https://id", "token_type": "bearer"})
            )),
            Ok(Answer::Active(_))
        ));
        // Wrong types are the server's fault.
        assert!(answer(base(serde_json::json!({"exp": "soon"}))).is_err());
        assert!(answer(base(serde_json::json!({"token_type": 1}))).is_err());
        assert!(answer(base(serde_json::json!({"token_type": ["bearer"]}))).is_err());
        let lenient = read(
            Bytes::from(serde_json::json!({"active": true, "exp": now + 60}).to_string()),
            &policy(),
            false,
        );
        assert!(matches!(lenient, Ok(Answer::Active(_))));
    }
}
