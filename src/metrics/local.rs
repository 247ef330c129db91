//! Per-thread tallies of the per-request metrics, folded into the Prometheus families at
//! scrape time: a request touches only its own thread's shard (a lock no other worker takes
//! on its requests), no shared counter, no family lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::labels::{
    BandwidthLabels, LATENCY_BUCKETS_MS, Name, RejectionLabels, RequestLabels, RouteLabels,
};

/// The families the tallies are folded into.
pub(crate) struct Families<'a> {
    pub(crate) requests: &'a Family<RequestLabels, Counter>,
    pub(crate) rejections: &'a Family<RejectionLabels, Counter>,
    pub(crate) latency: &'a Family<RouteLabels, SummedHistogram>,
    pub(crate) upstream_latency: &'a Family<RouteLabels, SummedHistogram>,
    pub(crate) bandwidth: &'a Family<BandwidthLabels, Counter>,
}

/// One tally per shard of threads.
#[derive(Debug)]
pub(crate) struct Local {
    shards: Box<[Padded]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<Tallies>);

/// A label value's identity: the address of its name, so that a lookup clones nothing. The
/// entry keeps a clone of the name, so the address cannot be reused while the entry lives.
fn id(name: &Name) -> usize {
    name.as_ref()
        .map_or(0, |n| Arc::as_ptr(n).cast::<u8>() as usize)
}

type RouteKey = (usize, usize);

#[derive(Debug, Default)]
struct Tallies {
    requests: HashMap<(RouteKey, u16, &'static str, usize), (RequestLabels, u64)>,
    rejections: HashMap<(RouteKey, &'static str), (RejectionLabels, u64)>,
    latency: HashMap<RouteKey, (RouteLabels, Buckets)>,
    upstream_latency: HashMap<RouteKey, (RouteLabels, Buckets)>,
    bandwidth: HashMap<(RouteKey, &'static str, usize), (BandwidthLabels, u64)>,
}

/// Observations of one histogram: per-bucket counts (not cumulative), count and sum.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    counts: [u64; LATENCY_BUCKETS_MS.len() + 1],
    count: u64,
    sum: f64,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS_MS.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }
}

impl Buckets {
    fn observe(&mut self, value: f64) {
        let at = LATENCY_BUCKETS_MS
            .iter()
            .position(|upper| value <= *upper)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.counts[at] += 1;
        self.count += 1;
        self.sum += value;
    }

    fn add(&mut self, other: &Buckets) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// A histogram of the latency buckets whose observations arrive in batches (from the
/// threads' tallies at each scrape).
#[derive(Debug, Default)]
pub(crate) struct SummedHistogram(Mutex<Buckets>);

impl SummedHistogram {
    fn add(&self, buckets: &Buckets) {
        lock(&self.0).add(buckets);
    }
}

impl TypedMetric for SummedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for SummedHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let b = lock(&self.0).clone();
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(b.counts)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(b.sum, b.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl Local {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..crate::shard::count())
                .map(|_| Padded::default())
                .collect(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tallies) -> T) -> T {
        let shard = &self.shards[crate::shard::thread_index() % self.shards.len()];
        f(&mut lock(&shard.0))
    }

    pub(crate) fn count_request(&self, labels: &RequestLabels) {
        let key = (
            (id(&labels.service), id(&labels.route)),
            labels.code,
            labels.source,
            id(&labels.consumer),
        );
        self.with(|t| {
            t.requests
                .entry(key)
                .or_insert_with(|| (labels.clone(), 0))
                .1 += 1
        });
    }

    pub(crate) fn count_rejection(&self, labels: &RejectionLabels) {
        let key = ((id(&labels.service), id(&labels.route)), labels.by);
        self.with(|t| {
            t.rejections
                .entry(key)
                .or_insert_with(|| (labels.clone(), 0))
                .1 += 1;
        });
    }

    pub(crate) fn observe_upstream_latency(&self, labels: &RouteLabels, ms: f64) {
        let key = (id(&labels.service), id(&labels.route));
        self.with(|t| {
            t.upstream_latency
                .entry(key)
                .or_insert_with(|| (labels.clone(), Buckets::default()))
                .1
                .observe(ms);
        });
    }

    /// A finished request: its latency and its bytes each way.
    pub(crate) fn finish(
        &self,
        route: &RouteLabels,
        ms: f64,
        consumer: &Name,
        bandwidth: [(&'static str, u64); 2],
    ) {
        let key = (id(&route.service), id(&route.route));
        self.with(|t| {
            t.latency
                .entry(key)
                .or_insert_with(|| (route.clone(), Buckets::default()))
                .1
                .observe(ms);
            for (direction, bytes) in bandwidth {
                t.bandwidth
                    .entry((key, direction, id(consumer)))
                    .or_insert_with(|| {
                        let labels = BandwidthLabels {
                            service: route.service.clone(),
                            route: route.route.clone(),
                            direction,
                            consumer: consumer.clone(),
                        };
                        (labels, 0)
                    })
                    .1 += bytes;
            }
        });
    }

    /// Moves every thread's tallies into the families; series idle since the last scrape
    /// leave the tallies (and let go of the names they hold).
    pub(crate) fn fold_into(&self, shared: Families<'_>) {
        for shard in &*self.shards {
            let mut guard = lock(&shard.0);
            let t = &mut *guard;
            t.requests.retain(|_, (labels, n)| {
                let seen = *n > 0;
                if seen {
                    shared.requests.get_or_create(labels).inc_by(*n);
                    *n = 0;
                }
                seen
            });
            t.rejections.retain(|_, (labels, n)| {
                let seen = *n > 0;
                if seen {
                    shared.rejections.get_or_create(labels).inc_by(*n);
                    *n = 0;
                }
                seen
            });
            t.bandwidth.retain(|_, (labels, n)| {
                let seen = *n > 0;
                if seen {
                    shared.bandwidth.get_or_create(labels).inc_by(*n);
                    *n = 0;
                }
                seen
            });
            for (tallies, family) in [
                (&mut t.latency, &shared.latency),
                (&mut t.upstream_latency, &shared.upstream_latency),
            ] {
                tallies.retain(|_, (labels, buckets)| {
                    let seen = buckets.count > 0;
                    if seen {
                        family.get_or_create(labels).add(buckets);
                        *buckets = Buckets::default();
                    }
                    seen
                });
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn tallies_of_several_threads_are_summed_into_one_series_at_each_scrape() {
        let metrics = Metrics::new();
        let route = RouteLabels {
            service: Some("s".into()),
            route: Some("r".into()),
        };
        let request = RequestLabels {
            service: route.service.clone(),
            route: route.route.clone(),
            code: 200,
            source: "service",
            consumer: None,
        };
        std::thread::scope(|scope| {
            for ms in [0.5, 3.0, 99_999.0] {
                let (metrics, route, request) = (&metrics, &route, &request);
                scope.spawn(move || {
                    let local = &metrics.shared.local;
                    local.count_request(request);
                    local.finish(route, ms, &None, [("ingress", 5), ("egress", 7)]);
                });
            }
        });
        let text = metrics.encode();
        for line in [
            r#"kong_http_requests_total{service="s",route="r",code="200",source="service",consumer=""} 3"#,
            r#"kong_request_latency_ms_bucket{le="1.0",service="s",route="r"} 1"#,
            r#"kong_request_latency_ms_bucket{le="5.0",service="s",route="r"} 2"#,
            r#"kong_request_latency_ms_bucket{le="60000.0",service="s",route="r"} 2"#,
            r#"kong_request_latency_ms_bucket{le="+Inf",service="s",route="r"} 3"#,
            r#"kong_request_latency_ms_count{service="s",route="r"} 3"#,
            r#"kong_bandwidth_bytes_total{service="s",route="r",direction="egress",consumer=""} 21"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A second scrape adds nothing twice.
        metrics.shared.local.count_request(&request);
        let text = metrics.encode();
        assert!(text.contains(
            r#"kong_http_requests_total{service="s",route="r",code="200",source="service",consumer=""} 4"#
        ));
        assert!(text.contains(r#"kong_request_latency_ms_count{service="s",route="r"} 3"#));
    }
}
