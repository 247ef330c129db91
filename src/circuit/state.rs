//! The breaker as a pure state machine: no I/O, time passed in.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::{Policy, Trip};

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail fast until `until`.
    Open {
        /// When the breaker turns half-open.
        until: Instant,
    },
    /// A bounded number of probes go through; their outcomes decide.
    HalfOpen,
}

/// The breaker's answer to "may this call go ahead?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead, closed breaker.
    Call,
    /// Go ahead as a half-open probe; the outcome decides the state.
    Probe,
    /// Fail fast; the caller may retry after this long.
    Reject {
        /// Time until the breaker may admit a call again.
        retry_after: Duration,
    },
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure,
}

/// The state machine behind a circuit breaker.
///
/// `admit` before a call, then exactly one of `record` (the call ended) or `abandon` (it was
/// cancelled and proves nothing) for every admission that went ahead.
///
/// ```
/// use tokio::time::Instant;
/// use tower_gateway::circuit::{Admission, Machine, Outcome, Policy, State, Trip};
///
/// // The breaker's decisions without a clock or a lock of its own: time is passed in.
/// let mut machine = Machine::new(Policy::default().trip(Trip::ConsecutiveFailures(1)));
/// let now = Instant::now();
/// let admitted = machine.admit(now);
/// assert!(!matches!(admitted, Admission::Reject { .. }));
/// machine.record(now, admitted, Outcome::Failure);
/// assert!(matches!(machine.state(), State::Open { .. }));
/// ```
#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    state: State,
    /// Failures in a row while closed.
    consecutive: u32,
    /// Recent calls while closed, for the rules over the last N calls.
    recent: VecDeque<Sample>,
    /// Calls per tenth of the period while closed, for the rule over time.
    buckets: VecDeque<Bucket>,
    /// Times the breaker re-opened without closing in between (for the doubling).
    reopens: u32,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// One recent call, for the rules over the last N calls.
#[derive(Debug, Clone, Copy)]
struct Sample {
    failed: bool,
    slow: bool,
}

/// Calls and failures that started in one tenth of the period.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    calls: u32,
    failures: u32,
}

/// A random number in `[0, 1)`.
fn random_unit() -> f64 {
    rand::random::<f64>()
}

/// Whether `hits` of `calls` reach `threshold`, with enough calls to judge.
fn reached(hits: usize, calls: usize, threshold: f64, min_calls: u32) -> bool {
    calls >= min_calls.max(1) as usize && hits > 0 && hits as f64 >= threshold * calls as f64
}

// === impl Machine ===

impl Machine {
    /// A closed breaker.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            state: State::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            buckets: VecDeque::new(),
            reopens: 0,
            probes_in_flight: 0,
            probe_successes: 0,
        }
    }

    /// The current state (an open breaker past its time still reads `Open` until the next
    /// admission turns it half-open).
    pub fn state(&self) -> State {
        self.state
    }

    /// Decides whether a call may go ahead at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Call,
            State::Open { until } if now < until => Admission::Reject {
                retry_after: until - now,
            },
            State::Open { .. } => {
                // Open time is over: half-open, and this call is the first probe.
                tracing::debug!("circuit breaker half-open");
                self.state = State::HalfOpen;
                self.probes_in_flight = 1;
                self.probe_successes = 0;
                Admission::Probe
            }
            State::HalfOpen if self.probes_in_flight < self.policy.probes => {
                self.probes_in_flight += 1;
                Admission::Probe
            }
            // Probes are out; their answer will come soon. Ask again in a second.
            State::HalfOpen => Admission::Reject {
                retry_after: Duration::from_secs(1),
            },
        }
    }

    /// Records how an admitted call ended.
    pub fn record(&mut self, now: Instant, admitted: Admission, outcome: Outcome) {
        self.record_timed(now, admitted, outcome, Duration::ZERO);
    }

    /// Records how an admitted call ended and how long it took (for the slow-call rule).
    pub fn record_timed(
        &mut self,
        now: Instant,
        admitted: Admission,
        outcome: Outcome,
        latency: Duration,
    ) {
        match admitted {
            Admission::Call => self.record_call(now, outcome, latency),
            Admission::Probe => self.record_probe(now, outcome),
            Admission::Reject { .. } => {}
        }
    }

    /// An admitted call was cancelled before it ended: it counts neither way, and a probe
    /// slot is freed.
    pub fn abandon(&mut self, admitted: Admission) {
        if admitted == Admission::Probe && self.state == State::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    fn record_call(&mut self, now: Instant, outcome: Outcome, latency: Duration) {
        // A call admitted while closed that ends after the breaker opened proves nothing new.
        if self.state != State::Closed {
            return;
        }
        let failed = outcome == Outcome::Failure;
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        let trip = match self.policy.trip {
            Trip::ConsecutiveFailures(n) => self.consecutive >= n.max(1),
            Trip::FailureRate {
                threshold,
                window,
                min_calls,
            } => {
                self.push_sample(
                    Sample {
                        failed,
                        slow: false,
                    },
                    window,
                );
                let failures = self.recent.iter().filter(|s| s.failed).count();
                reached(failures, self.recent.len(), threshold, min_calls)
            }
            Trip::SlowCallRate {
                threshold,
                slower_than,
                window,
                min_calls,
            } => {
                let slow = latency >= slower_than;
                self.push_sample(Sample { failed, slow }, window);
                let slow = self.recent.iter().filter(|s| s.slow).count();
                reached(slow, self.recent.len(), threshold, min_calls)
            }
            Trip::FailureRateOver {
                threshold,
                period,
                min_calls,
            } => {
                self.count_in_buckets(now, period, failed);
                let calls: u32 = self.buckets.iter().map(|b| b.calls).sum();
                let failures: u32 = self.buckets.iter().map(|b| b.failures).sum();
                reached(failures as usize, calls as usize, threshold, min_calls)
            }
        };
        if trip {
            self.open(now);
        }
    }

    fn push_sample(&mut self, sample: Sample, window: u32) {
        self.recent.push_back(sample);
        while self.recent.len() > window.max(1) as usize {
            self.recent.pop_front();
        }
    }

    fn count_in_buckets(&mut self, now: Instant, period: Duration, failed: bool) {
        let width = (period / 10).max(Duration::from_nanos(1));
        while self
            .buckets
            .front()
            .is_some_and(|b| b.start + period <= now)
        {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some(bucket) if now < bucket.start + width => {
                bucket.calls += 1;
                bucket.failures += u32::from(failed);
            }
            _ => self.buckets.push_back(Bucket {
                start: now,
                calls: 1,
                failures: u32::from(failed),
            }),
        }
    }

    fn record_probe(&mut self, now: Instant, outcome: Outcome) {
        if self.state != State::HalfOpen {
            return;
        }
        self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failure => {
                self.reopens += 1;
                self.open(now);
            }
            Outcome::Success => {
                self.probe_successes += 1;
                if self.probe_successes >= self.policy.successes_to_close {
                    tracing::info!("circuit breaker closed");
                    self.state = State::Closed;
                    self.reopens = 0;
                    self.consecutive = 0;
                    self.recent.clear();
                    self.buckets.clear();
                }
            }
        }
    }

    fn open(&mut self, now: Instant) {
        let duration = self.policy.open_duration(self.reopens);
        let duration = if self.policy.jitter > 0.0 {
            duration.mul_f64(1.0 + self.policy.jitter * random_unit())
        } else {
            duration
        };
        tracing::warn!(open_for = ?duration, "circuit breaker open");
        self.state = State::Open {
            until: now + duration,
        };
        self.consecutive = 0;
        self.recent.clear();
        self.buckets.clear();
        self.probes_in_flight = 0;
        self.probe_successes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn fail_calls(m: &mut Machine, now: Instant, n: u32) {
        for _ in 0..n {
            assert_eq!(m.admit(now), Admission::Call);
            m.record(now, Admission::Call, Outcome::Failure);
        }
    }

    #[test]
    fn opens_after_five_consecutive_failures_and_a_success_resets_the_count() {
        let now = Instant::now();
        let mut m = Machine::new(Policy::default());
        fail_calls(&mut m, now, 4);
        m.record(now, Admission::Call, Outcome::Success);
        fail_calls(&mut m, now, 4);
        assert_eq!(m.state(), State::Closed);
        fail_calls(&mut m, now, 1);
        assert_eq!(
            m.state(),
            State::Open {
                until: now + secs(10)
            }
        );
        assert_eq!(
            m.admit(now + secs(4)),
            Admission::Reject {
                retry_after: secs(6)
            }
        );
    }

    #[test]
    fn exactly_one_probe_is_admitted_while_half_open() {
        let now = Instant::now();
        let mut m = Machine::new(Policy::default());
        fail_calls(&mut m, now, 5);
        let later = now + secs(10);
        let admitted: Vec<_> = (0..10).map(|_| m.admit(later)).collect();
        assert_eq!(
            admitted.iter().filter(|a| **a == Admission::Probe).count(),
            1
        );
        assert_eq!(admitted[0], Admission::Probe);
        assert!(
            admitted[1..]
                .iter()
                .all(|a| matches!(a, Admission::Reject { .. }))
        );
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
        let mut now = Instant::now();
        let policy = Policy::default().open_for(secs(2), secs(10));
        let mut m = Machine::new(policy);
        fail_calls(&mut m, now, 5);
        for expected in [4, 8, 10, 10] {
            now += secs(20);
            assert_eq!(m.admit(now), Admission::Probe);
            m.record(now, Admission::Probe, Outcome::Failure);
            assert_eq!(
                m.state(),
                State::Open {
                    until: now + secs(expected)
                }
            );
        }
    }

    #[test]
    fn probe_successes_close_it_and_the_open_time_starts_over() {
        let mut now = Instant::now();
        let policy = Policy::default()
            .open_for(secs(2), secs(60))
            .successes_to_close(2);
        let mut m = Machine::new(policy);
        fail_calls(&mut m, now, 5);
        now += secs(2);
        assert_eq!(m.admit(now), Admission::Probe);
        m.record(now, Admission::Probe, Outcome::Failure); // re-opened for 4 s
        now += secs(4);
        assert_eq!(m.admit(now), Admission::Probe);
        m.record(now, Admission::Probe, Outcome::Success);
        assert_eq!(m.state(), State::HalfOpen);
        assert_eq!(m.admit(now), Admission::Probe);
        m.record(now, Admission::Probe, Outcome::Success);
        assert_eq!(m.state(), State::Closed);
        fail_calls(&mut m, now, 5);
        assert_eq!(
            m.state(),
            State::Open {
                until: now + secs(2)
            }
        );
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let now = Instant::now();
        let mut m = Machine::new(Policy::default());
        fail_calls(&mut m, now, 5);
        let later = now + secs(10);
        assert_eq!(m.admit(later), Admission::Probe);
        assert!(matches!(m.admit(later), Admission::Reject { .. }));
        m.abandon(Admission::Probe);
        assert_eq!(m.admit(later), Admission::Probe);
    }

    #[test]
    fn failure_rate_trips_only_with_enough_calls() {
        let now = Instant::now();
        let policy = Policy::default().trip(Trip::FailureRate {
            threshold: 0.5,
            window: 10,
            min_calls: 6,
        });
        let mut m = Machine::new(policy);
        for outcome in [Outcome::Failure, Outcome::Success].repeat(2) {
            m.admit(now);
            m.record(now, Admission::Call, outcome);
        }
        assert_eq!(m.state(), State::Closed, "4 calls are fewer than min_calls");
        for outcome in [Outcome::Success, Outcome::Failure] {
            m.admit(now);
            m.record(now, Admission::Call, outcome);
        }
        assert!(matches!(m.state(), State::Open { .. }), "3 of 6 failed");
    }

    #[test]
    fn failures_older_than_the_period_stop_counting() {
        let start = Instant::now();
        let policy = Policy::default().trip(Trip::FailureRateOver {
            threshold: 0.5,
            period: secs(10),
            min_calls: 4,
        });
        let mut m = Machine::new(policy);
        for _ in 0..3 {
            m.admit(start);
            m.record(start, Admission::Call, Outcome::Failure);
        }
        // Twelve seconds later those failures are gone: 1 failure in 4 calls does not trip.
        let later = start + secs(12);
        for outcome in [
            Outcome::Failure,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success,
        ] {
            m.admit(later);
            m.record(later, Admission::Call, outcome);
        }
        assert_eq!(m.state(), State::Closed);
        // Within the period, failures add up.
        for _ in 0..3 {
            m.admit(later + secs(1));
            m.record(later + secs(1), Admission::Call, Outcome::Failure);
        }
        assert!(
            matches!(m.state(), State::Open { .. }),
            "4 of 7 failed within 10 s"
        );
    }

    #[test]
    fn slow_successes_trip_the_slow_call_rule() {
        let now = Instant::now();
        let policy = Policy::default().trip(Trip::SlowCallRate {
            threshold: 0.8,
            slower_than: Duration::from_millis(500),
            window: 5,
            min_calls: 5,
        });
        let mut m = Machine::new(policy);
        let call = |m: &mut Machine, ms| {
            m.admit(now);
            m.record_timed(
                now,
                Admission::Call,
                Outcome::Success,
                Duration::from_millis(ms),
            );
        };
        for ms in [900, 900, 100, 900] {
            call(&mut m, ms);
        }
        assert_eq!(m.state(), State::Closed, "too few calls yet");
        call(&mut m, 100);
        assert_eq!(m.state(), State::Closed, "3 of 5 slow");
        call(&mut m, 600);
        assert_eq!(m.state(), State::Closed, "3 of the last 5 slow");
        call(&mut m, 700);
        assert_eq!(m.state(), State::Closed, "still 3 of the last 5 slow");
        call(&mut m, 800);
        assert!(
            matches!(m.state(), State::Open { .. }),
            "4 of the last 5 slow"
        );
    }

    #[test]
    fn jitter_lengthens_the_open_time_within_its_bound() {
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut m = Machine::new(Policy::default().jitter(0.5));
            fail_calls(&mut m, now, 5);
            let State::Open { until } = m.state() else {
                panic!("not open")
            };
            let open = until - now;
            assert!(open >= secs(10) && open <= secs(15), "{open:?}");
            seen.insert(open);
        }
        assert!(seen.len() > 1, "no jitter at all");
    }

    #[test]
    fn calls_ending_after_the_breaker_opened_do_not_count() {
        let now = Instant::now();
        let mut m = Machine::new(Policy::default());
        fail_calls(&mut m, now, 5);
        let open = m.state();
        m.record(now, Admission::Call, Outcome::Success);
        m.record(now, Admission::Call, Outcome::Failure);
        assert_eq!(m.state(), open);
    }
}
