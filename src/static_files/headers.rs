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

use super::entry::{FileEntry, Representation};

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

/// A representation's prepared headers, made on first use: its file's headers are known only
/// once the whole entry is built, and an on-the-fly copy is made long after.
#[derive(Debug, Default)]
pub(crate) struct PreparedSlot(OnceLock<Prepared>);

impl PreparedSlot {
    pub(crate) fn get(&self, file: &FileEntry, rep: &Representation) -> &Prepared {
        self.0.get_or_init(|| Prepared::new(file, rep))
    }
}

impl Prepared {
    fn new(file: &FileEntry, rep: &Representation) -> Self {
        // A 304 carries the validators and `Vary` a 200 would (RFC 9110 §15.4.5).
        let mut headers = vec![
            (header::ETAG, rep.etag.clone()),
            (header::LAST_MODIFIED, file.last_modified.clone()),
            (header::CACHE_CONTROL, file.cache_control.clone()),
            (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
        ];
        if file.vary {
            headers.push((header::VARY, ACCEPT_ENCODING));
        }
        let not_modified = headers.len();
        headers.push((header::CONTENT_TYPE, file.content_type.clone()));
        headers.push((header::ACCEPT_RANGES, BYTES));
        if let Some(encoding) = rep.encoding {
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

    fn write(headers: &[(HeaderName, HeaderValue)], map: &mut HeaderMap) {
        for (name, value) in headers {
            map.insert(name.clone(), value.clone());
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
    use std::{path::PathBuf, time::UNIX_EPOCH};

    use super::*;
    use crate::{encoding::Encoding, static_files::stamp::Stamp};

    fn file() -> FileEntry {
        let identity = Representation {
            encoding: Some(Encoding::Br),
            path: PathBuf::from("page.html.br"),
            stamp: Stamp {
                len: 1,
                modified: UNIX_EPOCH,
                inode: 1,
                is_file: true,
            },
            etag: HeaderValue::from_static("\"1-1-1-br\""),
            body: None,
            prepared: PreparedSlot::default(),
        };
        FileEntry {
            content_type: HeaderValue::from_static("text/html; charset=utf-8"),
            cache_control: HeaderValue::from_static("no-cache"),
            last_modified: HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
            modified: UNIX_EPOCH,
            vary: true,
            identity,
            siblings: Vec::new(),
            on_the_fly: false,
            compressed: Default::default(),
        }
    }

    #[test]
    fn a_304_carries_the_validators_and_vary_of_its_200() {
        let file = file();
        let prepared = file.identity.prepared.get(&file, &file.identity);
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
    }
}
