//! A compact JWS taken apart: header and claims decoded, nothing trusted yet.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// A token split into its parts, with the header and claims parsed.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    /// `header.claims`, the signed message.
    pub(crate) message: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    pub(crate) alg: String,
}

/// Why a token could not be parsed; the text follows Kong's "Bad token; …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadToken {
    Json,
    Typ,
    Alg,
    Crit,
    Claims,
}

impl BadToken {
    pub(crate) fn message(self) -> &'static str {
        match self {
            BadToken::Json => "Bad token; invalid JSON",
            BadToken::Typ => "Bad token; invalid typ",
            BadToken::Alg => "Bad token; invalid alg",
            BadToken::Crit => "Bad token; invalid crit",
            BadToken::Claims => "Bad token; invalid claims",
        }
    }
}

/// The algorithms this gateway verifies (jsonwebtoken's; Kong's list less ES512).
pub(crate) const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

impl<'a> Token<'a> {
    pub(crate) fn parse(token: &'a str) -> Result<Self, BadToken> {
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(claims), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(BadToken::Json);
        };
        if signature.contains('.') {
            return Err(BadToken::Json);
        }
        let message = &token[..header.len() + 1 + claims.len()];
        let header = object(header).ok_or(BadToken::Json)?;
        if let Some(typ) = header.get("typ")
            && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
        {
            return Err(BadToken::Typ);
        }
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some(alg) if ALGORITHMS.contains(&alg) => alg.to_owned(),
            _ => return Err(BadToken::Alg),
        };
        // No extension is understood, so any critical one must be refused (RFC 7515 §4.1.11).
        if header.contains_key("crit") {
            return Err(BadToken::Crit);
        }
        let claims = object(claims).ok_or(BadToken::Claims)?;
        Ok(Self {
            message,
            signature,
            header,
            claims,
            alg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    #[test]
    fn a_well_formed_token_parses() {
        let t = token(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"iss":"a"}"#);
        let parsed = Token::parse(&t).unwrap();
        assert_eq!(parsed.alg, "HS256");
        assert_eq!(parsed.claims["iss"], "a");
        assert_eq!(parsed.signature, "c2ln");
        assert!(t.starts_with(parsed.message));
    }

    #[test]
    fn malformed_tokens_are_named() {
        let bad = |t: &str| Token::parse(t).unwrap_err();
        assert_eq!(bad("garbage"), BadToken::Json);
        assert_eq!(bad("a.b"), BadToken::Json);
        assert_eq!(bad("a.b.c.d"), BadToken::Json);
        assert_eq!(bad(&token("[1]", "{}")), BadToken::Json);
        assert_eq!(bad(&token(r#"{"alg":"none"}"#, "{}")), BadToken::Alg);
        assert_eq!(
            bad(&token(r#"{"alg":"HS256","typ":"JWE"}"#, "{}")),
            BadToken::Typ
        );
        assert_eq!(
            bad(&token(r#"{"alg":"HS256","crit":["exp"]}"#, "{}")),
            BadToken::Crit
        );
        assert_eq!(bad(&token(r#"{"alg":"HS256"}"#, "[]")), BadToken::Claims);
    }
}
