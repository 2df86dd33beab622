//! The real client address (docs/reference.md §6): trusted proxies, the forwarded-header walk,
//! and the `ClientIp` extractor handlers use. The pipeline's context layer resolves the address
//! once per request; the access log and the rate limiter read that same value.
//!
//! How the address is decided, in one place:
//! 1. The TCP peer is the answer unless it is in `proxy.trusted`; an untrusted peer's headers are
//!    never read, so nobody on the open internet can choose their own address.
//! 2. From a trusted peer, `proxy.real_ip_header` is read. `X-Forwarded-For` and `Forwarded`
//!    (RFC 7239 `for=`) are one list over all their header lines, in order, walked from the
//!    right: trusted addresses are skipped (nginx's `real_ip_recursive on`), the first untrusted
//!    one is the client, and when all are trusted the leftmost is. A malformed, `unknown` or
//!    obfuscated (`_hidden`) entry ends the walk at the last good address — the peer itself when
//!    the rightmost entry is bad — because nothing left of a lie can be believed.
//!    `X-Real-IP` must be exactly one address, else the peer is the answer.
//! 3. Ports, brackets and quotes are stripped; IPv4-mapped IPv6 becomes IPv4.
//!
//! `X-Forwarded-Proto` is believed from trusted peers only, and kept as [`ForwardedProto`].
//! Never use actix's `ConnectionInfo::realip_remote_addr()`: it believes any client's headers.
//!
//! The header grammars and the walk are pure functions in [`forwarded`] (std only, fuzzed);
//! this file holds the policy: who is trusted, which header is read, and how handlers see it.

pub mod forwarded;

pub use forwarded::{
    ForwardedProto, canonical, forwarded_for, parse_node, walk_from_right, x_forwarded_for,
    x_forwarded_proto, x_real_ip,
};

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr},
};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    dev::Payload,
    error::ErrorInternalServerError,
    http::header::{HeaderMap, HeaderName},
    web,
};
use ipnet::IpNet;

use crate::config::{ConfigError, RealIpHeader, Settings};

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The proxies whose forwarded headers are believed, and which header they set.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: RealIpHeader,
}

impl TrustedProxies {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self::new(
            settings.trusted_networks()?,
            settings.proxy.real_ip_header,
        ))
    }

    pub fn new(networks: Vec<IpNet>, header: RealIpHeader) -> Self {
        Self { networks, header }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request that arrived from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let name = match self.header {
            RealIpHeader::XForwardedFor => X_FORWARDED_FOR,
            RealIpHeader::XRealIp => X_REAL_IP,
            RealIpHeader::Forwarded => FORWARDED,
        };
        let lines: Vec<&[u8]> = headers.get_all(name).map(|v| v.as_bytes()).collect();
        self.resolve_lines(peer, &lines)
    }

    /// [`resolve`](Self::resolve) over the raw lines of the configured header, for a peer
    /// already known to be trusted.
    pub fn resolve_lines(&self, peer: IpAddr, lines: &[&[u8]]) -> IpAddr {
        let peer = canonical(peer);
        match self.header {
            RealIpHeader::XRealIp => x_real_ip(lines).unwrap_or(peer),
            RealIpHeader::XForwardedFor => {
                walk_from_right(&x_forwarded_for(lines), peer, |ip| self.is_trusted(ip))
            }
            RealIpHeader::Forwarded => {
                walk_from_right(&forwarded_for(lines), peer, |ip| self.is_trusted(ip))
            }
        }
    }

    /// The scheme the client used, when a trusted peer says so in `X-Forwarded-Proto`.
    pub fn forwarded_proto(&self, peer: IpAddr, headers: &HeaderMap) -> Option<ForwardedProto> {
        if !self.is_trusted(peer) {
            return None;
        }
        let lines: Vec<&[u8]> = headers
            .get_all(X_FORWARDED_PROTO)
            .map(|v| v.as_bytes())
            .collect();
        x_forwarded_proto(&lines)
    }
}

/// The resolved client address of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Everything known about the client: its address and, from a trusted proxy, its scheme. The
/// scheme is read only when a handler asks for it: no request pays for what nothing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub forwarded_proto: Option<ForwardedProto>,
}

/// The TCP peer of a request, IPv4-mapped addresses unwrapped (unspecified for a Unix socket).
pub(crate) fn peer_of(req: &HttpRequest) -> IpAddr {
    canonical(
        req.peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip()),
    )
}

/// The resolved client address, as the pipeline's context layer stored it.
pub(crate) fn client_ip_of(req: &HttpRequest) -> Result<IpAddr, Error> {
    req.extensions()
        .get::<ClientIp>()
        .map(|client| client.0)
        // A wiring mistake, not a client's: say so rather than fall back to the peer.
        .ok_or_else(|| ErrorInternalServerError("the request context layer did not run"))
}

impl FromRequest for ClientIp {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(client_ip_of(req).map(ClientIp))
    }
}

impl FromRequest for ClientInfo {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let info = || {
            let proxies = req.app_data::<web::Data<TrustedProxies>>().ok_or_else(|| {
                ErrorInternalServerError("TrustedProxies is not registered as app data")
            })?;
            Ok(ClientInfo {
                ip: client_ip_of(req)?,
                forwarded_proto: proxies.forwarded_proto(peer_of(req), req.headers()),
            })
        };
        ready(info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(trusted: &[&str], header: RealIpHeader) -> TrustedProxies {
        TrustedProxies::new(trusted.iter().map(|n| n.parse().unwrap()).collect(), header)
    }

    #[test]
    fn headers_of_untrusted_peers_are_never_read() {
        let proxies = proxies(&["10.0.0.0/8"], RealIpHeader::XForwardedFor);
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, "203.0.113.1".parse().unwrap());
        headers.insert(X_FORWARDED_PROTO, "https".parse().unwrap());
        assert_eq!(
            proxies.resolve(ip("198.51.100.9"), &headers),
            ip("198.51.100.9")
        );
        assert_eq!(proxies.forwarded_proto(ip("198.51.100.9"), &headers), None);
        assert_eq!(proxies.resolve(ip("10.1.2.3"), &headers), ip("203.0.113.1"));
        assert_eq!(
            proxies.forwarded_proto(ip("10.1.2.3"), &headers),
            Some(ForwardedProto::Https)
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_matched_as_ipv4() {
        let proxies = proxies(&["127.0.0.1/32"], RealIpHeader::XRealIp);
        let mut headers = HeaderMap::new();
        headers.insert(X_REAL_IP, "203.0.113.1".parse().unwrap());
        assert_eq!(
            proxies.resolve(ip("::ffff:127.0.0.1"), &headers),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, "203.0.113.1".parse().unwrap());
        headers.insert(X_REAL_IP, "203.0.113.2".parse().unwrap());
        headers.insert(FORWARDED, "for=203.0.113.3".parse().unwrap());
        let peer = ip("127.0.0.1");
        for (header, expected) in [
            (RealIpHeader::XForwardedFor, "203.0.113.1"),
            (RealIpHeader::XRealIp, "203.0.113.2"),
            (RealIpHeader::Forwarded, "203.0.113.3"),
        ] {
            assert_eq!(
                proxies(&["127.0.0.0/8"], header).resolve(peer, &headers),
                ip(expected)
            );
        }
    }
}
