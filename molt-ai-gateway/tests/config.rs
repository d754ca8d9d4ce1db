//! Configuration from a file and from the environment variables Moltworker users set.

use molt_ai_gateway::config::StepEntry;
use molt_ai_gateway::{Api, Gateway, GatewayConfig};
use std::collections::HashMap;

fn from_env(vars: &[(&str, &str)]) -> GatewayConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut config = GatewayConfig::default();
    config.add_env(|name| vars.get(name).cloned());
    config
}

fn steps(config: &GatewayConfig) -> Vec<(String, String)> {
    config.routes["default"]
        .steps
        .iter()
        .map(|StepEntry { provider, model }| (provider.clone(), model.clone()))
        .collect()
}

#[test]
fn no_keys_means_no_providers() {
    let config = from_env(&[("ANTHROPIC_API_KEY", "  ")]);
    assert!(!config.has_providers());
    assert!(config.default_route.is_none());
}

#[test]
fn anthropic_and_openai_keys_make_a_default_route_with_a_fallback() {
    let config = from_env(&[
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("OPENAI_API_KEY", "sk-oa"),
        ("MOLT_MODEL", "claude-opus-4-5"),
    ]);
    assert_eq!(
        steps(&config),
        vec![
            ("anthropic".into(), "claude-opus-4-5".into()),
            ("openai".into(), "gpt-4o".into())
        ]
    );
    assert_eq!(config.default_route.as_deref(), Some("default"));
    assert_eq!(config.providers[0].base_url, "https://api.anthropic.com");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("sk-ant") && !debug.contains("sk-oa"),
        "{debug}"
    );
    let gateway = Gateway::from_config(&config, |_| None).unwrap();
    assert_eq!(
        molt_core::model::LanguageModel::name(&gateway),
        "anthropic/claude-opus-4-5 (+1 fallback)"
    );
}

#[test]
fn the_legacy_ai_gateway_variables_pick_the_provider_from_the_url() {
    let url = "https://gateway.ai.cloudflare.com/v1/acct/gw/openai/";
    let config = from_env(&[
        ("AI_GATEWAY_API_KEY", "sk-oa"),
        ("AI_GATEWAY_BASE_URL", url),
    ]);
    assert_eq!(config.providers[0].api, Api::OpenAi);
    assert_eq!(config.providers[0].base_url, url.trim_end_matches('/'));
    let config = from_env(&[
        ("AI_GATEWAY_API_KEY", "sk-ant"),
        (
            "AI_GATEWAY_BASE_URL",
            "https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic",
        ),
    ]);
    assert_eq!(config.providers[0].api, Api::Anthropic);
}

#[test]
fn the_cloudflare_ai_gateway_variables_name_provider_and_model() {
    let cf = [
        ("CLOUDFLARE_AI_GATEWAY_API_KEY", "key"),
        ("CF_AI_GATEWAY_ACCOUNT_ID", "acct"),
        ("CF_AI_GATEWAY_GATEWAY_ID", "gw"),
    ];
    let config = from_env(&cf);
    assert_eq!(
        steps(&config),
        vec![("cf-ai-gateway-anthropic".into(), "claude-sonnet-4-5".into())]
    );
    let mut with_model = cf.to_vec();
    with_model.push((
        "CF_AI_GATEWAY_MODEL",
        "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    ));
    let config = from_env(&with_model);
    assert_eq!(
        steps(&config),
        vec![(
            "cf-ai-gateway-workers-ai".into(),
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast".into()
        )]
    );
    assert_eq!(
        config.providers[0].base_url,
        "https://gateway.ai.cloudflare.com/v1/acct/gw/workers-ai/v1"
    );
    with_model.pop();
    with_model.push(("CF_AI_GATEWAY_MODEL", "groq/llama-3.3-70b"));
    let config = from_env(&with_model);
    assert_eq!(
        steps(&config),
        vec![("cf-ai-gateway-groq".into(), "groq/llama-3.3-70b".into())]
    );
}

#[test]
fn file_errors_name_the_field_without_quoting_secrets() {
    let text = "[[providers]]\nname = \"a\"\napi = \"anthropic\"\nbase_url = \"https://x\"\napi_key = 12345678\n";
    let error = GatewayConfig::from_toml(text).unwrap_err().to_string();
    assert!(
        error.contains("api_key") && !error.contains("12345678"),
        "{error}"
    );
}

#[test]
fn routes_are_checked_when_the_gateway_is_built() {
    let base =
        "[[providers]]\nname = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let cases = [
        (
            "[routes.a]\nsteps = [{ provider = \"nope\", model = \"m\" }]\n",
            "unknown provider",
        ),
        (
            "[routes.a]\nsplit = [{ route = \"b\", weight = 1 }]\n[routes.b]\nsplit = [{ route = \"a\", weight = 1 }]\n",
            "loop",
        ),
        (
            "[routes.a]\nsplit = [{ route = \"b\", weight = 0 }]\n[routes.b]\nsteps = [{ provider = \"p\", model = \"m\" }]\n",
            "positive weight",
        ),
        ("[routes.a]\n", "exactly one of"),
        ("default_route = \"zzz\"\n", "default_route"),
        (
            "[[providers]]\nname = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:8/v1\"\n",
            "defined twice",
        ),
    ];
    for (routes, expected) in cases {
        let config = GatewayConfig::from_toml(&format!("{routes}{base}")).unwrap();
        let error = Gateway::from_config(&config, |_| None)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{routes}: {error}");
    }
}

#[test]
fn a_budget_over_a_route_to_an_unpriced_model_is_refused_at_start() {
    let toml = r#"
[[providers]]
name = "local"
api = "openai"
base_url = "http://127.0.0.1:9/v1"

[routes.assistant]
steps = [{ provider = "local", model = "llama-3-70b" }]

[budget]
daily_usd = 1.0
"#;
    let config = GatewayConfig::from_toml(toml).unwrap();
    let err = Gateway::from_config(&config, |_| None).err().unwrap();
    assert!(err.to_string().contains("llama-3-70b"), "{err}");
    let priced = format!("{toml}default_price = {{ input = 1.0, output = 2.0 }}\n");
    let config = GatewayConfig::from_toml(&priced).unwrap();
    assert!(Gateway::from_config(&config, |_| None).is_ok());
}
