//! Rate-limit state in Redis, shared by every gateway instance that uses the same server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::decision::{Decision, Nanos};
use super::limit::{Limit, LimitState};
use super::memory::MemoryStore;
use super::store::{
    Decided, Key, Outcome, Store, StoreError, check_all, commit_all, periods, refused,
};

/// Kong's default Redis timeout.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(2000);
/// Attempts at one decision before giving up under contention (other instances writing the
/// same key between this one's read and write).
const ATTEMPTS: usize = 32;
/// Locks striping the keys: an instance decides one request per key at a time, so that its
/// own requests never make each other retry.
const STRIPES: usize = 64;
/// Last-seen states kept per store, so that an uncontended decision is one round trip.
const CACHED_KEYS: usize = 10_000;

/// Kong's fixed windows as counters, one key per period and window: counts them all if every
/// one is under its limit. The fast path of the usual configuration (one fixed-window limit),
/// with no per-key turn-taking: concurrent requests on one key are decided in parallel.
///
/// KEYS one per period; ARGV[i] its limit, ARGV[n + i] its time to live in milliseconds.
/// Returns the counts before this request.
const FIXED_WINDOWS: &str = r"
local counts = {}
local admit = true
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  counts[i] = count
  if count >= tonumber(ARGV[i]) then
    admit = false
  end
end
if admit then
  local n = #KEYS
  for i, key in ipairs(KEYS) do
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[n + i])
  end
end
return counts
";

/// Replaces a key's state only if it is still the one the decision was computed from: the
/// one atomic step every other algorithm's decision goes through.
///
/// KEYS[1] the key; ARGV[1] the state read (empty: none); ARGV[2] the new state (empty:
/// unchanged); ARGV[3] its time to live in milliseconds. Returns `{1}`, or `{0, current}`.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  if ARGV[2] ~= '' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  return {1}
end
return {0, current or ''}
";

/// A rate-limit [`Store`] in Redis (feature `redis`): instances sharing a server share every
/// count, so a limit of 100 a minute is 100 across all of them (Kong's `policy: redis`).
///
/// Every decision is the one [`MemoryStore`] would take, on the state Redis holds, and is
/// made atomic by one server-side script:
///
/// - Kong's usual configuration, one fixed-window limit (Kong's periods), is counted by a
///   script over one counter per period and window: it counts a request only if every
///   period is under its limit, so concurrent requests on one key, from any number of
///   instances, are decided in parallel and never overshoot.
/// - Every other limit (token and leaky buckets, sliding windows and logs, several limits
///   together) keeps its state as one value that a compare-and-set script replaces only if
///   no other instance changed it since it was read; if one did, the decision is computed
///   again on the newer state. Within an instance, requests on one key take turns (64
///   striped locks), so only other instances can make a decision retry, and the last state
///   seen per key is kept (for at most 10 000 keys), so a decision nobody raced costs one
///   round trip. One key then admits at most one decision per round trip per instance
///   (about 10 000 a second on a LAN).
///
/// Keys expire in Redis once their state decides as a fresh key's would.
///
/// While Redis cannot be reached (or answers slower than the timeout), requests are decided
/// by a local [`MemoryStore`] when [`local_fallback`](Self::local_fallback) is on (Kong's
/// `fault_tolerant`), with a warning at most every 10 s; otherwise the store reports
/// [`StoreError::Unavailable`] and the layer answers as its `fault_tolerant` setting says. The
/// connection is re-established by itself when Redis is back.
///
/// ```no_run
/// use tower_gateway::ratelimit::{KeyBy, Limit, Rate, RateLimitLayer, RedisStore, TokenBucket};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379/0", "orders-api").unwrap();
/// let layer = RateLimitLayer::builder(KeyBy::Global)
///     .limit(Limit::TokenBucket(TokenBucket::new(Rate::per_second(10), 20)))
///     .store(store)
///     .build();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: Arc<OnceCell<ConnectionManager>>,
    prefix: Arc<str>,
    timeout: Duration,
    script: Arc<redis::Script>,
    fixed_windows: Arc<redis::Script>,
    seen: Arc<Mutex<HashMap<String, String>>>,
    stripes: Arc<[tokio::sync::Mutex<()>]>,
    fallback: Option<Arc<MemoryStore>>,
    last_warning: Arc<AtomicU64>,
    batch: Option<Arc<super::batch::Batch>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "server",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("local_fallback", &self.fallback.is_some())
            .finish()
    }
}

impl RedisStore {
    /// A store on the server at `url` (`redis://[user:password@]host:port/db`), its keys
    /// under `namespace` (one per limited route or plugin, so that limits do not mix). The
    /// connection is made at the first decision.
    pub fn new(url: &str, namespace: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: Arc::new(OnceCell::new()),
            prefix: Arc::from(format!("tower-gateway:ratelimit:{namespace}:")),
            timeout: DEFAULT_REDIS_TIMEOUT,
            script: Arc::new(redis::Script::new(COMPARE_AND_SET)),
            fixed_windows: Arc::new(redis::Script::new(FIXED_WINDOWS)),
            seen: Arc::new(Mutex::new(HashMap::new())),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            fallback: None,
            last_warning: Arc::new(AtomicU64::new(0)),
            batch: None,
        })
    }

    /// How long one round trip may take before Redis counts as unreachable (default 2 s,
    /// Kong's `redis.timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// While Redis is unreachable, decide with a local in-memory store of at most `max_keys`
    /// keys (each instance then limits on its own), instead of reporting the failure.
    pub fn local_fallback(mut self, max_keys: usize) -> Self {
        self.fallback = Some(Arc::new(MemoryStore::new(max_keys)));
        self
    }

    /// Kong's `sync_rate`: fixed-window limits are counted locally and synchronised with
    /// Redis every `every` (at least 20 ms); a decision then costs no round trip. The price is
    /// accuracy: between two synchronisations an instance knows only its own admissions, so
    /// the cluster admits at most `(instances − 1) × admissions per instance per interval`
    /// beyond the limit, and never more than `instances × limit` in a window. Other limits are
    /// decided against Redis as without it.
    pub fn sync_every(mut self, every: Duration) -> Self {
        let every = every.max(Duration::from_millis(20));
        self.batch = Some(Arc::new(super::batch::Batch::new(every)));
        self
    }

    fn redis_key(&self, key: &Key) -> String {
        match key {
            Key::Ip(ip) => format!("{}ip:{ip}", self.prefix),
            Key::Text(text) => format!("{}k:{text}", self.prefix),
            Key::Global => format!("{}global", self.prefix),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let client = self.client.clone();
        self.connection
            .get_or_try_init(|| async move {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(DEFAULT_REDIS_TIMEOUT))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client, config).await
            })
            .await
            .cloned()
    }

    /// Kong's fixed windows, counted by [`FIXED_WINDOWS`]; the decision is the memory
    /// store's, taken on the counts Redis had.
    async fn decide_fixed(
        &self,
        key: String,
        window: &super::FixedWindow,
        now: Nanos,
    ) -> Result<Outcome, redis::RedisError> {
        let mut connection = self.connection().await?;
        let windows = fixed_windows(&key, window, now);
        let mut invocation = self.fixed_windows.prepare_invoke();
        for (redis_key, ..) in &windows {
            invocation.key(redis_key);
        }
        for &(_, limit) in window.limits() {
            invocation.arg(limit);
        }
        for (.., ttl_ms) in &windows {
            invocation.arg(*ttl_ms);
        }
        let counts: Vec<u64> = invocation.invoke_async(&mut connection).await?;
        let state = windows.iter().zip(&counts).fold(
            super::FixedWindowState::default(),
            |state, (&(_, period, start, ..), &count)| state.with_count(period, start, count),
        );
        let (decision, next) = window.decide(&state, now);
        let counted = if decision.admitted() { &next } else { &state };
        Ok(Outcome {
            periods: window.remaining(counted, now),
            decisions: vec![decision],
            full: false,
        })
    }

    /// Decides against Redis, recomputing when another instance changed the key meanwhile.
    async fn decide_remote(
        &self,
        key: String,
        limits: Vec<Limit>,
        now: Nanos,
    ) -> Result<Outcome, redis::RedisError> {
        if let [Limit::FixedWindow(window)] = limits.as_slice() {
            return self.decide_fixed(key, window, now).await;
        }
        let mut connection = self.connection().await?;
        let stripe = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish() as usize % STRIPES
        };
        let _turn = self.stripes[stripe].lock().await;
        let ttl_ms = time_to_live(&limits, now).as_millis().max(1);
        let mut read = self.cached(&key);
        for _ in 0..ATTEMPTS {
            let known: Option<Vec<LimitState>> = decode(&read);
            let (outcome, next) = transition(&limits, known.as_deref(), now);
            let written = next.as_deref().map(encode).unwrap_or_default();
            let reply: Vec<String> = self
                .script
                .key(&key)
                .arg(&read)
                .arg(&written)
                .arg(ttl_ms.to_string())
                .invoke_async(&mut connection)
                .await?;
            match reply.as_slice() {
                [ok] if ok == "1" => {
                    self.remember(key, if written.is_empty() { read } else { written });
                    return Ok(outcome);
                }
                [_, current] => read = current.clone(),
                _ => read = String::new(),
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the key kept changing under contention",
        )))
    }

    fn cached(&self, key: &str) -> String {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    fn remember(&self, key: String, state: String) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= CACHED_KEYS && !seen.contains_key(&key) {
            // A guess, not the truth: dropping it costs one more round trip, never accuracy.
            seen.clear();
        }
        seen.insert(key, state);
    }

    /// Logs the failure, at most once every 10 s.
    fn warn(&self, err: &dyn std::fmt::Display, now: Nanos) {
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000_000_000
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            match self.fallback {
                Some(_) => {
                    tracing::warn!(%err, "redis unavailable; rate limits are counted locally")
                }
                None => tracing::error!(%err, "redis unavailable; rate-limited requests fail"),
            }
        }
    }
}

impl Store for RedisStore {
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided {
        let redis_key = self.redis_key(key);
        if let (Some(batch), [Limit::FixedWindow(window)]) = (&self.batch, limits) {
            let windows = fixed_windows(&redis_key, window, now);
            if let Some(connection) = self.connection.get() {
                batch.start(connection.clone());
                if let Some(outcome) = batch.decide(window, &windows, now) {
                    return Decided::Ready(Ok(outcome));
                }
            } else {
                // Not connected yet: connect (the synchronisation needs it), then decide.
                let (store, batch, window) = (self.clone(), batch.clone(), window.clone());
                let limits = limits.to_vec();
                let key = key.clone();
                return Decided::Pending(Box::pin(async move {
                    match store.connection().await {
                        Ok(connection) => batch.start(connection),
                        Err(err) => store.warn(&err, now),
                    }
                    match batch.decide(&window, &windows, now) {
                        Some(outcome) => Ok(outcome),
                        None => store.decide_now(key, redis_key, limits, now).await,
                    }
                }));
            }
        }
        let store = self.clone();
        let (key, limits) = (key.clone(), limits.to_vec());
        Decided::Pending(Box::pin(async move {
            store.decide_now(key, redis_key, limits, now).await
        }))
    }
}

impl RedisStore {
    /// Decides against Redis, or locally when Redis cannot answer and a fallback is set.
    async fn decide_now(
        &self,
        key: Key,
        redis_key: String,
        limits: Vec<Limit>,
        now: Nanos,
    ) -> Result<Outcome, StoreError> {
        let store = self;
        let remote = store.decide_remote(redis_key, limits.clone(), now);
        let err = match tokio::time::timeout(store.timeout, remote).await {
            Ok(Ok(outcome)) => return Ok(outcome),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", store.timeout),
        };
        store.warn(&err, now);
        match &store.fallback {
            Some(local) => Ok(local.decide(&key, &limits, now)),
            None => Err(StoreError::Unavailable(err)),
        }
    }
}

/// The Redis keys of `window`'s periods at `now`, with their windows and times to live
/// (relative to the deciding clock, plus a second of slack).
fn fixed_windows(key: &str, window: &super::FixedWindow, now: Nanos) -> Vec<super::batch::Window> {
    let secs = now / 1_000_000_000;
    window
        .limits()
        .iter()
        .map(|&(period, _)| {
            let (start, end) = period.window(secs);
            let end_ns = end.saturating_mul(1_000_000_000);
            let ttl_ms = end_ns.saturating_sub(now) / 1_000_000 + 1_000;
            (
                format!("{key}:{}:{start}", period.name()),
                period,
                start,
                end_ns,
                ttl_ms,
            )
        })
        .collect()
}

/// The outcome for a key in state `known`, and the state to store when it changed.
fn transition(
    limits: &[Limit],
    known: Option<&[LimitState]>,
    now: Nanos,
) -> (Outcome, Option<Vec<LimitState>>) {
    let decisions: Vec<Decision> = check_all(limits, known, now);
    if !decisions.iter().all(Decision::admitted) {
        return (refused(limits, known, decisions, now), None);
    }
    let mut states = match known {
        Some(states) => states.to_vec(),
        None => limits.iter().map(Limit::fresh).collect(),
    };
    commit_all(limits, &mut states, now);
    let outcome = Outcome {
        periods: periods(limits, &states, now),
        decisions,
        full: false,
    };
    (outcome, Some(states))
}

fn encode(states: &[LimitState]) -> String {
    states
        .iter()
        .map(LimitState::encode)
        .collect::<Vec<_>>()
        .join(";")
}

/// The states of a stored value; `None` for no value or one this version did not write
/// (then the key counts as fresh, which the next write corrects).
fn decode(text: &str) -> Option<Vec<LimitState>> {
    if text.is_empty() {
        return None;
    }
    text.split(';').map(LimitState::decode).collect()
}

/// How long a key's state matters: twice the longest window of its limits, plus a second.
fn time_to_live(limits: &[Limit], now: Nanos) -> Duration {
    let longest = limits
        .iter()
        .flat_map(|l| l.policies(now))
        .map(|(_, _, window)| window)
        .max()
        .unwrap_or(1);
    Duration::from_secs(longest.saturating_mul(2).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{
        FixedWindow, LeakyBucket, Period, Rate, SlidingLog, SlidingWindow, TokenBucket,
    };

    #[test]
    fn every_state_survives_its_text_form() {
        const SEC: u64 = 1_000_000_000;
        let limits = [
            Limit::TokenBucket(TokenBucket::new(Rate::per_second(2), 3)),
            Limit::LeakyBucket(LeakyBucket::new(Rate::per_second(1), 2)),
            Limit::FixedWindow(FixedWindow::new([(Period::Second, 5), (Period::Minute, 9)])),
            Limit::SlidingWindow(SlidingWindow::new(4, Duration::from_secs(10))),
            Limit::SlidingLog(SlidingLog::new(3, Duration::from_secs(10))),
        ];
        let mut states: Vec<LimitState> = limits.iter().map(Limit::fresh).collect();
        for i in 0..3 {
            commit_all(&limits, &mut states, 1_700_000_000 * SEC + i * SEC / 3);
        }
        let text = encode(&states);
        assert_eq!(decode(&text), Some(states), "{text}");
        assert_eq!(decode(""), None);
        assert_eq!(decode("x 1"), None);
    }
}
