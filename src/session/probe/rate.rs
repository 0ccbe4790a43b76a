//! A request-rate limit per cloud, sans-IO: each cloud gets one request slot
//! every `1/rate` seconds. Shared by every probe of a run, so that the limit
//! holds however many serials are probed at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Slots per cloud. [`RateLimiter::reserve`] hands out the next free slot.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Duration,
    next_free: HashMap<String, Instant>,
}

impl RateLimiter {
    /// `per_second` requests per cloud; zero or less means no limit.
    pub fn new(per_second: f64) -> RateLimiter {
        let interval = if per_second > 0.0 && per_second.is_finite() {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        RateLimiter {
            interval,
            next_free: HashMap::new(),
        }
    }

    /// The time at which a request to `cloud` asked for at `now` may go,
    /// and takes that slot: slots are `interval` apart and never in the past.
    pub fn reserve(&mut self, cloud: &str, now: Instant) -> Instant {
        self.reserve_burst(cloud, now, 1)
    }

    /// Like [`RateLimiter::reserve`] for a burst of `count` requests that
    /// must go at their own pace (a handshake's): they start at the returned
    /// time and the cloud's next `count` slots are theirs, so the requests
    /// after them wait as if they had been spaced.
    pub fn reserve_burst(&mut self, cloud: &str, now: Instant, count: u32) -> Instant {
        let slot = match self.next_free.get(cloud) {
            Some(&free) if free > now => free,
            _ => now,
        };
        self.next_free
            .insert(cloud.to_owned(), slot + self.interval * count.max(1));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_per_cloud_and_clouds_are_independent() {
        let t0 = Instant::now();
        let mut limit = RateLimiter::new(4.0);
        let slots: Vec<Duration> = (0..5).map(|_| limit.reserve("easy4ip", t0) - t0).collect();
        let ms: Vec<u128> = slots.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 500, 750, 1000]);
        // Another cloud is not held up by the first one's queue.
        assert_eq!(limit.reserve("amcrest", t0), t0);
    }

    #[test]
    fn an_idle_cloud_does_not_bank_slots() {
        let t0 = Instant::now();
        let mut limit = RateLimiter::new(2.0);
        limit.reserve("c", t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limit.reserve("c", later), later);
        assert_eq!(
            limit.reserve("c", later),
            later + Duration::from_millis(500)
        );
    }

    #[test]
    fn a_burst_takes_as_many_slots_as_it_has_requests() {
        let t0 = Instant::now();
        let mut limit = RateLimiter::new(4.0);
        assert_eq!(limit.reserve_burst("c", t0, 10), t0);
        assert_eq!(limit.reserve("c", t0), t0 + Duration::from_millis(2500));
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let t0 = Instant::now();
        let mut limit = RateLimiter::new(0.0);
        assert_eq!(limit.reserve("c", t0), t0);
        assert_eq!(limit.reserve("c", t0), t0);
    }
}
