//! Spending caps: daily and monthly, in US dollars, from a price table. Past a
//! cap a call is refused with [`GatewayError::BudgetExceeded`], or sent to a
//! cheaper model when one is configured.
//!
//! Nothing is free by accident:
//! - every model a call may reach must have a price (or the configured
//!   default one), else the call is refused with [`GatewayError::Unpriced`];
//! - a call reserves an estimate of its cost before it runs (its input, and
//!   its `max_tokens` or [`BudgetConfig::output_estimate_tokens`] of
//!   output), checked against the cap with what is spent and reserved under
//!   one lock, so calls running at once cannot pass the cap together; the
//!   reservation gives way to the real cost when the call ends, and is given
//!   back if the call fails or its caller goes away;
//! - a stream that ends without the provider's usage (abandoned by the
//!   client, cut, or never reporting it) is billed from what was streamed.

use crate::clock::{DAY_MS, Date};
use crate::error::{BudgetPeriod, GatewayError};
use crate::pricing::{Price, PriceTable, UsageMeter};
use crate::service::{
    Answer, CacheStatus, Call, ModelService, SharedService, StreamEnd, watch_stream,
};
use async_trait::async_trait;
use molt_core::message::Usage;
use molt_core::model::ModelEvent;
use molt_core::platform::{Clock, Timestamp};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do with a call once a cap is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverBudget {
    /// Refuse it.
    Reject,
    /// Send it to this model (a route or `provider/model`) instead.
    Downgrade(String),
}

/// The caps.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// The most to spend in a UTC day.
    pub daily_usd: Option<f64>,
    /// The most to spend in a UTC calendar month.
    pub monthly_usd: Option<f64>,
    /// What happens past a cap.
    pub over_budget: OverBudget,
    /// The price of a model the table does not list; `None` refuses such models.
    pub default_price: Option<Price>,
    /// The models each route may call (its steps), to price a call by its
    /// dearest possibility before it runs.
    pub route_models: BTreeMap<String, Vec<String>>,
    /// Output tokens reserved for a call that sets no `max_tokens`.
    pub output_estimate_tokens: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            daily_usd: None,
            monthly_usd: None,
            over_budget: OverBudget::Reject,
            default_price: None,
            route_models: BTreeMap::new(),
            output_estimate_tokens: 1024,
        }
    }
}

/// Spending so far in the current day and month.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spend {
    /// The current UTC day.
    pub day: Option<Date>,
    /// Spent that day.
    pub day_usd: f64,
    /// Spent in the current month.
    pub month_usd: f64,
    /// Reserved by calls still running (counted against both caps).
    pub reserved_usd: f64,
}

impl Spend {
    fn roll(&mut self, today: Date) {
        match self.day {
            Some(day) if day == today => {}
            Some(day) if (day.year, day.month) == (today.year, today.month) => {
                self.day = Some(today);
                self.day_usd = 0.0;
            }
            _ => {
                *self = Spend {
                    day: Some(today),
                    reserved_usd: self.reserved_usd,
                    ..Spend::default()
                }
            }
        }
    }
}

/// The budget layer.
pub struct Budget {
    inner: SharedService,
    prices: Arc<PriceTable>,
    config: BudgetConfig,
    spend: Arc<Mutex<Spend>>,
    clock: Arc<dyn Clock>,
}

impl Budget {
    /// Caps spending on calls to `inner`, priced by `prices`.
    pub fn new(
        inner: SharedService,
        prices: Arc<PriceTable>,
        config: BudgetConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            prices,
            config,
            spend: Arc::new(Mutex::new(Spend::default())),
            clock,
        }
    }

    /// Spending so far.
    pub fn spend(&self) -> Spend {
        let mut spend = *self.spend.lock().unwrap_or_else(|e| e.into_inner());
        spend.roll(Date::of(self.clock.now()));
        spend
    }

    /// The cap `extra` more dollars would pass (counting what is spent and
    /// reserved), as the error to answer with; `None` when it fits.
    fn exceeded(
        spend: &Spend,
        config: &BudgetConfig,
        now: Timestamp,
        extra: f64,
    ) -> Option<GatewayError> {
        let today = Date::of(now);
        let until = |end: Timestamp| Duration::from_millis(end.0.saturating_sub(now.0).max(1));
        let passes = |spent: f64, cap: f64| spent >= cap || spent + extra > cap;
        if let Some(cap) = config.monthly_usd
            && passes(spend.month_usd + spend.reserved_usd, cap)
        {
            return Some(GatewayError::BudgetExceeded {
                period: BudgetPeriod::Monthly,
                cap_usd: cap,
                retry_after: until(today.next_month().start()),
            });
        }
        if let Some(cap) = config.daily_usd
            && passes(spend.day_usd + spend.reserved_usd, cap)
        {
            return Some(GatewayError::BudgetExceeded {
                period: BudgetPeriod::Daily,
                cap_usd: cap,
                retry_after: until(Timestamp(today.start().0 + DAY_MS)),
            });
        }
        None
    }

    /// Reserves `usd` if it fits under the caps (checked and reserved under
    /// one lock, so calls at once cannot all fit); `force` reserves anyway.
    fn try_reserve(&self, usd: f64, force: bool) -> Result<Reservation, GatewayError> {
        let now = self.clock.now();
        let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        spend.roll(Date::of(now));
        if !force && let Some(error) = Self::exceeded(&spend, &self.config, now, usd) {
            return Err(error);
        }
        spend.reserved_usd += usd;
        Ok(Reservation {
            spend: self.spend.clone(),
            usd,
        })
    }
}

/// A call's reserved cost, given back when it drops: when the call ends,
/// fails, is served from the cache, or is abandoned at any await.
struct Reservation {
    spend: Arc<Mutex<Spend>>,
    usd: f64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        spend.reserved_usd = (spend.reserved_usd - self.usd).max(0.0);
    }
}

impl Budget {
    /// The price of `model`, or the default one.
    fn price(&self, model: &str) -> Option<Price> {
        self.prices
            .price(model)
            .copied()
            .or(self.config.default_price)
    }

    /// The models `call` may reach: a route's steps, a `provider/model`'s
    /// model, or the name itself.
    fn candidates(&self, call: &Call) -> Vec<String> {
        let name = call.model();
        if let Some(models) = self.config.route_models.get(name) {
            return models.clone();
        }
        let model = name.split_once('/').map_or(name, |(_, model)| model);
        vec![model.to_owned()]
    }

    /// What `call` may cost at most on its dearest model, or the model it
    /// cannot be priced on.
    fn estimate(&self, call: &Call, input_tokens: u64) -> Result<f64, GatewayError> {
        // No model writes more than this in one answer, whatever a client asks.
        const MAX_OUTPUT_ESTIMATE: u64 = 128_000;
        let output_tokens = call
            .request
            .options
            .max_tokens
            .map_or(self.config.output_estimate_tokens, u64::from)
            .min(MAX_OUTPUT_ESTIMATE);
        let usage = Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        };
        let mut dearest = 0.0_f64;
        for model in self.candidates(call) {
            let price = self.price(&model).ok_or(GatewayError::Unpriced(model))?;
            dearest = dearest.max(price.cost(&usage));
        }
        Ok(dearest)
    }
}

/// The input tokens of a request, estimated as the agent does (about four
/// bytes a token): its system prompt, messages and tool definitions.
fn input_estimate(call: &Call) -> u64 {
    let request = &call.request;
    let messages: usize = request.messages.iter().map(|m| m.estimated_tokens()).sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|tool| {
            (tool.name.len() + tool.description.len() + tool.input_schema.to_string().len()) / 4
        })
        .sum();
    (request.system.len() / 4 + messages + tools) as u64
}

#[async_trait]
impl ModelService for Budget {
    async fn call(&self, mut call: Call) -> Result<Answer, GatewayError> {
        let input_tokens = input_estimate(&call);
        let estimate = self.estimate(&call, input_tokens)?;
        let (reservation, estimate) = match self.try_reserve(estimate, false) {
            Ok(reservation) => (reservation, estimate),
            Err(error) => match &self.config.over_budget {
                OverBudget::Reject => return Err(error),
                // Past the cap the cheaper model still answers.
                OverBudget::Downgrade(model) => {
                    tracing::info!(%error, to = %model, "over budget: using the cheaper model");
                    call.request.options.model = Some(model.clone());
                    let estimate = self.estimate(&call, input_tokens)?;
                    (self.try_reserve(estimate, true)?, estimate)
                }
            },
        };
        let mut answer = self.inner.call(call).await?;
        if answer.info.cache == CacheStatus::Hit {
            return Ok(answer);
        }
        let meter = Arc::new(Mutex::new(UsageMeter::default()));
        let on_event = {
            let meter = meter.clone();
            move |event: &ModelEvent| {
                meter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .observe(event);
            }
        };
        let (spend, clock, model) = (
            self.spend.clone(),
            self.clock.clone(),
            answer.info.model.clone(),
        );
        let price = self.price(&model);
        let on_end = move |end: StreamEnd| {
            let usage = meter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .billable(input_tokens, matches!(end, StreamEnd::Complete));
            if !matches!(end, StreamEnd::Complete) {
                tracing::info!(%model, ?usage, "a stream ended early: billing what it streamed");
            }
            let cost = match price {
                Some(price) => price.cost(&usage),
                None => {
                    tracing::warn!(%model, "no price for the model that answered: billing the reservation");
                    estimate
                }
            };
            drop(reservation);
            let mut spend = spend.lock().unwrap_or_else(|e| e.into_inner());
            spend.roll(Date::of(clock.now()));
            spend.day_usd += cost;
            spend.month_usd += cost;
        };
        answer.events = watch_stream(answer.events, on_event, on_end);
        Ok(answer)
    }
}
