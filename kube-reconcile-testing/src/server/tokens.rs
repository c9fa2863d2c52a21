//! Service-account tokens (`serviceaccounts/token`) and their review (`tokenreviews`):
//! JSON Web Tokens signed with HMAC-SHA256 by a key drawn when the first one is issued.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::hmac;
use serde_json::{Value, json};

/// The audience and issuer of tokens requested without audiences, as a cluster's default.
pub(crate) const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The signing key, drawn on first use.
#[derive(Default)]
pub(crate) struct Tokens {
    key: Option<hmac::Key>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

/// A token and when it expires (RFC 3339).
pub(crate) struct Issued {
    pub(crate) token: String,
    pub(crate) expires: String,
}

/// Who a valid token names.
pub(crate) struct Reviewed {
    pub(crate) user: Value,
    pub(crate) audiences: Vec<String>,
}

impl Tokens {
    /// A token for service account `namespace/name` (UID `uid`), valid for `seconds`.
    pub(crate) fn issue(
        &mut self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        seconds: i64,
    ) -> Result<Issued, ring::error::Unspecified> {
        let key = match &self.key {
            Some(key) => key,
            None => self.key.insert(hmac::Key::generate(
                hmac::HMAC_SHA256,
                &ring::rand::SystemRandom::new(),
            )?),
        };
        let now = jiff::Timestamp::now().as_second();
        let expires = now.saturating_add(seconds);
        let claims = json!({
            "aud": audiences,
            "exp": expires,
            "iat": now,
            "nbf": now,
            "iss": DEFAULT_AUDIENCE,
            "jti": super::meta::new_uid(),
            "kubernetes.io": { "namespace": namespace, "serviceaccount": { "name": name, "uid": uid } },
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = URL_SAFE_NO_PAD.encode(hmac::sign(key, signed.as_bytes()));
        let expires = jiff::Timestamp::from_second(expires)
            .map(|t| t.to_string())
            .unwrap_or_default();
        Ok(Issued {
            token: format!("{signed}.{signature}"),
            expires,
        })
    }

    /// The user a token issued here names, if its signature holds, it has not expired
    /// and it is meant for one of `audiences` (empty: the default audience).
    pub(crate) fn review(&self, token: &str, audiences: &[String]) -> Option<Reviewed> {
        let key = self.key.as_ref()?;
        let (signed, signature) = token.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        hmac::verify(key, signed.as_bytes(), &signature).ok()?;
        let (_, payload) = signed.split_once('.')?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        if claims["exp"].as_i64()? <= jiff::Timestamp::now().as_second() {
            return None;
        }
        let theirs: Vec<String> = claims["aud"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let wanted = if audiences.is_empty() {
            vec![DEFAULT_AUDIENCE.to_string()]
        } else {
            audiences.to_vec()
        };
        let audiences: Vec<String> = wanted.into_iter().filter(|a| theirs.contains(a)).collect();
        if audiences.is_empty() {
            return None;
        }
        let namespace = claims["kubernetes.io"]["namespace"].as_str()?;
        let user = json!({
            "username": claims["sub"],
            "uid": claims["kubernetes.io"]["serviceaccount"]["uid"],
            "groups": [
                "system:serviceaccounts",
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        });
        Some(Reviewed { user, audiences })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_reviews_as_its_service_account_and_a_forged_one_does_not() {
        let mut tokens = Tokens::default();
        let issued = tokens
            .issue("ns", "robot", "u1", &[DEFAULT_AUDIENCE.to_string()], 3600)
            .unwrap();
        let reviewed = tokens.review(&issued.token, &[]).unwrap();
        assert_eq!(reviewed.user["username"], "system:serviceaccount:ns:robot");
        assert_eq!(reviewed.user["groups"][1], "system:serviceaccounts:ns");
        assert!(
            tokens
                .review(&issued.token, &["other".to_string()])
                .is_none()
        );
        let mut forged = issued.token.clone();
        forged.pop();
        forged.push(if issued.token.ends_with('A') {
            'B'
        } else {
            'A'
        });
        assert!(tokens.review(&forged, &[]).is_none());
    }
}
