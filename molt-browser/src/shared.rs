//! One browser shared by the tools and the `/cdp` endpoint: started on first
//! use, and started again when it has died.

use crate::browser::{Browser, Timeouts};
use crate::egress::EgressPolicy;
use crate::error::CdpError;
use crate::launch::LaunchOptions;
use crate::page::Page;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Where a [`SharedBrowser`] gets its browser.
#[derive(Clone, Debug)]
pub enum BrowserSource {
    /// A local Chromium, launched with these options.
    Launch(LaunchOptions),
    /// A running browser: a `ws://`/`wss://` URL to connect to, or an
    /// `http://` endpoint to discover it from.
    Connect {
        /// The URL.
        url: String,
        /// Connection and command timeouts.
        timeouts: Timeouts,
    },
}

/// A browser started (or connected) lazily and again after a crash.
pub struct SharedBrowser {
    source: BrowserSource,
    /// A policy for the whole browser (see [`Browser::launch_policed`]).
    egress: Option<Arc<EgressPolicy>>,
    current: Mutex<Option<Arc<Browser>>>,
}

impl SharedBrowser {
    /// A shared browser from `source`; nothing starts until first use.
    pub fn new(source: BrowserSource) -> Self {
        Self {
            source,
            egress: None,
            current: Mutex::new(None),
        }
    }

    /// A shared browser whose every connection passes `policy` when it is
    /// launched here ([`Browser::launch_policed`]). A browser it connects to
    /// cannot be policed as a whole; only what a client asks of it can be
    /// checked (the `/cdp` relay does).
    pub fn policed(source: BrowserSource, policy: Arc<EgressPolicy>) -> Self {
        Self {
            source,
            egress: Some(policy),
            current: Mutex::new(None),
        }
    }

    /// The policy the whole browser obeys, when it has one.
    pub fn egress(&self) -> Option<&Arc<EgressPolicy>> {
        self.egress.as_ref()
    }

    /// Where the browser comes from.
    pub fn source(&self) -> &BrowserSource {
        &self.source
    }

    /// The browser, started or reconnected if there is none or it has died.
    pub async fn get(&self) -> Result<Arc<Browser>, CdpError> {
        let mut current = self.current.lock().await;
        if let Some(browser) = current.as_ref().filter(|b| b.is_connected()) {
            return Ok(browser.clone());
        }
        if current.take().is_some() {
            tracing::warn!("the shared browser is gone; starting it again");
        }
        let browser = Arc::new(match &self.source {
            BrowserSource::Launch(options) => match &self.egress {
                Some(policy) => Browser::launch_policed(options.clone(), policy.clone()).await?,
                None => Browser::launch(options.clone()).await?,
            },
            BrowserSource::Connect { url, timeouts } if url.starts_with("http") => {
                Browser::discover(url, *timeouts).await?
            }
            BrowserSource::Connect { url, timeouts } => Browser::connect(url, *timeouts).await?,
        });
        *current = Some(browser.clone());
        Ok(browser)
    }

    /// A page in a browser context of its own, with every request it makes
    /// checked against `policy` (see [`Browser::new_policed_page`]).
    pub async fn policed_page(&self, policy: &Arc<EgressPolicy>) -> Result<Page, CdpError> {
        self.get().await?.new_policed_page(policy.clone()).await
    }
}
