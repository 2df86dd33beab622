//! Request metadata (SPEC §8): `X-Request-ID`, `X-Correlation-ID` and `Idempotency-Key`, validated,
//! stored for handlers and logs, and echoed on every response.

use std::future::{Ready, ready};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};

use crate::problem::Problem;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

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
pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl RequestMeta {
    /// Applies the SPEC §8 rules to the incoming header values (only the first of each counts).
    pub fn from_headers(
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

    fn of(req: &ServiceRequest) -> Self {
        let header = |name: &HeaderName| req.headers().get(name).map(HeaderValue::as_bytes);
        Self::from_headers(
            header(&X_REQUEST_ID),
            header(&X_CORRELATION_ID),
            header(&IDEMPOTENCY_KEY),
        )
    }
}

/// Middleware: decides the IDs, stores them in the request and echoes them on the response.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let meta = RequestMeta::of(&req);
    // Both IDs passed validation or were generated, so they are always valid header values.
    let request_id = HeaderValue::from_str(&meta.request_id).ok();
    let correlation_id = HeaderValue::from_str(&meta.correlation_id).ok();
    req.extensions_mut().insert(meta);
    let mut res = match next.call(req).await {
        Ok(res) => res,
        // An error that escaped every layer: its response is built after the request is gone,
        // so it carries the IDs itself.
        Err(err) => {
            let text = |v: &Option<HeaderValue>| {
                v.as_ref()
                    .and_then(|v| v.to_str().ok())
                    .map(str::as_bytes)
                    .map(<[u8]>::to_vec)
            };
            let (rid, cid) = (text(&request_id), text(&correlation_id));
            let meta = RequestMeta::from_headers(rid.as_deref(), cid.as_deref(), None);
            let problem = err.as_error::<Problem>().cloned().unwrap_or_else(|| {
                Problem::from_status(err.as_response_error().status_code(), None)
            });
            return Err(problem.for_request(Some(meta)).into());
        }
    };
    let headers = res.headers_mut();
    if let Some(value) = request_id {
        headers.insert(X_REQUEST_ID, value);
    }
    if let Some(value) = correlation_id {
        headers.insert(X_CORRELATION_ID, value);
    }
    Ok(res)
}

/// The request's metadata, or fresh IDs when the middleware did not run (unit tests).
pub fn meta_of(req: &HttpRequest) -> RequestMeta {
    req.extensions()
        .get::<RequestMeta>()
        .cloned()
        .unwrap_or_else(|| RequestMeta::from_headers(None, None, None))
}

impl FromRequest for RequestMeta {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(meta_of(req)))
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
