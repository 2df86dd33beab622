//! The real client address (SPEC §6): trusted proxies, the forwarded-header walk, and the
//! `ClientIp` extractor that handlers, the access log and the rate limiter all use.

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr},
};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header::HeaderMap,
    middleware::Next,
    web,
};
use ipnet::IpNet;

use crate::config::{ConfigError, RealIpHeader, Settings};

/// The proxies whose forwarded headers are believed, and which header they set.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: RealIpHeader,
}

impl TrustedProxies {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            networks: settings.trusted_networks()?,
            header: settings.proxy.real_ip_header,
        })
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request that arrived from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        let _ = (headers, self.header);
        peer
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) become plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The resolved client address of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Middleware: resolves the client address once and stores it for everything downstream.
pub async fn resolve(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let peer = req
        .peer_addr()
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let client = match req.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => proxies.resolve(peer, req.headers()),
        None => canonical(peer),
    };
    req.extensions_mut().insert(ClientIp(client));
    next.call(req).await
}

/// The client address of `req`: the resolved one, else the peer.
pub fn client_ip_of(req: &HttpRequest) -> IpAddr {
    req.extensions()
        .get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| req.peer_addr().map(|a| canonical(a.ip())))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

impl FromRequest for ClientIp {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(ClientIp(client_ip_of(req))))
    }
}
