//! `server.max_body_bytes` (docs/reference.md §3): a declared body larger than the limit is
//! refused with 413 before any handler reads it; the extractors' own configuration
//! (`startup.rs`) enforces the same limit on chunked bodies.

use actix_web::http::{
    StatusCode,
    header::{self, HeaderMap},
};

use crate::problem::Problem;

#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit {
    pub(crate) max_bytes: usize,
}

impl BodyLimit {
    /// The 413 for a request whose `Content-Length` is over the limit.
    pub(crate) fn refusal(&self, headers: &HeaderMap) -> Option<Problem> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        let limit = self.max_bytes;
        (declared > limit as u64).then(|| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is {declared} bytes; this server accepts at most {limit} (server.max_body_bytes)"
                ),
            )
        })
    }
}
