//! Each router layer on its own: fallback, retries, splits, conditional routes,
//! cache, rate limits, budgets and analytics.

mod support;

use molt_ai_gateway::GatewayError;
use molt_ai_gateway::analytics::{Analytics, AnalyticsSink, JsonlFile, MemoryRing, Metrics};
use molt_ai_gateway::error::BudgetPeriod;
use molt_ai_gateway::layers::budget::{Budget, BudgetConfig, OverBudget};
use molt_ai_gateway::layers::cache::{Cache, CacheConfig};
use molt_ai_gateway::layers::fallback::{Fallback, Step};
use molt_ai_gateway::layers::rate_limit::{Limit, RateLimit, Scope, Unit, Window};
use molt_ai_gateway::layers::retry::{Retry, RetryPolicy, Timeouts};
use molt_ai_gateway::layers::split::{Condition, Conditional, Split};
use molt_ai_gateway::pricing::{Price, PriceTable};
use molt_ai_gateway::service::{CacheStatus, ModelService, SharedService};
use molt_core::message::Usage;
use std::sync::Arc;
use std::time::Duration;
use support::fake::FakeProvider;
use support::{Answering, Failing, ManualClock, call, drain, text, upstream};

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(100),
    }
}

fn retried(service: SharedService, attempts: u32) -> SharedService {
    Arc::new(Retry::new(
        service,
        quick_retries(attempts),
        Timeouts::default(),
    ))
}

#[tokio::test]
async fn fallback_moves_past_429_and_529_to_the_step_that_answers_and_reports_it() {
    let fake = FakeProvider::start().await;
    let anthropic: SharedService = retried(Arc::new(support::anthropic(&fake)), 2);
    let openai: SharedService = retried(Arc::new(support::openai(&fake)), 2);
    let chain = Fallback::new(vec![
        Step {
            service: anthropic.clone(),
            model: "rate-limited".into(),
        },
        Step {
            service: anthropic,
            model: "overloaded".into(),
        },
        Step {
            service: openai,
            model: "echo".into(),
        },
    ]);
    let answer = chain.call(call("ignored", "hi")).await.unwrap();
    assert_eq!(
        (
            answer.info.step,
            answer.info.provider.as_str(),
            answer.info.model.as_str()
        ),
        (2, "openai", "echo")
    );
    assert_eq!(text(&drain(answer).await.0), "You said: hi");
    // A retry-after longer than the policy's limit is not waited for; 529 is retried once.
    assert_eq!(fake.state.requests_for("rate-limited"), 1);
    assert_eq!(fake.state.requests_for("overloaded"), 2);
}

#[tokio::test]
async fn fallback_stops_at_an_error_that_another_step_would_not_fix() {
    let bad_request = Failing::new(upstream(400));
    let never = Answering::new("never");
    let chain = Fallback::new(vec![
        Step {
            service: bad_request.clone(),
            model: "a".into(),
        },
        Step {
            service: never.clone(),
            model: "b".into(),
        },
    ]);
    let error = chain.call(call("x", "hi")).await.unwrap_err();
    assert_eq!(error.status(), 400);
    assert_eq!(never.count(), 0);
}

#[tokio::test]
async fn retries_honour_retry_after_and_report_the_attempts() {
    let fake = FakeProvider::start().await;
    for provider in [support::anthropic(&fake), support::openai(&fake)] {
        let name = provider.name().to_string();
        let retry = Retry::new(Arc::new(provider), quick_retries(3), Timeouts::default());
        let answer = retry.call(call("flaky", "hi")).await.unwrap();
        assert_eq!(answer.info.attempts, 3, "{name}");
        assert_eq!(text(&drain(answer).await.0), "You said: hi");
    }
}

#[tokio::test]
async fn the_backoff_grows_and_uses_the_providers_retry_after_when_given() {
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    for _ in 0..100 {
        let first = policy.delay(1, None);
        let third = policy.delay(3, None);
        let capped = policy.delay(10, None);
        assert!(
            first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
            "{first:?}"
        );
        assert!(
            third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
            "{third:?}"
        );
        assert!(capped <= Duration::from_secs(1), "{capped:?}");
    }
    assert_eq!(
        policy.delay(1, Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
}

#[tokio::test]
async fn once_output_has_started_nothing_is_retried_and_the_stream_ends_in_an_error() {
    let fake = FakeProvider::start().await;
    let provider: SharedService = retried(Arc::new(support::openai(&fake)), 3);
    let chain = Fallback::new(vec![
        Step {
            service: provider.clone(),
            model: "error-mid-stream".into(),
        },
        Step {
            service: provider,
            model: "echo".into(),
        },
    ]);
    let answer = chain.call(call("x", "one two three")).await.unwrap();
    let (events, error) = drain(answer).await;
    assert_eq!(text(&events), "You said: ");
    assert!(error.is_some(), "the failure is explicit");
    assert_eq!(
        fake.state.requests_for("error-mid-stream"),
        1,
        "no silent retry"
    );
    assert_eq!(fake.state.requests_for("echo"), 0, "no silent fallback");
}

#[tokio::test]
async fn a_weighted_split_keeps_its_proportions_and_sticky_users_stay_put() {
    let (a, b) = (Answering::new("a"), Answering::new("b"));
    let split = Split::new(
        vec![
            (80, a.clone() as SharedService),
            (20, b.clone() as SharedService),
        ],
        false,
    )
    .unwrap();
    for _ in 0..10_000 {
        split.call(call("m", "hi")).await.unwrap();
    }
    // Binomial(10000, 0.2): mean 2000, standard deviation 40; allow five.
    assert!((1800..=2200).contains(&b.count()), "b got {}", b.count());
    let sticky = Split::new(
        vec![
            (50, a.clone() as SharedService),
            (50, b.clone() as SharedService),
        ],
        true,
    )
    .unwrap();
    let mut arms = std::collections::BTreeSet::new();
    for user in 0..200 {
        let mut first = None;
        for _ in 0..5 {
            let mut c = call("m", "hi");
            c.request.options.user = Some(format!("user-{user}"));
            let provider = sticky.call(c).await.unwrap().info.provider;
            assert!(
                first.get_or_insert(provider.clone()) == &provider,
                "user-{user} moved"
            );
        }
        arms.insert(first.unwrap());
    }
    assert_eq!(arms.len(), 2, "users spread over both arms");
}

#[tokio::test]
async fn conditional_routes_match_users_and_metadata() {
    let (pro, beta, rest) = (
        Answering::new("pro"),
        Answering::new("beta"),
        Answering::new("rest"),
    );
    let routes = Conditional::new(
        vec![
            (
                vec![Condition::Metadata {
                    key: "tier".into(),
                    value: "pro".into(),
                }],
                pro.clone() as SharedService,
            ),
            (
                vec![Condition::UserIn(vec!["alice".into()])],
                beta.clone() as SharedService,
            ),
        ],
        rest.clone(),
    );
    let mut pro_call = call("m", "hi");
    pro_call
        .context
        .metadata
        .insert("tier".into(), "pro".into());
    let mut alice = call("m", "hi");
    alice.request.options.user = Some("alice".into());
    assert_eq!(routes.call(pro_call).await.unwrap().info.provider, "pro");
    assert_eq!(routes.call(alice).await.unwrap().info.provider, "beta");
    assert_eq!(
        routes.call(call("m", "hi")).await.unwrap().info.provider,
        "rest"
    );
}

fn cache_over(inner: SharedService, ttl: Option<Duration>, max_bytes: usize) -> Cache {
    Cache::new(
        inner,
        CacheConfig {
            default_ttl: ttl,
            max_bytes,
            ..CacheConfig::default()
        },
    )
}

#[tokio::test(start_paused = true)]
async fn the_cache_hits_misses_skips_and_expires() {
    let inner = Answering::new("up");
    let cache = cache_over(inner.clone(), Some(Duration::from_secs(60)), 1 << 20);
    let first = cache.call(call("m", "hi")).await.unwrap();
    assert_eq!(first.info.cache, CacheStatus::Miss);
    let first_events = drain(first).await.0;
    let second = cache.call(call("m", "hi")).await.unwrap();
    assert_eq!(second.info.cache, CacheStatus::Hit);
    assert_eq!(
        drain(second).await.0,
        first_events,
        "a hit replays the same stream"
    );
    assert_eq!(inner.count(), 1);
    // A different request, a skip, and a per-call TTL.
    drain(cache.call(call("m", "other")).await.unwrap()).await;
    let mut skip = call("m", "hi");
    skip.context.cache.skip = true;
    assert_eq!(
        cache.call(skip).await.unwrap().info.cache,
        CacheStatus::Bypass
    );
    assert_eq!(inner.count(), 3);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        cache.call(call("m", "hi")).await.unwrap().info.cache,
        CacheStatus::Miss,
        "expired"
    );
    let mut short = call("m", "short");
    short.context.cache.ttl = Some(Duration::from_secs(5));
    drain(cache.call(short.clone()).await.unwrap()).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        cache.call(short).await.unwrap().info.cache,
        CacheStatus::Miss,
        "the per-call TTL wins"
    );
}

#[tokio::test]
async fn a_custom_cache_key_groups_different_requests() {
    let inner = Answering::new("up");
    let cache = cache_over(inner.clone(), Some(Duration::from_secs(60)), 1 << 20);
    for text in ["one", "two"] {
        let mut c = call("m", text);
        c.context.cache.key = Some("shared".into());
        drain(cache.call(c).await.unwrap()).await;
    }
    assert_eq!(inner.count(), 1);
    // The same custom key on another model is another entry.
    let mut other_model = call("m2", "one");
    other_model.context.cache.key = Some("shared".into());
    drain(cache.call(other_model).await.unwrap()).await;
    assert_eq!(inner.count(), 2);
}

#[tokio::test]
async fn cached_answers_never_cross_gateway_keys() {
    let inner = Answering::new("up");
    let cache = cache_over(inner.clone(), Some(Duration::from_secs(60)), 1 << 20);
    let as_key = |key: &str, custom: Option<&str>| {
        let mut c = call("m", "the same question");
        c.context.key_id = Some(key.into());
        c.context.cache.key = custom.map(str::to_owned);
        c
    };
    drain(cache.call(as_key("alice", None)).await.unwrap()).await;
    let hit = cache.call(as_key("alice", None)).await.unwrap();
    assert_eq!(hit.info.cache, CacheStatus::Hit);
    drain(hit).await;
    // Another key asks the same: it is not served alice's answer.
    let other = cache.call(as_key("mallory", None)).await.unwrap();
    assert_eq!(other.info.cache, CacheStatus::Miss);
    drain(other).await;
    // Nor can it plant an answer under a key alice uses.
    drain(
        cache
            .call(as_key("mallory", Some("greeting")))
            .await
            .unwrap(),
    )
    .await;
    let alices = cache.call(as_key("alice", Some("greeting"))).await.unwrap();
    assert_eq!(alices.info.cache, CacheStatus::Miss);
    drain(alices).await;
    assert_eq!(inner.count(), 4);
}

#[tokio::test]
async fn errors_and_broken_streams_are_never_cached() {
    let failing = Failing::new(upstream(500));
    let cache = cache_over(failing.clone(), Some(Duration::from_secs(60)), 1 << 20);
    for _ in 0..2 {
        assert!(cache.call(call("m", "hi")).await.is_err());
    }
    assert_eq!(failing.count(), 2);
    let fake = FakeProvider::start().await;
    let cache = cache_over(
        Arc::new(support::openai(&fake)),
        Some(Duration::from_secs(60)),
        1 << 20,
    );
    for _ in 0..2 {
        let (_, error) = drain(cache.call(call("error-mid-stream", "a b c")).await.unwrap()).await;
        assert!(error.is_some());
    }
    assert_eq!(fake.state.requests_for("error-mid-stream"), 2);
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn the_cache_stays_within_its_byte_bound_dropping_the_least_recently_used() {
    let inner = Answering::new("up");
    let cache = cache_over(inner.clone(), Some(Duration::from_secs(60)), 1_000);
    for n in 0..20 {
        drain(
            cache
                .call(call("m", &format!("question {n}")))
                .await
                .unwrap(),
        )
        .await;
        assert!(cache.stats().bytes <= 1_000, "{:?}", cache.stats());
    }
    let kept = cache.stats().entries;
    assert!((2..20).contains(&kept), "kept {kept}");
    let before = inner.count();
    assert_eq!(
        cache
            .call(call("m", "question 19"))
            .await
            .unwrap()
            .info
            .cache,
        CacheStatus::Hit,
        "the newest stays"
    );
    assert_eq!(
        cache
            .call(call("m", "question 0"))
            .await
            .unwrap()
            .info
            .cache,
        CacheStatus::Miss,
        "the oldest went"
    );
    assert_eq!(inner.count(), before + 1);
}

#[tokio::test]
async fn identical_concurrent_requests_share_one_upstream_call() {
    let fake = FakeProvider::start().await;
    *fake.state.first_token_delay.lock().unwrap() = Duration::from_millis(300);
    let cache = Arc::new(cache_over(
        Arc::new(support::anthropic(&fake)),
        Some(Duration::from_secs(60)),
        1 << 20,
    ));
    let calls = (0..10).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let answer = cache
                .call(call("slow-first-token", "together"))
                .await
                .unwrap();
            let status = answer.info.cache;
            (status, text(&drain(answer).await.0))
        })
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(fake.state.requests_for("slow-first-token"), 1);
    let misses = results
        .iter()
        .filter(|r| r.as_ref().unwrap().0 == CacheStatus::Miss)
        .count();
    assert_eq!(misses, 1);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().1 == "You said: together")
    );
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_block_identical_calls() {
    let fake = FakeProvider::start().await;
    *fake.state.first_token_delay.lock().unwrap() = Duration::from_millis(300);
    let cache = Arc::new(cache_over(
        Arc::new(support::anthropic(&fake)),
        Some(Duration::from_secs(60)),
        1 << 20,
    ));
    let first = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .call(call("slow-first-token", "same"))
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = {
        let cache = cache.clone();
        tokio::spawn(async move {
            text(
                &drain(cache.call(call("slow-first-token", "same")).await.unwrap())
                    .await
                    .0,
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting call finishes")
        .unwrap();
    assert_eq!(answer, "You said: same");
    assert_eq!(
        fake.state.requests_for("slow-first-token"),
        2,
        "the waiter made its own call"
    );
}

#[tokio::test]
async fn calls_with_different_metadata_are_cached_apart() {
    let inner = Answering::new("up");
    let cache = cache_over(inner.clone(), Some(Duration::from_secs(60)), 1 << 20);
    for tier in ["free", "pro", "free"] {
        let mut c = call("m", "hi");
        c.context.metadata.insert("tier".into(), tier.into());
        drain(cache.call(c).await.unwrap()).await;
    }
    assert_eq!(inner.count(), 2);
}

#[tokio::test]
async fn a_call_abandoned_before_its_answer_starts_is_recorded() {
    let fake = FakeProvider::start().await;
    *fake.state.first_token_delay.lock().unwrap() = Duration::from_secs(5);
    let ring = Arc::new(MemoryRing::new(10));
    let analytics = Arc::new(Analytics::new(
        Arc::new(support::openai(&fake)),
        vec![ring.clone()],
        priced(),
        ManualClock::at(0),
    ));
    let task = {
        let analytics = analytics.clone();
        tokio::spawn(async move {
            analytics
                .call(call("slow-first-token", "hi"))
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    let _ = task.await;
    let records = ring.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].status, records[0].error.as_deref()),
        (499, Some("abandoned"))
    );
}

#[tokio::test]
async fn a_refused_provider_key_moves_the_chain_on() {
    let fake = FakeProvider::start().await;
    let mut config = support::anthropic(&fake).config().clone();
    config.api_key = Some(molt_core::Secret::new("sk-wrong"));
    let broken: SharedService =
        retried(Arc::new(molt_ai_gateway::Provider::new(config).unwrap()), 3);
    let chain = Fallback::new(vec![
        Step {
            service: broken,
            model: "echo".into(),
        },
        Step {
            service: Arc::new(support::openai(&fake)),
            model: "echo".into(),
        },
    ]);
    let answer = chain.call(call("x", "hi")).await.unwrap();
    assert_eq!(answer.info.step, 1);
    assert_eq!(
        fake.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.api == "anthropic")
            .count(),
        0,
        "a refused key never reaches the handler twice"
    );
}

fn limit(name: &str, scope: Scope, unit: Unit, limit: u64, seconds: u64, window: Window) -> Limit {
    Limit {
        name: name.into(),
        scope,
        unit,
        limit,
        period: Duration::from_secs(seconds),
        window,
    }
}

#[tokio::test]
async fn a_fixed_window_refuses_with_the_time_to_its_end_then_resets() {
    let clock = ManualClock::at(6_000_000_020_000); // 20 s into a minute
    let limiter = RateLimit::new(
        Answering::new("up"),
        vec![limit(
            "rpm",
            Scope::Gateway,
            Unit::Requests,
            2,
            60,
            Window::Fixed,
        )],
        clock.clone(),
    );
    limiter.call(call("m", "1")).await.unwrap();
    limiter.call(call("m", "2")).await.unwrap();
    match limiter.call(call("m", "3")).await.unwrap_err() {
        GatewayError::RateLimited { limit, retry_after } => {
            assert_eq!(limit, "rpm");
            assert_eq!(retry_after, Duration::from_secs(40));
        }
        other => panic!("{other:?}"),
    }
    clock.advance(40_000);
    limiter.call(call("m", "4")).await.unwrap();
}

#[tokio::test]
async fn a_sliding_window_weighs_the_previous_window() {
    let clock = ManualClock::at(6_000_000_000_000); // a window boundary
    let limiter = RateLimit::new(
        Answering::new("up"),
        vec![limit(
            "rpm",
            Scope::Gateway,
            Unit::Requests,
            10,
            60,
            Window::Sliding,
        )],
        clock.clone(),
    );
    for _ in 0..10 {
        limiter.call(call("m", "x")).await.unwrap();
    }
    // This window is full; in the next one it must fade to 9 of 10: 60 s + 6 s.
    let GatewayError::RateLimited { retry_after, .. } =
        limiter.call(call("m", "x")).await.unwrap_err()
    else {
        panic!()
    };
    assert_eq!(retry_after, Duration::from_secs(66));
    // Halfway through the next window, half of the previous one still counts: 5 more fit.
    clock.advance(90_000);
    for _ in 0..5 {
        limiter.call(call("m", "x")).await.unwrap();
    }
    let GatewayError::RateLimited { retry_after, .. } =
        limiter.call(call("m", "x")).await.unwrap_err()
    else {
        panic!()
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(30),
        "{retry_after:?}"
    );
}

#[tokio::test]
async fn limits_count_per_user_and_per_key_and_tokens_too() {
    let clock = ManualClock::at(6_000_000_000_000);
    let limits = vec![
        limit(
            "per-user",
            Scope::User,
            Unit::Requests,
            1,
            60,
            Window::Fixed,
        ),
        limit("per-key", Scope::Key, Unit::Tokens, 20, 60, Window::Fixed),
    ];
    let limiter = RateLimit::new(
        Answering::with_usage(
            "up",
            Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
        ),
        limits,
        clock,
    );
    let as_user = |user: &str, key: &str| {
        let mut c = call("m", "x");
        c.request.options.user = Some(user.into());
        c.context.key_id = Some(key.into());
        c
    };
    drain(limiter.call(as_user("ann", "k1")).await.unwrap()).await;
    let GatewayError::RateLimited { limit, .. } =
        limiter.call(as_user("ann", "k2")).await.unwrap_err()
    else {
        panic!()
    };
    assert_eq!(limit, "per-user");
    // 15 tokens used on k1: under 20, so one more call is admitted; then k1 is spent.
    drain(limiter.call(as_user("bob", "k1")).await.unwrap()).await;
    let GatewayError::RateLimited { limit, .. } =
        limiter.call(as_user("cid", "k1")).await.unwrap_err()
    else {
        panic!()
    };
    assert_eq!(limit, "per-key");
    drain(limiter.call(as_user("dee", "k2")).await.unwrap()).await;
}

fn priced() -> Arc<PriceTable> {
    let mut table = PriceTable::new();
    table.set(
        "big",
        Price {
            input: 1_000.0,
            output: 10_000.0,
            cache_read: 0.0,
            cache_write: 0.0,
        },
    );
    table.set(
        "small",
        Price {
            input: 1.0,
            output: 1.0,
            cache_read: 0.0,
            cache_write: 0.0,
        },
    );
    Arc::new(table)
}

/// A budget over an answering service with the `priced` table.
fn priced_budget(config: BudgetConfig, clock: Arc<ManualClock>) -> Budget {
    Budget::new(Answering::new("up"), priced(), config, clock)
}

#[tokio::test]
async fn past_the_daily_cap_calls_are_refused_until_midnight() {
    // 10 input + 5 output tokens on "big" cost 0.01 + 0.05 = $0.06; a call
    // reserves about $0.054 first, so two fit under $0.12 and a third does not.
    let clock = ManualClock::at(1_795_000_000_000 - 1_795_000_000_000 % 86_400_000 + 3_600_000); // 01:00 UTC
    let budget = priced_budget(
        BudgetConfig {
            daily_usd: Some(0.12),
            output_estimate_tokens: 5,
            ..BudgetConfig::default()
        },
        clock.clone(),
    );
    drain(budget.call(call("big", "x")).await.unwrap()).await;
    drain(budget.call(call("big", "x")).await.unwrap()).await;
    assert!((budget.spend().day_usd - 0.12).abs() < 1e-9);
    match budget.call(call("big", "x")).await.unwrap_err() {
        GatewayError::BudgetExceeded {
            period: BudgetPeriod::Daily,
            retry_after,
            ..
        } => {
            assert_eq!(retry_after, Duration::from_secs(23 * 3600));
        }
        other => panic!("{other:?}"),
    }
    clock.advance(23 * 3_600_000);
    assert!(budget.call(call("big", "x")).await.is_ok(), "a new day");
}

#[tokio::test]
async fn past_the_monthly_cap_calls_go_to_the_cheaper_model() {
    let clock = ManualClock::at(1_795_000_000_000);
    let budget = priced_budget(
        BudgetConfig {
            monthly_usd: Some(0.06),
            output_estimate_tokens: 5,
            over_budget: OverBudget::Downgrade("small".into()),
            ..BudgetConfig::default()
        },
        clock,
    );
    let first = budget.call(call("big", "x")).await.unwrap();
    assert_eq!(first.info.model, "big");
    drain(first).await;
    let second = budget.call(call("big", "x")).await.unwrap();
    assert_eq!(second.info.model, "small");
}

#[tokio::test]
async fn calls_running_at_once_reserve_their_cost_and_cannot_all_slip_under_the_cap() {
    // Each call on "big" reserves 12 input + 5 output tokens = $0.062; the
    // cap of $0.13 holds two reservations, so the third running call is refused.
    let clock = ManualClock::at(1_795_000_000_000);
    let budget = priced_budget(
        BudgetConfig {
            daily_usd: Some(0.13),
            output_estimate_tokens: 5,
            ..BudgetConfig::default()
        },
        clock,
    );
    let first = budget
        .call(call("big", "0123456789abcdefghijklmnopqrstu"))
        .await
        .unwrap();
    let second = budget
        .call(call("big", "0123456789abcdefghijklmnopqrstu"))
        .await
        .unwrap();
    let third = budget
        .call(call("big", "0123456789abcdefghijklmnopqrstu"))
        .await;
    assert!(
        matches!(third, Err(GatewayError::BudgetExceeded { .. })),
        "{:?}",
        third.map(|_| ())
    );
    assert!(budget.spend().reserved_usd > 0.1);
    drain(first).await;
    drain(second).await;
    let spend = budget.spend();
    assert_eq!(
        spend.reserved_usd, 0.0,
        "reservations give way to the real cost"
    );
    assert!((spend.day_usd - 0.12).abs() < 1e-9, "{spend:?}");
}

/// A service whose answer never starts.
struct Hanging;

#[async_trait::async_trait]
impl ModelService for Hanging {
    async fn call(
        &self,
        _call: molt_ai_gateway::Call,
    ) -> Result<molt_ai_gateway::Answer, GatewayError> {
        futures::future::pending().await
    }
}

#[tokio::test]
async fn a_call_abandoned_before_its_answer_starts_gives_its_reservation_back() {
    let budget = Budget::new(
        Arc::new(Hanging),
        priced(),
        BudgetConfig {
            daily_usd: Some(0.10),
            ..BudgetConfig::default()
        },
        ManualClock::at(1_795_000_000_000),
    );
    let mut huge = call("small", "x");
    huge.request.options.max_tokens = Some(50_000);
    let waited = tokio::time::timeout(Duration::from_millis(50), budget.call(huge)).await;
    assert!(waited.is_err(), "the call was still waiting");
    assert_eq!(budget.spend().reserved_usd, 0.0);
}

#[tokio::test]
async fn under_a_budget_an_unpriced_model_is_refused_unless_a_default_price_is_set() {
    let clock = ManualClock::at(1_795_000_000_000);
    let strict = priced_budget(
        BudgetConfig {
            daily_usd: Some(100.0),
            ..BudgetConfig::default()
        },
        clock.clone(),
    );
    match strict.call(call("free-lunch", "x")).await {
        Err(GatewayError::Unpriced(model)) => assert_eq!(model, "free-lunch"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A route is priced by every model it may reach.
    let routed = priced_budget(
        BudgetConfig {
            daily_usd: Some(100.0),
            route_models: [(
                "assistant".to_owned(),
                vec!["small".to_owned(), "free-lunch".to_owned()],
            )]
            .into(),
            ..BudgetConfig::default()
        },
        clock.clone(),
    );
    assert!(matches!(
        routed.call(call("assistant", "x")).await,
        Err(GatewayError::Unpriced(_))
    ));
    assert!(routed.call(call("openai/small", "x")).await.is_ok());
    let with_default = priced_budget(
        BudgetConfig {
            daily_usd: Some(100.0),
            default_price: Some(Price {
                input: 1_000_000.0,
                output: 0.0,
                cache_read: 0.0,
                cache_write: 0.0,
            }),
            ..BudgetConfig::default()
        },
        clock,
    );
    drain(with_default.call(call("free-lunch", "x")).await.unwrap()).await;
    assert!(
        (with_default.spend().day_usd - 10.0).abs() < 1e-9,
        "10 input tokens at $1 each"
    );
}

#[tokio::test]
async fn a_stream_the_client_abandons_before_the_usage_chunk_is_billed_for_what_it_carried() {
    // OpenAI sends usage only in the last chunk (and only when asked): a
    // client that leaves after the first words used to cost nothing.
    let fake = FakeProvider::start().await;
    let mut prices = PriceTable::new();
    prices.set(
        "echo",
        Price {
            input: 1_000_000.0,
            output: 1_000_000.0,
            cache_read: 0.0,
            cache_write: 0.0,
        },
    );
    let budget = Budget::new(
        Arc::new(support::openai(&fake)),
        Arc::new(prices),
        BudgetConfig {
            daily_usd: Some(1_000_000.0),
            ..BudgetConfig::default()
        },
        ManualClock::at(1_795_000_000_000),
    );
    let long = "word ".repeat(200);
    let answer = budget.call(call("echo", &long)).await.unwrap();
    let mut events = answer.events;
    let first = futures::StreamExt::next(&mut events)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, molt_core::model::ModelEvent::TextDelta(_)),
        "{first:?}"
    );
    drop(events);
    let spend = budget.spend();
    assert_eq!(spend.reserved_usd, 0.0);
    // At least the input (about 250 tokens) and a token of output, at $1 a token.
    assert!(spend.day_usd >= 251.0, "{spend:?}");
}

#[tokio::test]
async fn analytics_records_every_call_with_tokens_cost_and_cache_status() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(MemoryRing::new(10));
    let metrics = Arc::new(Metrics::new());
    let jsonl = Arc::new(JsonlFile::open(&dir.path().join("calls.jsonl")).unwrap());
    let sinks: Vec<Arc<dyn AnalyticsSink>> = vec![ring.clone(), metrics.clone(), jsonl];
    let cache = Arc::new(cache_over(
        Answering::new("up"),
        Some(Duration::from_secs(60)),
        1 << 20,
    ));
    let analytics = Analytics::new(cache, sinks, priced(), ManualClock::at(1_795_000_000_000));
    let mut c = call("big", "x");
    c.request.options.user = Some("ann".into());
    c.context.metadata.insert("team".into(), "ai".into());
    drain(analytics.call(c.clone()).await.unwrap()).await;
    drain(analytics.call(c).await.unwrap()).await;
    let failing = Analytics::new(
        Failing::new(upstream(503)),
        vec![ring.clone(), metrics.clone()],
        priced(),
        ManualClock::at(1_795_000_000_000),
    );
    assert!(failing.call(call("big", "x")).await.is_err());

    let records = ring.records();
    assert_eq!(records.len(), 3);
    let (miss, hit, failed) = (&records[0], &records[1], &records[2]);
    assert_eq!(
        (
            miss.cache,
            miss.status,
            miss.usage.input_tokens,
            miss.usage.output_tokens
        ),
        ("MISS", 200, 10, 5)
    );
    assert!((miss.cost_usd - 0.06).abs() < 1e-9);
    assert!(miss.ttft_ms.is_some() && miss.latency_ms >= miss.ttft_ms.unwrap());
    assert_eq!(
        (
            miss.user.as_deref(),
            miss.metadata.get("team").map(String::as_str)
        ),
        (Some("ann"), Some("ai"))
    );
    assert_eq!((hit.cache, hit.cost_usd), ("HIT", 0.0));
    assert_eq!((failed.status, failed.error.as_deref()), (503, Some("503")));

    let by_model = metrics.by_model();
    assert_eq!((by_model["big"].requests, by_model["big"].errors), (2, 0));
    // A call that reached no provider is counted without inventing a model label.
    assert_eq!((by_model[""].requests, by_model[""].errors), (1, 1));
    assert_eq!(by_model["big"].cache_hits, 1);
    assert_eq!(metrics.by_day().len(), 1);
    let text = metrics.prometheus();
    assert!(
        text.contains("molt_ai_requests_total{provider=\"up\",model=\"big\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        // The cache hit's tokens were not spent again.
        text.contains("molt_ai_tokens_total{provider=\"up\",model=\"big\",kind=\"input\"} 10"),
        "{text}"
    );
    assert!(
        text.contains("molt_ai_request_duration_seconds_count{provider=\"up\",model=\"big\"} 2"),
        "{text}"
    );

    drop(analytics);
    drop(failing);
    let path = dir.path().join("calls.jsonl");
    let mut lines = 0;
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path).unwrap().lines().count();
        if lines == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lines, 2);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["cache"], "MISS");
    assert_eq!(first["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn a_leader_whose_reader_stalls_holds_identical_calls_only_until_the_wait_limit() {
    let inner = Answering::new("up");
    let cache = Cache::new(
        inner.clone(),
        CacheConfig {
            default_ttl: Some(Duration::from_secs(60)),
            max_bytes: 1 << 20,
            wait_limit: Duration::from_millis(200),
        },
    );
    // The first caller takes the answer and never reads it.
    let held = cache.call(call("m", "hi")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), cache.call(call("m", "hi")))
        .await
        .expect("not stuck")
        .unwrap();
    assert_eq!(second.info.cache, CacheStatus::Miss);
    assert_eq!(inner.count(), 2);
    drop(held);
}

#[tokio::test]
async fn a_ttl_beyond_the_clock_is_kept_not_a_panic() {
    let inner = Answering::new("up");
    let cache = cache_over(inner.clone(), None, 1 << 20);
    for _ in 0..2 {
        let mut c = call("m", "hi");
        c.context.cache.ttl = Some(Duration::MAX);
        drain(cache.call(c).await.unwrap()).await;
    }
    assert_eq!(inner.count(), 1);
}

#[tokio::test]
async fn the_total_limit_covers_every_fallback_step() {
    let fake = FakeProvider::start().await;
    let toml = format!(
        "{}\n[timeouts]\ntotal = \"300ms\"\nfirst_token = \"10s\"\n[routes.slow]\nsteps = [{{ provider = \"anthropic\", model = \"slow-first-token\" }}, {{ provider = \"openai\", model = \"slow-first-token\" }}]\n",
        support::gateway_toml(&fake, "")
    );
    let gateway = molt_ai_gateway::Gateway::from_config(
        &molt_ai_gateway::GatewayConfig::from_toml(&toml).unwrap(),
        |_| None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let error = gateway.call(call("slow", "hi")).await.unwrap_err();
    assert!(
        matches!(
            error,
            GatewayError::Timeout(molt_ai_gateway::error::TimeoutKind::Total)
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        fake.state.requests_for("slow-first-token"),
        1,
        "the second step never started"
    );
}
