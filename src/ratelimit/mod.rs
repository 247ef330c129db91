//! Rate limiting algorithms as pure state machines: no I/O, time passed in, exact integer
//! arithmetic, rejected requests consume nothing.
//!
//! Each algorithm is a small configuration value with a `decide(&state, now)` method that
//! returns a [`Decision`] and the key's next state; the caller stores the next state only when
//! the request is admitted (and, with several limits on one request, only when all of them
//! admit it), which is what makes a denial consume nothing and several limits all-or-nothing.
//! Per-key state is a few bytes, so keyed stores stay small.
//!
//! | algorithm | semantics |
//! | --- | --- |
//! | [`TokenBucket`] | `burst` tokens refilled at `rate`; after a long idle exactly `burst` pass |
//! | [`LeakyBucket`] | nginx `limit_req`: excess at nanosecond resolution, delay / `nodelay` / `delay=N` |
//! | [`FixedWindow`] | Kong's `rate-limiting`: UTC calendar windows, second to year, several at once |
//! | [`SlidingLog`] | exactly `limit` in any window; memory bounded by `limit` per key |
//! | [`SlidingWindow`] | the weighted two-window counter (Cloudflare, Kong Advanced); 24 bytes per key |
//!
//! The layer, key extractors, headers and stores are not implemented yet.

mod decision;
mod fixed_window;
mod leaky_bucket;
mod sliding_window;
mod token_bucket;

pub use decision::{Decision, Nanos, Rate, Verdict};
pub use fixed_window::{FixedWindow, FixedWindowState, Period};
pub use leaky_bucket::{LeakyBucket, LeakyBucketState, LeakyState};
pub use sliding_window::{SlidingLog, SlidingLogState, SlidingWindow, SlidingWindowState};
pub use token_bucket::{TokenBucket, TokenBucketState};
