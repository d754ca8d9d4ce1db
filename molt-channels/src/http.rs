//! The HTTPS client every adapter uses.

use bytes::{Bytes, BytesMut};
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

/// Sends a file request and reads the file, at most `limit` bytes: a declared
/// length over the limit is refused before reading, and reading stops once
/// past it. A redirect or a web page instead of the file (how Slack answers a
/// token without `files:read`) is refused. Errors never show the URL.
pub(crate) async fn download_file(
    channel: &str,
    request: reqwest::RequestBuilder,
    limit: u64,
) -> Result<Bytes, ChannelError> {
    let refused = |reason: String| ChannelError::Rejected {
        channel: channel.into(),
        reason: format!("file download: {reason}"),
    };
    let transport = |err: reqwest::Error| ChannelError::Transport {
        channel: channel.into(),
        reason: format!(
            "file download: {}",
            molt_core::error::chain(&err.without_url())
        ),
    };
    let too_large = || ChannelError::TooLarge {
        channel: channel.into(),
        limit,
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let seconds = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok())
            .unwrap_or(1);
        return Err(ChannelError::RateLimited {
            channel: channel.into(),
            retry_after: Duration::from_secs(seconds),
        });
    }
    if status.is_redirection() {
        return Err(refused(format!("redirected ({status}), not the file")));
    }
    if !status.is_success() {
        return Err(refused(format!("HTTP {status}")));
    }
    let web_page = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|media| media.trim_start().starts_with("text/html"));
    if web_page {
        return Err(refused("a web page came back, not the file".into()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether `url` is one a channel may fetch a file from with its credentials:
/// HTTPS on the default port of one of the platform's `hosts`, or the scheme,
/// host and port of the API base the operator configured (a proxy, or a
/// test's fake); never with a user name or password in it. A URL in a message
/// is never trusted beyond that.
pub(crate) fn is_platform_url(url: &url::Url, hosts: &[&str], configured_base: &str) -> bool {
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let platform = url.scheme() == "https"
        && url.port().is_none()
        && url.host_str().is_some_and(|host| hosts.contains(&host));
    let configured = url::Url::parse(configured_base).is_ok_and(|base| {
        base.scheme() == url.scheme()
            && base.host_str() == url.host_str()
            && base.port_or_known_default() == url.port_or_known_default()
    });
    platform || configured
}

/// Refuses a file whose declared `size` is over `limit`, before any download.
pub(crate) fn check_declared_size(
    channel: &str,
    size: Option<u64>,
    limit: u64,
) -> Result<(), ChannelError> {
    match size {
        Some(size) if size > limit => Err(ChannelError::TooLarge {
            channel: channel.into(),
            limit,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_fetched_only_from_the_platform_or_the_configured_base() {
        let hosts = ["files.slack.com"];
        let base = "http://127.0.0.1:8080/api";
        let allowed = |url: &str| is_platform_url(&url::Url::parse(url).unwrap(), &hosts, base);
        for url in [
            "https://files.slack.com/files-pri/T1-F1/a.png",
            "https://FILES.slack.com/files-pri/T1-F1/a.png",
            "https://files.slack.com:443/a.png",
            "http://127.0.0.1:8080/files-pri/T1-F1/a.png",
        ] {
            assert!(allowed(url), "{url}");
        }
        for url in [
            "http://files.slack.com/a.png",
            "https://files.slack.com:8443/a.png",
            "https://files.slack.com.evil.example/a.png",
            "https://evil.example/files.slack.com/a.png",
            "https://files.slack.com@evil.example/a.png",
            "https://user:pass@files.slack.com/a.png",
            "http://127.0.0.1:8081/a.png",
            "https://127.0.0.1:8080/a.png",
            "http://[::1]:8080/a.png",
            "file:///etc/passwd",
        ] {
            assert!(!allowed(url), "{url}");
        }
    }
}
