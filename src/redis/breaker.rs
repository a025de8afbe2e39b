//! A circuit breaker in front of Redis: after `threshold` failed calls in a
//! row, calls are skipped for `cool_down`, then one probe is let through; its
//! success closes the breaker, its failure opens it again. An outage then
//! costs one timeout per cool-down instead of one per request.
//!
//! ```
//! # use std::time::Duration;
//! # use tokenguard::RedisStore;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Three failures in a row open it for five seconds.
//! let store = RedisStore::open("redis://127.0.0.1:6379")
//!     .unwrap()
//!     .circuit_breaker(3, Duration::from_secs(5));
//! # let _ = store; }
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Breaker {
    /// Failed calls in a row; 0 once a call succeeds.
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls are skipped; 0: closed.
    /// A probe pushes it one cool-down further, so that a probe that never
    /// finishes (its request went away) only delays the next one.
    open_until: AtomicU64,
    epoch: Instant,
    /// 0: never opens.
    threshold: u32,
    cool_down: Duration,
}

/// What [`Breaker::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Call Redis.
    Call,
    /// Skip Redis; it is expected back in about this long.
    Skip(Duration),
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            epoch: Instant::now(),
            threshold,
            cool_down,
        }
    }

    pub(crate) fn threshold(&self) -> u32 {
        self.threshold
    }

    pub(crate) fn cool_down(&self) -> Duration {
        self.cool_down
    }

    fn now_ms(&self, now: Instant) -> u64 {
        // Never 0, which means "closed".
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn cool_down_ms(&self) -> u64 {
        u64::try_from(self.cool_down.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether to call Redis now.
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Call;
        }
        let now = self.now_ms(now);
        if now < until {
            return Admit::Skip(Duration::from_millis(until - now));
        }
        // Cool-down over: the one call that moves the deadline probes.
        let next = now.saturating_add(self.cool_down_ms());
        match self
            .open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admit::Call,
            Err(_) => Admit::Skip(Duration::ZERO),
        }
    }

    /// A call answered.
    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
    }

    /// A call failed or timed out. `true` when this failure opened a closed
    /// breaker.
    pub(crate) fn failure(&self, now: Instant) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if self.threshold == 0 || failures < self.threshold {
            return false;
        }
        let until = self.now_ms(now).saturating_add(self.cool_down_ms());
        self.open_until.swap(until, Ordering::AcqRel) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_once_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t0 = b.epoch;
        assert_eq!(b.admit(t0), Admit::Call);
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        // A success in between starts the count again.
        b.success();
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert_eq!(b.admit(t0), Admit::Call);
        assert!(b.failure(t0), "the third failure in a row opens it");
        let later = t0 + Duration::from_secs(4);
        assert!(matches!(b.admit(later), Admit::Skip(left) if left > Duration::from_secs(5)));
        // Cool-down over: exactly one probe.
        let after = t0 + Duration::from_secs(11);
        assert_eq!(b.admit(after), Admit::Call);
        assert!(
            matches!(b.admit(after), Admit::Skip(_)),
            "one probe at a time"
        );
        // The probe fails: open again, for a whole cool-down from now (no
        // new warning: it was open already).
        assert!(!b.failure(after));
        assert!(matches!(
            b.admit(after + Duration::from_secs(9)),
            Admit::Skip(_)
        ));
        let again = after + Duration::from_secs(11);
        assert_eq!(b.admit(again), Admit::Call);
        b.success();
        assert_eq!(b.admit(again), Admit::Call);
        assert_eq!(b.admit(again), Admit::Call, "closed: no more probing");
    }

    #[test]
    fn a_probe_that_never_finishes_only_delays_the_next_one() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = b.epoch;
        assert!(b.failure(t0));
        let over = t0 + Duration::from_secs(11);
        assert_eq!(b.admit(over), Admit::Call, "the probe");
        // Its request goes away: neither success nor failure is reported.
        assert!(matches!(
            b.admit(over + Duration::from_secs(5)),
            Admit::Skip(_)
        ));
        assert_eq!(
            b.admit(over + Duration::from_secs(11)),
            Admit::Call,
            "another probe, one cool-down later"
        );
    }

    #[test]
    fn late_failures_of_calls_made_before_it_opened_do_not_reopen_it_as_news() {
        let b = Breaker::new(1, Duration::from_secs(1));
        let t0 = b.epoch;
        assert!(b.failure(t0));
        // Another call that was already in flight fails too: still open,
        // and it did not open it.
        assert!(!b.failure(t0));
        assert!(matches!(b.admit(t0), Admit::Skip(_)));
    }

    #[test]
    fn a_threshold_of_zero_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            assert!(!b.failure(b.epoch));
        }
        assert_eq!(b.admit(b.epoch), Admit::Call);
    }
}
