//! The watchdog for later request heads on an HTTP/1.1 connection (docs/reference.md §4
//! "Hostile clients", §3 `server.keep_alive_secs`, `server.client_request_timeout_ms`).
//!
//! actix-http times only a connection's *first* request head, and any byte that arrives clears
//! its keep-alive timer: a client that trickles the head of its second request on a kept-alive
//! connection would be held forever. So every HTTP/1.1 connection gets a [`ConnectionWatch`]
//! (in its connection data) and a watchdog task on its worker: when no request is in flight and
//! no new request head has completed within `keep_alive_secs + client_request_timeout_ms` of
//! the previous response's end, the connection is either idle (actix's keep-alive would have
//! closed it already) or trickling a head, and the watchdog shuts its socket down. A connection
//! with a request in flight (a slow download, a long upload, a WebSocket, whose answer's body
//! lives as long as the socket) is never touched.
//!
//! Everything here runs on the connection's worker thread: `on_connect`, the requests and the
//! watchdog task share it, so the state is an `Rc` of `Cell`s, not atomics. Per request the
//! pipeline pays a connection-data lookup, an `Rc` clone and drop, two counter updates and one
//! clock read when the body ends; nothing is allocated.

use std::{
    cell::Cell,
    net::Shutdown,
    rc::{Rc, Weak},
    time::Duration,
};

use actix_web::{
    body::BoxBody,
    dev::{Extensions, ServiceRequest},
};
use socket2::{SockRef, Socket};
use tokio::{
    sync::oneshot,
    time::{Instant, sleep_until},
};

use crate::held_body::HeldBody;

/// How long a connection may go without a request in flight and without a new request head:
/// `server.keep_alive_secs + server.client_request_timeout_ms`. `None` (no watchdog) when
/// keep-alive is off (no second head can come) or head timing is off (`0`, the operator's
/// choice to time no head at all).
pub(crate) fn quiet_limit(
    keep_alive_secs: u64,
    client_request_timeout_ms: u64,
) -> Option<Duration> {
    if keep_alive_secs == 0 || client_request_timeout_ms == 0 {
        return None;
    }
    Some(Duration::from_secs(keep_alive_secs) + Duration::from_millis(client_request_timeout_ms))
}

/// One connection's requests, as the watchdog sees them.
pub(crate) struct ConnectionWatch {
    in_flight: Cell<u32>,
    /// When the last response ended, or the connection opened.
    quiet_since: Cell<Instant>,
    /// Dropped with the connection's data, which ends the watchdog (and closes its copy of the
    /// socket) at once rather than at its next wake-up.
    _closed: oneshot::Sender<()>,
}

/// Gives the connection `tcp` its watch (in `extensions`, the connection data every request
/// sees) and starts its watchdog on this worker. Without a copy of the socket (out of file
/// descriptors) the connection goes unwatched, as it would have before.
pub(crate) fn watch(tcp: &tokio::net::TcpStream, limit: Duration, extensions: &mut Extensions) {
    let Ok(socket) = SockRef::from(tcp).try_clone() else {
        // Out of descriptors: accept fails next, and actix logs that; one line per connection
        // here would only flood the log under attack.
        log::debug!("a connection goes without its head watchdog: its socket could not be copied");
        return;
    };
    let (closed, on_close) = oneshot::channel();
    let watch = Rc::new(ConnectionWatch {
        in_flight: Cell::new(0),
        quiet_since: Cell::new(Instant::now()),
        _closed: closed,
    });
    actix_web::rt::spawn(watchdog(Rc::downgrade(&watch), socket, limit, on_close));
    extensions.insert(watch);
}

/// Sleeps until the connection has been quiet for `limit`, then shuts its socket down, which
/// makes actix-http drop the connection; ends early when the connection ends.
async fn watchdog(
    watch: Weak<ConnectionWatch>,
    socket: Socket,
    limit: Duration,
    mut on_close: oneshot::Receiver<()>,
) {
    let mut deadline = Instant::now() + limit;
    loop {
        tokio::select! {
            () = sleep_until(deadline) => {}
            _ = &mut on_close => return,
        }
        let Some(watch) = watch.upgrade() else {
            return;
        };
        let now = Instant::now();
        if watch.in_flight.get() > 0 {
            // Look again later: the response's end moves `quiet_since`.
            deadline = now + limit;
            continue;
        }
        let quiet_until = watch.quiet_since.get() + limit;
        if quiet_until > now {
            deadline = quiet_until;
            continue;
        }
        log::debug!("closing a connection with no request for {limit:?} (a trickled head or idle)");
        let _ = socket.shutdown(Shutdown::Both);
        return;
    }
}

/// One request on a watched connection, from its complete head until its response's body has
/// been sent (or abandoned).
pub(crate) struct InFlight(Option<Rc<ConnectionWatch>>);

impl InFlight {
    /// Counts `req` in flight on its connection; nothing for an unwatched one (HTTP/2, tests).
    pub(crate) fn begin(req: &ServiceRequest) -> Self {
        let watch = req.conn_data::<Rc<ConnectionWatch>>().cloned();
        if let Some(watch) = &watch {
            watch.in_flight.set(watch.in_flight.get() + 1);
        }
        Self(watch)
    }

    /// `body`, which ends this request when it is dropped: actix drops it once its last byte
    /// is written, or with its connection.
    pub(crate) fn until_sent(self, body: BoxBody) -> WatchedBody {
        HeldBody::new(body, self)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(watch) = self.0.take() {
            watch.in_flight.set(watch.in_flight.get().saturating_sub(1));
            watch.quiet_since.set(Instant::now());
        }
    }
}

/// Every response's body: the route's, plus the request it ends.
pub(crate) type WatchedBody = HeldBody<InFlight>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_keep_alive_plus_the_head_timeout_and_off_with_either() {
        assert_eq!(quiet_limit(1, 1000), Some(Duration::from_secs(2)));
        assert_eq!(quiet_limit(60, 5000), Some(Duration::from_secs(65)));
        assert_eq!(quiet_limit(0, 5000), None);
        assert_eq!(quiet_limit(60, 0), None);
    }
}
