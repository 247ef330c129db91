//! The label sets of the metric families, and Kong's latency buckets.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;

/// Kong's latency buckets, in milliseconds.
pub(crate) const LATENCY_BUCKETS_MS: [f64; 26] = [
    1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0,
    200.0, 300.0, 400.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0,
];

/// A label value from the configuration (a route, service or consumer name); empty when
/// there is none.
pub(crate) type Name = Option<Arc<str>>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) service: Name,
    pub(crate) route: Name,
    pub(crate) code: u16,
    /// `service` when the upstream answered, `kong` when the gateway did (Kong's values).
    pub(crate) source: &'static str,
    pub(crate) consumer: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) service: Name,
    pub(crate) route: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectionLabels {
    pub(crate) service: Name,
    pub(crate) route: Name,
    pub(crate) by: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectionLabels {
    pub(crate) state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BreakerLabels {
    pub(crate) breaker: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabels {
    pub(crate) upstream: String,
    pub(crate) target: String,
    pub(crate) state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BandwidthLabels {
    pub(crate) service: Name,
    pub(crate) route: Name,
    pub(crate) direction: &'static str,
    pub(crate) consumer: Name,
}
