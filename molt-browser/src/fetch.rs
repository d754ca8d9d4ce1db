//! Plain HTTP fetches under the egress policy, without a browser.
//!
//! The policy sits where it cannot be bypassed: the client's DNS resolver
//! checks every address before a connection is made to it (so a name cannot
//! be rebound between check and use), URLs with literal addresses are checked
//! before sending, and each redirect is checked again before it is followed.

use crate::egress::{EgressError, EgressPolicy};
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The egress policy refused the URL or one it redirected to.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// No complete answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection or the HTTP exchange failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// The client could not be set up.
    #[error("HTTP client setup: {0}")]
    Setup(String),
}

/// Limits of a [`WebFetcher`].
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The most a whole fetch may take.
    pub timeout: Duration,
    /// Bytes of body kept; the rest is cut off (and reported as truncated).
    pub max_body_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// The `User-Agent` sent.
    pub user_agent: String,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_body_bytes: 5 << 20,
            max_redirects: 10,
            user_agent: concat!("molt-browser/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A fetched response.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The URL after redirects.
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body, at most `max_body_bytes` of it.
    pub body: Vec<u8>,
    /// Whether the body was cut off.
    pub truncated: bool,
}

/// An HTTP client whose every request passes an egress policy.
#[derive(Clone)]
pub struct WebFetcher {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
    options: FetchOptions,
}

impl WebFetcher {
    /// A fetcher under `policy`.
    pub fn new(policy: Arc<EgressPolicy>, options: FetchOptions) -> Result<Self, FetchError> {
        let redirect_policy = policy.clone();
        let max_redirects = options.max_redirects;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::http::tls_config().map_err(FetchError::Setup)?)
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > max_redirects {
                    return attempt.error(TooManyRedirects(max_redirects));
                }
                match redirect_policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(denied) => attempt.error(denied),
                }
            }))
            .no_proxy()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(options.user_agent.clone())
            .build()
            .map_err(|err| FetchError::Setup(err.to_string()))?;
        Ok(Self {
            client,
            policy,
            options,
        })
    }

    /// The policy this fetcher enforces.
    pub fn policy(&self) -> &Arc<EgressPolicy> {
        &self.policy
    }

    /// Fetches `url` with GET, following redirects the policy allows.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|_| EgressError::InvalidUrl(url.to_owned()))?;
        self.policy.check_url(&url)?;
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|err| self.explain(err))?;
        let final_url = response.url().to_string();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(|err| self.explain(err))? {
            let room = self.options.max_body_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url: final_url,
            status,
            content_type,
            body,
            truncated,
        })
    }

    /// Finds the typed cause of a client error: a policy refusal (from the
    /// resolver or the redirect check), too many redirects, or a timeout.
    fn explain(&self, err: reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
        while let Some(cause) = source {
            if let Some(denied) = cause.downcast_ref::<EgressError>() {
                return FetchError::Egress(denied.clone());
            }
            if let Some(TooManyRedirects(max)) = cause.downcast_ref::<TooManyRedirects>() {
                return FetchError::TooManyRedirects(*max);
            }
            source = cause.source();
        }
        if err.is_timeout() {
            FetchError::Timeout(self.options.timeout)
        } else {
            FetchError::Transport(err.without_url().to_string())
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("more than {0} redirects")]
struct TooManyRedirects(usize);

/// The client's DNS resolver: only checked addresses are ever connected to.
struct PolicyResolver(Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str();
            policy.check_host(host)?;
            // The port is replaced by the connector; 0 is a placeholder.
            let addresses: Vec<SocketAddr> = policy.resolve(host, 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
