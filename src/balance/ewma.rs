//! Peak-EWMA latency estimate (Finagle's, as in tower and linkerd): a slower sample replaces
//! the estimate at once, faster ones blend in with a weight that decays with time, and the
//! estimate itself decays towards zero while no sample arrives, so an endpoint avoided for being
//! slow is tried again eventually.

use std::time::Duration;

use tokio::time::Instant;

/// Kong's `latency` algorithm decays over 10 s.
pub(crate) const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// A floor for the estimate of an endpoint without samples: a zero estimate would make the
/// balancer prefer every new endpoint (linkerd's `MIN_DEFAULT_RTT`).
pub(crate) const MIN_INITIAL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ewma {
    /// The estimate in nanoseconds as of `stamp`.
    estimate: f64,
    stamp: Instant,
}

impl Ewma {
    pub(crate) fn new(initial: Duration) -> Self {
        Self {
            estimate: initial.max(MIN_INITIAL).as_nanos() as f64,
            stamp: Instant::now(),
        }
    }

    /// The estimate at `now`, in nanoseconds.
    pub(crate) fn estimate(&self, now: Instant, decay: Duration) -> f64 {
        self.estimate * weight(now.saturating_duration_since(self.stamp), decay)
    }

    /// Takes a round-trip sample observed at `now`.
    pub(crate) fn observe(&mut self, now: Instant, sample: Duration, decay: Duration) {
        let sample = sample.as_nanos() as f64;
        let current = self.estimate(now, decay);
        self.estimate = if sample > current {
            sample
        } else {
            let w = weight(now.saturating_duration_since(self.stamp), decay);
            current * w + sample * (1.0 - w)
        };
        self.stamp = now;
    }
}

/// `exp(-elapsed / decay)`: how much of an old value is left after `elapsed`.
fn weight(elapsed: Duration, decay: Duration) -> f64 {
    let decay = decay.as_secs_f64();
    if decay <= 0.0 {
        return 0.0;
    }
    (-elapsed.as_secs_f64() / decay).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_slower_sample_replaces_the_estimate_at_once() {
        let mut ewma = Ewma::new(MS);
        let now = Instant::now();
        ewma.observe(now, 100 * MS, DEFAULT_DECAY);
        assert_eq!(
            ewma.estimate(now, DEFAULT_DECAY),
            (100 * MS).as_nanos() as f64
        );
    }

    #[tokio::test(start_paused = true)]
    async fn faster_samples_blend_in_over_the_decay_time() {
        let mut ewma = Ewma::new(MS);
        let start = Instant::now();
        ewma.observe(start, 100 * MS, DEFAULT_DECAY);
        // One decay period later, a 10 ms sample keeps e^-1 of the (already decayed) old value.
        let later = start + DEFAULT_DECAY;
        ewma.observe(later, 10 * MS, DEFAULT_DECAY);
        let old = 100e6 * (-1f64).exp();
        let expected = old * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
        assert!((ewma.estimate(later, DEFAULT_DECAY) - expected).abs() < 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_estimate_decays_towards_zero() {
        let mut ewma = Ewma::new(MS);
        let start = Instant::now();
        ewma.observe(start, 100 * MS, DEFAULT_DECAY);
        let much_later = start + 10 * DEFAULT_DECAY;
        assert!(ewma.estimate(much_later, DEFAULT_DECAY) < 0.01 * 100e6);
    }
}
