//! Throttling of failed authentication attempts, per client address.
//!
//! After [`AttemptLimits::max_failures`] failures inside one
//! [`AttemptLimits::window`], a client is refused without its token being
//! looked at until the window that holds its last failure has passed, so
//! guessing a token (the gateway token, `CDP_SECRET`, a proxy key) costs
//! time. Success does not reset a client: a client that knows the token
//! has no reason to fail ten times a minute. The table is bounded; when
//! it is full, the stalest client is forgotten.

use crate::platform::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// How many failures a client may have, and over what time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptLimits {
    /// Failures allowed inside one window.
    pub max_failures: u32,
    /// The window.
    pub window: Duration,
    /// Clients remembered at once.
    pub max_clients: usize,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            max_clients: 10_000,
        }
    }
}

#[derive(Clone, Copy)]
struct Record {
    window_start: Timestamp,
    failures: u32,
    last: Timestamp,
}

/// Failed attempts per client (an IP address, as a string, say).
pub struct AttemptThrottle {
    limits: AttemptLimits,
    clients: Mutex<HashMap<String, Record>>,
}

impl AttemptThrottle {
    /// A throttle with these limits.
    pub fn new(limits: AttemptLimits) -> Self {
        Self {
            limits,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when `client` may try now; otherwise how long until it may.
    pub fn check(&self, client: &str, now: Timestamp) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let record = clients.get(client)?;
        let window_end = record.window_start.plus(self.limits.window);
        if record.failures >= self.limits.max_failures && now < window_end {
            Some(Duration::from_millis(window_end.0 - now.0))
        } else {
            None
        }
    }

    /// Records a failed attempt by `client`. When the table is full, the
    /// stalest client not held off is forgotten; a client held off is never
    /// forgotten before its window ends (so flooding the table frees no one).
    pub fn failed(&self, client: &str, now: Timestamp) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !clients.contains_key(client) && clients.len() >= self.limits.max_clients {
            let limits = self.limits;
            let held = |record: &Record| {
                record.failures >= limits.max_failures
                    && now < record.window_start.plus(limits.window)
            };
            let stalest = clients
                .iter()
                .filter(|(_, record)| !held(record))
                .min_by_key(|(_, record)| record.last)
                .map(|(key, _)| key.clone());
            match stalest {
                Some(stalest) => {
                    clients.remove(&stalest);
                }
                None => return,
            }
        }
        let record = clients.entry(client.to_owned()).or_insert(Record {
            window_start: now,
            failures: 0,
            last: now,
        });
        if record.window_start.plus(self.limits.window) <= now {
            record.window_start = now;
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
    }
}

/// The key a client address is throttled by: the address itself for IPv4
/// (IPv4 inside IPv6 as IPv4), its /64 network for IPv6, since anyone with
/// one IPv6 address has the whole /64 to rotate through.
pub fn client_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        },
    }
}

impl Default for AttemptThrottle {
    fn default() -> Self {
        Self::new(AttemptLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_off_after_too_many_failures_until_the_window_passes() {
        let throttle = AttemptThrottle::new(AttemptLimits {
            max_failures: 3,
            window: Duration::from_secs(60),
            max_clients: 2,
        });
        let at = |seconds: u64| Timestamp(1_000_000 + seconds * 1000);
        for second in 0..3 {
            assert_eq!(throttle.check("a", at(second)), None);
            throttle.failed("a", at(second));
        }
        assert_eq!(throttle.check("a", at(10)), Some(Duration::from_secs(50)));
        assert_eq!(throttle.check("b", at(10)), None, "others are not held off");
        assert_eq!(throttle.check("a", at(60)), None, "the window passed");
        throttle.failed("a", at(61));
        assert_eq!(
            throttle.check("a", at(62)),
            None,
            "a new window starts over"
        );
        // Bounded: a third client pushes out the stalest.
        throttle.failed("b", at(63));
        throttle.failed("c", at(64));
        assert_eq!(throttle.clients.lock().unwrap().len(), 2);
        assert!(!throttle.clients.lock().unwrap().contains_key("a"));
        // A client held off is never pushed out by a flood of others.
        for second in 65..68 {
            throttle.failed("c", at(second));
        }
        assert!(throttle.check("c", at(68)).is_some());
        for n in 0..100 {
            throttle.failed(&format!("flood-{n}"), at(69));
        }
        assert!(throttle.check("c", at(70)).is_some(), "still held off");
    }

    #[test]
    fn ipv6_clients_are_one_per_64() {
        let key = |text: &str| client_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
    }
}
