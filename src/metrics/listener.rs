//! `/metrics` on a listener of its own (docs/reference.md §3 `metrics.listen`, §4): a one-worker
//! server beside the public one, never the public port, so neither the rate limit nor the access
//! log see scrapes, and nginx never proxies it. It stops when the public server has stopped.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::{Server, ServerHandle},
    guard, web,
};

use super::Metrics;
use crate::problem::Problem;

/// How long a scrape in flight may finish once the public server has stopped.
const STOP_GRACE_SECS: u64 = 1;

/// The `/metrics` server, running on its own task.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Running {
    /// Binds `addr` and starts serving on it. Must run inside actix's runtime.
    pub(crate) fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Self> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let server = serve(listener, metrics)?;
        Ok(Self {
            addr,
            handle: server.handle(),
            task: tokio::spawn(server),
        })
    }

    /// Stops taking scrapes, lets the one in flight finish, and waits until the server is gone.
    pub(crate) async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Binds `metrics.listen`'s address. The error names the key, for the start-up message.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let explain = |err: io::Error| {
        let why = match err.kind() {
            io::ErrorKind::AddrInUse => "the address is already in use by another process".into(),
            io::ErrorKind::AddrNotAvailable => {
                format!("{} is not an address of this machine", addr.ip())
            }
            io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE".into()
            }
            _ => err.to_string(),
        };
        io::Error::new(
            err.kind(),
            format!(
                "cannot listen on {addr} for /metrics: {why}; choose another address with metrics.listen, or set it to \"off\""
            ),
        )
    };
    let listener = TcpListener::bind(addr).map_err(explain)?;
    listener.set_nonblocking(true).map_err(explain)?;
    Ok(listener)
}

/// Serves `GET /metrics` on `listener`; every other path is 404.
fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> io::Result<Server> {
    let metrics = web::Data::from(metrics);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .service(
                web::resource("/metrics")
                    .route(
                        web::route()
                            .guard(guard::Any(guard::Get()).or(guard::Head()))
                            .to(scrape),
                    )
                    .default_service(web::to(|| async {
                        Problem::method_not_allowed("GET, HEAD").to_response(None)
                    })),
            )
            .default_service(web::to(|| async {
                Problem::not_found("this listener serves /metrics only (metrics.listen)")
                    .to_response(None)
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(STOP_GRACE_SECS)
    .client_request_timeout(Duration::from_secs(5))
    .listen(listener)?
    .run())
}

async fn scrape(req: HttpRequest, metrics: web::Data<Metrics>) -> HttpResponse {
    // Debug only: a scrape every few seconds would otherwise fill the access log.
    log::debug!(
        "/metrics scraped by {}",
        req.peer_addr()
            .map_or_else(|| "-".into(), |a| a.to_string())
    );
    let (content_type, body) = metrics.exposition();
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-store"))
        .body(body)
}
