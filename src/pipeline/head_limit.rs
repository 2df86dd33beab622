//! Oversized request heads (docs/reference.md §4 "Hostile clients"): a request target over
//! [`MAX_TARGET_BYTES`] is answered 414 and header fields over [`MAX_HEADER_BYTES`] in total
//! 431, both as problem+json, and the connection is closed after the answer, so a client
//! that sends heads this large cannot keep a connection busy with them.
//!
//! These limits sit below actix-http's own, which answer before tandem sees the request: a head
//! that does not fit its 128 KiB read buffer, or has more than 96 header fields, gets actix's
//! bare `431` (empty body, connection closed); a request target over 65,534 bytes (the `http`
//! crate's `Uri` limit) gets actix's bare `400`.

use actix_web::{dev::ServiceRequest, http::StatusCode};

use crate::problem::Problem;

/// The longest request target (path and query) tandem answers: nginx's default
/// `large_client_header_buffers` size, so an app-mode tandem and its nginx agree.
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;

/// The most bytes of header fields (names, values and the `: ` and CRLF of each line) tandem
/// reads: four of nginx's 8 KiB buffers.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The 414 or 431 for a request whose head is over the limits.
pub(crate) fn refusal(req: &ServiceRequest) -> Option<Problem> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_TARGET_BYTES {
        return Some(Problem::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target is {target} bytes; this server accepts at most {MAX_TARGET_BYTES}"
            ),
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (header_bytes > MAX_HEADER_BYTES).then(|| {
        Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's header fields are {header_bytes} bytes; this server accepts at most {MAX_HEADER_BYTES}"
            ),
        )
    })
}

/// Whether a response must close its connection because of the head it answers: after a 414 or
/// 431 the client's next bytes are as suspect as the head was.
pub(crate) fn closes_connection(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::URI_TOO_LONG | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    )
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn heads_at_the_limits_pass_and_one_byte_more_is_refused() {
        // "/" plus the rest: a target of exactly MAX_TARGET_BYTES.
        let at_limit = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 1));
        assert!(refusal(&TestRequest::with_uri(&at_limit).to_srv_request()).is_none());
        let over = format!("{at_limit}a");
        let problem = refusal(&TestRequest::with_uri(&over).to_srv_request());
        assert_eq!(problem.map(|p| p.status()), Some(StatusCode::URI_TOO_LONG));

        // "x-big: " + value + CRLF: exactly MAX_HEADER_BYTES with nothing else in the head.
        let value = "v".repeat(MAX_HEADER_BYTES - "x-big".len() - 4);
        let req = TestRequest::default().insert_header(("x-big", value.clone()));
        assert!(refusal(&req.to_srv_request()).is_none());
        let req = TestRequest::default().insert_header(("x-big", format!("{value}v")));
        let problem = refusal(&req.to_srv_request());
        assert_eq!(
            problem.map(|p| p.status()),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
