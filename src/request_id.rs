//! Request metadata (docs/reference.md §8): the rules for `X-Request-ID`, `X-Correlation-ID` and
//! `Idempotency-Key`, and the extractor handlers read them with. The pipeline's context layer
//! decides them once per request and echoes them on every response.

use std::{
    cell::RefCell,
    future::{Ready, ready},
};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    dev::Payload,
    error::ErrorInternalServerError,
    http::header::{HeaderMap, HeaderName, HeaderValue},
    web::Bytes,
};

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

const MAX_ID_LEN: usize = 128;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The IDs of one request, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: String,
    pub correlation_id: String,
    pub idempotency_key: Option<String>,
}

/// True when `value` is 1..=`max` characters from `[A-Za-z0-9._:-]`.
pub fn is_valid_id(value: &str, max: usize) -> bool {
    is_valid_id_bytes(value.as_bytes(), max)
}

fn is_valid_id_bytes(value: &[u8], max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// How many fresh IDs are made at once. They are cut from one shared block, so a fresh ID
/// costs a reference count rather than an allocation of its own (and so does its clone, the
/// correlation ID); a block lives until the last of its IDs is dropped.
const IDS_PER_BLOCK: usize = 64;

/// Bytes of a hyphenated UUID.
const ID_BYTES: usize = 36;

thread_local! {
    /// This thread's block of fresh IDs, and how many of them are used.
    static FRESH_IDS: RefCell<(Bytes, usize)> = const { RefCell::new((Bytes::new(), IDS_PER_BLOCK)) };
}

/// A fresh random request ID (UUID v4, hyphenated, lower case) as a header value.
pub(crate) fn fresh_id() -> HeaderValue {
    let id = FRESH_IDS.with_borrow_mut(|(block, used)| {
        if *used == IDS_PER_BLOCK {
            *block = fresh_block();
            *used = 0;
        }
        let start = *used * ID_BYTES;
        *used += 1;
        block.slice(start..start + ID_BYTES)
    });
    // A hyphenated UUID is visible ASCII; the fallback is never taken.
    HeaderValue::from_maybe_shared(id)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000"))
}

/// [`IDS_PER_BLOCK`] random UUIDs, end to end.
fn fresh_block() -> Bytes {
    let mut block = Vec::with_capacity(IDS_PER_BLOCK * ID_BYTES);
    let mut buf = uuid::Uuid::encode_buffer();
    for _ in 0..IDS_PER_BLOCK {
        // Encoded into a stack buffer rather than through `Display`: the formatter's machinery
        // cost more than the random bytes.
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        block.extend_from_slice(id.as_bytes());
    }
    Bytes::from(block)
}

/// The two IDs every response echoes, decided once per request by the docs/reference.md §8
/// rules. Kept as the header values they are sent as: a request that never reaches a handler
/// (a static file) builds no strings for them.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    request_id: HeaderValue,
    correlation_id: HeaderValue,
}

impl Ids {
    /// The client's valid IDs (only the first of each header counts), else a fresh request ID,
    /// and the request ID as the correlation ID.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let valid = |name: &HeaderName| {
            headers
                .get(name)
                .filter(|v| is_valid_id_bytes(v.as_bytes(), MAX_ID_LEN))
                .cloned()
        };
        let request_id = valid(&X_REQUEST_ID).unwrap_or_else(fresh_id);
        let correlation_id = valid(&X_CORRELATION_ID).unwrap_or_else(|| request_id.clone());
        Self {
            request_id,
            correlation_id,
        }
    }

    pub(crate) fn request_id(&self) -> &str {
        // Valid IDs are visible ASCII, so this is never the fallback.
        self.request_id.to_str().unwrap_or("-")
    }

    pub(crate) fn correlation_id(&self) -> &str {
        self.correlation_id.to_str().unwrap_or("-")
    }

    /// Puts both IDs on a response, replacing whatever a handler set. Moved rather than cloned:
    /// each value is a shared buffer, and a clone and its drop are two atomic operations.
    pub(crate) fn echo(self, headers: &mut HeaderMap) {
        headers.insert(X_REQUEST_ID, self.request_id);
        headers.insert(X_CORRELATION_ID, self.correlation_id);
    }

    /// The IDs and the request's valid `Idempotency-Key`, for handlers and the access log.
    pub(crate) fn meta(&self, headers: &HeaderMap) -> RequestMeta {
        RequestMeta {
            request_id: self.request_id().to_owned(),
            correlation_id: self.correlation_id().to_owned(),
            idempotency_key: headers
                .get(IDEMPOTENCY_KEY)
                .filter(|v| is_valid_id_bytes(v.as_bytes(), MAX_IDEMPOTENCY_KEY_LEN))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

impl FromRequest for RequestMeta {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    /// Fails loudly when the context layer did not run: a wiring mistake, not a client's.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<RequestMeta>()
                .cloned()
                .ok_or_else(|| ErrorInternalServerError("the request context layer did not run")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_validation_follows_the_spec_alphabet_and_length() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases: &[(&str, bool)] = &[
            ("abc-123", true),
            ("A.b_c:d-e", true),
            (&long, true),
            (&too_long, false),
            ("", false),
            ("has space", false),
            ("quote\"", false),
            ("new\nline", false),
            ("slash/", false),
            ("ünïcode", false),
        ];
        for (value, valid) in cases {
            assert_eq!(is_valid_id(value, 128), *valid, "{value:?}");
        }
    }

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                (*name).clone(),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        map
    }

    #[test]
    fn fresh_ids_are_lower_case_hyphenated_uuids() {
        let ids: Vec<HeaderValue> = (0..300).map(|_| fresh_id()).collect();
        for id in &ids {
            let id = id.to_str().expect("ASCII");
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(id, parsed.hyphenated().to_string());
            assert_eq!(parsed.get_version_num(), 4);
        }
        // Cut from shared blocks, yet each its own: more IDs than one block holds, all distinct.
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn valid_ids_are_kept_and_invalid_ones_replaced() {
        let sent = headers(&[
            (&X_REQUEST_ID, "req-1"),
            (&X_CORRELATION_ID, "corr-1"),
            (&IDEMPOTENCY_KEY, "key-1"),
        ]);
        let meta = Ids::of(&sent).meta(&sent);
        assert_eq!(meta.request_id, "req-1");
        assert_eq!(meta.correlation_id, "corr-1");
        assert_eq!(meta.idempotency_key.as_deref(), Some("key-1"));

        let sent = headers(&[(&X_REQUEST_ID, "bad id"), (&IDEMPOTENCY_KEY, "bad key")]);
        let meta = Ids::of(&sent).meta(&sent);
        assert_ne!(meta.request_id, "bad id");
        assert!(is_valid_id(&meta.request_id, 128));
        assert_eq!(meta.correlation_id, meta.request_id);
        assert_eq!(meta.idempotency_key, None);
    }

    #[test]
    fn only_the_first_of_each_id_header_counts() {
        let sent = headers(&[
            (&X_REQUEST_ID, "bad id"),
            (&X_REQUEST_ID, "second"),
            (&X_CORRELATION_ID, "first"),
            (&X_CORRELATION_ID, "second"),
        ]);
        let ids = Ids::of(&sent);
        assert_ne!(ids.request_id(), "second");
        assert_eq!(ids.correlation_id(), "first");
        let mut echoed = HeaderMap::new();
        ids.clone().echo(&mut echoed);
        assert_eq!(echoed.get(&X_REQUEST_ID), Some(&ids.request_id));
        assert_eq!(
            echoed.get(&X_CORRELATION_ID).map(|v| v.as_bytes()),
            Some(&b"first"[..])
        );
    }

    #[test]
    fn idempotency_keys_may_be_up_to_255_characters() {
        let key = "k".repeat(255);
        let sent = headers(&[(&IDEMPOTENCY_KEY, &key)]);
        let meta = Ids::of(&sent).meta(&sent);
        assert_eq!(meta.idempotency_key.as_deref(), Some(key.as_str()));
        let key = "k".repeat(256);
        let sent = headers(&[(&IDEMPOTENCY_KEY, &key)]);
        assert_eq!(Ids::of(&sent).meta(&sent).idempotency_key, None);
    }
}
