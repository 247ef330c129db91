//! The HTTP/1.1 upstream connection pool.
//!
//! Idle keep-alive connections are kept per origin in one shard per thread: a request checks a
//! connection out of its own thread's shard and puts it back there, so a thread-per-core
//! worker never touches another core's pool, and the connection's task runs on the thread
//! that uses it (no cross-thread wake-up per request). Under a work-stealing runtime the
//! shards still spread the checkouts over the workers; each shard is behind a mutex, so a task
//! that moved between threads stays correct.
//!
//! The connections are hyper's own (`hyper::client::conn::http1`): a request is sent on a
//! ready connection, which goes to the back of its origin's queue at once: it is not ready
//! again (and is passed over) until hyper has read the whole response, and by the time it
//! reaches the front again it usually is. A connection found closed is dropped; one unused
//! longer than the idle timeout is closed, when a checkout meets it or by the shard's sweeper. A request that could not be written because its pooled connection had just been
//! closed by the upstream (the keep-alive race) is sent again on another one; a request that
//! was written never is.

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use tokio::time::Instant;
use tower::Service;

use super::UpstreamFailure;
use super::connect::Connector;
use crate::BoxError;

/// How often a request may be sent again after finding its pooled connection closed before
/// it was written.
const MAX_RESENDS: usize = 3;

/// How many pooled connections a checkout looks at (least recently used first) before it
/// opens a new one: the ones still busy reading their response are skipped.
const CHECKOUT_SCAN: usize = 16;

/// A failed exchange: why, and the upstream's address when known.
pub(crate) type Failed = (UpstreamFailure, Option<String>);

/// Which origin of a pool a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key(u32);

/// A pool of HTTP/1.1 connections to any number of origins. Clones share it.
pub(crate) struct Pool<B> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    connector: Connector,
    max_idle: usize,
    idle_timeout: Duration,
    /// Origins by key: their `scheme://authority`, and the URI the connector dials.
    origins: Mutex<Origins>,
    shards: Box<[Arc<Shard<B>>]>,
}

#[derive(Default)]
struct Origins {
    by_name: HashMap<Box<str>, Key>,
    uris: Vec<Uri>,
}

/// One thread's idle connections, on a cache line of its own.
#[repr(align(128))]
struct Shard<B> {
    pool: Weak<Inner<B>>,
    state: Mutex<ShardState<B>>,
}

struct ShardState<B> {
    /// Connections by origin key, least recently used first; the ones in use are among them
    /// (not ready until their exchange is over).
    idle: Vec<VecDeque<Pooled<B>>>,
    /// Whether a task of this shard closes connections idle past the timeout.
    sweeping: bool,
}

struct Pooled<B> {
    sender: http1::SendRequest<B>,
    /// The upstream's address, for the response's extensions (access log).
    info: Option<HttpInfo>,
    since: Instant,
}

// === impl Pool ===

impl<B> Pool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(connector: Connector, max_idle: usize, idle_timeout: Duration) -> Self {
        let shards = crate::shard::count();
        let inner = Arc::new_cyclic(|pool: &Weak<Inner<B>>| Inner {
            connector,
            max_idle,
            idle_timeout,
            origins: Mutex::default(),
            shards: (0..shards)
                .map(|_| {
                    Arc::new(Shard {
                        pool: pool.clone(),
                        state: Mutex::new(ShardState {
                            idle: Vec::new(),
                            sweeping: false,
                        }),
                    })
                })
                .collect(),
        });
        Self { inner }
    }

    /// The key of `scheme://authority` in this pool (the same for every proxy to it).
    pub(crate) fn key(&self, scheme: &str, authority: &str) -> Key {
        let name = format!("{scheme}://{authority}");
        let mut origins = lock(&self.inner.origins);
        if let Some(key) = origins.by_name.get(name.as_str()) {
            return *key;
        }
        let uri = name.parse().unwrap_or_default();
        let key = Key(u32::try_from(origins.uris.len()).unwrap_or(u32::MAX));
        origins.uris.push(uri);
        origins.by_name.insert(name.into_boxed_str(), key);
        key
    }

    /// Sends `req` (origin-form URI, `Host` set) to the origin of `key`.
    pub(crate) fn send(
        &self,
        key: Key,
        req: Request<B>,
    ) -> impl Future<Output = Result<(Response<Incoming>, Option<HttpInfo>), Failed>> + Send + 'static
    {
        let shard = self.inner.local_shard().clone();
        shard.exchange(key, req)
    }
}

impl<B> Inner<B> {
    fn local_shard(&self) -> &Arc<Shard<B>> {
        &self.shards[crate::shard::thread_index() % self.shards.len()]
    }

    fn origin(&self, key: Key) -> Uri {
        lock(&self.origins)
            .uris
            .get(key.0 as usize)
            .cloned()
            .unwrap_or_default()
    }
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

// === impl Shard ===

impl<B> Shard<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn exchange(
        self: Arc<Self>,
        key: Key,
        mut req: Request<B>,
    ) -> Result<(Response<Incoming>, Option<HttpInfo>), Failed> {
        let mut resends = 0;
        loop {
            let (mut conn, reused) = match self.checkout(key) {
                Some(conn) => (conn, true),
                None => (self.connect(key).await?, false),
            };
            let sending = conn.sender.try_send_request(req);
            let info = conn.info.clone();
            // Back at once: it is not ready, so not chosen, until this exchange is over.
            self.put(key, conn);
            match sending.await {
                // The connection's address goes into the response's extensions with the
                // proxy's other facts (one map for all, see `crate::spare`).
                Ok(res) => return Ok((res, info)),
                Err(mut err) => match err.take_message() {
                    // Never written: the connection had been closed under it.
                    Some(unsent) if reused && resends < MAX_RESENDS => {
                        tracing::debug!(error = %err.error(), "pooled connection closed; sending again");
                        resends += 1;
                        req = unsent;
                    }
                    _ => {
                        let address = info.map(|i| i.remote_addr().to_string());
                        return Err((classify(err.error()), address));
                    }
                },
            }
        }
    }

    /// The first ready connection to `key` in the order they were last used, dropping the
    /// closed and expired ones met. Busy ones (still reading their response) go to the back.
    fn checkout(&self, key: Key) -> Option<Pooled<B>> {
        let pool = self.pool.upgrade()?;
        let mut state = lock(&self.state);
        let list = state.idle.get_mut(key.0 as usize)?;
        let now = Instant::now();
        for _ in 0..list.len().min(CHECKOUT_SCAN) {
            let conn = list.pop_front()?;
            if conn.sender.is_closed()
                || now.saturating_duration_since(conn.since) >= pool.idle_timeout
            {
                continue;
            }
            if conn.sender.is_ready() {
                return Some(conn);
            }
            list.push_back(conn);
        }
        None
    }

    fn put(&self, key: Key, mut conn: Pooled<B>) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if pool.max_idle == 0 || conn.sender.is_closed() {
            return;
        }
        conn.since = Instant::now();
        let mut state = lock(&self.state);
        let index = key.0 as usize;
        if state.idle.len() <= index {
            state.idle.resize_with(index + 1, VecDeque::new);
        }
        let list = &mut state.idle[index];
        if list.len() >= pool.max_idle {
            // The oldest goes; its exchange, if one is still running, finishes first.
            list.pop_front();
        }
        list.push_back(conn);
    }

    /// A new connection to `key`'s origin, its task spawned on this thread.
    async fn connect(self: &Arc<Self>, key: Key) -> Result<Pooled<B>, Failed> {
        let Some(pool) = self.pool.upgrade() else {
            return Err((UpstreamFailure::Connect("the proxy is gone".into()), None));
        };
        let uri = pool.origin(key);
        let mut connector = pool.connector.clone();
        drop(pool);
        let address = uri.authority().map(ToString::to_string);
        let io = connector
            .call(uri)
            .await
            .map_err(|err| (classify_connect(&*err), address.clone()))?;
        let mut extras = http::Extensions::new();
        io.connected().get_extras(&mut extras);
        let info = extras.remove::<HttpInfo>();
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|err| (classify(&err), address))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(%err, "upstream connection ended with an error");
            }
        });
        self.start_sweeper();
        Ok(Pooled {
            sender,
            info,
            since: Instant::now(),
        })
    }

    /// Starts this shard's sweeper on the current runtime unless one runs: it closes idle
    /// connections past the timeout even when nothing uses the shard any more.
    fn start_sweeper(self: &Arc<Self>) {
        {
            let mut state = lock(&self.state);
            if state.sweeping {
                return;
            }
            state.sweeping = true;
        }
        let Some(period) = self
            .pool
            .upgrade()
            .map(|pool| sweep_period(pool.idle_timeout))
        else {
            return;
        };
        let shard = Arc::downgrade(self);
        tokio::spawn(async move {
            // Marks the shard unswept when the task ends, with its runtime too.
            let _sweeping = Sweeping(shard.clone());
            loop {
                tokio::time::sleep(period).await;
                let Some(shard) = shard.upgrade() else {
                    return;
                };
                let Some(pool) = shard.pool.upgrade() else {
                    return;
                };
                let now = Instant::now();
                let mut state = lock(&shard.state);
                for list in &mut state.idle {
                    list.retain(|c| {
                        !c.sender.is_closed()
                            && now.saturating_duration_since(c.since) < pool.idle_timeout
                    });
                }
            }
        });
    }
}

/// Clears a shard's `sweeping` flag when its sweeper ends.
struct Sweeping<B>(Weak<Shard<B>>);

impl<B> Drop for Sweeping<B> {
    fn drop(&mut self) {
        if let Some(shard) = self.0.upgrade() {
            lock(&shard.state).sweeping = false;
        }
    }
}

fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads an exchange's failure: a timer fired, or the upstream broke the exchange.
pub(crate) fn classify(err: &(dyn StdError + 'static)) -> UpstreamFailure {
    if timed_out(err) {
        UpstreamFailure::Timeout
    } else {
        UpstreamFailure::Protocol(innermost(err))
    }
}

/// Reads a failed connection attempt: its timeout, or why it failed.
pub(crate) fn classify_connect(err: &(dyn StdError + 'static)) -> UpstreamFailure {
    if timed_out(err) {
        UpstreamFailure::ConnectTimeout
    } else {
        UpstreamFailure::Connect(innermost(err))
    }
}

fn timed_out(err: &(dyn StdError + 'static)) -> bool {
    sources(err).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
    })
}

fn innermost(err: &(dyn StdError + 'static)) -> String {
    sources(err)
        .last()
        .map(ToString::to_string)
        .unwrap_or_else(|| err.to_string())
}

pub(crate) fn sources<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}
