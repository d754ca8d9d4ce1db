//! Traffic splits (weighted A/B, optionally sticky per user) and conditional
//! routes (by user id or request metadata).

use crate::error::GatewayError;
use crate::service::{Answer, Call, ModelService, SharedService};
use async_trait::async_trait;

/// A weighted split between services.
pub struct Split {
    arms: Vec<(u32, SharedService)>,
    total: u64,
    sticky: bool,
}

impl Split {
    /// Sends each call to one of `arms` with probability weight / sum of weights.
    /// When `sticky`, a call with a user always goes to the same arm.
    pub fn new(arms: Vec<(u32, SharedService)>, sticky: bool) -> Result<Self, GatewayError> {
        let total = arms.iter().map(|(weight, _)| u64::from(*weight)).sum();
        if total == 0 {
            return Err(GatewayError::InvalidRequest(
                "a split needs a positive weight".into(),
            ));
        }
        Ok(Self {
            arms,
            total,
            sticky,
        })
    }

    /// The arm index for a draw in `0..total`.
    fn arm(&self, draw: u64) -> usize {
        let mut left = draw;
        for (index, (weight, _)) in self.arms.iter().enumerate() {
            if left < u64::from(*weight) {
                return index;
            }
            left -= u64::from(*weight);
        }
        self.arms.len() - 1
    }
}

/// FNV-1a: a stable hash, so sticky assignments survive restarts and upgrades.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[async_trait]
impl ModelService for Split {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let draw = match call.user().filter(|_| self.sticky) {
            Some(user) => stable_hash(user) % self.total,
            None => fastrand::u64(0..self.total),
        };
        self.arms[self.arm(draw)].1.call(call).await
    }
}

/// What a conditional route matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The call's user is one of these.
    UserIn(Vec<String>),
    /// The call's metadata has this key with this value.
    Metadata {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

impl Condition {
    /// Whether `call` matches.
    pub fn matches(&self, call: &Call) -> bool {
        match self {
            Condition::UserIn(users) => call
                .user()
                .is_some_and(|user| users.iter().any(|u| u == user)),
            Condition::Metadata { key, value } => call.context.metadata.get(key) == Some(value),
        }
    }
}

/// Routes by the first rule whose conditions all match, else to a default.
pub struct Conditional {
    rules: Vec<(Vec<Condition>, SharedService)>,
    otherwise: SharedService,
}

impl Conditional {
    /// Tries `rules` in order; `otherwise` serves calls that match none.
    pub fn new(rules: Vec<(Vec<Condition>, SharedService)>, otherwise: SharedService) -> Self {
        Self { rules, otherwise }
    }
}

#[async_trait]
impl ModelService for Conditional {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let target = self
            .rules
            .iter()
            .find(|(conditions, _)| conditions.iter().all(|condition| condition.matches(&call)))
            .map_or(&self.otherwise, |(_, service)| service);
        target.call(call).await
    }
}

#[cfg(test)]
mod tests {
    use super::stable_hash;

    #[test]
    fn the_stable_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(stable_hash(""), 0xcbf29ce484222325);
        assert_eq!(stable_hash("a"), 0xaf63dc4c8601ec8c);
    }
}
