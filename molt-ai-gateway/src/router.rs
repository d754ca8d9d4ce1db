//! The router: picks a route by the requested model name, or a provider by a
//! `provider/model` name.

use crate::error::GatewayError;
use crate::service::{Answer, Call, ModelService, SharedService};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// Routes by model name.
#[derive(Default)]
pub struct Router {
    routes: BTreeMap<String, SharedService>,
    providers: BTreeMap<String, SharedService>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves calls for model `name` with `service`.
    pub fn route(&mut self, name: impl Into<String>, service: SharedService) -> &mut Self {
        self.routes.insert(name.into(), service);
        self
    }

    /// Serves `name/MODEL` calls by asking `service` for `MODEL`.
    pub fn provider(&mut self, name: impl Into<String>, service: SharedService) -> &mut Self {
        self.providers.insert(name.into(), service);
        self
    }

    /// The route names.
    pub fn routes(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// The provider names.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

#[async_trait]
impl ModelService for Router {
    async fn call(&self, mut call: Call) -> Result<Answer, GatewayError> {
        let name = call.model().to_string();
        if let Some(route) = self.routes.get(&name) {
            return route.call(call).await;
        }
        if let Some((provider, model)) = name.split_once('/')
            && let Some(service) = self.providers.get(provider)
            && !model.is_empty()
        {
            call.request.options.model = Some(model.to_string());
            return service.call(call).await;
        }
        Err(GatewayError::UnknownModel(name))
    }
}
