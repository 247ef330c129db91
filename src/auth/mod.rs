//! Authentication with Kong's consumers: API keys (`key-auth`) and JWTs (`jwt`).
//!
#![cfg_attr(
    feature = "jwt",
    doc = "[`AuthLayer`] runs one or more [`Authenticator`]s ([`ApiKey`], [`Jwt`], or a closure)"
)]
#![cfg_attr(
    not(feature = "jwt"),
    doc = "[`AuthLayer`] runs one or more [`Authenticator`]s ([`ApiKey`], `Jwt` with feature `jwt`, or a closure)"
)]
//! before the inner service:
//!
//! - [`AuthLayer::all_of`] (Kong's plugins without `anonymous`) needs every authenticator to
//!   accept; [`AuthLayer::any_of`] (with `anonymous`) the first that does.
//! - With [`anonymous`](AuthLayer::anonymous), a refused request goes on as that consumer,
//!   with `X-Anonymous-Consumer: true`; without it, the refusal is final: 401 with Kong's
//!   message and a `WWW-Authenticate` challenge, and the upstream never sees the request.
//! - Skip rules let some paths (`/health`) and CORS preflights through.
//! - [`AuthLayer::reading_body`] gives [`BodyAuth`], for authenticators that read the request
//!   body (Kong's `key_in_body`); its inner service receives a
//!   [`RequestBody`](crate::body::RequestBody).
//! - An accepted request carries the [`Consumer`] (and a token's [`Claims`]) in its extensions
//!   and the identity headers upstream: `X-Consumer-ID`, `X-Consumer-Username`,
//!   `X-Consumer-Custom-ID`, `X-Credential-Identifier`, `X-Anonymous-Consumer`. Client-sent
//!   copies of these, and of headers mapped from claims, are removed from every request,
//!   authenticated or not.
//!
//! [`Consumers`] holds the consumers and their credentials; authenticators share it, and
//! changes (configuration reloads, the Admin API) are atomic.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let consumers = Consumers::new();
//! consumers.insert(Consumer::new("c-1").username("test-user"));
//! consumers.add_api_key("test-user", "test-api-key").unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(ApiKey::new(consumers)))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.headers()["x-consumer-username"].to_str().unwrap().to_owned();
//!         Ok::<_, std::convert::Infallible>(Response::new(user))
//!     }));
//!
//! let refused = service.clone().oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(refused.status(), 401);
//! let req = Request::builder().header("apikey", "test-api-key").body(String::new()).unwrap();
//! let accepted = service.oneshot(req).await.unwrap();
//! assert_eq!(accepted.status(), 200);
//! # }
//! ```
//!
//! # In an axum app
//!
//! The layer goes on an axum `Router` (or a single route) like any tower layer; the handler
//! behind it can read the [`Consumer`](crate::identity::Consumer) from the request extensions.
//!
//! ```
//! use axum::body::Body;
//! use axum::{Extension, Router, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_gateway::auth::{ApiKey, AuthLayer, Consumer, Consumers};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let consumers = Consumers::new();
//! consumers.insert(Consumer::new("c-1").username("ann"));
//! consumers.add_api_key("ann", "ann-key").unwrap();
//! let app = Router::new()
//!     .route("/", get(|Extension(who): Extension<Consumer>| async move { format!("hi {}", who.id) }))
//!     .layer(AuthLayer::new(ApiKey::new(consumers)));
//!
//! let call = |key: Option<&'static str>| {
//!     let mut req = Request::get("/");
//!     if let Some(key) = key {
//!         req = req.header("apikey", key);
//!     }
//!     app.clone().oneshot(req.body(Body::empty()).unwrap())
//! };
//! assert_eq!(call(None).await.unwrap().status(), 401);
//! assert_eq!(call(Some("wrong")).await.unwrap().status(), 401);
//! assert_eq!(call(Some("ann-key")).await.unwrap().status(), 200);
//! # }
//! ```

mod api_key;
mod authenticator;
mod body;
mod consumer;
mod credential;
mod form;
mod headers;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
mod layer;
mod service;

pub use api_key::{ApiKey, DUPLICATE_API_KEY, NO_API_KEY, UNAUTHORIZED};
pub use authenticator::{Authenticated, Authenticator, Claims, Rejection};
pub use body::{BodyAuth, BodyAuthLayer, BodyResponseFuture, DEFAULT_MAX_BODY};
pub use consumer::{Consumer, Consumers, Editor};
pub use credential::CredentialError;
#[cfg(feature = "config")]
pub(crate) use credential::derived_id;
#[cfg(feature = "config")]
pub(crate) use headers::strip_identity;
pub use headers::{
    X_ANONYMOUS_CONSUMER, X_CONSUMER_CUSTOM_ID, X_CONSUMER_ID, X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
};
#[cfg(feature = "jwt")]
pub use jwt::{Jwt, JwtCredential, TimeClaim};
pub use layer::AuthLayer;
pub use service::{Auth, ResponseFuture};
