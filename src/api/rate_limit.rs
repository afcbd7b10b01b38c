//! A token bucket per caller (per client address before authentication succeeds), on
//! each replica: `--rate-limit` requests a second on average, bursts of twice that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::sync::lock;

/// Callers remembered at most; when full, the buckets that are full again go first.
const REMEMBERED: usize = 100_000;

pub struct RateLimiter {
    per_second: u32,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What is left for a caller after a request, for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

/// Refused: try again after this many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub allowance: Allowance,
    pub retry_after: u64,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            burst: f64::from(per_second.max(1)) * 2.0,
            buckets: Mutex::default(),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes one request from `key`'s bucket.
    pub fn admit(&self, key: &str) -> Result<Allowance, Limited> {
        self.admit_at(key, Instant::now())
    }

    fn admit_at(&self, key: &str, now: Instant) -> Result<Allowance, Limited> {
        let rate = f64::from(self.per_second);
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= REMEMBERED && !buckets.contains_key(key) {
            let burst = self.burst;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= REMEMBERED {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled = bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = refilled.min(self.burst);
        bucket.at = now;
        let allowance = |tokens: f64| Allowance {
            limit: self.burst as u32,
            remaining: tokens.max(0.0) as u32,
            reset: ((self.burst - tokens) / rate).ceil() as u64,
        };
        if bucket.tokens < 1.0 {
            return Err(Limited {
                allowance: allowance(bucket.tokens),
                retry_after: ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64,
            });
        }
        bucket.tokens -= 1.0;
        Ok(allowance(bucket.tokens))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_caller_gets_a_burst_then_the_rate_and_others_are_not_affected() {
        let limiter = RateLimiter::new(2);
        let start = Instant::now();
        for left in (0..4).rev() {
            let allowance = limiter.admit_at("a", start).expect("within the burst");
            assert_eq!(allowance.remaining, left);
            assert_eq!(allowance.limit, 4);
        }
        let limited = limiter.admit_at("a", start).expect_err("over the burst");
        assert_eq!(limited.retry_after, 1);
        assert!(limiter.admit_at("b", start).is_ok());
        let later = start + Duration::from_millis(500);
        assert!(limiter.admit_at("a", later).is_ok());
        assert!(limiter.admit_at("a", later).is_err());
    }
}
