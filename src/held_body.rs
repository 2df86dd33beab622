//! A response body that keeps something alive for as long as it is being sent: the request's
//! unread chunked body (docs/reference.md §4 "Hostile clients", `pipeline::body_limit`), or the
//! request's place among those in flight on its connection (`lifecycle::connection_watch`).
//! actix drops a body once its last byte is written (or its connection is gone), and what the
//! body holds goes with it.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    web::Bytes,
};

/// `body`, sent unchanged, with `held` dropped only when the body is.
pub(crate) struct HeldBody<H> {
    body: BoxBody,
    _held: H,
}

impl<H> HeldBody<H> {
    pub(crate) fn new(body: BoxBody, held: H) -> Self {
        Self { body, _held: held }
    }
}

impl<H: Unpin> MessageBody for HeldBody<H> {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}
