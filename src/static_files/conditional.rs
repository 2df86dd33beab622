//! Conditional and partial requests as pure functions (`docs/reference.md §5` "Conditional and
//! partial"): entity-tag lists (RFC 9110 §8.8.3, §13.1) and single byte ranges (§14.1).

/// One entity tag of a list: `(weak, opaque)`, with `opaque` including its quotes.
fn entity_tags(list: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                return None;
            }
            let weak = rest.starts_with("W/");
            let tag = if weak { &rest[2..] } else { rest };
            if let Some(body) = tag.strip_prefix('"')
                && let Some(end) = body.find('"')
            {
                let opaque = &tag[..end + 2];
                rest = &body[end + 1..];
                return Some((weak, opaque));
            }
            // Not an entity tag: skip to the next comma.
            rest = rest.find(',').map_or("", |i| &rest[i + 1..]);
        }
    })
}

fn opaque(etag: &str) -> (bool, &str) {
    match etag.strip_prefix("W/") {
        Some(tag) => (true, tag),
        None => (false, etag),
    }
}

/// `If-None-Match`: weak comparison, `*` matches any current representation.
pub fn none_match(list: &str, etag: &str) -> bool {
    // What a client revalidating sends: the tag it was given, byte for byte. It matches, as the
    // parse below would say, without the parse.
    if list == etag {
        return true;
    }
    if list.trim() == "*" {
        return true;
    }
    let (_, current) = opaque(etag);
    entity_tags(list).any(|(_, tag)| tag == current)
}

/// `If-Match` and `If-Range`: strong comparison, weak tags never match.
pub fn strong_match(list: &str, etag: &str) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let (weak, current) = opaque(etag);
    !weak && entity_tags(list).any(|(w, tag)| !w && tag == current)
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Not a single valid byte range (unknown unit, bad syntax, several ranges): answer 200 in full.
    Ignore,
    /// Bytes `start..=end`.
    Satisfiable { start: u64, end: u64 },
    /// No byte of the representation is in the range: 416.
    Unsatisfiable,
}

/// Parses a `Range` header for a representation of `len` bytes (RFC 9110 §14.1.2).
///
/// Hand-written rather than `http_range::HttpRange::parse` (what `actix_files::HttpRange`
/// wraps), which is not equivalent: it takes the unit only as lower-case `bytes=` (RFC 9110 makes
/// range units case-insensitive), accepts `+1` as a position (Rust's integer parsing allows the
/// sign; the RFC allows digits only), and would add a crate for thirty lines the table below pins.
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        return match number(last) {
            None => RangeRequest::Ignore,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Satisfiable {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return RangeRequest::Ignore;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeRequest::Ignore,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Satisfiable {
        start,
        end: end.map_or(len - 1, |e| e.min(len - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let etag = "\"abc-1\"";
        let cases = [
            ("\"abc-1\"", true),
            ("W/\"abc-1\"", true),
            ("\"x\", \"abc-1\"", true),
            ("\"x\",W/\"abc-1\"", true),
            ("*", true),
            ("\"abc-2\"", false),
            ("abc-1", false),
            ("", false),
            ("\"a,b\", \"abc-1\"", true),
            ("garbage, \"abc-1\"", true),
        ];
        for (list, expected) in cases {
            assert_eq!(none_match(list, etag), expected, "{list}");
        }
    }

    #[test]
    fn if_match_and_if_range_use_strong_comparison() {
        assert!(strong_match("\"abc\"", "\"abc\""));
        assert!(strong_match("\"x\", \"abc\"", "\"abc\""));
        assert!(!strong_match("W/\"abc\"", "\"abc\""));
        assert!(!strong_match("\"abc\"", "W/\"abc\""));
        assert!(strong_match("*", "\"abc\""));
        assert!(!strong_match("\"abd\"", "\"abc\""));
    }

    #[test]
    fn single_byte_ranges_table() {
        use RangeRequest::*;
        let sat = |start, end| Satisfiable { start, end };
        let cases = [
            ("bytes=0-99", 1000, sat(0, 99)),
            ("bytes=0-0", 1000, sat(0, 0)),
            ("bytes=500-", 1000, sat(500, 999)),
            ("bytes=900-5000", 1000, sat(900, 999)),
            ("bytes=-100", 1000, sat(900, 999)),
            ("bytes=-5000", 1000, sat(0, 999)),
            ("BYTES = 1-2", 1000, sat(1, 2)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-2000", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=5-1", 1000, Ignore),
            ("bytes=0-1,5-6", 1000, Ignore),
            ("items=0-1", 1000, Ignore),
            ("bytes=a-b", 1000, Ignore),
            ("bytes=-", 1000, Ignore),
            ("bytes", 1000, Ignore),
            ("bytes=+1-2", 1000, Ignore),
            ("bytes=99999999999999999999999-", 1000, Ignore),
        ];
        for (header, len, expected) in cases {
            assert_eq!(parse_range(header, len), expected, "{header} of {len}");
        }
    }
}
