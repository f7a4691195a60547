//! Rate limits for the endpoints the spec marks as rate-limited, as token
//! buckets (governor) keyed by client IP address or user. Exceeding one
//! answers 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`.

use std::{hash::Hash, net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use ruma::OwnedUserId;

use crate::config::{RateLimit, RateLimitsConfig};

/// A bucket was empty: try again after `retry_after`.
#[derive(Debug, thiserror::Error)]
#[error("too many requests; retry after {retry_after:?}")]
pub struct RateLimited {
    pub retry_after: Duration,
}

/// Which keys no limit applies to.
pub type Exempt<K> = Arc<dyn Fn(&K) -> bool + Send + Sync>;

/// One keyed token bucket; `None` when rate limits are switched off.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: Option<DefaultKeyedRateLimiter<K>>,
    exempt: Option<Exempt<K>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(enabled: bool, limit: RateLimit) -> Self {
        let inner = enabled.then(|| {
            let burst = NonZeroU32::new(limit.burst).expect("config validation ensures burst >= 1");
            let period = Duration::from_secs_f64(1.0 / limit.per_second);
            let quota =
                Quota::with_period(period).expect("config validation ensures a positive rate").allow_burst(burst);
            DefaultKeyedRateLimiter::keyed(quota)
        });
        Self { inner, exempt: None }
    }

    fn exempting(mut self, exempt: &Exempt<K>) -> Self {
        self.exempt = Some(exempt.clone());
        self
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), RateLimited> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        if self.exempt.as_ref().is_some_and(|exempt| exempt(key)) {
            return Ok(());
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            RateLimited { retry_after: wait.max(Duration::from_millis(1)) }
        })
    }
}

/// Every rate limit of the client API.
pub struct RateLimiters {
    pub login: Limiter<IpAddr>,
    pub registration: Limiter<IpAddr>,
    pub message: Limiter<OwnedUserId>,
    pub join: Limiter<OwnedUserId>,
    pub invite: Limiter<OwnedUserId>,
    pub room_creation: Limiter<OwnedUserId>,
    pub media_upload: Limiter<OwnedUserId>,
    pub report: Limiter<OwnedUserId>,
    /// Keyed by user id, or by client IP address for unauthenticated calls.
    pub delayed_event_management: Limiter<String>,
}

impl RateLimiters {
    /// `exempt_users`: users no per-user limit applies to (those of
    /// application services registered with `rate_limited: false`).
    pub fn new(config: &RateLimitsConfig, exempt_users: Exempt<OwnedUserId>) -> Self {
        let e = &exempt_users;
        Self {
            login: Limiter::new(config.enabled, config.login),
            registration: Limiter::new(config.enabled, config.registration),
            message: Limiter::new(config.enabled, config.message).exempting(e),
            join: Limiter::new(config.enabled, config.join).exempting(e),
            invite: Limiter::new(config.enabled, config.invite).exempting(e),
            room_creation: Limiter::new(config.enabled, config.room_creation).exempting(e),
            media_upload: Limiter::new(config.enabled, config.media_upload).exempting(e),
            report: Limiter::new(config.enabled, config.report).exempting(e),
            delayed_event_management: Limiter::new(config.enabled, config.delayed_event_management),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited() {
        let limiter = Limiter::new(true, RateLimit { per_second: 0.01, burst: 2 });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(limiter.check(&ip).is_ok());
        assert!(limiter.check(&ip).is_ok());
        let err = limiter.check(&ip).unwrap_err();
        assert!(err.retry_after > Duration::from_secs(1), "a token comes back after 100 s");
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limiter.check(&other).is_ok(), "limits are per key");
        let off = Limiter::new(false, RateLimit { per_second: 0.01, burst: 1 });
        for _ in 0..10 {
            assert!(off.check(&ip).is_ok());
        }
    }
}
