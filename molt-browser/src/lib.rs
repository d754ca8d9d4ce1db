//! # molt-browser
//!
//! A Chrome DevTools Protocol client (a local headless Chromium it launches,
//! or a remote CDP endpoint) and the web tools the Molt agent uses, with every
//! request they make checked against one [`egress::EgressPolicy`].
//!
//! Useful on its own as a CDP client, without the rest of Molt:
//!
//! ```no_run
//! use molt_browser::{Browser, LaunchOptions, ScreenshotOptions};
//!
//! # async fn run() -> Result<(), molt_browser::CdpError> {
//! let browser = Browser::launch(LaunchOptions::default()).await?;
//! let page = browser.new_page().await?;
//! page.goto("https://example.com/").await?;
//! let png = page.screenshot(&ScreenshotOptions::default()).await?;
//! println!("{} bytes; {}", png.len(), page.markdown().await?);
//! # Ok(()) }
//! ```
//!
//! The launched browser (all of its processes) ends when `browser` drops.

pub mod browser;
pub mod connection;
pub mod egress;
pub mod endpoint;
pub mod error;
pub mod fetch;
pub mod firewall;
mod http;
mod intercept;
pub mod launch;
pub mod markdown;
pub mod page;
mod proxy;
pub mod shared;
pub mod tools;
pub mod video;

pub use browser::{Browser, BrowserVersion, Timeouts};
pub use egress::{EgressError, EgressPolicy};
pub use endpoint::CdpEndpoint;
pub use error::{CdpError, NetError, ProtocolErrorCode};
pub use launch::LaunchOptions;
pub use page::{
    Clip, Cookie, ImageFormat, Link, NavigateOptions, Navigation, Page, PdfOptions, Scraped,
    ScrapedElement, ScreenshotOptions, Viewport, WaitUntil,
};
pub use shared::{BrowserSource, SharedBrowser};
pub use tools::{ToolOptions, WebTools};
pub use video::{VideoOptions, VideoSummary};
