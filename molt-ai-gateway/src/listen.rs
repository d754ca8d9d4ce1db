//! Serving an axum app over HTTP/1.1 with bounds a stranger cannot stretch:
//! a cap on open connections (WebSockets included, for as long as they
//! live), a deadline for each request's headers (which also closes a
//! keep-alive connection left idle), the client's address for throttling
//! ([`ClientAddress`]), and a graceful stop. The proxy serves with it, and so
//! does `moltworker`.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// The bounds of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once; one more is closed as soon as it arrives.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long
    /// a keep-alive connection may sit idle.
    pub header_read_timeout: Duration,
    /// How long a stop waits for requests in progress.
    pub drain_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits up to
/// `drain_timeout` for the requests in progress. Each request carries
/// [`ConnectInfo<SocketAddr>`] with the client's address.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1 only: an HTTP/2 connection opened without an upgrade would hold
    // its place with no header deadline (the clients served here speak HTTP/1.1).
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "too many connections: closing a new one");
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        // The permit lives with the socket, so an upgraded WebSocket counts too.
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
        });
        let connection = builder.serve_connection_with_upgrades(io, service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in progress after {:?}; stopping anyway",
            limits.drain_timeout
        );
    }
}

/// A client's socket, holding its place among the open connections.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The client's address, for a request served by [`serve`] (the unspecified
/// address for a router called some other way, as in some tests). When the
/// router carries [`TrustedProxies`] (as an `axum::Extension`) and the peer
/// is one of them, it is the address the proxy forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let address = match parts.extensions.get::<TrustedProxies>() {
            Some(trusted) => trusted.client(peer, &parts.headers),
            None => peer,
        };
        Ok(Self(address))
    }
}

/// Proxies whose forwarding headers are believed (a Cloudflare Worker in
/// front of the container, a load balancer). For a request from one of them,
/// the client is its `CF-Connecting-IP`, else the nearest address of
/// `X-Forwarded-For` that is not itself a trusted proxy. Headers from any
/// other peer are ignored: they are the client's to forge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

/// A trusted-proxy list that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an address or a network (such as 10.0.0.0/8)")]
pub struct BadProxy(String);

impl TrustedProxies {
    /// Networks and addresses, separated by commas or spaces.
    pub fn parse(list: &str) -> Result<Self, BadProxy> {
        let networks = list
            .split([',', ' '])
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| BadProxy(item.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(networks))
    }

    /// Whether none is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: std::net::IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(
        &self,
        peer: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> std::net::IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        if let Some(address) = header("cf-connecting-ip").and_then(|v| v.trim().parse().ok()) {
            return address;
        }
        let forwarded = header("x-forwarded-for").unwrap_or_default();
        forwarded
            .rsplit(',')
            .map(|hop| hop.trim().parse::<std::net::IpAddr>())
            .take_while(Result::is_ok)
            .flatten()
            .find(|hop| !self.trusts(*hop))
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod trusted_proxy_tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let proxy: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        let cf = headers(&[("cf-connecting-ip", "203.0.113.5")]);
        assert_eq!(trusted.client(proxy, &cf).to_string(), "203.0.113.5");
        assert_eq!(
            trusted.client(stranger, &cf),
            stranger,
            "a stranger's header is ignored"
        );
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.9.9.9")]);
        assert_eq!(trusted.client(proxy, &chain).to_string(), "203.0.113.9");
        let garbage = headers(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(trusted.client(proxy, &garbage), proxy);
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
