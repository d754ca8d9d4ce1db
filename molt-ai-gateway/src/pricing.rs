//! Model prices and the cost of a call.

use molt_core::message::Usage;
use molt_core::model::ModelEvent;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A model's prices in US dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub struct Price {
    /// Input tokens (not read from or written to a prompt cache).
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Input tokens read from the provider's prompt cache.
    #[serde(default)]
    pub cache_read: f64,
    /// Input tokens written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write: f64,
}

impl Price {
    /// The cost of `usage` at these prices.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input
            + usage.output_tokens as f64 * self.output
            + usage.cache_read_tokens as f64 * self.cache_read
            + usage.cache_write_tokens as f64 * self.cache_write)
            / 1_000_000.0
    }
}

/// Prices by model id; a dated id (`claude-sonnet-4-5-20250929`) falls back to the
/// longest listed prefix (`claude-sonnet-4-5`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a model's price.
    pub fn set(&mut self, model: impl Into<String>, price: Price) -> &mut Self {
        self.prices.insert(model.into(), price);
        self
    }

    /// Adds every price of `other`, replacing ours for the same model.
    pub fn extend(&mut self, other: PriceTable) {
        self.prices.extend(other.prices);
    }

    /// The price of `model`.
    pub fn price(&self, model: &str) -> Option<&Price> {
        if let Some(price) = self.prices.get(model) {
            return Some(price);
        }
        self.prices
            .iter()
            .filter(|(listed, _)| model.starts_with(listed.as_str()))
            .max_by_key(|(listed, _)| listed.len())
            .map(|(_, price)| price)
    }

    /// The cost of `usage` on `model`; `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.price(model).map(|price| price.cost(usage))
    }

    /// Published list prices of common models (late 2025); override them in the configuration.
    pub fn published() -> Self {
        let mut table = Self::new();
        let rows: [(&str, f64, f64, f64, f64); 8] = [
            ("claude-opus-4-5", 5.0, 25.0, 0.50, 6.25),
            ("claude-sonnet-4-5", 3.0, 15.0, 0.30, 3.75),
            ("claude-haiku-4-5", 1.0, 5.0, 0.10, 1.25),
            ("gpt-4o", 2.50, 10.0, 1.25, 0.0),
            ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.0),
            ("gpt-4.1", 2.0, 8.0, 0.50, 0.0),
            ("gpt-4.1-mini", 0.40, 1.60, 0.10, 0.0),
            ("gpt-4.1-nano", 0.10, 0.40, 0.025, 0.0),
        ];
        for (model, input, output, cache_read, cache_write) in rows {
            table.set(
                model,
                Price {
                    input,
                    output,
                    cache_read,
                    cache_write,
                },
            );
        }
        table
    }
}

/// What a stream used, as far as can be told: the provider's last usage
/// report, and the bytes of text and tool arguments it streamed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageMeter {
    reported: Usage,
    streamed_bytes: u64,
}

impl UsageMeter {
    /// Takes one event into account.
    pub fn observe(&mut self, event: &ModelEvent) {
        match event {
            ModelEvent::Usage(usage) => self.reported = *usage,
            ModelEvent::TextDelta(text) => self.streamed_bytes += text.len() as u64,
            ModelEvent::ToolCallDelta { arguments, .. } => {
                self.streamed_bytes += arguments.len() as u64
            }
            _ => {}
        }
    }

    /// The usage to bill. A `complete` stream with the provider's report is
    /// billed as reported. Otherwise (a client gone, a cut stream, a provider
    /// that never reports) input is the report's or else `input_estimate`,
    /// and output never less than a token for every four bytes streamed.
    pub fn billable(&self, input_estimate: u64, complete: bool) -> Usage {
        let reported = self.reported;
        let input_reported =
            reported.input_tokens + reported.cache_read_tokens + reported.cache_write_tokens > 0;
        let input_tokens = if input_reported {
            reported.input_tokens
        } else {
            input_estimate
        };
        let output_tokens = if complete && reported.output_tokens > 0 {
            reported.output_tokens
        } else {
            reported.output_tokens.max(self.streamed_bytes.div_ceil(4))
        };
        Usage {
            input_tokens,
            output_tokens,
            ..reported
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_ids_use_the_longest_listed_prefix() {
        let table = PriceTable::published();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 1_000_000,
        };
        assert_eq!(
            table.cost("claude-sonnet-4-5-20250929", &usage),
            Some(3.0 + 15.0 + 0.30 + 3.75)
        );
        assert_eq!(
            table.cost("gpt-4o-mini-2024-07-18", &usage),
            Some(0.15 + 0.60 + 0.075)
        );
        assert_eq!(
            table.cost("gpt-4o-2024-08-06", &usage),
            Some(2.50 + 10.0 + 1.25)
        );
        assert_eq!(table.cost("llama-3", &usage), None);
    }
}
