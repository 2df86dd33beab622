//! `Accept-Encoding` negotiation (docs/reference.md §5) over arbitrary headers, server
//! preferences and available siblings: never panics, never picks a coding the server does not
//! offer or the resource does not have, and agrees with a plain re-reading of the rules (first
//! q-value naming a coding, the last `*`, the first `identity`, `q=0` forbids, ties go to the
//! server's order, an `identity` preferred over every coding means none). `Accept` must never
//! prefer HTML without naming it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::{
    encoding::Encoding,
    fuzzing::{choose_encoding, prefers_html},
};

const ORDERS: [[Encoding; 3]; 6] = {
    use Encoding::*;
    [
        [Br, Zstd, Gzip],
        [Br, Gzip, Zstd],
        [Zstd, Br, Gzip],
        [Zstd, Gzip, Br],
        [Gzip, Br, Zstd],
        [Gzip, Zstd, Br],
    ]
};

/// An RFC 9110 qvalue in thousandths, read digit by digit.
fn qvalue(text: &str) -> Option<u16> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (text, ""),
    };
    if frac.len() > 3 || frac.chars().any(|c| !c.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        let digit = frac.as_bytes().get(i).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match (int, thousandths) {
        ("0", q) => Some(q),
        ("1", 0) => Some(1000),
        _ => None,
    }
}

/// The same decision, written for clarity rather than speed.
fn expected(header: &str, preference: &[Encoding], available: &[bool; 3]) -> Option<Encoding> {
    let mut named: Vec<(String, u16)> = Vec::new();
    let mut star = None;
    'items: for item in header.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim();
        if token.is_empty() {
            continue;
        }
        let mut q = 1000;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue 'items;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                match qvalue(value.trim()) {
                    Some(v) => q = v,
                    None => continue 'items,
                }
            }
        }
        if token == "*" {
            star = Some(q);
        } else {
            named.push((token.to_ascii_lowercase(), q));
        }
    }
    let first = |name: &str| named.iter().find(|(n, _)| n == name).map(|&(_, q)| q);
    let mut best: Option<(Encoding, u16)> = None;
    for &e in preference {
        let q = first(e.token()).or(star);
        if let Some(q) = q
            && q > 0
            && available[e as usize]
            && best.is_none_or(|(_, b)| q > b)
        {
            best = Some((e, q));
        }
    }
    let (e, q) = best?;
    match first("identity") {
        Some(identity) if identity > q => None,
        _ => Some(e),
    }
}

fuzz_target!(|data: &[u8]| {
    let [order, mask, rest @ ..] = data else {
        return;
    };
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    let preference = &ORDERS[usize::from(*order) % 6][..usize::from(*order / 6) % 4];
    let available = [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0];
    let has = |e: Encoding| available[e as usize];

    assert_eq!(choose_encoding(None, preference, has), None);
    let chosen = choose_encoding(Some(header), preference, has);
    if let Some(e) = chosen {
        assert!(preference.contains(&e) && has(e), "{header:?} -> {e:?}");
    }
    assert_eq!(
        chosen,
        expected(header, preference, &available),
        "{header:?} {preference:?} {available:?}"
    );

    if prefers_html(Some(header)) {
        assert!(header.to_ascii_lowercase().contains("html"), "{header:?}");
    }
});
