//! `server.max_body_bytes` (docs/reference.md §3): a declared body larger than the limit is
//! refused with 413 before any handler reads it; the extractors' own configuration
//! (`startup.rs`) enforces the same limit on chunked bodies. After an error answer to a chunked
//! request whose body was not read to its end, the connection closes (docs/reference.md §4
//! "Hostile clients"; [`UnreadBody`]).

use std::{
    cell::RefCell,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_web::{
    HttpMessage,
    body::BoxBody,
    dev::{Payload, ServiceRequest},
    error::PayloadError,
    http::{
        StatusCode,
        header::{self, HeaderMap},
    },
    web::Bytes,
};
use futures_util::Stream;

use crate::{held_body::HeldBody, problem::Problem};

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

/// A chunked request body, held by the pipeline as well as by the route, so the pipeline can
/// decide what happens to what the route left unread.
///
/// When a route drops a chunked body unread, actix-http reads and discards the rest to keep the
/// connection alive, and a chunked body need never end: a client could stream into a 405 or
/// 413 forever (measured: 7 GB in 5 s on one connection, a third of a core). While the body is
/// still held when the answer has been written, actix-http instead closes the connection after
/// it; for error answers the pipeline hands it to the answer's body ([`UnreadBody::hold_until_sent`]).
pub(crate) struct UnreadBody {
    _held: Rc<RefCell<Payload>>,
}

impl UnreadBody {
    /// Shares a chunked request's body between the route and the pipeline; `None` (and the
    /// request untouched) for any other request.
    pub(crate) fn share(req: &mut ServiceRequest) -> Option<Self> {
        if !req.headers().contains_key(header::TRANSFER_ENCODING) {
            return None;
        }
        let body = Rc::new(RefCell::new(req.take_payload()));
        req.set_payload(Payload::Stream {
            payload: Box::pin(SharedBody(body.clone())),
        });
        Some(Self { _held: body })
    }

    /// `body`, holding the request's body until the last byte of it is sent: actix-http looks
    /// at the request's body then, and closes the connection when it is neither read nor dropped.
    pub(crate) fn hold_until_sent(self, body: BoxBody) -> BoxBody {
        BoxBody::new(HeldBody::new(body, self))
    }
}

/// The route's view of a shared body: the same stream.
struct SharedBody(Rc<RefCell<Payload>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Only the route polls the body, and only from its own task: the borrow never overlaps.
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}
