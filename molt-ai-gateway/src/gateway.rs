//! The assembled gateway: providers, routes and layers built from a
//! [`GatewayConfig`], usable as a `molt-core` language model.

use crate::analytics::{Analytics, AnalyticsSink, JsonlFile, MemoryRing, Metrics};
use crate::clock::SystemClock;
use crate::config::{ConfigError, GatewayConfig, RouteEntry};
use crate::error::GatewayError;
use crate::layers::budget::{Budget, BudgetConfig};
use crate::layers::cache::{Cache, CacheConfig};
use crate::layers::fallback::{Fallback, Step};
use crate::layers::rate_limit::RateLimit;
use crate::layers::retry::{Retry, RetryPolicy, Timeouts};
use crate::layers::split::{Condition, Conditional, Split};
use crate::pricing::PriceTable;
use crate::provider::{Provider, ProviderConfig};
use crate::router::Router;
use crate::service::{Answer, Call, ModelService, SharedService};
use async_trait::async_trait;
use futures::StreamExt;
use molt_core::Secret;
use molt_core::model::{LanguageModel, ModelError, ModelRequest, ModelStream};
use molt_core::platform::Clock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The gateway: analytics ⟶ rate limits ⟶ budget ⟶ cache ⟶ total time limit
/// ⟶ router ⟶ routes (split, conditional, fallback) ⟶ retries ⟶ providers. The budget sits above
/// the cache so a downgraded call is cached under the cheaper model it used.
pub struct Gateway {
    service: SharedService,
    metrics: Arc<Metrics>,
    recent: Arc<MemoryRing>,
    models: Vec<String>,
    default_route: Option<String>,
    label: String,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("models", &self.models)
            .finish()
    }
}

fn secret(
    inline: &Option<Secret>,
    env_name: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    inline
        .clone()
        .or_else(|| env_name.as_deref().and_then(env).map(Secret::new))
        .filter(|secret| !secret.is_empty())
}

impl Gateway {
    /// Builds the gateway from `config` on the system clock; `env` resolves `*_env` keys.
    pub fn from_config(
        config: &GatewayConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::with_clock(config, &env, Arc::new(SystemClock))
    }

    /// Builds the gateway with a given clock (for windows, budgets and records).
    pub fn with_clock(
        config: &GatewayConfig,
        env: &dyn Fn(&str) -> Option<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let policy = config.retry_policy();
        let timeouts = config.timeouts();
        // Steps retry within their own first-token and attempt limits; the total
        // limit covers the whole call, every step and the stream included.
        let step_timeouts = Timeouts {
            total: None,
            ..timeouts
        };
        let mut router = Router::new();
        let mut providers: BTreeMap<String, SharedService> = BTreeMap::new();
        for entry in &config.providers {
            if providers.contains_key(&entry.name) {
                return Err(ConfigError::Invalid(format!(
                    "provider {:?} is defined twice",
                    entry.name
                )));
            }
            let mut provider =
                ProviderConfig::openai_compatible(&entry.name, &entry.base_url, None);
            provider.api = entry.api;
            provider.api_key = secret(&entry.api_key, &entry.api_key_env, env);
            provider.gateway_token = secret(&entry.gateway_token, &entry.gateway_token_env, env);
            if let Some(max) = entry.default_max_tokens {
                provider.default_max_tokens = max;
            }
            provider.max_completion_tokens = entry.max_completion_tokens.unwrap_or_else(|| {
                let base = entry.base_url.trim_end_matches('/');
                base.contains("://api.openai.com") || base.ends_with("/openai")
            });
            let client = Provider::new(provider).map_err(|err| ConfigError::Provider {
                name: entry.name.clone(),
                reason: err.to_string(),
            })?;
            let service: SharedService =
                Arc::new(Retry::new(Arc::new(client), policy.clone(), step_timeouts));
            router.provider(entry.name.clone(), service.clone());
            providers.insert(entry.name.clone(), service);
        }
        let mut built: BTreeMap<String, SharedService> = BTreeMap::new();
        let mut models = BTreeSet::new();
        for name in config.routes.keys() {
            build_route(
                name,
                &config.routes,
                &providers,
                &mut built,
                &mut Vec::new(),
            )?;
            models.insert(name.clone());
        }
        for (name, service) in &built {
            router.route(name.clone(), service.clone());
        }
        for route in config.routes.values() {
            for step in &route.steps {
                models.insert(format!("{}/{}", step.provider, step.model));
            }
        }
        let mut prices = PriceTable::published();
        prices.extend(config.prices.clone());
        let prices = Arc::new(prices);
        let mut service: SharedService = Arc::new(router);
        if timeouts.total.is_some() {
            let once = RetryPolicy {
                max_attempts: 1,
                ..policy
            };
            let total = Timeouts {
                total: timeouts.total,
                ..Timeouts::default()
            };
            service = Arc::new(Retry::new(service, once, total));
        }
        let defaults = CacheConfig::default();
        let cache = CacheConfig {
            default_ttl: config.cache.ttl,
            max_bytes: config.cache.max_bytes.unwrap_or(defaults.max_bytes),
            wait_limit: config.cache.wait_limit.unwrap_or(defaults.wait_limit),
        };
        service = Arc::new(Cache::new(service, cache));
        if let Some(budget) = &config.budget {
            let route_models: BTreeMap<String, Vec<String>> = config
                .routes
                .keys()
                .map(|name| {
                    let mut models = BTreeSet::new();
                    reachable_models(name, &config.routes, &mut models);
                    (name.clone(), models.into_iter().collect())
                })
                .collect();
            // A route that can reach an unpriced model would be refused at
            // every call: say so now.
            if budget.default_price.is_none() {
                // The cheaper model past a cap counts too.
                let downgrade: Vec<String> = match &budget.downgrade_to {
                    Some(name) => route_models.get(name).cloned().unwrap_or_else(|| {
                        vec![
                            name.split_once('/')
                                .map_or(name.as_str(), |(_, m)| m)
                                .to_owned(),
                        ]
                    }),
                    None => Vec::new(),
                };
                let unpriced: BTreeSet<&String> = route_models
                    .values()
                    .flatten()
                    .chain(&downgrade)
                    .filter(|model| prices.price(model).is_none())
                    .collect();
                if !unpriced.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "a budget is set but these models have no price: {unpriced:?}; add them under [prices] or set budget.default_price"
                    )));
                }
            }
            let caps = BudgetConfig {
                daily_usd: budget.daily_usd,
                monthly_usd: budget.monthly_usd,
                over_budget: budget.over_budget(),
                default_price: budget.default_price,
                route_models,
                output_estimate_tokens: budget
                    .output_estimate_tokens
                    .unwrap_or(BudgetConfig::default().output_estimate_tokens),
            };
            service = Arc::new(Budget::new(service, prices.clone(), caps, clock.clone()));
        }
        if !config.rate_limits.is_empty() {
            service = Arc::new(RateLimit::new(
                service,
                config.rate_limits.clone(),
                clock.clone(),
            ));
        }
        let metrics = Arc::new(Metrics::new());
        let recent = Arc::new(MemoryRing::new(config.analytics.ring.unwrap_or(1000)));
        let mut sinks: Vec<Arc<dyn AnalyticsSink>> = vec![metrics.clone(), recent.clone()];
        if let Some(path) = &config.analytics.jsonl {
            let file = JsonlFile::open(path).map_err(|err| {
                ConfigError::Invalid(format!("analytics.jsonl {}: {err}", path.display()))
            })?;
            sinks.push(Arc::new(file));
        }
        service = Arc::new(Analytics::new(service, sinks, prices, clock));
        if let Some(default) = &config.default_route
            && !built.contains_key(default)
        {
            return Err(ConfigError::Invalid(format!(
                "default_route {default:?} is not a route"
            )));
        }
        Ok(Self {
            service,
            metrics,
            recent,
            models: models.into_iter().collect(),
            label: label(config),
            default_route: config.default_route.clone(),
        })
    }

    /// Answers a call through every layer.
    pub async fn call(&self, mut call: Call) -> Result<Answer, GatewayError> {
        if call.model().is_empty()
            && let Some(default) = &self.default_route
        {
            call.request.options.model = Some(default.clone());
        }
        self.service.call(call).await
    }

    /// The model names callers may ask for (routes and `provider/model` pairs).
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// The route used when a call names no model.
    pub fn default_route(&self) -> Option<&str> {
        self.default_route.as_deref()
    }

    /// Running aggregates and Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The most recent call records.
    pub fn recent(&self) -> &MemoryRing {
        &self.recent
    }
}

/// A name for status pages: the default route's first step, and how many fallbacks follow.
fn label(config: &GatewayConfig) -> String {
    let Some(name) = &config.default_route else {
        return "molt-ai-gateway".into();
    };
    match config.routes.get(name).map(|route| route.steps.as_slice()) {
        Some([first]) => {
            format!("{}/{}", first.provider, first.model)
        }
        Some([first, rest @ ..]) => format!(
            "{}/{} (+{} fallback)",
            first.provider,
            first.model,
            rest.len()
        ),
        _ => name.clone(),
    }
}

/// Every provider model route `name` may call, through its splits and rules too.
fn reachable_models(name: &str, routes: &BTreeMap<String, RouteEntry>, out: &mut BTreeSet<String>) {
    let Some(entry) = routes.get(name) else {
        return;
    };
    out.extend(entry.steps.iter().map(|step| step.model.clone()));
    let targets = entry
        .split
        .iter()
        .map(|arm| &arm.route)
        .chain(entry.when.iter().map(|rule| &rule.route))
        .chain(entry.otherwise.iter());
    for target in targets {
        reachable_models(target, routes, out);
    }
}

fn build_route(
    name: &str,
    routes: &BTreeMap<String, RouteEntry>,
    providers: &BTreeMap<String, SharedService>,
    built: &mut BTreeMap<String, SharedService>,
    visiting: &mut Vec<String>,
) -> Result<SharedService, ConfigError> {
    if let Some(service) = built.get(name) {
        return Ok(service.clone());
    }
    if visiting.iter().any(|seen| seen == name) {
        return Err(ConfigError::Invalid(format!(
            "routes refer to each other in a loop: {}",
            visiting.join(" -> ")
        )));
    }
    let entry = routes
        .get(name)
        .ok_or_else(|| ConfigError::Invalid(format!("unknown route {name:?}")))?;
    visiting.push(name.to_string());
    let kinds = [
        !entry.steps.is_empty(),
        !entry.split.is_empty(),
        !entry.when.is_empty(),
    ];
    if kinds.iter().filter(|kind| **kind).count() != 1 {
        return Err(ConfigError::Invalid(format!(
            "route {name:?} needs exactly one of steps, split or when"
        )));
    }
    let service: SharedService = if !entry.steps.is_empty() {
        let steps = entry
            .steps
            .iter()
            .map(|step| {
                let service = providers.get(&step.provider).cloned().ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "route {name:?}: unknown provider {:?}",
                        step.provider
                    ))
                })?;
                Ok(Step {
                    service,
                    model: step.model.clone(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Arc::new(Fallback::new(steps))
    } else if !entry.split.is_empty() {
        let arms = entry
            .split
            .iter()
            .map(|arm| {
                Ok((
                    arm.weight,
                    build_route(&arm.route, routes, providers, built, visiting)?,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        Arc::new(
            Split::new(arms, entry.sticky)
                .map_err(|err| ConfigError::Invalid(format!("route {name:?}: {err}")))?,
        )
    } else {
        let mut rules = Vec::new();
        for rule in &entry.when {
            let target = build_route(&rule.route, routes, providers, built, visiting)?;
            let mut conditions: Vec<Condition> = rule
                .metadata
                .iter()
                .map(|(key, value)| Condition::Metadata {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect();
            if !rule.users.is_empty() {
                conditions.push(Condition::UserIn(rule.users.clone()));
            }
            if conditions.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "route {name:?}: a rule needs users or metadata"
                )));
            }
            rules.push((conditions, target));
        }
        let otherwise = entry.otherwise.as_deref().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "route {name:?}: conditional routes need `otherwise`"
            ))
        })?;
        let otherwise = build_route(otherwise, routes, providers, built, visiting)?;
        Arc::new(Conditional::new(rules, otherwise))
    };
    visiting.pop();
    built.insert(name.to_string(), service.clone());
    Ok(service)
}

#[async_trait]
impl ModelService for Gateway {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        Gateway::call(self, call).await
    }
}

#[async_trait]
impl LanguageModel for Gateway {
    fn name(&self) -> &str {
        &self.label
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let answer = self.call(Call::new(request)).await?;
        Ok(answer
            .events
            .map(|item| item.map_err(ModelError::from))
            .boxed())
    }
}
