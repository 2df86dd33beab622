//! Request metadata (docs/reference.md §8): the rules for `X-Request-ID`, `X-Correlation-ID` and
//! `Idempotency-Key`, and the extractor handlers read them with. The pipeline's context layer
//! decides them once per request and echoes them on every response.

use std::future::{Ready, ready};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    dev::Payload,
    error::ErrorInternalServerError,
    http::header::{HeaderMap, HeaderName, HeaderValue},
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
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A fresh random request ID (UUID v4, hyphenated).
pub(crate) fn fresh_id() -> String {
    // Encoded into a stack buffer rather than through `Display`: the formatter's machinery cost
    // more than the random bytes.
    let mut buf = uuid::Uuid::encode_buffer();
    String::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
}

impl RequestMeta {
    /// Applies the docs/reference.md §8 rules to the incoming header values (only the first of each counts).
    pub(crate) fn from_headers(
        request_id: Option<&[u8]>,
        correlation_id: Option<&[u8]>,
        idempotency_key: Option<&[u8]>,
    ) -> Self {
        let valid = |raw: Option<&[u8]>, max: usize| {
            raw.and_then(|b| std::str::from_utf8(b).ok())
                .filter(|s| is_valid_id(s, max))
                .map(str::to_string)
        };
        let request_id = valid(request_id, MAX_ID_LEN).unwrap_or_else(fresh_id);
        let correlation_id =
            valid(correlation_id, MAX_ID_LEN).unwrap_or_else(|| request_id.clone());
        let idempotency_key = valid(idempotency_key, MAX_IDEMPOTENCY_KEY_LEN);
        Self {
            request_id,
            correlation_id,
            idempotency_key,
        }
    }

    /// The IDs of a request as the pipeline's context layer decided them.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let header = |name: &HeaderName| headers.get(name).map(HeaderValue::as_bytes);
        Self::from_headers(
            header(&X_REQUEST_ID),
            header(&X_CORRELATION_ID),
            header(&IDEMPOTENCY_KEY),
        )
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

    #[test]
    fn fresh_ids_are_lower_case_hyphenated_uuids() {
        let id = fresh_id();
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(id, parsed.hyphenated().to_string());
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn valid_ids_are_kept_and_invalid_ones_replaced() {
        let meta = RequestMeta::from_headers(Some(b"req-1"), Some(b"corr-1"), Some(b"key-1"));
        assert_eq!(meta.request_id, "req-1");
        assert_eq!(meta.correlation_id, "corr-1");
        assert_eq!(meta.idempotency_key.as_deref(), Some("key-1"));

        let meta = RequestMeta::from_headers(Some(b"bad id"), None, Some(b"bad key"));
        assert_ne!(meta.request_id, "bad id");
        assert!(is_valid_id(&meta.request_id, 128));
        assert_eq!(meta.correlation_id, meta.request_id);
        assert_eq!(meta.idempotency_key, None);
    }

    #[test]
    fn idempotency_keys_may_be_up_to_255_characters() {
        let key = "k".repeat(255);
        let meta = RequestMeta::from_headers(None, None, Some(key.as_bytes()));
        assert_eq!(meta.idempotency_key.as_deref(), Some(key.as_str()));
        let key = "k".repeat(256);
        let meta = RequestMeta::from_headers(None, None, Some(key.as_bytes()));
        assert_eq!(meta.idempotency_key, None);
    }
}
