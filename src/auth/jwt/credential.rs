//! A consumer's JWT credential: the key a token names, the pinned algorithm, the secret or
//! public key.

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::auth::credential::{CredentialError, derived_id};

/// A consumer's JWT credential (Kong's `jwt_secrets` entry): the `key` a token names in its
/// key claim, the pinned algorithm, and the HMAC secret or the public key.
///
/// ```
/// use tower_gateway::auth::jwt::Algorithm;
/// use tower_gateway::auth::{Consumer, Consumers, JwtCredential};
///
/// let consumers = Consumers::new();
/// consumers.insert(Consumer::new("c-1").username("ann"));
/// // Tokens whose `iss` is "ann-issuer", signed with HS256 and this secret, are ann's.
/// let credential = JwtCredential::hmac("ann-issuer", "ann-secret", Algorithm::HS256).unwrap();
/// assert_eq!(credential.key(), "ann-issuer");
/// consumers.add_jwt("ann", credential).unwrap();
/// ```
#[derive(Clone)]
pub struct JwtCredential {
    pub(crate) id: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) consumer: Arc<str>,
    pub(crate) algorithm: Algorithm,
    /// The HMAC secret as configured (base64-decoded at verification when the plugin says so).
    secret: Vec<u8>,
    /// The public key of an asymmetric algorithm.
    pub(super) public: Option<DecodingKey>,
}

impl std::fmt::Debug for JwtCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCredential")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

impl JwtCredential {
    /// An HMAC credential (`HS256`, `HS384` or `HS512`).
    pub fn hmac(
        key: impl Into<Arc<str>>,
        secret: impl AsRef<[u8]>,
        algorithm: Algorithm,
    ) -> Result<Self, CredentialError> {
        if !is_hmac(algorithm) {
            return Err(CredentialError::InvalidJwt(format!(
                "{algorithm:?} needs a public key, not a secret"
            )));
        }
        Ok(Self::new(
            key.into(),
            algorithm,
            secret.as_ref().to_vec(),
            None,
        ))
    }

    /// A credential for an asymmetric algorithm (RS*, PS*, ES256, ES384, EdDSA) with its
    /// public key in PEM (Kong's `rsa_public_key`).
    pub fn public_key(
        key: impl Into<Arc<str>>,
        pem: &str,
        algorithm: Algorithm,
    ) -> Result<Self, CredentialError> {
        let invalid = |e: jsonwebtoken::errors::Error| {
            CredentialError::InvalidJwt(format!("invalid public key for {algorithm:?}: {e}"))
        };
        let decoding = match algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(invalid)?,
            Algorithm::ES256 | Algorithm::ES384 => {
                DecodingKey::from_ec_pem(pem.as_bytes()).map_err(invalid)?
            }
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()).map_err(invalid)?,
            _ => {
                return Err(CredentialError::InvalidJwt(format!(
                    "{algorithm:?} takes a secret, not a public key"
                )));
            }
        };
        Ok(Self::new(key.into(), algorithm, Vec::new(), Some(decoding)))
    }

    fn new(
        key: Arc<str>,
        algorithm: Algorithm,
        secret: Vec<u8>,
        public: Option<DecodingKey>,
    ) -> Self {
        Self {
            id: derived_id("jwt_secret", &key).into(),
            key,
            consumer: Arc::from(""),
            algorithm,
            secret,
            public,
        }
    }

    /// Sets the credential's id (default: derived from the key).
    pub fn id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.id = id.into();
        self
    }

    /// The key tokens name in their key claim.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn decoding_key(&self, secret_is_base64: bool) -> Option<DecodingKey> {
        if let Some(public) = &self.public {
            return Some(public.clone());
        }
        if secret_is_base64 {
            let text = std::str::from_utf8(&self.secret).ok()?;
            let secret = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()?;
            Some(DecodingKey::from_secret(&secret))
        } else {
            Some(DecodingKey::from_secret(&self.secret))
        }
    }
}
