//! The response headers of a file (docs/reference.md §5 "Headers"), prepared once per
//! representation: a cache hit copies a ready header map instead of inserting each header
//! again, which was the largest part of a hit's own cost.

use std::sync::OnceLock;

use actix_web::{
    HttpResponse,
    body::BoxBody,
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderValue},
    },
};

use super::entry::{FileEntry, Representation};

const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");

/// The headers of a 200 (or 206, before its `Content-Range`) and of a 304 for one
/// representation.
#[derive(Debug)]
pub(crate) struct Prepared {
    full: HeaderMap,
    not_modified: HeaderMap,
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
        let mut not_modified = HeaderMap::with_capacity(5);
        not_modified.insert(header::ETAG, rep.etag.clone());
        not_modified.insert(header::LAST_MODIFIED, file.last_modified.clone());
        not_modified.insert(header::CACHE_CONTROL, file.cache_control.clone());
        not_modified.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        if file.vary {
            not_modified.insert(header::VARY, ACCEPT_ENCODING);
        }
        let mut full = not_modified.clone();
        full.insert(header::CONTENT_TYPE, file.content_type.clone());
        full.insert(header::ACCEPT_RANGES, BYTES);
        if let Some(encoding) = rep.encoding {
            full.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            );
        }
        Self { full, not_modified }
    }

    /// A 304 with the validators and `Vary` a 200 would carry.
    pub(crate) fn not_modified(&self) -> HttpResponse {
        let mut res = HttpResponse::new(StatusCode::NOT_MODIFIED);
        *res.headers_mut() = self.not_modified.clone();
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
        *res.headers_mut() = self.full.clone();
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
            assert_eq!(not_modified.headers().get(&name), ok.headers().get(&name), "{name}");
            assert!(ok.headers().contains_key(&name), "{name}");
        }
        assert!(!not_modified.headers().contains_key(header::CONTENT_TYPE));
        assert_eq!(ok.headers().get(header::ACCEPT_RANGES), Some(&BYTES));
        assert_eq!(
            ok.headers().get(header::CONTENT_ENCODING).map(|v| v.as_bytes()),
            Some(&b"br"[..])
        );
        assert_eq!(
            prepared.full(true, BoxBody::new("x")).status(),
            StatusCode::PARTIAL_CONTENT
        );
    }
}
