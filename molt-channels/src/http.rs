//! The HTTPS client every adapter uses.

use molt_core::channel::ChannelError;
use std::sync::Arc;
use std::time::Duration;

/// An HTTPS client on rustls (ring) with Mozilla's roots. Redirects are not
/// followed: some platforms put the token in the URL, and none redirects.
pub(crate) fn client(
    channel: &str,
    connect_timeout: Duration,
) -> Result<reqwest::Client, ChannelError> {
    let setup = |reason: String| ChannelError::Transport {
        channel: channel.into(),
        reason: format!("HTTP client setup: {reason}"),
    };
    let tls = tls_config().map_err(setup)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| setup(err.to_string()))
}

/// The TLS settings for HTTPS and secure WebSockets alike.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
