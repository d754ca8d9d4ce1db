//! # molt-browser
//!
//! A Chrome DevTools Protocol client (local headless Chromium or a remote CDP
//! endpoint) and the browser tools the Molt agent uses, with every navigation
//! checked against an egress policy.
//!
//! Useful on its own as a CDP client, without the rest of Molt. The client and
//! tools arrive with the "molt-browser" issue; this crate holds no code yet.
