//! What a rate-limit store is: the [`Store`] contract, its keys and outcomes, and the
//! decisions every store takes the same way.

use std::net::IpAddr;

use super::Period;
use super::decision::{Decision, Nanos};
use super::limit::{Limit, LimitState};

/// What a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address.
    Ip(IpAddr),
    /// Any text: a header value, a consumer, a credential.
    Text(Box<str>),
    /// One counter for everybody.
    Global,
}

/// The outcome of asking the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One decision per limit, in order. The request passes only if all admit it; then, and
    /// only then, every limit counted it.
    pub decisions: Vec<Decision>,
    /// For fixed-window limits: `(period, limit, remaining)` after this request.
    pub periods: Vec<(Period, u64, u64)>,
    /// The key could not be tracked, and the request was refused for it (a store of the
    /// application's may say so; [`MemoryStore`](super::MemoryStore) never does: it counts such keys in its
    /// overflow).
    pub full: bool,
}

/// What every limit decides for a key in state `known` (a key never seen when `None`).
pub(crate) fn check_all(
    limits: &[Limit],
    known: Option<&[LimitState]>,
    now: Nanos,
) -> Vec<Decision> {
    limits
        .iter()
        .enumerate()
        .map(|(i, limit)| match known.and_then(|states| states.get(i)) {
            Some(state) => limit.check(state, now),
            None => limit.check(&limit.fresh(), now),
        })
        .collect()
}

/// Counts an admitted request in every limit's state.
pub(crate) fn commit_all(limits: &[Limit], states: &mut Vec<LimitState>, now: Nanos) {
    states.resize_with(limits.len(), || LimitState::TokenBucket(Default::default()));
    for (limit, state) in limits.iter().zip(states.iter_mut()) {
        limit.commit(state, now);
    }
}

/// The outcome of a refused request: nothing counted.
pub(crate) fn refused(
    limits: &[Limit],
    known: Option<&[LimitState]>,
    decisions: Vec<Decision>,
    now: Nanos,
) -> Outcome {
    let periods = match known {
        Some(states) => periods(limits, states, now),
        None => periods(
            limits,
            &limits.iter().map(Limit::fresh).collect::<Vec<_>>(),
            now,
        ),
    };
    Outcome {
        periods,
        decisions,
        full: false,
    }
}

pub(crate) fn periods(
    limits: &[Limit],
    states: &[LimitState],
    now: Nanos,
) -> Vec<(Period, u64, u64)> {
    let mut out = Vec::new();
    for (limit, state) in limits.iter().zip(states) {
        if let (Limit::FixedWindow(window), LimitState::FixedWindow(state)) = (limit, state) {
            out.extend(window.remaining(state, now));
        }
    }
    out
}

/// Where per-key limit state lives: in this process ([`MemoryStore`](super::MemoryStore)) or shared by several
/// gateways (Redis, in the cluster release). A store decides a request against every limit
/// atomically: it counts the request in all of them, or, when any refuses, in none.
///
/// A store answers at once ([`Decided::Ready`], no allocation: the in-memory store) or later
/// ([`Decided::Pending`], a network round trip); the layer awaits it either way.
///
/// ```
/// use tower_gateway::ratelimit::{Decided, Key, Limit, MemoryStore, Nanos, Store};
///
/// /// Every decision from the in-memory store, logged.
/// #[derive(Debug)]
/// struct Logged(MemoryStore);
///
/// impl Store for Logged {
///     fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided {
///         let outcome = self.0.decide(key, limits, now);
///         println!("{key:?}: {:?}", outcome.decisions);
///         Decided::Ready(Ok(outcome))
///     }
/// }
/// ```
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Decides a request under `key` against `limits` at `now`.
    fn decide(&self, key: &Key, limits: &[Limit], now: Nanos) -> Decided;
}

/// A store's answer: now, or once its round trip completes.
pub enum Decided {
    /// The outcome, known at once.
    Ready(Result<Outcome, StoreError>),
    /// The outcome, known later.
    Pending(
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, StoreError>> + Send>>,
    ),
}

impl std::fmt::Debug for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decided::Ready(result) => f.debug_tuple("Ready").field(result).finish(),
            Decided::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// A store could not decide (its server is unreachable, say). With `fault_tolerant` (the
/// default, as Kong) the request passes uncounted; otherwise it is answered 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer.
    #[error("the rate-limit store is unavailable: {0}")]
    Unavailable(String),
}
