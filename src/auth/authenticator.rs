//! What an authenticator is, and what it answers.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::Consumer;

/// Checks a request's credentials. Implemented by [`ApiKey`](super::ApiKey),
#[cfg_attr(feature = "jwt", doc = "[`Jwt`](super::Jwt)")]
#[cfg_attr(not(feature = "jwt"), doc = "`Jwt` (feature `jwt`)")]
/// and by closures `Fn(&mut Parts) -> Result<Authenticated, Rejection>`.
///
/// An authenticator may change the request on success (Kong's `hide_credentials` removes the
/// credential before the request goes upstream).
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticates the request, or says how to refuse it.
    fn authenticate(&self, request: &mut Parts) -> Result<Authenticated, Rejection>;

    /// Whether this authenticator reads the request body ([`ApiKey::in_body`]). Only
    /// [`BodyAuth`] reads bodies, and only when one of its authenticators says so.
    ///
    /// [`ApiKey::in_body`]: super::ApiKey::in_body
    /// [`BodyAuth`]: super::BodyAuth
    fn reads_body(&self) -> bool {
        false
    }

    /// Authenticates with the request's body at hand, read whole by
    /// [`BodyAuth`](super::BodyAuth); it may rewrite the body (to hide a credential). The
    /// default ignores the body.
    fn authenticate_with_body(
        &self,
        request: &mut Parts,
        body: &mut Bytes,
    ) -> Result<Authenticated, Rejection> {
        let _ = body;
        self.authenticate(request)
    }
}

impl<F> Authenticator for F
where
    F: Fn(&mut Parts) -> Result<Authenticated, Rejection> + Send + Sync + 'static,
{
    fn authenticate(&self, request: &mut Parts) -> Result<Authenticated, Rejection> {
        self(request)
    }
}

/// A successful authentication: the consumer, if the credential belongs to one, and the
/// token's claims, if it had any.
///
/// ```
/// use http::request::Parts;
/// use tower_gateway::auth::{AuthLayer, Authenticated, Consumer, Rejection};
///
/// // An authenticator of your own: a closure over the request head.
/// let internal = |req: &mut Parts| match req.headers.get("x-internal-token") {
///     Some(token) if token == "s3cret" => Ok(Authenticated::consumer(Consumer::new("internal"))),
///     Some(_) => Err(Rejection::unauthorized("Invalid token")),
///     None => Err(Rejection::unauthorized("No token found").missing()),
/// };
/// let layer = AuthLayer::new(internal);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Authenticated {
    /// The consumer the credential belongs to.
    pub consumer: Option<Consumer>,
    /// A verified token's claims.
    pub claims: Option<Claims>,
}

impl Authenticated {
    /// Authenticated as `consumer`.
    pub fn consumer(consumer: Consumer) -> Self {
        Self {
            consumer: Some(consumer),
            claims: None,
        }
    }
}

/// The claims of a verified token, in the request's extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(pub Arc<serde_json::Map<String, serde_json::Value>>);

impl Claims {
    /// Claim `name`, if present.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.get(name)
    }
}

/// A refusal: the status (401 unless said otherwise), Kong's JSON body and the
/// `WWW-Authenticate` challenge.
///
/// ```
/// use http::StatusCode;
/// use tower_gateway::auth::Rejection;
///
/// let refused = Rejection::with_status(StatusCode::FORBIDDEN, "You cannot consume this service");
/// assert_eq!(refused.status(), 403);
/// assert_eq!(&refused.body()[..], br#"{"message":"You cannot consume this service"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) challenge: Option<HeaderValue>,
    /// No credential was presented at all (as opposed to a wrong one).
    pub(crate) missing: bool,
}

impl Rejection {
    /// 401 with `{"message": message}`.
    pub fn unauthorized(message: &str) -> Self {
        Self::with_status(StatusCode::UNAUTHORIZED, message)
    }

    /// `status` with `{"message": message}`.
    pub fn with_status(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: Bytes::from(serde_json::json!({ "message": message }).to_string()),
            challenge: None,
            missing: false,
        }
    }

    /// 401 with a JSON body of its own (Kong's jwt claim errors: `{"exp":"token expired"}`).
    pub fn unauthorized_json(body: serde_json::Value) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: Bytes::from(body.to_string()),
            challenge: None,
            missing: false,
        }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub fn challenge(mut self, value: HeaderValue) -> Self {
        self.challenge = Some(value);
        self
    }

    /// Marks this refusal as "no credential presented": with several authenticators, the
    /// answer to a request that presented a wrong credential wins over these.
    pub fn missing(mut self) -> Self {
        self.missing = true;
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub(crate) fn into_crate(self) -> crate::future::Rejection {
        crate::future::Rejection {
            by: crate::reject::AnsweredBy::AUTH,
            status: self.status,
            message: "",
            header: self
                .challenge
                .map(|value| (http::header::WWW_AUTHENTICATE, value)),
            json: Some(self.body),
        }
    }
}
