//! Building and running the server: binding first (so tests can ask for port 0), every
//! `server.*` setting, and the middleware order in one place (SPEC §3, §4, §9).

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    middleware::from_fn,
    rt::net::TcpStream,
    web,
};
use actix_web_lab::middleware::CatchPanic;
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    access_log, body_limit,
    client_ip::{self, TrustedProxies},
    compression,
    config::{ConfigError, Settings, StaticMode},
    error_pages::{self, NotFoundPage},
    problem::Problem,
    rate_limit::{self, Pruner, RateLimit},
    request_id,
    routes::{self, api, health, socket},
    shutdown::{self, Lifecycle, ListenerGate, StopSequence},
    static_files::{self, StaticFiles},
    websocket::SocketRegistry,
};

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub started_at: Instant,
    pub lifecycle: Arc<Lifecycle>,
}

/// Why the server could not start. Each renders as one sentence that says what would fix it.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Bind { addr: SocketAddr, source: io::Error },
    Io(io::Error),
}

impl StartError {
    /// Exit status per SPEC §2: 2 for configuration problems, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) => 2,
            StartError::Bind { .. } | StartError::Io(_) => 1,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(err) => write!(f, "{err}"),
            StartError::Bind { addr, source } => match source.kind() {
                io::ErrorKind::PermissionDenied if addr.port() < 1024 => write!(
                    f,
                    "cannot listen on {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a high port (server.port = 8080) behind nginx instead"
                ),
                io::ErrorKind::AddrInUse => write!(
                    f,
                    "cannot listen on {addr}: the address is already in use by another process; stop it or choose another port with server.port or PORT"
                ),
                io::ErrorKind::AddrNotAvailable => write!(
                    f,
                    "cannot listen on {addr}: {} is not an address of this machine; set server.host to 127.0.0.1, 0.0.0.0 or one of its addresses",
                    addr.ip()
                ),
                _ => write!(f, "cannot listen on {addr}: {source}"),
            },
            StartError::Io(err) => write!(f, "cannot start the server: {err}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(err: ConfigError) -> Self {
        StartError::Config(err)
    }
}

/// Extra routes registered ahead of the static fallback (tests add a panicking handler).
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    local_addr: SocketAddr,
    lifecycle: Arc<Lifecycle>,
    settings: Arc<Settings>,
    gate: Option<ListenerGate>,
    _pruner: Option<Pruner>,
}

impl Application {
    pub fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with(settings, Arc::new(|_| {}))
    }

    pub fn build_with(settings: Settings, extra: ExtraRoutes) -> Result<Self, StartError> {
        let listener = bind(&settings)?;
        let local_addr = listener.local_addr().map_err(StartError::Io)?;
        // A second handle on the same socket, so the stop sequence can close it on time.
        let gate = listener.try_clone().ok().map(ListenerGate::new);
        let settings = Arc::new(settings);
        let lifecycle = Arc::new(Lifecycle::default());
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            started_at: Instant::now(),
            lifecycle: lifecycle.clone(),
        });
        let proxies = web::Data::new(TrustedProxies::from_settings(&settings)?);
        let log_format = web::Data::new(settings.log.format);
        let max_body = web::Data::new(body_limit::MaxBodyBytes(settings.server.max_body_bytes));
        let not_found_page = web::Data::new(NotFoundPage(
            Some(settings.static_files.htdocs.join("404.html")).filter(|p| p.is_file()),
        ));
        // Built once, here, not in the per-worker factory: one limiter for the whole server.
        let rate_limit = RateLimit::build(&settings.rate_limit)?.map(Arc::new);
        let pruner = rate_limit.as_ref().map(RateLimit::spawn_pruner);
        let rate_limit = rate_limit.map(web::Data::from);
        // Start-up work `/startupz` waits for (SPEC §4, §9): roots resolved, siblings checked.
        let static_files = match settings.static_files.mode {
            StaticMode::App => {
                let files = StaticFiles::new(&settings.static_files)?;
                let report = static_files::scan::scan(&settings.static_files);
                if let Some(summary) = report.summary() {
                    log::warn!("{summary}");
                }
                Some(web::Data::new(files))
            }
            StaticMode::Nginx => None,
        };
        // One registry for all workers, so `websocket.max_connections` caps the whole server.
        let sockets = web::Data::from(SocketRegistry::new(settings.websocket.max_connections));
        let server_settings = &settings.server;
        let max_body_bytes = server_settings.max_body_bytes;

        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(proxies.clone())
                .app_data(log_format.clone())
                .app_data(max_body.clone())
                .app_data(not_found_page.clone())
                .configure(|cfg| {
                    if let Some(rate_limit) = &rate_limit {
                        cfg.app_data(rate_limit.clone());
                    }
                })
                .app_data(sockets.clone())
                .app_data(api::json_config(max_body_bytes))
                .app_data(web::PayloadConfig::new(max_body_bytes))
                .service(routes::get("/health", health::health))
                .service(routes::get("/healthz", health::healthz))
                .service(routes::get("/readyz", health::readyz))
                .service(routes::get("/startupz", health::startupz))
                .service(
                    routes::get("/api/status", api::status)
                        .wrap(from_fn(compression::compress_dynamic)),
                )
                .service(
                    routes::get("/json", api::hello).wrap(from_fn(compression::compress_dynamic)),
                )
                .service(
                    web::resource("/api/echo")
                        .route(web::post().to(api::echo))
                        .default_service(web::to(|| async {
                            Err::<actix_web::HttpResponse, _>(Problem::method_not_allowed("POST"))
                        }))
                        .wrap(from_fn(compression::compress_dynamic)),
                )
                .service(
                    web::resource("/socket")
                        .route(web::get().to(socket::socket))
                        .default_service(web::to(|| async {
                            Err::<actix_web::HttpResponse, _>(Problem::method_not_allowed("GET"))
                        })),
                )
                .configure(|cfg| extra(cfg))
                .default_service(match static_files.clone() {
                    Some(files) => web::to(move |req| static_files::serve(req, files.clone())),
                    None => web::to(|| async {
                        Err::<actix_web::HttpResponse, _>(Problem::not_found(
                            "no route matches this path (static files are served by nginx)",
                        ))
                    }),
                })
                // Read bottom-up, requests pass: IDs → client address → access log → draining →
                // error shape → rate limit → panics → body limit → routes.
                .wrap(from_fn(body_limit::enforce))
                .wrap(CatchPanic::default())
                .wrap(from_fn(rate_limit::limit))
                .wrap(from_fn(error_pages::render_errors))
                .wrap(from_fn(shutdown::close_when_draining))
                .wrap(from_fn(access_log::log_requests))
                .wrap(from_fn(client_ip::resolve))
                .wrap(from_fn(request_id::assign))
        })
        .workers(worker_count(server_settings.workers))
        .keep_alive(Duration::from_secs(server_settings.keep_alive_secs))
        .client_request_timeout(Duration::from_millis(
            server_settings.client_request_timeout_ms,
        ))
        .client_disconnect_timeout(Duration::from_millis(
            server_settings.client_disconnect_timeout_ms,
        ))
        .max_connections(server_settings.max_connections)
        .shutdown_timeout(server_settings.shutdown_timeout_secs)
        .disable_signals()
        .on_connect(|conn, _| {
            // Without it, Nagle's algorithm holds a response's body behind its head (~40 ms).
            if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .listen(listener)
        .map_err(StartError::Io)?
        .run();

        lifecycle.mark_started();
        Ok(Self {
            server,
            local_addr,
            lifecycle,
            settings,
            gate,
            _pruner: pruner,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn lifecycle(&self) -> Arc<Lifecycle> {
        self.lifecycle.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until a stop signal has run the SPEC §9 sequence to its end.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let settings = &self.settings;
        log::info!(
            "tandem {} listening on http://{} (static.mode = {}, htdocs = {}, public = {}, workers = {})",
            settings.app.version,
            self.local_addr,
            settings.static_files.mode.as_str(),
            settings.static_files.htdocs.display(),
            settings.static_files.public.display(),
            worker_count(settings.server.workers),
        );
        let stop = StopSequence {
            drain: Duration::from_secs(settings.server.shutdown_drain_secs),
            timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            gate: self.gate,
        }
        .install(self.lifecycle.clone(), self.server.handle())?;
        let stop_task = tokio::spawn(stop);
        let result = self.server.await;
        stop_task.abort();
        log::info!("stopped");
        result
    }
}

fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Binds the listening socket with the configured backlog.
fn bind(settings: &Settings) -> Result<TcpListener, StartError> {
    let ip: IpAddr = settings.server.host.parse().map_err(|_| {
        StartError::Config(ConfigError::new(format!(
            "configuration key `server.host` is {:?}, which is not an IP address",
            settings.server.host
        )))
    })?;
    let addr = SocketAddr::new(ip, settings.server.port);
    let fail = |source: io::Error| StartError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).map_err(fail)?;
    if addr.is_ipv6() && ip.is_unspecified() {
        // `::` serves IPv4 too, as `0.0.0.0` users expect.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into()).map_err(fail)?;
    let backlog = i32::try_from(settings.server.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}
