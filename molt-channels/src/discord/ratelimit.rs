//! Discord's HTTP rate limits, learned from the `X-RateLimit-*` headers.
//!
//! A route (such as `POST /channels/{id}/messages`) is mapped to the bucket
//! named by `X-RateLimit-Bucket` once Discord has answered it; the bucket's
//! counter is kept per major parameter (the channel or guild id). Limits are
//! never guessed: a route not yet answered goes out freely, and a 429 sets
//! the wait Discord asks for, globally when it says so.

use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A request's route and its major parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The method and path template, such as `POST /channels/{id}/messages`.
    pub template: &'static str,
    /// The channel, guild or webhook id the limit is counted for.
    pub major: String,
}

#[derive(Debug)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Route template → bucket hash, as Discord named it.
    buckets_of: HashMap<&'static str, String>,
    /// (bucket hash, major parameter) → its counter.
    buckets: HashMap<(String, String), Bucket>,
    global_until: Option<Instant>,
}

/// The limits known so far, shared by every request of one bot.
#[derive(Debug, Default)]
pub struct RateLimits {
    state: Mutex<State>,
}

impl RateLimits {
    /// Waits until `route` may be called, then takes one request from its bucket.
    pub async fn acquire(&self, route: &Route) {
        while let Some(wait) = self.reserve(route, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes one request from the bucket, or says how long to wait first.
    fn reserve(&self, route: &Route, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = state.global_until.filter(|until| *until > now) {
            return Some(until - now);
        }
        let hash = state.buckets_of.get(route.template)?.clone();
        let bucket = state.buckets.get_mut(&(hash, route.major.clone()))?;
        if bucket.reset_at <= now {
            // The window passed; the next answer tells the new count.
            return None;
        }
        if bucket.remaining == 0 {
            return Some(bucket.reset_at - now);
        }
        bucket.remaining -= 1;
        None
    }

    /// Learns from an answer's headers.
    pub fn update(&self, route: &Route, headers: &HeaderMap) {
        self.update_at(route, headers, Instant::now());
    }

    fn update_at(&self, route: &Route, headers: &HeaderMap, now: Instant) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(hash) = header("x-ratelimit-bucket") else {
            return;
        };
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(seconds);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.buckets_of.insert(route.template, hash.to_owned());
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after) {
            let bucket = Bucket {
                remaining,
                reset_at: now + reset_after,
            };
            state
                .buckets
                .insert((hash.to_owned(), route.major.clone()), bucket);
        }
    }

    /// Records a 429: the route's bucket (or every route, when `global`)
    /// waits `retry_after`.
    pub fn limited(&self, route: &Route, retry_after: Duration, global: bool) {
        let until = Instant::now() + retry_after;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if global {
            state.global_until = Some(until);
            return;
        }
        if let Some(hash) = state.buckets_of.get(route.template).cloned() {
            state.buckets.insert(
                (hash, route.major.clone()),
                Bucket {
                    remaining: 0,
                    reset_at: until,
                },
            );
        }
    }
}

/// A duration in seconds, as Discord writes it (`64.57`).
pub(crate) fn seconds(value: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(value.trim().parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(bucket: &str, remaining: u32, reset_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-bucket", HeaderValue::from_str(bucket).unwrap());
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert(
            "x-ratelimit-reset-after",
            HeaderValue::from_str(reset_after).unwrap(),
        );
        headers
    }

    fn route(major: &str) -> Route {
        Route {
            template: "POST /channels/{id}/messages",
            major: major.into(),
        }
    }

    #[test]
    fn a_bucket_is_learned_from_headers_and_counted_per_major_parameter() {
        let limits = RateLimits::default();
        let now = Instant::now();
        assert_eq!(limits.reserve(&route("1"), now), None, "unknown: free");
        limits.update_at(&route("1"), &headers("abcd1234", 1, "2.5"), now);
        assert_eq!(limits.reserve(&route("1"), now), None);
        let wait = limits.reserve(&route("1"), now).expect("bucket empty");
        assert_eq!(wait, Duration::from_millis(2500));
        // Another channel has its own counter in the same bucket.
        assert_eq!(limits.reserve(&route("2"), now), None);
        // After the reset, requests go out again.
        assert_eq!(
            limits.reserve(&route("1"), now + Duration::from_secs(3)),
            None
        );
    }

    #[test]
    fn a_global_limit_holds_every_route() {
        let limits = RateLimits::default();
        limits.limited(&route("1"), Duration::from_secs(1), true);
        let other = Route {
            template: "POST /channels/{id}/typing",
            major: "9".into(),
        };
        assert!(limits.reserve(&other, Instant::now()).is_some());
        assert_eq!(seconds("64.57"), Some(Duration::from_millis(64_570)));
        assert_eq!(seconds("x"), None);
    }
}
