//! The rate-limit step (docs/reference.md §6): in-scope requests are counted against their
//! client's quota and carry `X-RateLimit-*`; over the limit they are answered 429 without
//! reaching a handler. Scope and verdict come from [`crate::rate_limit`].

use actix_web::{
    dev::ServiceRequest,
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderValue},
    },
};

use super::context::RequestContext;
use crate::{
    problem::Problem,
    rate_limit::{Decision, RateLimit, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, retry_after_secs},
};

/// The quota headers of a counted request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    limit: u32,
    remaining: u32,
}

impl Quota {
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
    }
}

/// Counts the request when it is in scope: `Ok(None)` when it is not, the 429 when over.
pub(crate) async fn count(
    rate_limit: Option<&RateLimit>,
    req: &ServiceRequest,
    context: &RequestContext<'_>,
) -> Result<Option<Quota>, Problem> {
    let Some(rate_limit) = rate_limit else {
        return Ok(None);
    };
    // The router's view of the path (`%61pi` is `api`), so encoding cannot dodge the limit.
    if !rate_limit.applies_to(req.method(), req.headers(), req.match_info().as_str()) {
        return Ok(None);
    }
    match rate_limit.decide(context.client_ip(req)).await {
        Decision::Allowed { limit, remaining } => Ok(Some(Quota { limit, remaining })),
        Decision::Refused { limit, wait } => Err(too_many(limit, retry_after_secs(wait))),
    }
}

fn too_many(limit: u32, secs: u64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many requests from this client; retry in {secs} s (rate_limit.per_second, rate_limit.burst)"
        ),
    )
    .with_member("retry_after", secs)
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    .with_header(X_RATELIMIT_LIMIT, HeaderValue::from(limit))
    .with_header(X_RATELIMIT_REMAINING, HeaderValue::from_static("0"))
}
