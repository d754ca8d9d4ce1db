//! The one egress policy every request made for the model passes: the web
//! fetch tool's, and every request a policed browser page makes.
//!
//! By default any public host may be reached, and no private, loopback,
//! link-local, shared (CGNAT), reserved or cloud-metadata address may.
//! Names are resolved and every address they resolve to is checked; a
//! redirect is checked again like a new request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use url::{Host, Url};

pub use ipnet::IpNet;

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Only `http` and `https` (and their WebSocket twins) may go out.
    #[error("egress denied: the {scheme}: scheme is not allowed")]
    Scheme {
        /// The scheme asked for.
        scheme: String,
    },
    /// The URL does not parse or has no host.
    #[error("egress denied: {0:?} is not a URL with a host")]
    InvalidUrl(String),
    /// The host is on the deny list.
    #[error("egress denied: {host} is on the deny list")]
    DeniedHost {
        /// The host.
        host: String,
    },
    /// There is an allow list and the host is not on it.
    #[error("egress denied: {host} is not on the allow list")]
    NotAllowed {
        /// The host.
        host: String,
    },
    /// The host is, or resolves to, an address of a denied kind.
    #[error("egress denied: {host} is {address}, a {kind} address")]
    DeniedAddress {
        /// The host.
        host: String,
        /// The address.
        address: IpAddr,
        /// What kind of address it is.
        kind: AddressKind,
    },
    /// The host's name could not be resolved.
    #[error("could not resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
}

/// A kind of address that is not on the public internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7`, `fec0::/10`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud provider's instance metadata service (`169.254.169.254`,
    /// `fd00:ec2::254`, `100.100.100.200`).
    CloudMetadata,
    /// `100.64/10`, carrier-grade NAT.
    SharedAddressSpace,
    /// Ranges reserved for documentation.
    Documentation,
    /// Multicast and broadcast.
    Multicast,
    /// Other reserved ranges (`192.0.0/24`, `198.18/15`, `240/4`, `100::/64`).
    Reserved,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::CloudMetadata => "cloud metadata",
            Self::SharedAddressSpace => "shared (CGNAT)",
            Self::Documentation => "documentation",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved",
        })
    }
}

/// The kind of a non-public address; `None` for a public one.
pub fn classify(address: IpAddr) -> Option<AddressKind> {
    match address.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressKind> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => {
            AddressKind::CloudMetadata
        }
        (0, _, _) => AddressKind::Unspecified,
        (127, _, _) => AddressKind::Loopback,
        (10, _, _) | (192, 168, _) => AddressKind::Private,
        (172, 16..=31, _) => AddressKind::Private,
        (169, 254, _) => AddressKind::LinkLocal,
        (100, 64..=127, _) => AddressKind::SharedAddressSpace,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressKind::Documentation,
        (192, 0, 0) | (198, 18..=19, _) | (240..=255, _, _) => AddressKind::Reserved,
        (224..=239, _, _) => AddressKind::Multicast,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressKind> {
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    Some(match segments {
        _ if ip.is_unspecified() => AddressKind::Unspecified,
        _ if ip.is_loopback() => AddressKind::Loopback,
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => AddressKind::CloudMetadata,
        // NAT64 (64:ff9b::/96) and deprecated IPv4-compatible (::/96) addresses
        // reach the IPv4 address they carry.
        [0x0064, 0xff9b, 0, 0, 0, 0, high, low] | [0, 0, 0, 0, 0, 0, high, low] => {
            return classify_v4(embedded_v4(high, low));
        }
        // 6to4 (2002::/16) carries its IPv4 address in bits 16 to 48.
        [0x2002, high, low, ..] => return classify_v4(embedded_v4(high, low)),
        [first, ..] if first & 0xfe00 == 0xfc00 => AddressKind::Private,
        [first, ..] if first & 0xffc0 == 0xfec0 => AddressKind::Private,
        [first, ..] if first & 0xffc0 == 0xfe80 => AddressKind::LinkLocal,
        [first, ..] if first & 0xff00 == 0xff00 => AddressKind::Multicast,
        [0x2001, 0x0db8, ..] => AddressKind::Documentation,
        [0x0100, 0, 0, 0, ..] => AddressKind::Reserved,
        _ => return None,
    })
}

/// A host name pattern: `example.com` (that host only) or `*.example.com`
/// (its subdomains, not itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// A pattern, matched without regard to case or a trailing dot;
    /// international names match their punycode form (`bücher.de` is
    /// `xn--bcher-kva.de`, as URLs carry it).
    pub fn new(pattern: &str) -> Self {
        Self(normalize_host(pattern))
    }

    /// Whether `host` matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        match self.0.strip_prefix("*.") {
            Some(parent) => host
                .strip_suffix(parent)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == self.0,
        }
    }
}

/// Lower case, no trailing dot or IPv6 brackets, punycode for international names.
fn normalize_host(host: &str) -> String {
    let host = host
        .trim()
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']');
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(name) => ("*.", name),
        None => ("", host),
    };
    let name = match url::Host::parse(name) {
        Ok(url::Host::Domain(ascii)) => ascii,
        _ => name.to_ascii_lowercase(),
    };
    format!("{wildcard}{name}")
}

/// Which hosts and addresses requests made for the model may reach.
#[derive(Clone, Debug)]
pub struct EgressPolicy {
    allow_hosts: Vec<HostPattern>,
    deny_hosts: Vec<HostPattern>,
    allow_networks: Vec<IpNet>,
    resolve_timeout: Duration,
}

impl Default for EgressPolicy {
    /// Any public host; no private, loopback, link-local or metadata address.
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            allow_networks: Vec::new(),
            resolve_timeout: Duration::from_secs(10),
        }
    }
}

impl EgressPolicy {
    /// Allows only hosts matching the given patterns (once any is given).
    pub fn allow_host(mut self, pattern: &str) -> Self {
        self.allow_hosts.push(HostPattern::new(pattern));
        self
    }

    /// Denies hosts matching this pattern, whatever else allows them.
    pub fn deny_host(mut self, pattern: &str) -> Self {
        self.deny_hosts.push(HostPattern::new(pattern));
        self
    }

    /// Allows addresses in this network even if they are not public (such as
    /// `127.0.0.1/32` for a local test server, or an office network).
    pub fn allow_network(mut self, network: IpNet) -> Self {
        self.allow_networks.push(network);
        self
    }

    /// How long a DNS lookup may take.
    pub fn resolve_timeout(mut self, timeout: Duration) -> Self {
        self.resolve_timeout = timeout;
        self
    }

    /// Checks what can be known from the URL alone: scheme, host lists, and
    /// the address when the host is an IP literal.
    pub fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https" | "ws" | "wss") {
            return Err(EgressError::Scheme {
                scheme: url.scheme().to_owned(),
            });
        }
        let host = match url.host() {
            Some(host) => host,
            None => return Err(EgressError::InvalidUrl(url.to_string())),
        };
        let name = match &host {
            Host::Domain(domain) => (*domain).to_owned(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        self.check_host(&name)?;
        match host {
            Host::Ipv4(ip) => self.check_address(&name, IpAddr::V4(ip)),
            Host::Ipv6(ip) => self.check_address(&name, IpAddr::V6(ip)),
            Host::Domain(_) => Ok(()),
        }
    }

    /// Checks a host name against the deny and allow lists.
    pub fn check_host(&self, host: &str) -> Result<(), EgressError> {
        if self.deny_hosts.iter().any(|p| p.matches(host)) {
            return Err(EgressError::DeniedHost { host: host.into() });
        }
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| p.matches(host)) {
            return Err(EgressError::NotAllowed { host: host.into() });
        }
        Ok(())
    }

    /// Checks one address `host` stands for.
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), EgressError> {
        if self.allow_networks.iter().any(|n| n.contains(&address)) {
            return Ok(());
        }
        match classify(address) {
            None => Ok(()),
            Some(kind) => Err(EgressError::DeniedAddress {
                host: host.into(),
                address,
                kind,
            }),
        }
    }

    /// Resolves a host and checks every address it resolves to; one denied
    /// address denies the host (a name that mixes public and private answers
    /// is how DNS rebinding starts).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let host = normalize_host(host);
        let resolve_error = |reason: String| EgressError::Resolve {
            host: host.clone(),
            reason,
        };
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(
                self.resolve_timeout,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| resolve_error(format!("no answer within {:?}", self.resolve_timeout)))?
            .map_err(|err| resolve_error(err.to_string()))?
            .collect(),
        };
        if addresses.is_empty() {
            return Err(resolve_error("no addresses".into()));
        }
        for address in &addresses {
            self.check_address(&host, address.ip())?;
        }
        Ok(addresses)
    }

    /// The whole check for one URL: [`check_url`](Self::check_url), then the
    /// addresses its host resolves to.
    pub async fn check(&self, url: &Url) -> Result<(), EgressError> {
        self.check_url(url)?;
        if let Some(Host::Domain(domain)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(80);
            self.resolve(domain, port).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(address: &str) -> Option<AddressKind> {
        classify(address.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_classified() {
        use AddressKind::*;
        let cases = [
            ("127.0.0.1", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.1.1", Some(LinkLocal)),
            ("100.100.100.200", Some(CloudMetadata)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("0.0.0.0", Some(Unspecified)),
            ("255.255.255.255", Some(Reserved)),
            ("224.0.0.1", Some(Multicast)),
            ("8.8.8.8", None),
            ("::1", Some(Loopback)),
            ("::", Some(Unspecified)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("fd12::1", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("64:ff9b::a00:1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2606:4700::1111", None),
        ];
        for (address, expected) in cases {
            assert_eq!(kind(address), expected, "{address}");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_lists_and_literal_addresses() {
        let policy = EgressPolicy::default();
        let check = |p: &EgressPolicy, url: &str| p.check_url(&Url::parse(url).unwrap());
        assert!(check(&policy, "https://example.com/").is_ok());
        assert!(matches!(
            check(&policy, "file:///etc/passwd"),
            Err(EgressError::Scheme { .. })
        ));
        assert!(matches!(
            check(&policy, "http://169.254.169.254/latest/meta-data/"),
            Err(EgressError::DeniedAddress {
                kind: AddressKind::CloudMetadata,
                ..
            })
        ));
        assert!(matches!(
            check(&policy, "http://[::ffff:7f00:1]:8080/"),
            Err(EgressError::DeniedAddress {
                kind: AddressKind::Loopback,
                ..
            })
        ));
        let allowed = EgressPolicy::default().allow_network("127.0.0.0/8".parse().unwrap());
        assert!(check(&allowed, "http://127.0.0.1:8080/").is_ok());

        let international = EgressPolicy::default().deny_host("bücher.de");
        assert!(check(&international, "https://BÜCHER.de/").is_err());
        assert!(
            check(
                &EgressPolicy::default().allow_host("*.example.com"),
                "https://evilexample.com/"
            )
            .is_err()
        );

        let listed = EgressPolicy::default()
            .allow_host("*.example.com")
            .allow_host("example.org")
            .deny_host("bad.example.com");
        assert!(check(&listed, "https://www.example.com/").is_ok());
        assert!(check(&listed, "https://EXAMPLE.org./").is_ok());
        assert!(matches!(
            check(&listed, "https://example.com/"),
            Err(EgressError::NotAllowed { .. })
        ));
        assert!(matches!(
            check(&listed, "https://bad.example.com/"),
            Err(EgressError::DeniedHost { .. })
        ));
    }

    #[tokio::test]
    async fn names_are_resolved_and_every_answer_checked() {
        let policy = EgressPolicy::default();
        let denied = policy
            .check(&Url::parse("http://localhost:9/").unwrap())
            .await;
        assert!(
            matches!(
                denied,
                Err(EgressError::DeniedAddress {
                    kind: AddressKind::Loopback,
                    ..
                })
            ),
            "{denied:?}"
        );
        let allowed = EgressPolicy::default()
            .allow_network("127.0.0.0/8".parse().unwrap())
            .allow_network("::1/128".parse().unwrap());
        assert!(
            allowed
                .check(&Url::parse("http://localhost:9/").unwrap())
                .await
                .is_ok()
        );
    }
}
