//! The `circuit-breaker` plugin turned into a [`CircuitBreakerLayer`].

use std::time::Duration;

use super::CircuitBreakerConfig;
use crate::circuit::{Breaker, CircuitBreakerLayer, Policy, Trip};

/// A field below `config` (as `.failures`) and what is wrong there.
type Invalid = (String, String);

impl CircuitBreakerConfig {
    /// The breaker's policy, checked.
    pub(crate) fn policy(&self) -> Result<Policy, Invalid> {
        let seconds = |field: &str, value: Option<f64>, default: f64| {
            let v = value.unwrap_or(default);
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err((
                    format!(".{field}"),
                    format!("{v} is out of range (0, 86400] seconds"),
                ))
            }
        };
        let base = seconds("open_time", self.open_time, 10.0)?;
        let max = seconds("max_open_time", self.max_open_time, 300.0)?;
        if max < base {
            return Err((
                ".max_open_time".into(),
                "max_open_time is shorter than open_time".into(),
            ));
        }
        let trip = match (self.failures, self.failure_rate) {
            (Some(_), Some(_)) => {
                return Err((
                    ".failure_rate".into(),
                    "give failures or failure_rate, not both".into(),
                ));
            }
            (None, Some(rate)) => {
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err((
                        ".failure_rate".into(),
                        format!("{rate} is out of range (0, 1]"),
                    ));
                }
                Trip::FailureRate {
                    threshold: rate,
                    window: self.window.unwrap_or(20).max(1),
                    min_calls: self.min_calls.unwrap_or(10),
                }
            }
            (failures, None) => {
                if self.window.is_some() || self.min_calls.is_some() {
                    return Err((
                        ".window".into(),
                        "window and min_calls go with failure_rate".into(),
                    ));
                }
                match failures.unwrap_or(5) {
                    0 => return Err((".failures".into(), "must be at least 1".into())),
                    n => Trip::ConsecutiveFailures(n),
                }
            }
        };
        let jitter = self.jitter.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&jitter) {
            return Err((".jitter".into(), format!("{jitter} is out of range [0, 1]")));
        }
        Ok(Policy::default()
            .trip(trip)
            .open_for(base, max)
            .probes(self.probes.unwrap_or(1))
            .successes_to_close(self.successes.unwrap_or(1))
            .jitter(jitter))
    }

    /// The layer around `breaker` (made from [`policy`](Self::policy) by the caller, so a
    /// service-scoped plugin shares one breaker among its routes).
    pub(crate) fn layer(&self, breaker: Breaker) -> CircuitBreakerLayer {
        let layer = CircuitBreakerLayer::shared(breaker);
        match &self.failure_statuses {
            Some(list) => layer.failure_status_list(list.iter().map(|s| s.0)),
            None => layer,
        }
    }
}
