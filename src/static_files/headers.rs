//! The response headers of a file (docs/reference.md §5 "Headers"), prepared once per
//! representation: a cache hit inserts ready names and values straight into the response's
//! header map, without the response builder's conversions. (Cloning a whole prepared map was
//! measured too, and cost more than the inserts: actix's map holds each value in a four-slot
//! small vector, so a copy moves and allocates more than eight inserts into the pooled map.)

use std::sync::OnceLock;

use actix_web::{
    HttpResponse,
    body::BoxBody,
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
};

use bytestring::ByteString;

use crate::encoding::Encoding;

const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");

/// The headers of a 200 (or 206, before its `Content-Range`) for one representation; those of a
/// 304 come first.
#[derive(Debug)]
pub(crate) struct Prepared {
    headers: Vec<(HeaderName, HeaderValue)>,
    /// How many of `headers` a 304 carries.
    not_modified: usize,
}

/// What a representation's headers are made of: its own tag and encoding, and its file's.
pub(crate) struct Fields<'a> {
    pub(crate) etag: &'a ByteString,
    pub(crate) encoding: Option<Encoding>,
    pub(crate) content_type: &'a HeaderValue,
    pub(crate) last_modified: &'a HeaderValue,
    pub(crate) cache_control: &'a HeaderValue,
    /// `Vary: Accept-Encoding`: the file has siblings or is compressible.
    pub(crate) vary: bool,
}

/// A representation's prepared headers, made on first use: its file's headers are known only
/// once the whole entry is built, and an on-the-fly copy is made long after.
#[derive(Debug, Default)]
pub(crate) struct PreparedSlot(OnceLock<Prepared>);

impl PreparedSlot {
    pub(crate) fn get<'a>(&self, fields: impl FnOnce() -> Fields<'a>) -> &Prepared {
        self.0.get_or_init(|| Prepared::new(fields()))
    }
}

impl Prepared {
    fn new(fields: Fields<'_>) -> Self {
        // A 304 carries the validators and `Vary` a 200 would (RFC 9110 §15.4.5).
        let mut headers = vec![
            (
                header::ETAG,
                // Made of hex digits, dashes and quotes; the fallback is never taken.
                HeaderValue::from_maybe_shared(fields.etag.as_bytes().clone())
                    .unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
            ),
            (header::LAST_MODIFIED, fields.last_modified.clone()),
            (header::CACHE_CONTROL, fields.cache_control.clone()),
            (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
        ];
        if fields.vary {
            headers.push((header::VARY, ACCEPT_ENCODING));
        }
        let not_modified = headers.len();
        headers.push((header::CONTENT_TYPE, fields.content_type.clone()));
        headers.push((header::ACCEPT_RANGES, BYTES));
        if let Some(encoding) = fields.encoding {
            headers.push((
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            ));
        }
        Self {
            headers,
            not_modified,
        }
    }

    /// Into the fresh, empty map of a new response: appended, which is inserting there, without
    /// the removed-value result `insert` builds and drops for every header.
    fn write(headers: &[(HeaderName, HeaderValue)], map: &mut HeaderMap) {
        for (name, value) in headers {
            map.append(name.clone(), value.clone());
        }
    }

    /// A 304 with the validators and `Vary` a 200 would carry.
    pub(crate) fn not_modified(&self) -> HttpResponse {
        let mut res = HttpResponse::new(StatusCode::NOT_MODIFIED);
        Self::write(&self.headers[..self.not_modified], res.headers_mut());
        res
    }

    /// A 200, or a 206 when `partial`, with the representation's headers and `body`.
    pub(crate) fn full(&self, partial: bool, body: BoxBody) -> HttpResponse {
        let status = if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let mut res = HttpResponse::with_body(status, body);
        Self::write(&self.headers, res.headers_mut());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_304_carries_the_validators_and_vary_of_its_200() {
        let etag = ByteString::from_static("\"1-1-1-br\"");
        let content_type = HeaderValue::from_static("text/html; charset=utf-8");
        let last_modified = HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT");
        let cache_control = HeaderValue::from_static("no-cache");
        let slot = PreparedSlot::default();
        let prepared = slot.get(|| Fields {
            etag: &etag,
            encoding: Some(Encoding::Br),
            content_type: &content_type,
            last_modified: &last_modified,
            cache_control: &cache_control,
            vary: true,
        });
        let ok = prepared.full(false, BoxBody::new("x"));
        let not_modified = prepared.not_modified();
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        for name in [
            header::ETAG,
            header::LAST_MODIFIED,
            header::CACHE_CONTROL,
            header::VARY,
            header::X_CONTENT_TYPE_OPTIONS,
        ] {
            assert_eq!(
                not_modified.headers().get(&name),
                ok.headers().get(&name),
                "{name}"
            );
            assert!(ok.headers().contains_key(&name), "{name}");
        }
        assert!(!not_modified.headers().contains_key(header::CONTENT_TYPE));
        assert_eq!(ok.headers().get(header::ACCEPT_RANGES), Some(&BYTES));
        assert_eq!(
            ok.headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.as_bytes()),
            Some(&b"br"[..])
        );
        assert_eq!(
            prepared.full(true, BoxBody::new("x")).status(),
            StatusCode::PARTIAL_CONTENT
        );
        // Made once: a second call does not build again.
        let again = slot.get(|| unreachable!("prepared twice"));
        assert!(std::ptr::eq(prepared, again));
    }
}
