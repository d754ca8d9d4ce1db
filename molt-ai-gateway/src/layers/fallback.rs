//! An ordered fallback chain: each step is a service and the model id it
//! should be asked for; the first step that starts an answer wins.

use crate::error::GatewayError;
use crate::service::{Answer, Call, ModelService, SharedService};
use async_trait::async_trait;

/// One step of a chain: a service (usually a provider with retries) and a model id.
#[derive(Clone)]
pub struct Step {
    /// What to call.
    pub service: SharedService,
    /// The model id to ask it for.
    pub model: String,
}

/// The fallback layer. It moves on after a retryable failure (429, 5xx, 529,
/// timeouts, connection errors) or refused provider credentials, before any output.
pub struct Fallback {
    steps: Vec<Step>,
}

impl Fallback {
    /// A chain trying `steps` in order.
    pub fn new(steps: Vec<Step>) -> Self {
        Self { steps }
    }
}

#[async_trait]
impl ModelService for Fallback {
    async fn call(&self, call: Call) -> Result<Answer, GatewayError> {
        let mut last_error = GatewayError::InvalidRequest("the fallback chain is empty".into());
        for (index, step) in self.steps.iter().enumerate() {
            let mut attempt = call.clone();
            attempt.request.options.model = Some(step.model.clone());
            match step.service.call(attempt).await {
                Ok(mut answer) => {
                    answer.info.step = index;
                    return Ok(answer);
                }
                Err(error) if error.is_fallback_eligible() => {
                    tracing::warn!(step = index, model = %step.model, error = %error, "fallback step failed");
                    last_error = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }
}
