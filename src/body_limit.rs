//! `server.max_body_bytes` (SPEC §3): a declared body larger than the limit is refused with 413
//! before any handler reads it; extractors enforce the same limit on chunked bodies.

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{StatusCode, header},
    middleware::Next,
    web,
};

use crate::problem::Problem;

/// The limit, shared with the middleware as app data.
#[derive(Debug, Clone, Copy)]
pub struct MaxBodyBytes(pub usize);

pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let limit = req
        .app_data::<web::Data<MaxBodyBytes>>()
        .map(|l| l.0)
        .unwrap_or(usize::MAX);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit as u64
    {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {length} bytes; this server accepts at most {limit} (server.max_body_bytes)"
            ),
        )
        .into());
    }
    next.call(req).await
}
