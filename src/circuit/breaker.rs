//! A breaker shared by its clones, usable around any async operation.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Policy;
use super::state::{Admission, Machine, Outcome, State};

/// A circuit breaker: the [state machine](Machine) behind a lock, shared by every clone.
///
/// ```
/// use tower_gateway::circuit::{Breaker, CallError, Policy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Breaker::new(Policy::default());
/// for _ in 0..5 {
///     let _ = breaker.call(async { Err::<(), _>("upstream down") }).await;
/// }
/// let err = breaker.call(async { Ok::<_, &str>("never runs") }).await.unwrap_err();
/// assert!(matches!(err, CallError::Open { .. }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Breaker {
    machine: Arc<Mutex<Machine>>,
}

/// An admitted call; exactly one outcome is recorded for it, or it is abandoned when dropped.
#[derive(Debug)]
pub(crate) struct Attempt {
    breaker: Breaker,
    admission: Admission,
    started: Instant,
    done: bool,
}

/// Why [`Breaker::call`] did not return the operation's value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The breaker is open (or half-open with its probes out): the operation was not run.
    #[error("circuit breaker open; retry after {retry_after:?}")]
    Open {
        /// When the breaker may admit a call again.
        retry_after: Duration,
    },
    /// The operation ran and failed.
    #[error(transparent)]
    Inner(E),
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            machine: Arc::new(Mutex::new(Machine::new(policy))),
        }
    }

    /// Whether `self` and `other` are the same breaker (clones of one another).
    pub fn same_as(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.machine, &other.machine)
    }

    /// The current state, for status pages and metrics.
    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// Runs `operation` if the breaker admits it; `Err` counts as a failure, `Ok` as a
    /// success. Dropping the returned future before it ends counts as neither.
    pub async fn call<F, T, E>(&self, operation: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let attempt = self
            .try_admit()
            .map_err(|retry_after| CallError::Open { retry_after })?;
        match operation.await {
            Ok(value) => {
                attempt.finish(Outcome::Success);
                Ok(value)
            }
            Err(err) => {
                attempt.finish(Outcome::Failure);
                Err(CallError::Inner(err))
            }
        }
    }

    /// Admits a call, or says how long to wait.
    pub(crate) fn try_admit(&self) -> Result<Attempt, Duration> {
        let now = Instant::now();
        match self.lock().admit(now) {
            Admission::Reject { retry_after } => Err(retry_after),
            admission => Ok(Attempt {
                breaker: self.clone(),
                admission,
                started: now,
                done: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // The machine has no invariant a panic elsewhere could break halfway.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Attempt ===

impl Attempt {
    /// Records how the call ended.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.done = true;
        let now = Instant::now();
        self.breaker.lock().record_timed(
            now,
            self.admission,
            outcome,
            now.duration_since(self.started),
        );
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.lock().abandon(self.admission);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_does_not_keep_the_breaker_half_open_forever() {
        let breaker = Breaker::new(Policy::default());
        for _ in 0..5 {
            let _ = breaker.call(async { Err::<(), ()>(()) }).await;
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        // The probe is cancelled: it proves nothing, and the next call may probe.
        let probe = breaker.call(std::future::pending::<Result<(), ()>>());
        let _ = tokio::time::timeout(Duration::from_millis(1), probe).await;
        assert_eq!(breaker.call(async { Ok::<_, ()>(7) }).await, Ok(7));
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_timed_for_the_slow_call_rule() {
        use crate::circuit::Trip;
        let breaker = Breaker::new(Policy::default().trip(Trip::SlowCallRate {
            threshold: 1.0,
            slower_than: Duration::from_secs(2),
            window: 2,
            min_calls: 2,
        }));
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, ()>(())
        };
        assert_eq!(breaker.call(slow()).await, Ok(()));
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.call(slow()).await, Ok(()));
        assert!(matches!(breaker.state(), State::Open { .. }));
    }
}
