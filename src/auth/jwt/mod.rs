//! Kong's jwt plugin: signed tokens checked against consumer credentials, or against one
//! secret or public key (the single-secret mode of hand-written gateways).

mod cache;
pub(in crate::auth) mod credential;
mod token;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::{HeaderName, HeaderValue, header};
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

pub use cache::{MAX_ENTRIES as CACHE_ENTRIES, MAX_TOKEN as CACHE_MAX_TOKEN};
use cache::{SharedCache, TokenCache, Verified};
use token::Token;

pub use credential::JwtCredential;

use super::consumer::Editor;
use super::credential::CredentialError;
use super::{Authenticated, Authenticator, Claims, Consumers, Rejection};
use crate::ratelimit::Clock;

impl Consumers {
    /// Gives consumer `owner` (id or username) a JWT credential; returns its id.
    pub fn add_jwt(
        &self,
        owner: &str,
        credential: JwtCredential,
    ) -> Result<Arc<str>, CredentialError> {
        self.edit(|edit| edit.add_jwt(owner, credential))
    }
}

impl Editor<'_> {
    /// Gives consumer `owner` (id or username) a JWT credential; returns its id.
    pub fn add_jwt(
        &mut self,
        owner: &str,
        mut credential: JwtCredential,
    ) -> Result<Arc<str>, CredentialError> {
        if credential.key.is_empty() {
            return Err(CredentialError::EmptyKey);
        }
        let registry = &mut *self.registry;
        credential.consumer = registry
            .consumer(owner)
            .ok_or_else(|| CredentialError::NoConsumer(owner.to_owned()))?
            .id
            .clone();
        if registry.jwt.contains_key(&credential.key) {
            return Err(CredentialError::DuplicateKey);
        }
        let id = credential.id.clone();
        registry
            .jwt
            .insert(credential.key.clone(), Arc::new(credential));
        Ok(id)
    }
}

/// The clock skew a [`Jwt`] allows on `exp` and `nbf` by default (jsonwebtoken's default).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Claims a [`Jwt`] can be told to verify (Kong's `claims_to_verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeClaim {
    /// `exp`: the token has not expired.
    Exp,
    /// `nbf`: the token is already valid.
    Nbf,
}

/// Where the keys come from.
#[derive(Clone)]
enum Keys {
    /// Consumer credentials, found by the key claim.
    Consumers {
        consumers: Consumers,
        key_claim: Arc<str>,
        secret_is_base64: bool,
    },
    /// One key for every token.
    Single {
        key: DecodingKey,
        algorithm: Algorithm,
    },
}

/// Kong's `jwt` plugin, and a single-secret mode.
///
/// Tokens are read from `Authorization: Bearer …` (Kong's `header_names`), the `jwt` query
/// argument (`uri_param_names`) and any `cookie_names`; two different tokens are refused. The
/// token's `alg` must be the one its credential pins: `none`, an HMAC token against an RSA
/// credential (the public key used as a secret) and any other mismatch are refused, as is a
/// header with `crit`.
///
/// Time claims, by default, as JWT libraries check them: `exp` must be present and not past,
/// `nbf`, when present, must not be in the future, both with a leeway of
/// [`DEFAULT_LEEWAY`] (60 s) for clock skew. [`Jwt::claims_to_verify`] switches to Kong's
/// `claims_to_verify` semantics: exactly the listed claims are checked and each is required
/// (none listed: no time check, Kong's default), with no leeway unless [`Jwt::leeway`] sets
/// one. Time claims are numbers only.
///
/// Refusals are 401 with Kong's messages: `Unauthorized` (no token), `Multiple tokens
/// provided`, `Bad token; invalid JSON` (and `typ`, `alg`, `crit`, `claims`),
/// `No mandatory 'iss' in claims`, `Invalid 'iss' in claims`, `No credentials found for given
/// 'iss'`, `Invalid algorithm`, `Invalid key/secret`, `Invalid signature`, and claim errors as
/// an object keyed by claim: `{"exp":"token expired"}`, `{"nbf":"token not valid yet"}`,
/// `{"exp":"must be a number"}`, `{"exp":"exceeds maximum allowed expiration"}`.
///
/// Verified tokens are remembered (at most [`CACHE_ENTRIES`] tokens of at most
/// [`CACHE_MAX_TOKEN`] bytes, never past their `exp` or a change of the credentials), so a
/// repeated token skips the signature check; the time claims are checked every time.
///
/// ```
/// use tower_gateway::auth::{Consumer, Consumers, Jwt, JwtCredential, TimeClaim};
/// use tower_gateway::auth::jwt::Algorithm;
///
/// let consumers = Consumers::new();
/// consumers.insert(Consumer::new("c-1").username("test-user"));
/// consumers
///     .add_jwt("test-user", JwtCredential::hmac("myapikey", "mysecret", Algorithm::HS256).unwrap())
///     .unwrap();
/// // `exp` required and checked (60 s leeway), `nbf` checked when present:
/// let jwt = Jwt::new(consumers.clone());
/// # let _ = jwt;
/// // Kong's plugin with `claims_to_verify: [exp]`:
/// let kong = Jwt::new(consumers).claims_to_verify([TimeClaim::Exp]);
/// # let _ = kong;
/// // One secret for every token, as a hand-written gateway does:
/// let single = Jwt::with_secret("change-me", Algorithm::HS256);
/// # let _ = single;
/// ```
#[derive(Clone)]
pub struct Jwt {
    keys: Keys,
    header_names: Arc<[HeaderName]>,
    uri_param_names: Arc<[String]>,
    cookie_names: Arc<[String]>,
    verify: HashSet<TimeClaim>,
    /// `nbf` checked when the token has one, though not in `verify` (the library default).
    nbf_when_present: bool,
    leeway: u64,
    maximum_expiration: u64,
    challenge: HeaderValue,
    invalid_challenge: HeaderValue,
    cache: Option<SharedCache>,
    clock: Option<Clock>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("header_names", &self.header_names)
            .field("uri_param_names", &self.uri_param_names)
            .field("cookie_names", &self.cookie_names)
            .field("claims_to_verify", &self.verify)
            .field("leeway", &self.leeway)
            .field("maximum_expiration", &self.maximum_expiration)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Jwt {
    /// Tokens checked against the JWT credentials of `consumers`, found by the `iss` claim.
    pub fn new(consumers: Consumers) -> Self {
        Self::with_keys(Keys::Consumers {
            consumers,
            key_claim: Arc::from("iss"),
            secret_is_base64: false,
        })
    }

    /// Every token checked against one HMAC secret with a pinned algorithm (no consumer; the
    /// claims go into the request's extensions).
    pub fn with_secret(secret: impl AsRef<[u8]>, algorithm: Algorithm) -> Self {
        Self::with_keys(Keys::Single {
            key: DecodingKey::from_secret(secret.as_ref()),
            algorithm,
        })
    }

    /// Every token checked against one public key (PEM) with a pinned algorithm.
    pub fn with_public_key(pem: &str, algorithm: Algorithm) -> Result<Self, CredentialError> {
        let credential = JwtCredential::public_key("", pem, algorithm)?;
        let key = credential
            .public
            .ok_or_else(|| CredentialError::InvalidJwt("a public key is needed".to_owned()))?;
        Ok(Self::with_keys(Keys::Single { key, algorithm }))
    }

    fn with_keys(keys: Keys) -> Self {
        Self {
            keys,
            header_names: Arc::from([header::AUTHORIZATION]),
            uri_param_names: Arc::from(["jwt".to_owned()]),
            cookie_names: Arc::from([]),
            verify: HashSet::from([TimeClaim::Exp]),
            nbf_when_present: true,
            leeway: DEFAULT_LEEWAY.as_secs(),
            maximum_expiration: 0,
            challenge: HeaderValue::from_static("Bearer"),
            invalid_challenge: HeaderValue::from_static("Bearer error=\"invalid_token\""),
            cache: Some(Arc::new(TokenCache::default())),
            clock: None,
        }
    }

    /// Reads the time for `exp` and `nbf` from `clock` instead of the system clock (tests set
    /// it by hand).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> i64 {
        match &self.clock {
            Some(clock) => (clock.now() / 1_000_000_000) as i64,
            None => now_unix(),
        }
    }

    /// The claim (then header field) naming the credential's key (default `iss`).
    pub fn key_claim_name(mut self, name: &str) -> Self {
        if let Keys::Consumers { key_claim, .. } = &mut self.keys {
            *key_claim = Arc::from(name);
        }
        self
    }

    /// HMAC secrets are stored base64-encoded (Kong's `secret_is_base64`).
    pub fn secret_is_base64(mut self, yes: bool) -> Self {
        if let Keys::Consumers {
            secret_is_base64, ..
        } = &mut self.keys
        {
            *secret_is_base64 = yes;
        }
        self
    }

    /// Headers that carry `Bearer <token>` (default `authorization`).
    pub fn header_names(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.header_names = names.into_iter().collect();
        self
    }

    /// Query arguments that carry the token (default `jwt`).
    pub fn uri_param_names<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.uri_param_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Cookies that carry the token (default none).
    pub fn cookie_names<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.cookie_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Kong's `claims_to_verify`: exactly these time claims are checked, each must be present
    /// and numeric (none: no time check at all), and the leeway is 0 unless
    /// [`leeway`](Self::leeway) is called after. Replaces the default (`exp` required, `nbf`
    /// when present, 60 s leeway).
    pub fn claims_to_verify(mut self, claims: impl IntoIterator<Item = TimeClaim>) -> Self {
        self.verify = claims.into_iter().collect();
        self.nbf_when_present = false;
        self.leeway = 0;
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (default [`DEFAULT_LEEWAY`]; 0 after
    /// [`claims_to_verify`](Self::claims_to_verify), as Kong).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// Refuses tokens whose `exp` is further than this in the future (Kong's
    /// `maximum_expiration`; 0 = no limit). Implies verifying `exp`.
    pub fn maximum_expiration(mut self, max: Duration) -> Self {
        self.maximum_expiration = max.as_secs();
        if max.as_secs() > 0 {
            self.verify.insert(TimeClaim::Exp);
        }
        self
    }

    /// The realm of the `WWW-Authenticate: Bearer realm="…"` challenge.
    pub fn realm(mut self, realm: &str) -> Self {
        if let (Ok(plain), Ok(invalid)) = (
            HeaderValue::try_from(format!("Bearer realm=\"{realm}\"")),
            HeaderValue::try_from(format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")),
        ) {
            self.challenge = plain;
            self.invalid_challenge = invalid;
        }
        self
    }

    /// Verifies every token's signature, without the cache (for benchmarks and the
    /// cautious).
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    fn invalid(&self, message: &str) -> Rejection {
        Rejection::unauthorized(message).challenge(self.invalid_challenge.clone())
    }

    fn invalid_claims(&self, errors: Map<String, Value>) -> Rejection {
        Rejection::unauthorized_json(Value::Object(errors))
            .challenge(self.invalid_challenge.clone())
    }

    /// The one token the request carries.
    fn token(&self, parts: &Parts) -> Result<String, Rejection> {
        let mut tokens: Vec<String> = Vec::new();
        let mut add = |token: &str| {
            let token = token.trim();
            if !token.is_empty() && !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_owned());
            }
        };
        for name in self.uri_param_names.iter() {
            for value in super::headers::query_values(parts, name) {
                add(&value);
            }
        }
        for name in self.cookie_names.iter() {
            for value in crate::cookie::values(&parts.headers, name) {
                if let Ok(value) = std::str::from_utf8(value) {
                    add(value);
                }
            }
        }
        for name in self.header_names.iter() {
            for value in parts.headers.get_all(name) {
                let Ok(value) = value.to_str() else { continue };
                let value = value.trim();
                if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
                    add(&value[7..]);
                }
            }
        }
        match tokens.len() {
            0 => Err(Rejection::unauthorized("Unauthorized")
                .challenge(self.challenge.clone())
                .missing()),
            1 => Ok(tokens.pop().unwrap_or_default()),
            _ => Err(self.invalid("Multiple tokens provided")),
        }
    }

    /// Kong's registered-claims checks, plus `maximum_expiration`.
    fn check_times(&self, claims: &Map<String, Value>, now: i64) -> Result<(), Rejection> {
        let mut errors = Map::new();
        let leeway = self.leeway as i64;
        for claim in [TimeClaim::Exp, TimeClaim::Nbf] {
            let name = match claim {
                TimeClaim::Exp => "exp",
                TimeClaim::Nbf => "nbf",
            };
            let when_present = claim == TimeClaim::Nbf && self.nbf_when_present;
            let checked = self.verify.contains(&claim) || when_present && claims.contains_key(name);
            if !checked {
                continue;
            }
            // Numbers only: a string "exp" is not an expiry.
            let Some(value) = claims.get(name).and_then(Value::as_f64) else {
                errors.insert(name.into(), "must be a number".into());
                continue;
            };
            let value = value as i64;
            match claim {
                TimeClaim::Exp if value.saturating_add(leeway) <= now => {
                    errors.insert(name.into(), "token expired".into());
                }
                TimeClaim::Exp
                    if self.maximum_expiration > 0
                        && value.saturating_sub(now) > self.maximum_expiration as i64 =>
                {
                    errors.insert(name.into(), "exceeds maximum allowed expiration".into());
                }
                TimeClaim::Nbf if value.saturating_sub(leeway) > now => {
                    errors.insert(name.into(), "token not valid yet".into());
                }
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(self.invalid_claims(errors))
        }
    }

    /// Parses and verifies a token that is not in the cache.
    fn verify(&self, token: &str) -> Result<(Verified, u64), Rejection> {
        let parsed = Token::parse(token).map_err(|bad| self.invalid(bad.message()))?;
        let (key, algorithm, consumer, version) = match &self.keys {
            Keys::Single { key, algorithm } => (key.clone(), *algorithm, None, 0),
            Keys::Consumers {
                consumers,
                key_claim,
                secret_is_base64,
            } => {
                let value = parsed
                    .claims
                    .get(&**key_claim)
                    .or_else(|| parsed.header.get(&**key_claim));
                let Some(value) = value else {
                    return Err(self.invalid(&format!("No mandatory '{key_claim}' in claims")));
                };
                let Some(value) = value.as_str().filter(|v| !v.is_empty()) else {
                    return Err(self.invalid(&format!("Invalid '{key_claim}' in claims")));
                };
                let registry = consumers.snapshot();
                let Some(credential) = registry.jwt.get(value) else {
                    return Err(
                        self.invalid(&format!("No credentials found for given '{key_claim}'"))
                    );
                };
                let Some(consumer) = registry.consumer(&credential.consumer) else {
                    return Err(self.invalid(&format!(
                        "Could not find consumer for '{key_claim}={value}'"
                    )));
                };
                let Some(key) = credential.decoding_key(*secret_is_base64) else {
                    return Err(self.invalid("Invalid key/secret"));
                };
                (
                    key,
                    credential.algorithm,
                    Some({
                        let mut consumer = consumer.with_credential(&credential.id);
                        consumer.credential_identifier = Some(credential.key.clone());
                        consumer
                    }),
                    registry.version,
                )
            }
        };
        // The credential pins the algorithm; the token does not get to choose.
        if parsed.alg.parse::<Algorithm>().ok() != Some(algorithm) {
            return Err(self.invalid("Invalid algorithm"));
        }
        let valid = jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.message.as_bytes(),
            &key,
            algorithm,
        )
        .unwrap_or(false);
        if !valid {
            return Err(self.invalid("Invalid signature"));
        }
        let verified = Verified {
            consumer,
            claims: Claims(Arc::new(parsed.claims)),
        };
        Ok((verified, version))
    }

    fn version(&self) -> u64 {
        match &self.keys {
            Keys::Single { .. } => 0,
            Keys::Consumers { consumers, .. } => consumers.snapshot().version,
        }
    }
}

impl Authenticator for Jwt {
    fn authenticate(&self, request: &mut Parts) -> Result<Authenticated, Rejection> {
        let token = self.token(request)?;
        let now = self.now();
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&token, self.version(), now));
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let (verified, version) = self.verify(&token)?;
                if let Some(cache) = &self.cache {
                    let exp = verified
                        .claims
                        .get("exp")
                        .and_then(Value::as_f64)
                        .map(|exp| exp as i64);
                    cache.put(&token, version, exp, now, verified.clone());
                }
                verified
            }
        };
        self.check_times(&verified.claims.0, now)?;
        Ok(Authenticated {
            consumer: verified.consumer,
            claims: Some(verified.claims),
        })
    }
}
