//! Draining (docs/reference.md §9): once a stop signal arrived, every response closes its
//! connection, so keep-alive clients and proxies reconnect (to another instance) instead of
//! reusing a socket that is about to close.

use actix_web::http::{ConnectionType, StatusCode};

use crate::lifecycle::Lifecycle;

/// Whether a response with `status` must say `Connection: close` now. A WebSocket upgrade keeps
/// its `Connection: upgrade`: the socket hears 1001 later, when the listener closes.
pub(crate) fn must_close(lifecycle: &Lifecycle, status: StatusCode) -> bool {
    status != StatusCode::SWITCHING_PROTOCOLS && lifecycle.is_draining()
}

pub(crate) const CLOSE: ConnectionType = ConnectionType::Close;
