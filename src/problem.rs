//! RFC 9457 problem details: the one error type every 4xx/5xx of tandem is rendered from
//! (docs/reference.md §4). A problem knows nothing of the request it answers: the pipeline's
//! error layer ([`crate::pipeline`]) renders it once, with the request's ID.

use std::{borrow::Cow, fmt};

use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    web::Bytes,
};
use serde_json::{Map, Value};

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// An HTTP error: status, a human sentence, optional extra members and headers.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    /// Borrowed for the fixed sentences, so the common 404 allocates nothing for it.
    detail: Cow<'static, str>,
    members: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            members: Map::new(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub(crate) fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("this resource answers {allow} only"),
        )
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
    }

    pub(crate) fn service_unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// Adds an extension member to the body (e.g. `retry_after`).
    pub(crate) fn with_member(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.members.insert(key.to_string(), value.into());
        self
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The headers this problem adds to its answer (`Allow`, `Retry-After`, ...).
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.headers.iter().map(|(name, value)| (name, value))
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body, with the request's ID when known.
    pub(crate) fn body(&self, request_id: Option<&str>) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), "about:blank".into());
        body.insert(
            "title".into(),
            self.status.canonical_reason().unwrap_or("Error").into(),
        );
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.as_ref().into());
        if let Some(id) = request_id {
            body.insert("request_id".into(), id.into());
        }
        for (key, value) in &self.members {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    /// The full response: status, extra headers, and the problem+json body naming the request.
    pub(crate) fn to_response(&self, request_id: Option<&str>) -> HttpResponse {
        let mut response = self.head();
        response.content_type(PROBLEM_JSON);
        // The buffer becomes the body as it is (`Vec` into `Bytes`), not copied.
        response.body(Bytes::from(self.body_bytes(request_id)))
    }

    /// The serialized body. Without extension members (every problem but a few) it is written
    /// directly, byte for byte what serializing [`Problem::body`] gives (members in key order),
    /// because building the `Value` map costs a 404 more than the rest of its answer.
    fn body_bytes(&self, request_id: Option<&str>) -> Vec<u8> {
        if !self.members.is_empty() {
            return self.body(request_id).to_string().into_bytes();
        }
        let title = self.status.canonical_reason().unwrap_or("Error");
        // The fixed text is 81 bytes, and 16 more with a request ID: sized once, never regrown.
        let id_len = request_id.map_or(0, |id| id.len() + 16);
        let mut out = Vec::with_capacity(96 + self.detail.len() + title.len() + id_len);
        out.extend_from_slice(b"{\"detail\":");
        write_json_str(&mut out, &self.detail);
        if let Some(id) = request_id {
            out.extend_from_slice(b",\"request_id\":");
            write_json_str(&mut out, id);
        }
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.extend_from_slice(b",\"title\":");
        write_json_str(&mut out, title);
        out.extend_from_slice(b",\"type\":\"about:blank\"}");
        out
    }

    /// Status, `Cache-Control: no-store` and the problem's own headers, without a body.
    fn head(&self) -> actix_web::HttpResponseBuilder {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response
    }

    /// The generic problem for a status produced by something other than tandem's own code
    /// (actix's router, extractors, middleware).
    pub(crate) fn from_status(status: StatusCode, cause: Option<String>) -> Self {
        let detail: Cow<'static, str> = match status {
            StatusCode::NOT_FOUND => "no route or file matches this path".into(),
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than server.max_body_bytes allows".into()
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "this resource accepts application/json bodies only".into()
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                "the server failed while handling this request; it has been logged".into()
            }
            _ => match cause.filter(|c| !c.trim().is_empty()) {
                Some(cause) => cause.into(),
                None => status.canonical_reason().unwrap_or("request failed").into(),
            },
        };
        Self::new(status, detail)
    }
}

/// Appends `value` as a JSON string, escaped as serde_json escapes it.
fn write_json_str(out: &mut Vec<u8>, value: &str) {
    // The usual detail, title and ID need no escape (no control character, quote or
    // backslash: what serde_json escapes), and are copied as they are. Checked without an early
    // exit, which the compiler turns into a few wide comparisons instead of one per byte.
    let needs_escape = value.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    /// Only the status and the problem's own headers: the pipeline's error step renders every
    /// answer of 400 or more once (body, `Content-Type`, `Cache-Control`), knowing the request's
    /// ID and whether a browser wants the 404 page instead.
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::new(self.status);
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc_9457_members_and_extensions() {
        let problem =
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "slow down").with_member("retry_after", 3);
        let body = problem.body(Some("abc"));
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Too Many Requests");
        assert_eq!(body["status"], 429);
        assert_eq!(body["detail"], "slow down");
        assert_eq!(body["request_id"], "abc");
        assert_eq!(body["retry_after"], 3);
    }

    #[test]
    fn written_body_is_what_serializing_the_value_gives() {
        let problems = [
            Problem::not_found("no route or file matches this path"),
            Problem::bad_request("quote \" backslash \\ newline \n tab \t nul \u{0} é ✓"),
            // No escape needed: copied as it is (non-ASCII and DEL included, as serde_json does).
            Problem::bad_request("plain é ✓ \u{7f} text"),
            Problem::new(StatusCode::from_u16(599).expect("a valid status"), "odd"),
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "slow").with_member("retry_after", 3),
        ];
        for problem in &problems {
            for id in [Some("req-1"), None] {
                assert_eq!(
                    String::from_utf8(problem.body_bytes(id)).expect("utf-8"),
                    problem.body(id).to_string(),
                );
            }
        }
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let response = Problem::method_not_allowed("GET, HEAD").to_response(Some("abc"));
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers().get(header::ALLOW).unwrap(), "GET, HEAD");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
    }

    #[test]
    fn internal_errors_never_leak_their_cause() {
        let problem = Problem::from_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("secret database password".into()),
        );
        assert!(!problem.body(None)["detail"].to_string().contains("secret"));
    }
}
