//! A deadline that is cheap to arm and disarm many times a second.

use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Times one kind of wait on a connection (a read, a write): armed when the wait begins,
/// disarmed on progress, expired when the wait has lasted `timeout`.
///
/// Arming and disarming only record a deadline. The tokio timer itself moves lazily: it stays
/// registered at whatever deadline it last had and, when it fires early, is pushed to the
/// current deadline. A busy connection therefore touches the timer wheel about once per
/// timeout period instead of once per read, and a wait that is polled again by the same task
/// costs two loads.
#[derive(Debug)]
pub(crate) struct LazyDeadline {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// When the current wait times out; `None` while nothing waits.
    deadline: Option<Instant>,
    /// The task the timer will wake, once it has been polled.
    waker: Option<Waker>,
}

impl LazyDeadline {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline: None,
            waker: None,
        }
    }

    /// Called while the operation is pending: starts the clock if it is not running, and says
    /// whether the wait has lasted too long. Registers `cx` to be woken when it will have.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.timeout);
        // The timer is registered, has not fired and will wake this very task: nothing to do.
        // (Its deadline is never later than ours, so it fires no later than needed.)
        if !self.sleep.is_elapsed() && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            return false;
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    self.waker = Some(cx.waker().clone());
                }
                return false;
            }
            // Deadlines only move forward, so the timer is never later than the deadline.
            if self.sleep.deadline() >= deadline {
                return true;
            }
            // The timer fired for an earlier wait: move it to this one and poll again so the
            // task is woken at the right time.
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Called while the operation is pending, with a deadline fixed by the caller (for
    /// example the moment a request head must be complete): says whether it has passed, and
    /// registers `cx` to be woken when it will have. The deadline may move either way
    /// between calls; progress does not move it.
    pub(crate) fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if deadline <= Instant::now() {
            return true;
        }
        // A timer set for a later deadline would wake too late: bring it forward.
        if self.sleep.deadline() > deadline && !self.sleep.is_elapsed() {
            self.sleep.as_mut().reset(deadline);
            self.waker = None;
        }
        self.deadline = Some(deadline);
        self.poll_expired(cx)
    }

    /// The operation made progress: the next wait starts a new clock.
    pub(crate) fn disarm(&mut self) {
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    async fn wait_until_expired(deadline: &mut LazyDeadline) {
        poll_fn(|cx| {
            if deadline.poll_expired(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn expires_one_timeout_after_the_wait_began() {
        let mut d = LazyDeadline::new(Duration::from_secs(5));
        let started = Instant::now();
        wait_until_expired(&mut d).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_deadline_is_kept_even_when_it_moves_earlier() {
        let mut d = LazyDeadline::new(Duration::from_secs(60));
        let started = Instant::now();
        // First waited on with a far deadline, then with a nearer one: the nearer one wins.
        let far = started + Duration::from_secs(50);
        let _ = tokio::time::timeout(
            Duration::ZERO,
            poll_fn(|cx| match d.poll_until(cx, far) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }),
        )
        .await;
        let near = started + Duration::from_secs(3);
        poll_fn(|cx| match d.poll_until(cx, near) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        })
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rearmed_deadline_counts_from_the_new_wait_not_the_old_timer() {
        let mut d = LazyDeadline::new(Duration::from_secs(5));
        let _ = tokio::time::timeout(Duration::ZERO, wait_until_expired(&mut d)).await;
        tokio::time::advance(Duration::from_secs(4)).await;
        d.disarm();
        let started = Instant::now();
        // The tokio timer still points at the first deadline (1 s away); it must not end
        // this wait early.
        wait_until_expired(&mut d).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
