//! Active health checks: a background task probes every endpoint over HTTP and marks it down
//! or up by Kong's thresholds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::passive::StatusSet;
use super::strategy::Tracked;

/// HTTP probes in a background task (Kong's `healthchecks.active`, same field names): each
/// endpoint is requested at `http_path` every `healthy.interval` while up and every
/// `unhealthy.interval` while down (0 = not probed in that state). `unhealthy.*` failures in a
/// row (timeouts, TCP failures, statuses in the unhealthy list) take it down; `healthy.successes`
/// successes in a row bring it back, ending a passive ejection too. The task stops when the
/// balancer is dropped.
///
/// Probes go to `http://{endpoint name}{http_path}`, so endpoints must be named by their
/// `host:port` (as the gateway names targets).
///
/// ```
/// use std::time::Duration;
/// use tower_gateway::balance::ActiveHealth;
///
/// let active = ActiveHealth::new("/health")
///     .interval(Duration::from_secs(5), Duration::from_secs(1))
///     .successes(2)
///     .failures(3, 3, 3);
/// # let _ = active;
/// ```
#[derive(Debug, Clone)]
pub struct ActiveHealth {
    pub(crate) path: String,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) headers: HeaderMap,
    pub(crate) healthy_interval: Duration,
    pub(crate) healthy_statuses: StatusSet,
    pub(crate) successes: u32,
    pub(crate) unhealthy_interval: Duration,
    pub(crate) unhealthy_statuses: StatusSet,
    pub(crate) http_failures: u32,
    pub(crate) tcp_failures: u32,
    pub(crate) timeouts: u32,
}

impl ActiveHealth {
    /// Probes `GET path` every 5 s in either state, with a 1 s timeout; 2 successes bring an
    /// endpoint up, 3 failures of a kind take it down. Kong's status lists: healthy 200 and
    /// 302; unhealthy 429, 404, 500, 501, 502, 503, 504, 505.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            timeout: Duration::from_secs(1),
            concurrency: 10,
            headers: HeaderMap::new(),
            healthy_interval: Duration::from_secs(5),
            healthy_statuses: StatusSet::new([200, 302]),
            successes: 2,
            unhealthy_interval: Duration::from_secs(5),
            unhealthy_statuses: StatusSet::new([429, 404, 500, 501, 502, 503, 504, 505]),
            http_failures: 3,
            tcp_failures: 3,
            timeouts: 3,
        }
    }

    /// How often endpoints are probed while up and while down (0 = not in that state).
    pub fn interval(mut self, healthy: Duration, unhealthy: Duration) -> Self {
        self.healthy_interval = healthy;
        self.unhealthy_interval = unhealthy;
        self
    }

    /// How long one probe may take (Kong: 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many endpoints are probed at once (Kong: 10).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// A header sent with every probe.
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Successes in a row that bring a down endpoint back (0 = never).
    pub fn successes(mut self, n: u32) -> Self {
        self.successes = n;
        self
    }

    /// Unhealthy statuses, TCP failures and timeouts in a row that take an endpoint down
    /// (0 = that kind never does).
    pub fn failures(mut self, http: u32, tcp: u32, timeouts: u32) -> Self {
        self.http_failures = http;
        self.tcp_failures = tcp;
        self.timeouts = timeouts;
        self
    }

    /// The statuses that count as healthy.
    pub fn healthy_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.healthy_statuses = StatusSet::new(statuses);
        self
    }

    /// The statuses that count as unhealthy.
    pub fn unhealthy_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.unhealthy_statuses = StatusSet::new(statuses);
        self
    }
}

/// Stops the checks when dropped.
#[derive(Debug)]
pub(crate) struct Handle(tokio::task::AbortHandle);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Success,
    HttpFailure,
    TcpFailure,
    Timeout,
    Neutral,
}

/// Kong's counters for one endpoint: a success clears the failures, a failure the successes.
#[derive(Debug, Default)]
struct Counters {
    successes: u32,
    http: u32,
    tcp: u32,
    timeouts: u32,
    next: Option<Instant>,
}

/// Probes the endpoints `endpoints` lists (read before each round) until it lists none any
/// more (`None`: the balancer is gone).
pub(crate) fn spawn(
    config: ActiveHealth,
    endpoints: impl Fn() -> Option<Vec<Tracked>> + Send + 'static,
) -> Handle {
    Handle(tokio::spawn(run(config, endpoints)).abort_handle())
}

async fn run(config: ActiveHealth, endpoints: impl Fn() -> Option<Vec<Tracked>>) {
    if config.healthy_interval.is_zero() && config.unhealthy_interval.is_zero() {
        return;
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.timeout));
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let config = Arc::new(config);
    let mut counters: HashMap<Arc<str>, Counters> = HashMap::new();
    loop {
        let Some(tracked) = endpoints() else {
            return;
        };

        let now = Instant::now();
        counters.retain(|name, _| tracked.iter().any(|t| t.endpoint.name() == &**name));
        let mut due = Vec::new();
        let mut wake = now + config.healthy_interval.max(config.unhealthy_interval);
        for t in &tracked {
            let interval = interval(&config, t);
            let c = counters
                .entry(t.endpoint.shared_name().clone())
                .or_default();
            if interval.is_zero() {
                c.next = None;
                continue;
            }
            let at = *c.next.get_or_insert(now);
            if at <= now {
                due.push(t.clone());
                c.next = Some(now + interval);
            }
            wake = wake.min(c.next.unwrap_or(wake));
        }

        for batch in due.chunks(config.concurrency) {
            let mut probes = tokio::task::JoinSet::new();
            for (i, t) in batch.iter().enumerate() {
                let (client, config) = (client.clone(), config.clone());
                let name = t.endpoint.shared_name().clone();
                probes.spawn(async move { (i, probe(&client, &config, &name).await) });
            }
            while let Some(Ok((i, outcome))) = probes.join_next().await {
                let t = &batch[i];
                if let Some(c) = counters.get_mut(t.endpoint.name()) {
                    apply(&config, t, c, outcome);
                }
            }
        }
        tokio::time::sleep_until(wake).await;
    }
}

/// How soon endpoint `t` is probed again, given its state.
fn interval(config: &ActiveHealth, t: &Tracked) -> Duration {
    if t.state.is_probed_down() {
        config.unhealthy_interval
    } else {
        config.healthy_interval
    }
}

async fn probe(
    client: &Client<HttpConnector, Empty<Bytes>>,
    config: &ActiveHealth,
    endpoint: &str,
) -> Probe {
    let Ok(mut request) = Request::get(format!("http://{endpoint}{}", config.path))
        .header(header::USER_AGENT, "tower-gateway health check")
        .body(Empty::new())
    else {
        return Probe::TcpFailure;
    };
    for (name, value) in &config.headers {
        request.headers_mut().append(name, value.clone());
    }
    match tokio::time::timeout(config.timeout, client.request(request)).await {
        Err(_) => Probe::Timeout,
        Ok(Err(_)) => Probe::TcpFailure,
        Ok(Ok(res)) if config.healthy_statuses.contains(res.status()) => Probe::Success,
        Ok(Ok(res)) if config.unhealthy_statuses.contains(res.status()) => Probe::HttpFailure,
        Ok(Ok(_)) => Probe::Neutral,
    }
}

/// Counts a probe's outcome and flips the endpoint when a threshold is reached.
fn apply(config: &ActiveHealth, t: &Tracked, c: &mut Counters, outcome: Probe) {
    let reached = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
    let name = t.endpoint.name();
    let down = t.state.is_probed_down();
    tracing::debug!(endpoint = name, probe = ?outcome, down, "health probe");
    match outcome {
        Probe::Neutral => {}
        Probe::Success => {
            c.http = 0;
            c.tcp = 0;
            c.timeouts = 0;
            c.successes += 1;
            if reached(c.successes, config.successes) {
                if down {
                    tracing::info!(endpoint = name, "endpoint healthy again (active check)");
                }
                t.state.set_probed_down(false);
                t.state.outlier().end_ejection(Instant::now());
                t.state.clear_ejection();
            }
        }
        Probe::HttpFailure | Probe::TcpFailure | Probe::Timeout => {
            c.successes = 0;
            let (count, threshold) = match outcome {
                Probe::HttpFailure => (&mut c.http, config.http_failures),
                Probe::TcpFailure => (&mut c.tcp, config.tcp_failures),
                _ => (&mut c.timeouts, config.timeouts),
            };
            *count += 1;
            if reached(*count, threshold) && !down {
                tracing::warn!(endpoint = name, probe = ?outcome, "endpoint down (active check)");
                t.state.set_probed_down(true);
            }
        }
    }
}
