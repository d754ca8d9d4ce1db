//! TLS settings and the small HTTP client used to discover endpoints.

use std::sync::Arc;
use std::time::Duration;

/// TLS on rustls (ring) with Mozilla's roots, for `wss://` and `https://`.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client that follows no redirects and ignores proxy variables, for
/// talking to a browser's own HTTP endpoints.
pub(crate) fn plain_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|err| err.to_string())
}
