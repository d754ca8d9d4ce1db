//! Spending caps: daily and monthly, in US dollars, from a price table. Past a
//! cap a call is refused with [`GatewayError::BudgetExceeded`], or sent to a
//! cheaper model when one is configured.

use crate::clock::{DAY_MS, Date};
use crate::error::{BudgetPeriod, GatewayError};
use crate::pricing::PriceTable;
use crate::service::{Answer, CacheStatus, Call, ModelService, SharedService, watch_stream};
use async_trait::async_trait;
use molt_core::message::Usage;
use molt_core::model::ModelEvent;
use molt_core::platform::{Clock, Timestamp};
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

    fn exceeded(&self, now: Timestamp) -> Option<GatewayError> {
        let today = Date::of(now);
        let spend = {
            let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
            spend.roll(today);
            *spend
        };
        let until = |end: Timestamp| Duration::from_millis(end.0.saturating_sub(now.0).max(1));
        if let Some(cap) = self.config.monthly_usd
            && spend.month_usd >= cap
        {
            return Some(GatewayError::BudgetExceeded {
                period: BudgetPeriod::Monthly,
                cap_usd: cap,
                retry_after: until(today.next_month().start()),
            });
        }
        if let Some(cap) = self.config.daily_usd
            && spend.day_usd >= cap
        {
            return Some(GatewayError::BudgetExceeded {
                period: BudgetPeriod::Daily,
                cap_usd: cap,
                retry_after: until(Timestamp(today.start().0 + DAY_MS)),
            });
        }
        None
    }
}

#[async_trait]
impl ModelService for Budget {
    async fn call(&self, mut call: Call) -> Result<Answer, GatewayError> {
        if let Some(error) = self.exceeded(self.clock.now()) {
            match &self.config.over_budget {
                OverBudget::Reject => return Err(error),
                OverBudget::Downgrade(model) => {
                    tracing::info!(%error, to = %model, "over budget: using the cheaper model");
                    call.request.options.model = Some(model.clone());
                }
            }
        }
        let mut answer = self.inner.call(call).await?;
        if answer.info.cache == CacheStatus::Hit {
            return Ok(answer);
        }
        let usage = Arc::new(Mutex::new(Usage::default()));
        let on_event = {
            let usage = usage.clone();
            move |event: &ModelEvent| {
                if let ModelEvent::Usage(latest) = event {
                    *usage.lock().unwrap_or_else(|e| e.into_inner()) = *latest;
                }
            }
        };
        let (spend, prices, clock, model) = (
            self.spend.clone(),
            self.prices.clone(),
            self.clock.clone(),
            answer.info.model.clone(),
        );
        let on_end = move |_| {
            let usage = *usage.lock().unwrap_or_else(|e| e.into_inner());
            let Some(cost) = prices.cost(&model, &usage) else {
                tracing::warn!(%model, "no price for this model: its spending is not counted");
                return;
            };
            let mut spend = spend.lock().unwrap_or_else(|e| e.into_inner());
            spend.roll(Date::of(clock.now()));
            spend.day_usd += cost;
            spend.month_usd += cost;
        };
        answer.events = watch_stream(answer.events, on_event, on_end);
        Ok(answer)
    }
}
