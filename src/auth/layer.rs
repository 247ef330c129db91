//! `AuthLayer`: which authenticators run, how their answers combine, and what is skipped.

use std::sync::Arc;

use bytes::Bytes;

use http::request::Parts;
use http::{HeaderName, Method, header};
use tower::Layer;

use super::{Auth, Authenticated, Authenticator, Consumer, Rejection};

/// Authenticates requests before the inner service sees them; see the [module docs](super).
///
/// ```
/// use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers, Jwt};
///
/// let consumers = Consumers::new();
/// # consumers.insert(Consumer::new("anon").username("anonymous"));
/// // Either an API key or a JWT; without either, continue as the anonymous consumer.
/// let layer = AuthLayer::new(ApiKey::new(consumers.clone()))
///     .or(Jwt::new(consumers.clone()))
///     .anonymous(consumers.get("anonymous").unwrap())
///     .skip_path("/health");
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct AuthLayer {
    pub(crate) policy: Arc<Policy>,
}

/// How the authenticators' answers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every authenticator must accept (Kong's plugins without `anonymous`).
    All,
    /// One accepting authenticator is enough (Kong's plugins with `anonymous`).
    Any,
}

#[derive(Clone)]
pub(crate) struct Policy {
    authenticators: Vec<Arc<dyn Authenticator>>,
    mode: Mode,
    anonymous: Option<Consumer>,
    skip_paths: Vec<String>,
    skip_preflight: bool,
    pub(crate) claim_headers: Vec<(String, HeaderName)>,
    /// Whether some authenticator reads the body.
    reads_body: bool,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.policy;
        f.debug_struct("AuthLayer")
            .field("authenticators", &p.authenticators.len())
            .field("mode", &p.mode)
            .field("anonymous", &p.anonymous)
            .field("skip_paths", &p.skip_paths)
            .field("skip_preflight", &p.skip_preflight)
            .field("claim_headers", &p.claim_headers)
            .finish()
    }
}

impl AuthLayer {
    /// One authenticator.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self::with(vec![Box::new(authenticator)], Mode::All)
    }

    /// Every authenticator must accept; the first refusal is the answer.
    pub fn all_of(authenticators: impl IntoIterator<Item = Box<dyn Authenticator>>) -> Self {
        Self::with(authenticators.into_iter().collect(), Mode::All)
    }

    /// The first accepting authenticator wins. When all refuse, the answer is the first
    /// refusal of a presented credential (a wrong key beats a missing token).
    pub fn any_of(authenticators: impl IntoIterator<Item = Box<dyn Authenticator>>) -> Self {
        Self::with(authenticators.into_iter().collect(), Mode::Any)
    }

    /// Adds `authenticator` as an alternative: the layer then accepts a request that any one
    /// of its authenticators accepts ([`any_of`](Self::any_of), without boxing by hand).
    /// A layer has one mode: after `or`, every authenticator it holds is an alternative.
    ///
    /// ```
    /// use tower_gateway::auth::{ApiKey, AuthLayer, Consumers, Jwt};
    ///
    /// let consumers = Consumers::new();
    /// let either = AuthLayer::new(ApiKey::new(consumers.clone())).or(Jwt::new(consumers));
    /// # let _ = either;
    /// ```
    pub fn or(mut self, authenticator: impl Authenticator) -> Self {
        self.push(authenticator, Mode::Any);
        self
    }

    /// Adds `authenticator` as a further requirement: the layer then accepts a request only
    /// when all of its authenticators accept it ([`all_of`](Self::all_of), without boxing by
    /// hand). After `and`, every authenticator the layer holds is required.
    pub fn and(mut self, authenticator: impl Authenticator) -> Self {
        self.push(authenticator, Mode::All);
        self
    }

    fn push(&mut self, authenticator: impl Authenticator, mode: Mode) {
        let policy = self.policy_mut();
        policy.reads_body |= authenticator.reads_body();
        policy.authenticators.push(Arc::new(authenticator));
        policy.mode = mode;
    }

    /// No authenticator: only removes client-sent identity headers, so they cannot be
    /// spoofed on routes without authentication.
    pub fn strip_only() -> Self {
        Self::with(Vec::new(), Mode::All)
    }

    fn with(authenticators: Vec<Box<dyn Authenticator>>, mode: Mode) -> Self {
        let reads_body = authenticators.iter().any(|a| a.reads_body());
        Self {
            policy: Arc::new(Policy {
                reads_body,
                authenticators: authenticators.into_iter().map(Arc::from).collect(),
                mode,
                anonymous: None,
                skip_paths: Vec::new(),
                skip_preflight: false,
                claim_headers: Vec::new(),
            }),
        }
    }

    fn policy_mut(&mut self) -> &mut Policy {
        // A clone configured further gets its own copy; services already built keep theirs.
        Arc::make_mut(&mut self.policy)
    }

    /// When authentication fails, continue as this consumer (with `X-Anonymous-Consumer:
    /// true`) instead of refusing (Kong's `anonymous`).
    pub fn anonymous(mut self, consumer: Consumer) -> Self {
        let mut consumer = consumer;
        consumer.anonymous = true;
        consumer.credential = None;
        self.policy_mut().anonymous = Some(consumer);
        self
    }

    /// Requests for this path go through without authentication; a trailing `*` makes it a
    /// prefix (`/public/*`).
    pub fn skip_path(mut self, path: impl Into<String>) -> Self {
        self.policy_mut().skip_paths.push(path.into());
        self
    }

    /// CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) go through without authentication (Kong's
    /// `run_on_preflight: false`).
    pub fn skip_preflight(mut self, skip: bool) -> Self {
        self.policy_mut().skip_preflight = skip;
        self
    }

    /// The same authentication for authenticators that read the request body
    /// ([`ApiKey::in_body`](super::ApiKey::in_body)): the layer reads a form, JSON or multipart
    /// body of at most [`DEFAULT_MAX_BODY`](super::DEFAULT_MAX_BODY) bytes before
    /// authenticating, and the inner service receives a
    /// [`RequestBody`](crate::body::RequestBody).
    pub fn reading_body(self) -> super::BodyAuthLayer {
        super::BodyAuthLayer::new(self)
    }

    /// Sends claim `claim` of a verified token upstream as header `header` (the seed's
    /// `user_id` → `X-User-ID`). The header is removed from every incoming request first.
    pub fn claim_to_header(mut self, claim: impl Into<String>, header: HeaderName) -> Self {
        self.policy_mut().claim_headers.push((claim.into(), header));
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth::new(inner, self.policy.clone())
    }
}

// === impl Policy ===

impl Policy {
    pub(crate) fn is_empty(&self) -> bool {
        self.authenticators.is_empty()
    }

    pub(crate) fn reads_body(&self) -> bool {
        self.reads_body
    }

    pub(crate) fn skips(&self, parts: &Parts) -> bool {
        let path = parts.uri.path();
        let skipped = self
            .skip_paths
            .iter()
            .any(|skip| match skip.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == skip,
            });
        skipped
            || (self.skip_preflight
                && parts.method == Method::OPTIONS
                && parts.headers.contains_key(header::ORIGIN)
                && parts
                    .headers
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD))
    }

    /// Runs the authenticators (those that read bodies with `body`, when it was read); on
    /// failure, the anonymous consumer if there is one.
    pub(crate) fn evaluate(
        &self,
        parts: &mut Parts,
        body: Option<&mut Bytes>,
    ) -> Result<Authenticated, Rejection> {
        let outcome = match self.mode {
            Mode::All => self.all(parts, body),
            Mode::Any => self.any(parts, body),
        };
        match (outcome, &self.anonymous) {
            (Ok(ok), _) => Ok(ok),
            (Err(_), Some(anonymous)) => Ok(Authenticated::consumer(anonymous.clone())),
            (Err(refused), None) => Err(refused),
        }
    }

    fn all(
        &self,
        parts: &mut Parts,
        mut body: Option<&mut Bytes>,
    ) -> Result<Authenticated, Rejection> {
        let mut out = Authenticated::default();
        for authenticator in &self.authenticators {
            let ok = run(authenticator.as_ref(), parts, body.as_deref_mut())?;
            out.consumer = ok.consumer.or(out.consumer);
            out.claims = ok.claims.or(out.claims);
        }
        Ok(out)
    }

    fn any(
        &self,
        parts: &mut Parts,
        mut body: Option<&mut Bytes>,
    ) -> Result<Authenticated, Rejection> {
        let mut first: Option<Rejection> = None;
        for authenticator in &self.authenticators {
            match run(authenticator.as_ref(), parts, body.as_deref_mut()) {
                Ok(ok) => return Ok(ok),
                Err(refused) => {
                    let better = first.as_ref().is_none_or(|f| f.missing && !refused.missing);
                    if better {
                        first = Some(refused);
                    }
                }
            }
        }
        Err(first.unwrap_or_else(|| Rejection::unauthorized("Unauthorized")))
    }
}

fn run(
    authenticator: &dyn Authenticator,
    parts: &mut Parts,
    body: Option<&mut Bytes>,
) -> Result<Authenticated, Rejection> {
    match body {
        Some(body) if authenticator.reads_body() => {
            authenticator.authenticate_with_body(parts, body)
        }
        _ => authenticator.authenticate(parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str) -> Parts {
        http::Request::get(path).body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_configured_clone_does_not_change_the_original() {
        let refuse = |_: &mut Parts| Err(Rejection::unauthorized("no"));
        let base = AuthLayer::new(refuse);
        let open_health = base.clone().skip_path("/health");
        assert!(open_health.policy.skips(&parts("/health")));
        assert!(!base.policy.skips(&parts("/health")));
    }

    #[test]
    fn any_of_answers_with_the_refusal_of_a_presented_credential() {
        let missing = |_: &mut Parts| Err(Rejection::unauthorized("none").missing());
        let wrong = |_: &mut Parts| Err(Rejection::unauthorized("wrong"));
        let layer =
            AuthLayer::any_of([Box::new(missing) as Box<dyn Authenticator>, Box::new(wrong)]);
        let refused = layer.policy.evaluate(&mut parts("/"), None).unwrap_err();
        assert_eq!(refused.body(), r#"{"message":"wrong"}"#);
    }
}
