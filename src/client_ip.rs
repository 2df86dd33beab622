//! The real client address (SPEC §6): trusted proxies, the forwarded-header walk, and the
//! `ClientIp` extractor that handlers, the access log and the rate limiter all use.
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

use std::{
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header::{HeaderMap, HeaderName},
    middleware::Next,
    web,
};
use ipnet::IpNet;

use crate::config::{ConfigError, RealIpHeader, Settings};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

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

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) become plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Walks forwarded entries (leftmost first, `None` for a bad one) from the right.
///
/// Returns the first untrusted address; the leftmost when all are trusted; the last good address
/// seen (or `peer`) when a bad entry is met; `peer` when there are no entries.
pub fn walk_from_right(
    entries: &[Option<IpAddr>],
    peer: IpAddr,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut last_good = peer;
    for entry in entries.iter().rev() {
        match *entry {
            None => return last_good,
            Some(ip) if !is_trusted(ip) => return ip,
            Some(ip) => last_good = ip,
        }
    }
    last_good
}

/// One address as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, optionally in double quotes. `None` for anything else,
/// including `unknown` and obfuscated identifiers such as `_hidden`.
pub fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim_matches([' ', '\t']);
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let ip = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_node_port)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = value.parse::<IpAddr>() {
        ip
    } else {
        // Only IPv4 can carry a port without brackets; in IPv6 the colon is ambiguous.
        let (host, port) = value.split_once(':')?;
        if !is_node_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(canonical(ip))
}

/// RFC 7239 `node-port`: a port number, or an obfuscated one (`_` then `[A-Za-z0-9._-]`).
fn is_node_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = port.len() > 1
        && port.starts_with('_')
        && port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (digits && port.parse::<u16>().is_ok()) || obfuscated
}

/// The entries of every `X-Forwarded-For` line, leftmost first; `None` marks a bad entry.
/// Empty list elements (`a,,b`, a trailing comma) are skipped as RFC 9110 §5.6.1 asks.
pub fn x_forwarded_for(lines: &[&[u8]]) -> Vec<Option<IpAddr>> {
    lines
        .iter()
        .flat_map(|line| line.split(|&b| b == b','))
        .filter(|entry| !entry.trim_ascii().is_empty())
        .map(|entry| std::str::from_utf8(entry).ok().and_then(parse_node))
        .collect()
}

/// `X-Real-IP`: exactly one line holding exactly one address.
pub fn x_real_ip(lines: &[&[u8]]) -> Option<IpAddr> {
    match lines {
        [line] if !line.contains(&b',') => std::str::from_utf8(line).ok().and_then(parse_node),
        _ => None,
    }
}

/// The `for=` node of every RFC 7239 `Forwarded` element over all lines, leftmost first.
///
/// An element without exactly one `for=`, or whose node is not an address, is `None`. A syntax
/// error makes the rest of its line one `None`: where the grammar breaks, element boundaries are
/// guesses, and a guess must not become somebody's address.
pub fn forwarded_for(lines: &[&[u8]]) -> Vec<Option<IpAddr>> {
    let mut entries = Vec::new();
    for line in lines {
        let mut parser = ForwardedParser { s: line, i: 0 };
        loop {
            match parser.element() {
                Ok(Some(node)) => entries.push(node),
                Ok(None) => break,
                Err(()) => {
                    entries.push(None);
                    break;
                }
            }
        }
    }
    entries
}

struct ForwardedParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> ForwardedParser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// The next element's node: `Ok(None)` at the end of the line.
    #[allow(clippy::type_complexity)]
    fn element(&mut self) -> Result<Option<Option<IpAddr>>, ()> {
        // Empty elements (`,,`) are allowed by the list syntax and carry nothing.
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Ok(None),
                Some(b',') => self.i += 1,
                Some(_) => break,
            }
        }
        let mut node: Option<Option<IpAddr>> = None;
        let mut duplicate = false;
        loop {
            self.skip_ows();
            if self.peek() != Some(b';') {
                let name = self.token();
                if name.is_empty() || self.peek() != Some(b'=') {
                    return Err(());
                }
                self.i += 1;
                let value = self.value()?;
                if name.eq_ignore_ascii_case(b"for") {
                    duplicate |= node.is_some();
                    node = Some(parse_node(&value));
                }
                self.skip_ows();
            }
            match self.peek() {
                Some(b';') => self.i += 1,
                Some(b',') => {
                    self.i += 1;
                    break;
                }
                None => break,
                Some(_) => return Err(()),
            }
        }
        Ok(Some(if duplicate { None } else { node.flatten() }))
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A token or quoted-string, unescaped. Unquoted values may hold `[`, `]` and `:` too, since
    /// real proxies send `for=[2001:db8::1]` unquoted.
    fn value(&mut self) -> Result<String, ()> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(()),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let escaped = self.s.get(self.i + 1).copied().ok_or(())?;
                        out.push(escaped);
                        self.i += 2;
                    }
                    Some(b) => {
                        out.push(b);
                        self.i += 1;
                    }
                }
            }
            String::from_utf8(out).map_err(|_| ())
        } else {
            let start = self.i;
            while self
                .peek()
                .is_some_and(|b| is_tchar(b) || b"[]:".contains(&b))
            {
                self.i += 1;
            }
            if self.i == start {
                return Err(());
            }
            String::from_utf8(self.s[start..self.i].to_vec()).map_err(|_| ())
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The scheme a trusted proxy says the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedProto {
    Http,
    Https,
}

impl ForwardedProto {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardedProto::Http => "http",
            ForwardedProto::Https => "https",
        }
    }
}

/// `X-Forwarded-Proto`: the rightmost entry (what the nearest proxy saw), `http` or `https`.
pub fn x_forwarded_proto(lines: &[&[u8]]) -> Option<ForwardedProto> {
    let last = lines.last()?.rsplit(|&b| b == b',').next()?;
    let last = last.trim_ascii();
    let last = last
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(last);
    if last.eq_ignore_ascii_case(b"https") {
        Some(ForwardedProto::Https)
    } else if last.eq_ignore_ascii_case(b"http") {
        Some(ForwardedProto::Http)
    } else {
        None
    }
}

/// The resolved client address of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Everything known about the client: its address and, from a trusted proxy, its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub forwarded_proto: Option<ForwardedProto>,
}

/// Middleware: resolves the client address once and stores it for everything downstream.
pub async fn resolve(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let peer = canonical(
        req.peer_addr()
            .map(|addr| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    );
    let (client, proto) = match req.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => (
            proxies.resolve(peer, req.headers()),
            proxies.forwarded_proto(peer, req.headers()),
        ),
        None => (peer, None),
    };
    req.extensions_mut().insert(ClientIp(client));
    if let Some(proto) = proto {
        req.extensions_mut().insert(proto);
    }
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

impl FromRequest for ClientInfo {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(ClientInfo {
            ip: client_ip_of(req),
            forwarded_proto: req.extensions().get::<ForwardedProto>().copied(),
        }))
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
    fn nodes_lose_ports_brackets_quotes_and_ipv4_mapping() {
        let cases: &[(&str, Option<&str>)] = &[
            ("192.0.2.1", Some("192.0.2.1")),
            (" 192.0.2.1\t", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("192.0.2.1:_abc", Some("192.0.2.1")),
            ("\"192.0.2.1:8080\"", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:4711", Some("2001:db8::1")),
            ("\"[2001:db8::1]:4711\"", Some("2001:db8::1")),
            ("::ffff:192.0.2.7", Some("192.0.2.7")),
            ("[::ffff:192.0.2.7]:80", Some("192.0.2.7")),
            ("2001:DB8::A", Some("2001:db8::a")),
            ("unknown", None),
            ("_hidden", None),
            ("\"_hidden\"", None),
            ("", None),
            ("\"\"", None),
            ("\"", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:65536", None),
            ("192.0.2.1:80:80", None),
            ("192.0.2", None),
            ("192.0.2.256", None),
            ("[192.0.2.1]", None),
            ("[2001:db8::1", None),
            ("[2001:db8::1]4711", None),
            ("[2001:db8::1]:", None),
            ("[2001:db8::1]:port", None),
            ("fe80::1%eth0", None),
            ("example.com", None),
            ("example.com:80", None),
            ("1.2.3.4 5.6.7.8", None),
            ("\u{663}.1.1.1", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_node(input), expected.map(ip), "parse_node({input:?})");
        }
    }

    #[test]
    fn x_forwarded_for_entries_span_every_line_in_order() {
        let cases: &[(&[&str], &[Option<&str>])] = &[
            (&[], &[]),
            (&[""], &[]),
            (&["203.0.113.5"], &[Some("203.0.113.5")]),
            (
                &["203.0.113.5, 10.0.0.1", "10.0.0.2"],
                &[Some("203.0.113.5"), Some("10.0.0.1"), Some("10.0.0.2")],
            ),
            (
                &["203.0.113.5,,  ,10.0.0.1,"],
                &[Some("203.0.113.5"), Some("10.0.0.1")],
            ),
            (&["unknown, [2001:db8::1]:80"], &[None, Some("2001:db8::1")]),
            (&["203.0.113.5 junk"], &[None]),
        ];
        for (lines, expected) in cases {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let expected: Vec<Option<IpAddr>> = expected.iter().map(|e| e.map(ip)).collect();
            assert_eq!(x_forwarded_for(&lines), expected, "{lines:?}");
        }
    }

    #[test]
    fn non_utf8_bytes_make_only_their_own_entry_bad() {
        let lines: [&[u8]; 1] = [b"203.0.113.5, \xff\xfe, 10.0.0.1"];
        assert_eq!(
            x_forwarded_for(&lines),
            vec![Some(ip("203.0.113.5")), None, Some(ip("10.0.0.1"))]
        );
    }

    #[test]
    fn forwarded_elements_yield_their_for_node() {
        let cases: &[(&[&str], &[Option<&str>])] = &[
            (&["for=192.0.2.60"], &[Some("192.0.2.60")]),
            (
                &["for=192.0.2.60;proto=http;by=203.0.113.43"],
                &[Some("192.0.2.60")],
            ),
            (&["FOR=192.0.2.60"], &[Some("192.0.2.60")]),
            (
                &["for=\"[2001:db8:cafe::17]:4711\""],
                &[Some("2001:db8:cafe::17")],
            ),
            (&["for=[2001:db8::17]"], &[Some("2001:db8::17")]),
            (
                &["for=192.0.2.43, for=198.51.100.17"],
                &[Some("192.0.2.43"), Some("198.51.100.17")],
            ),
            (
                &["for=192.0.2.43", "for=198.51.100.17;proto=https"],
                &[Some("192.0.2.43"), Some("198.51.100.17")],
            ),
            (
                &["proto=https;for=192.0.2.43 ; by=_proxy"],
                &[Some("192.0.2.43")],
            ),
            (&["for=unknown, for=192.0.2.1"], &[None, Some("192.0.2.1")]),
            (&["for=_hidden"], &[None]),
            (&["for=\"_hidden\""], &[None]),
            (&["proto=https"], &[None]),
            (&["for=192.0.2.1;for=192.0.2.2"], &[None]),
            (
                &[",for=192.0.2.1,,for=192.0.2.2,"],
                &[Some("192.0.2.1"), Some("192.0.2.2")],
            ),
            (&["for=\"192.0.2.1, for=192.0.2.2"], &[None]),
            (
                &["for=192.0.2.1, for 192.0.2.2, for=192.0.2.3"],
                &[Some("192.0.2.1"), None],
            ),
            (&["for=192.0.2.1 for=192.0.2.2"], &[None]),
            (&["for="], &[None]),
            (&["=192.0.2.1"], &[None]),
            (
                &["for=\"192.0.\\2.1\", for=\"a\\"],
                &[Some("192.0.2.1"), None],
            ),
            (&["for=\"a,b\";proto=http"], &[None]),
        ];
        for (lines, expected) in cases {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let expected: Vec<Option<IpAddr>> = expected.iter().map(|e| e.map(ip)).collect();
            assert_eq!(forwarded_for(&lines), expected, "{lines:?}");
        }
    }

    #[test]
    fn x_real_ip_is_exactly_one_address() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["203.0.113.9"], Some("203.0.113.9")),
            (&[" [2001:db8::9]:443 "], Some("2001:db8::9")),
            (&["203.0.113.9:8080"], Some("203.0.113.9")),
            (&["203.0.113.9, 10.0.0.1"], None),
            (&["203.0.113.9", "203.0.113.10"], None),
            (&["unknown"], None),
            (&[""], None),
            (&[], None),
        ];
        for (lines, expected) in cases {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            assert_eq!(x_real_ip(&lines), expected.map(ip), "{lines:?}");
        }
    }

    #[test]
    fn the_walk_skips_trusted_entries_and_stops_at_bad_ones() {
        let trusted = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(_) => false,
        };
        let peer = ip("10.0.0.254");
        let cases: &[(&[Option<&str>], &str)] = &[
            (&[], "10.0.0.254"),
            (&[Some("203.0.113.1")], "203.0.113.1"),
            (
                &[Some("198.51.100.1"), Some("203.0.113.1"), Some("10.0.0.2")],
                "203.0.113.1",
            ),
            (&[Some("10.0.0.1"), Some("10.0.0.2")], "10.0.0.1"),
            (&[Some("203.0.113.1"), None], "10.0.0.254"),
            (&[Some("203.0.113.1"), None, Some("10.0.0.3")], "10.0.0.3"),
            (&[None, Some("10.0.0.3"), Some("10.0.0.4")], "10.0.0.3"),
            (&[None, Some("203.0.113.7")], "203.0.113.7"),
        ];
        for (entries, expected) in cases {
            let entries: Vec<Option<IpAddr>> = entries.iter().map(|e| e.map(ip)).collect();
            assert_eq!(
                walk_from_right(&entries, peer, trusted),
                ip(expected),
                "{entries:?}"
            );
        }
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

    #[test]
    fn x_forwarded_proto_takes_the_nearest_proxys_word() {
        let cases: &[(&[&str], Option<ForwardedProto>)] = &[
            (&["https"], Some(ForwardedProto::Https)),
            (&["HTTP"], Some(ForwardedProto::Http)),
            (&["http, https"], Some(ForwardedProto::Https)),
            (&["https", "http"], Some(ForwardedProto::Http)),
            (&["\"https\""], Some(ForwardedProto::Https)),
            (&["ftp"], None),
            (&[""], None),
            (&[], None),
        ];
        for (lines, expected) in cases {
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            assert_eq!(x_forwarded_proto(&lines), *expected, "{lines:?}");
        }
    }
}
