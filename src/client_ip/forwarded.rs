//! The forwarded-header parsers of docs/reference.md §6, pure and std-only: one address (`parse_node`),
//! the entry lists of `X-Forwarded-For` and RFC 7239 `Forwarded`, `X-Real-IP`,
//! `X-Forwarded-Proto`, and the right-to-left walk. No I/O and no actix types, so the fuzz
//! targets in `fuzz/` compile this file alone. The policy around them is in `client_ip.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
