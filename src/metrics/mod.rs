//! Prometheus metrics: requests, latency and bandwidth per service and route, the gateway's
//! own refusals, upstream health, breakers and connections, in Kong's metric names.
//!
//! [`MetricsLayer`] counts every request into a shared [`Metrics`]; [`Metrics::encode`]
//! renders the Prometheus text exposition, which the bundled gateway serves at `/metrics` on
//! its admin listener. Put the layer outside the router, so that the router can report the
//! route it chose.
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_gateway::metrics::{Metrics, MetricsLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let metrics = Metrics::new();
//! let service = ServiceBuilder::new()
//!     .layer(MetricsLayer::new(metrics.clone()))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hi"))))
//!     }));
//! let res = service.oneshot(Request::new(())).await.unwrap();
//! res.into_body().collect().await.unwrap();
//! let text = metrics.encode();
//! assert!(text.contains(
//!     r#"kong_http_requests_total{service="",route="",code="200",source="service",consumer=""} 1"#
//! ));
//! assert!(text.contains(
//!     r#"kong_bandwidth_bytes_total{service="",route="",direction="egress",consumer=""} 2"#
//! ));
//! # }
//! ```
//!
//! # In an axum app
//!
//! On an axum `Router`; serve [`Metrics::encode`] wherever the scraper looks (the bundled
//! program serves it on its admin listener).
//!
//! ```
//! use axum::body::Body;
//! use axum::{Router, routing::get};
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_gateway::metrics::{Metrics, MetricsLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let metrics = Metrics::new();
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(MetricsLayer::new(metrics.clone()));
//! let res = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! res.into_body().collect().await.unwrap();
//! assert!(metrics.encode().contains(r#"code="200",source="service""#));
//! # }
//! ```

mod labels;
mod local;
mod registry;
mod service;

pub use registry::Metrics;
pub use service::{MetricsBody, MetricsLayer, MetricsService, ResponseFuture};
