//! Content negotiation as pure functions: `Accept-Encoding` (`docs/reference.md §5`, also used
//! for dynamic compression in §4) and whether an `Accept` header prefers HTML (for `404.html`).

use std::cell::RefCell;

use crate::encoding::Encoding;

/// One `token;q=x` item of a negotiation header. `None` when the q-value is malformed.
fn parse_item(item: &str) -> Option<(&str, u16)> {
    let mut parts = item.split(';');
    let token = parts.next()?.trim();
    if token.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim())?;
        }
    }
    Some((token, q))
}

/// [`parse_item`], with a shortcut for the usual item without parameters (`br`, ` gzip`): its
/// q-value is 1 and there is nothing to split.
fn bare_or_parsed_item(item: &str) -> Option<(&str, u16)> {
    if item.as_bytes().contains(&b';') {
        return parse_item(item);
    }
    let token = item.trim();
    (!token.is_empty()).then_some((token, 1000))
}

/// An RFC 9110 qvalue in thousandths: `0`, `0.5`, `1.000`; anything else is `None`.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `frac` is at most three digits; missing ones count as trailing zeros.
    let frac_value = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// What an `Accept-Encoding` header says, read in one pass: the first q-value naming each
/// coding, the last `*` and the first `identity` (the rules the header's repeated items follow
/// here).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    codings: [Option<u16>; Encoding::ALL.len()],
    star: Option<u16>,
    identity: Option<u16>,
}

impl Accepted {
    fn parse(header: &str) -> Self {
        let mut accepted = Self::default();
        for (name, q) in header.split(',').filter_map(bare_or_parsed_item) {
            if name == "*" {
                accepted.star = Some(q);
            } else if name.eq_ignore_ascii_case("identity") {
                accepted.identity.get_or_insert(q);
            } else if let Some(encoding) = Encoding::ALL
                .into_iter()
                .find(|e| name.eq_ignore_ascii_case(e.token()))
            {
                accepted.codings[encoding.index()].get_or_insert(q);
            }
        }
        accepted
    }

    /// [`Accepted::parse`], remembered per worker thread for the last header value seen: clients
    /// send the same few values (a browser's is the same on every request), and comparing bytes
    /// is cheaper than splitting and trimming them again.
    fn of(header: &str) -> Self {
        /// Longer values are parsed every time rather than copied into the memo.
        const MAX_REMEMBERED: usize = 64;
        thread_local! {
            static LAST: RefCell<Option<(Box<str>, Accepted)>> = const { RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| match last {
            Some((seen, accepted)) if **seen == *header => *accepted,
            _ => {
                let accepted = Self::parse(header);
                if header.len() <= MAX_REMEMBERED {
                    *last = Some((header.into(), accepted));
                }
                accepted
            }
        })
    }

    /// The q-value of `encoding`: its own item's, else `*`'s.
    fn q(&self, encoding: Encoding) -> Option<u16> {
        self.codings[encoding.index()].or(self.star)
    }
}

/// Picks the content coding for a response.
///
/// `preference` is the server's order (`static.encodings`); `available` says which codings this
/// resource can be served in. Returns `None` for identity. Encodings win ties against an explicit
/// `identity`; `q=0` forbids; `*` covers every coding the header does not name.
pub fn choose_encoding(
    accept_encoding: Option<&str>,
    preference: &[Encoding],
    available: impl Fn(Encoding) -> bool,
) -> Option<Encoding> {
    let accepted = Accepted::of(accept_encoding?);
    let mut best: Option<(Encoding, u16)> = None;
    for &encoding in preference {
        let Some(q) = accepted.q(encoding) else {
            continue;
        };
        if q == 0 || !available(encoding) {
            continue;
        }
        if best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((encoding, q));
        }
    }
    let (encoding, q) = best?;
    match accepted.identity {
        Some(identity_q) if identity_q > q => None,
        _ => Some(encoding),
    }
}

/// True when the client explicitly asks for `text/html` at least as much as for JSON
/// (browsers do; `curl` and API clients sending `*/*` or JSON do not).
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(header) = accept else {
        return false;
    };
    let mut html = 0;
    let mut json = 0;
    for (media, q) in header.split(',').filter_map(parse_item) {
        let media = media.to_ascii_lowercase();
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "application/json" | "application/problem+json" => json = json.max(q),
            _ => {}
        }
    }
    html > 0 && html >= json
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const PREF: &[Encoding] = &[Br, Zstd, Gzip];

    #[test]
    fn accept_encoding_table() {
        let all = |_: Encoding| true;
        let cases: &[(Option<&str>, Option<Encoding>)] = &[
            (None, None),
            (Some(""), None),
            (Some("gzip"), Some(Gzip)),
            (Some("gzip, br"), Some(Br)),
            (Some("br, gzip"), Some(Br)),
            (Some("gzip, deflate, br, zstd"), Some(Br)),
            (Some("gzip;q=1.0, br;q=0.5"), Some(Gzip)),
            (Some("br;q=0"), None),
            (Some("br;q=0, gzip"), Some(Gzip)),
            (Some("*"), Some(Br)),
            (Some("*;q=0.5, br;q=0"), Some(Zstd)),
            (Some("*;q=0"), None),
            (Some("identity"), None),
            (Some("gzip;q=0.5, identity"), None),
            (Some("gzip, identity;q=0.5"), Some(Gzip)),
            (Some("GZIP"), Some(Gzip)),
            (Some(" br ; q=0.8 , gzip;q=0.8"), Some(Br)),
            (Some("zstd;q=0.9, br;q=0.8"), Some(Zstd)),
            (Some("br;q=2"), None),
            (Some("br;q=abc, gzip"), Some(Gzip)),
            (Some("br;q=0.0001"), None),
            (Some(",,,"), None),
            (Some("compress, deflate"), None),
        ];
        for (header, expected) in cases {
            assert_eq!(choose_encoding(*header, PREF, all), *expected, "{header:?}");
        }
    }

    #[test]
    fn a_remembered_header_value_reads_as_a_fresh_parse() {
        let values = [
            "br, gzip",
            "gzip",
            "br, gzip",
            "br;q=0, gzip",
            "br;q=0, gzip",
            "identity",
        ];
        for value in values.iter().chain(&values) {
            assert_eq!(Accepted::of(value), Accepted::parse(value), "{value}");
        }
        let long = format!("gzip, {}br", "x-custom, ".repeat(10));
        assert_eq!(Accepted::of(&long), Accepted::parse(&long));
        assert_eq!(Accepted::of(&long), Accepted::parse(&long));
    }

    #[test]
    fn unavailable_or_unconfigured_encodings_are_never_chosen() {
        assert_eq!(
            choose_encoding(Some("br, gzip"), PREF, |e| e == Gzip),
            Some(Gzip)
        );
        assert_eq!(choose_encoding(Some("br"), &[Gzip], |_| true), None);
        assert_eq!(
            choose_encoding(Some("br, gzip"), &[Gzip, Br], |_| true),
            Some(Gzip)
        );
    }

    #[test]
    fn html_preference_table() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), false),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                true,
            ),
            (Some("text/html;q=0.5, application/json"), false),
            (Some("text/html;q=0"), false),
            (Some("TEXT/HTML"), true),
        ];
        for (header, expected) in cases {
            assert_eq!(prefers_html(*header), *expected, "{header:?}");
        }
    }
}
