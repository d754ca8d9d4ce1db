//! An HTTP proxy on loopback through which a launched browser's policed
//! contexts send all of their traffic.
//!
//! Request interception (`Fetch`) sees only what a page's own session
//! loads. Frames of other sites run in other processes, WebSocket handshakes
//! never pause, and the browser resolves names itself, so a name checked as
//! public may answer with a private address a moment later. A proxy set on
//! the browser context sees every connection the context opens, whatever
//! opened it; it checks the host, resolves it, checks every address, and
//! connects only to an address it checked.
//!
//! `CONNECT host:port` (HTTPS and WebSockets) is tunnelled byte for byte;
//! a plain `http://` request is forwarded on a fresh connection. A refused
//! request gets `403` and an unreachable host `502`; either answer closes
//! the connection.

use crate::egress::{EgressError, EgressPolicy};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Chromium's proxy bypass rule that sends loopback hosts through the proxy
/// too (by default they go direct, whatever the proxy settings say).
pub(crate) const PROXY_LOOPBACK: &str = "<-loopback>";

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A running egress proxy; it stops, with every connection it relays, when
/// dropped.
pub(crate) struct EgressProxy {
    address: SocketAddr,
    /// Dropping it tells every task of the proxy to end.
    _stop: watch::Sender<()>,
}

/// What every connection of one proxy shares.
#[derive(Clone)]
struct Relay {
    policy: Arc<EgressPolicy>,
    connect_timeout: Duration,
    stopped: watch::Receiver<()>,
}

impl EgressProxy {
    /// Listens on a free loopback port and relays what `policy` allows.
    pub(crate) async fn start(
        policy: Arc<EgressPolicy>,
        connect_timeout: Duration,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = watch::channel(());
        let relay = Relay {
            policy,
            connect_timeout,
            stopped,
        };
        tokio::spawn(relay.clone().until_stopped(accept(listener, relay)));
        Ok(Self {
            address,
            _stop: stop,
        })
    }

    /// The proxy as Chromium's `proxyServer` takes it.
    pub(crate) fn server(&self) -> String {
        format!("http://{}", self.address)
    }
}

async fn accept(listener: TcpListener, relay: Relay) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(relay.clone().until_stopped(serve(stream, relay.clone())));
            }
            Err(err) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!(%err, "the egress proxy could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, relay: Relay) {
    let service = service_fn(move |request| {
        let relay = relay.clone();
        async move { Ok::<_, Infallible>(relay.handle(request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(err) = served {
        tracing::debug!(%err, "an egress proxy connection ended with an error");
    }
}

impl Relay {
    /// Runs `work` until it ends or the proxy is dropped.
    async fn until_stopped(mut self, work: impl Future<Output = ()>) {
        tokio::select! {
            () = work => {}
            _ = self.stopped.changed() => {}
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if request.method() == Method::CONNECT {
            self.tunnel(request).await
        } else {
            self.forward(request).await
        }
    }

    /// `CONNECT host:port`: connects, answers 200, then relays bytes both ways.
    async fn tunnel(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let Some((host, port)) = request
            .uri()
            .authority()
            .and_then(|a| Some((a.host().to_owned(), a.port_u16()?)))
        else {
            return answer(StatusCode::BAD_REQUEST, "CONNECT takes host:port".into());
        };
        let mut upstream = match self.connect(&host, port).await {
            Ok(stream) => stream,
            Err(refusal) => return refusal,
        };
        let tunnel = async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(err) => tracing::debug!(%err, "a CONNECT tunnel was not taken up"),
            }
        };
        tokio::spawn(self.clone().until_stopped(tunnel));
        Response::new(empty())
    }

    /// An absolute-form `http://` request, sent on a fresh connection to a
    /// checked address (`connect` checks the host and its addresses).
    async fn forward(&self, mut request: Request<Incoming>) -> Response<ProxyBody> {
        let uri = request.uri().clone();
        let Some(authority) = uri.authority().filter(|_| uri.scheme_str() == Some("http")) else {
            return answer(
                StatusCode::BAD_REQUEST,
                "only absolute http:// requests and CONNECT are proxied".into(),
            );
        };
        let upstream = match self
            .connect(authority.host(), authority.port_u16().unwrap_or(80))
            .await
        {
            Ok(stream) => stream,
            Err(refusal) => return refusal,
        };
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
                Ok(handshake) => handshake,
                Err(err) => return answer(StatusCode::BAD_GATEWAY, err.to_string()),
            };
        tokio::spawn(self.clone().until_stopped(async move {
            let _ = connection.await;
        }));
        *request.uri_mut() = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        remove_hop_by_hop(request.headers_mut());
        // The host checked is the host named, whatever Host the client sent.
        if let Ok(host) = header::HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
        match sender.send_request(request).await {
            Ok(mut response) => {
                remove_hop_by_hop(response.headers_mut());
                response.map(BodyExt::boxed)
            }
            Err(err) => answer(StatusCode::BAD_GATEWAY, err.to_string()),
        }
    }

    /// Checks `host`, resolves it, checks every address, and connects to the
    /// first checked address that answers.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Response<ProxyBody>> {
        if let Err(denied) = self.policy.check_host(host) {
            return Err(refused(&denied));
        }
        let addresses = match self.policy.resolve(host, port).await {
            Ok(addresses) => addresses,
            Err(err @ EgressError::Resolve { .. }) => {
                return Err(answer(StatusCode::BAD_GATEWAY, err.to_string()));
            }
            Err(denied) => return Err(refused(&denied)),
        };
        // One deadline for all the addresses: a name with many unreachable
        // ones must not hold a request for each in turn.
        let attempts = async {
            let mut failure = String::new();
            for address in addresses {
                match TcpStream::connect(address).await {
                    Ok(stream) => return Ok(stream),
                    Err(err) => failure = format!("{address}: {err}"),
                }
            }
            Err(failure)
        };
        match tokio::time::timeout(self.connect_timeout, attempts).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(failure)) => Err(answer(StatusCode::BAD_GATEWAY, failure)),
            Err(_) => Err(answer(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{host}: no connection within {:?}", self.connect_timeout),
            )),
        }
    }
}

/// The headers that describe one connection and must not be passed on: the
/// standard ones, and any the `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

fn refused(denied: &EgressError) -> Response<ProxyBody> {
    tracing::info!(reason = %denied, "a browser connection was refused by the egress policy");
    answer(StatusCode::FORBIDDEN, denied.to_string())
}

fn answer(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // A refused tunnel leaves nothing to keep the connection for.
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `request` to the proxy as raw bytes and reads the whole answer.
    async fn exchange(proxy: &EgressProxy, request: String) -> String {
        let mut stream = TcpStream::connect(proxy.address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// A server that answers every request with its Host and the other
    /// header names it got.
    async fn header_echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let host = request.headers().get(header::HOST).cloned();
                    let mut names: Vec<&str> =
                        request.headers().keys().map(HeaderName::as_str).collect();
                    names.sort_unstable();
                    names.retain(|name| *name != "host");
                    let host = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
                    let text = format!("{} host={host} {}", request.uri(), names.join(","));
                    Ok::<_, Infallible>(answer(StatusCode::OK, text))
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(connection);
            }
        });
        address
    }

    #[tokio::test]
    async fn relays_what_the_policy_allows_and_refuses_the_rest() {
        let loopback = EgressPolicy::default().allow_network("127.0.0.1/32".parse().unwrap());
        let proxy = EgressProxy::start(Arc::new(loopback), Duration::from_secs(5))
            .await
            .unwrap();
        let echo = header_echo().await;

        // Forwarded in origin form, without the headers meant for the proxy.
        let forwarded = exchange(
            &proxy,
            format!(
                "GET http://{echo}/path?q=1 HTTP/1.1\r\nHost: elsewhere\r\nProxy-Connection: keep-alive\r\n\
                 Proxy-Authorization: Basic eDp5\r\nX-Kept: 1\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(forwarded.starts_with("HTTP/1.1 200"), "{forwarded}");
        assert!(
            forwarded.ends_with(&format!("/path?q=1 host={echo} x-kept")),
            "{forwarded}"
        );

        // The metadata service, by CONNECT or by plain request: refused.
        let tunnel = exchange(
            &proxy,
            "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n".into(),
        )
        .await;
        assert!(tunnel.starts_with("HTTP/1.1 403"), "{tunnel}");
        assert!(tunnel.contains("cloud metadata"), "{tunnel}");
        let plain = exchange(
            &proxy,
            "GET http://[::ffff:a9fe:a9fe]/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .into(),
        )
        .await;
        assert!(plain.starts_with("HTTP/1.1 403"), "{plain}");
        // A name is checked by what it resolves to.
        let strict = EgressProxy::start(Arc::default(), Duration::from_secs(5))
            .await
            .unwrap();
        let named = exchange(
            &strict,
            "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n".into(),
        )
        .await;
        assert!(named.starts_with("HTTP/1.1 403"), "{named}");
        assert!(named.contains("loopback"), "{named}");

        // The proxy is not a web server: a request in origin form is refused.
        let origin_form = exchange(
            &proxy,
            "GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert!(origin_form.starts_with("HTTP/1.1 400"), "{origin_form}");

        // Dropped, it stops listening.
        let address = proxy.address;
        drop(proxy);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(address).await.is_err());
    }
}
