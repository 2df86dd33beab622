//! Building and running the server (docs/reference.md §3, §4, §9): binding first (so tests can
//! ask for port 0), every `server.*` setting, the routes and the request pipeline around them,
//! and the start-up work `/startupz` waits for.

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    rt::net::TcpStream,
    web,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    client_ip::TrustedProxies,
    config::{ConfigError, ServerSettings, Settings, StaticMode, StaticSettings, TlsMode},
    lifecycle::{
        Lifecycle,
        connection_watch::{self, WatchedBody},
        inherited::{self, Ownership},
        listener_gate::ListenerGate,
        signals::StopSequence,
    },
    metrics::{Exposure, Metrics, Sources, class::RouteClass},
    pipeline::{AccessLog, BodyLimit, ErrorPages, Figures, Pipeline, PipelineLayer},
    problem::Problem,
    rate_limit::{Pruner, RateLimit},
    routes::{self, api},
    state::AppState,
    static_files::{self, StaticFiles},
    tls::{
        self, Https, challenges::Http01Challenges, redirect::RedirectListener,
        reload::CertificateTask,
    },
    websocket::SocketRegistry,
};

/// Why the server could not start. Each renders as one sentence that says what would fix it.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    /// `key` names the setting that chose the port (`server.port`, `tls.redirect_port`).
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    Io(io::Error),
}

impl StartError {
    /// Exit status (docs/reference.md §2): 2 for configuration problems, 1 for runtime failures.
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
            StartError::Bind { key, addr, source } => match source.kind() {
                io::ErrorKind::PermissionDenied if addr.port() < 1024 => write!(
                    f,
                    "cannot listen on {addr} ({key}): ports below 1024 need root or CAP_NET_BIND_SERVICE (README, \"Port 443 without root\"); or use a port above 1023 behind nginx or a port mapping"
                ),
                io::ErrorKind::AddrInUse => write!(
                    f,
                    "cannot listen on {addr}: the address is already in use by another process; stop it or choose another port with {key}{}",
                    if *key == "server.port" {
                        " or PORT"
                    } else {
                        ""
                    }
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

/// Extra routes registered ahead of the static fallback (tests add a panicking handler). With
/// none, a path the route table does not know can only be a static file, and the pipeline sends
/// it to the static files without asking actix's router.
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Work that must finish before `/startupz` answers 200, run after the sibling scan on the same
/// blocking thread (tests hold start-up open with it to observe the 503).
pub type StartupWork = Box<dyn FnOnce() + Send>;

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    local_addr: SocketAddr,
    lifecycle: Arc<Lifecycle>,
    settings: Arc<Settings>,
    gate: Option<ListenerGate>,
    _pruner: Option<Pruner>,
    /// Keeps the served certificate current (file reload or ACME); stops when dropped.
    _certificates: Option<CertificateTask>,
    /// `/metrics`'s own server, stopped after the public one (docs/reference.md §4).
    metrics: Exposure,
    /// The plain-HTTP listener redirecting to HTTPS (`tls.redirect_port`), not yet running.
    redirect: Option<Server>,
}

/// What the per-worker app factory needs, built once for all workers.
#[derive(Clone)]
struct Shared {
    state: web::Data<AppState>,
    proxies: web::Data<TrustedProxies>,
    sockets: web::Data<SocketRegistry>,
    static_files: Option<web::Data<StaticFiles>>,
    pipeline: PipelineLayer,
    max_body_bytes: usize,
    extra: Option<ExtraRoutes>,
}

impl Application {
    /// Binds and starts serving; must run inside actix's runtime.
    pub fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with(settings, None, Box::new(|| {}))
    }

    pub fn build_with(
        settings: Settings,
        extra: Option<ExtraRoutes>,
        startup_work: StartupWork,
    ) -> Result<Self, StartError> {
        let listeners = Listeners::bind(&settings)?;
        // Before anything serves: a bad certificate pair is a configuration error (exit 2).
        let mut https = Https::from_settings(&settings.tls)?;
        let settings = Arc::new(settings);
        let lifecycle = Arc::new(Lifecycle::default());
        // Built once, here, not in the per-worker factory: one limiter for the whole server.
        let rate_limit = RateLimit::build(&settings.rate_limit)?.map(Arc::new);
        let pruner = rate_limit.as_ref().map(RateLimit::spawn_pruner);
        let static_files = static_files_of(&settings)?.map(web::Data::new);
        // One registry for all workers, so `websocket.max_connections` caps the whole server.
        let sockets = SocketRegistry::new(settings.websocket.max_connections);
        let metrics = Exposure::start(
            settings.metrics.listen,
            Sources {
                sockets: sockets.clone(),
                static_files: static_files.as_ref().map(|f| f.clone().into_inner()),
                lifecycle: lifecycle.clone(),
            },
        )
        .map_err(StartError::Io)?;
        let shared = Shared {
            state: web::Data::new(AppState::new(&settings, &lifecycle, &metrics.metrics)),
            proxies: web::Data::new(TrustedProxies::from_settings(&settings)?),
            sockets: web::Data::from(sockets),
            pipeline: pipeline_of(
                &settings,
                &lifecycle,
                rate_limit,
                static_files.as_ref(),
                extra.is_none(),
                &metrics.metrics,
            )?,
            static_files,
            max_body_bytes: settings.server.max_body_bytes,
            extra,
        };
        let (certificates, challenges) = keep_certificates_current(https.as_mut())?;
        let server = serve(&settings.server, listeners.main, shared, https)?;
        let redirect = serve_redirect(listeners.redirect, &settings, challenges)?;
        start_up(&settings, lifecycle.clone(), startup_work, &metrics.metrics);
        Ok(Self {
            server,
            local_addr: listeners.local_addr,
            lifecycle,
            settings,
            gate: listeners.gate,
            _pruner: pruner,
            _certificates: certificates,
            metrics,
            redirect,
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

    /// Where `/metrics` is served (`metrics.listen`), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.server.as_ref().map(|running| running.addr)
    }

    /// Serves until a stop signal has run the stop sequence (docs/reference.md §9) to its end.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let settings = &self.settings;
        log::info!(
            "tandem {} listening on {}://{} (static.mode = {}, htdocs = {}, public = {}, workers = {})",
            settings.app.version,
            if settings.tls.mode == TlsMode::Off {
                "http"
            } else {
                "https"
            },
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
        if let Some(metrics) = &self.metrics.server {
            log::info!(
                "metrics on http://{}/metrics (metrics.listen)",
                metrics.addr
            );
        }
        let redirect = self.redirect.map(|server| {
            log::info!(
                "plain HTTP on port {} redirects to HTTPS on port {} (tls.redirect_port, tls.public_port)",
                settings.tls.redirect_port,
                settings.tls.public_port
            );
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let result = self.server.await;
        // The redirect listener outlives the main one only by its own (instant) answers.
        if let Some(redirect) = redirect {
            redirect.stop(true).await;
        }
        stop_task.abort();
        // Scrapes are answered while the public server drains, then stop with it.
        if let Some(metrics) = self.metrics.server {
            metrics.stop().await;
        }
        log::info!("stopped");
        result
    }
}

/// The static file service in app mode: its roots are resolved now, so a missing one is a
/// configuration error before anything listens.
fn static_files_of(settings: &Settings) -> Result<Option<StaticFiles>, StartError> {
    match settings.static_files.mode {
        StaticMode::App => Ok(Some(StaticFiles::new(&settings.static_files)?)),
        StaticMode::Nginx => Ok(None),
    }
}

/// Every concern of the request pipeline, each given its settings here.
fn pipeline_of(
    settings: &Settings,
    lifecycle: &Arc<Lifecycle>,
    rate_limit: Option<Arc<RateLimit>>,
    static_files: Option<&web::Data<StaticFiles>>,
    only_table_routes: bool,
    metrics: &Arc<Metrics>,
) -> Result<PipelineLayer, StartError> {
    // The 404 page comes from the static cache. nginx mode serves no files, but tandem still
    // answers browsers' 404s with the page when the roots are there to read it from.
    let pages = match static_files {
        Some(files) => Some(files.clone().into_inner()),
        None => not_found_pages_only(&settings.static_files),
    };
    Ok(PipelineLayer::new(Pipeline {
        proxies: TrustedProxies::from_settings(settings)?,
        access_log: AccessLog {
            format: settings.log.format,
        },
        rate_limit,
        body_limit: BodyLimit {
            max_bytes: settings.server.max_body_bytes,
        },
        error_pages: ErrorPages {
            static_files: pages,
        },
        lifecycle: lifecycle.clone(),
        direct_static: static_files.filter(|_| only_table_routes).cloned(),
        hsts: tls::hsts_header(&settings.tls),
        figures: Figures {
            metrics: metrics.clone(),
            unrouted: match settings.static_files.mode {
                StaticMode::App => RouteClass::Static,
                StaticMode::Nginx => RouteClass::Other,
            },
        },
    }))
}

/// In nginx mode, a static cache used only for `htdocs/404.html`: it needs `static.htdocs`
/// alone, so a deployment without a `public` root still answers browsers with its page.
fn not_found_pages_only(settings: &StaticSettings) -> Option<Arc<StaticFiles>> {
    let mut settings = settings.clone();
    if !settings.public.is_dir() {
        settings.public = settings.htdocs.clone();
    }
    StaticFiles::new(&settings).ok().map(Arc::new)
}

/// The app every worker runs: the routes, the static fallback, and the pipeline around them.
fn app(
    shared: Shared,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<WatchedBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let Shared {
        state,
        proxies,
        sockets,
        static_files,
        pipeline,
        max_body_bytes,
        extra,
    } = shared;
    App::new()
        .app_data(state)
        // Read by the `ClientInfo` extractor only; the pipeline holds its own copy.
        .app_data(proxies)
        .app_data(sockets)
        .app_data(api::json_config(max_body_bytes))
        .app_data(web::PayloadConfig::new(max_body_bytes))
        .configure(routes::register)
        .configure(|cfg| {
            if let Some(extra) = &extra {
                extra(cfg);
            }
        })
        .default_service(match static_files {
            Some(files) => web::to(move |req| static_files::serve(req, files.clone())),
            None => web::to(|| async {
                Err::<actix_web::HttpResponse, _>(Problem::not_found(
                    "no route matches this path (static files are served by nginx)",
                ))
            }),
        })
        // Every concern of the request's way in, in the order `pipeline` documents: context →
        // access log → rate limit → body limit → route (panics caught) → error shape → draining.
        .wrap(pipeline)
}

/// Starts the HTTP server on `listener` with every `server.*` setting; HTTPS (HTTP/2 and
/// HTTP/1.1 by ALPN) when `https` is given.
fn serve(
    server_settings: &ServerSettings,
    listener: TcpListener,
    shared: Shared,
    https: Option<Https>,
) -> Result<Server, StartError> {
    let quiet_limit = connection_watch::quiet_limit(
        server_settings.keep_alive_secs,
        server_settings.client_request_timeout_ms,
    );
    let server = HttpServer::new(move || app(shared.clone()))
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
        .on_connect(move |conn, extensions| {
            // HTTP/2 frames its own heads; the watchdog is for HTTP/1.1's later heads.
            let (tcp, http2) = match conn.downcast_ref::<TlsStream<TcpStream>>() {
                Some(tls) => (
                    Some(tls.get_ref().0),
                    tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()),
                ),
                None => (conn.downcast_ref::<TcpStream>(), false),
            };
            if let Some(tcp) = tcp {
                // Without it, Nagle's algorithm holds a response's body behind its head (~40 ms).
                let _ = tcp.set_nodelay(true);
                if let Some(limit) = quiet_limit.filter(|_| !http2) {
                    connection_watch::watch(tcp, limit, extensions);
                }
            }
        });
    let server = match https {
        Some(https) => server
            .tls_handshake_timeout(https.handshake_timeout)
            .max_connection_rate(https.max_handshakes)
            .listen_rustls_0_23(listener, https.server_config),
        None => server.listen(listener),
    };
    Ok(server.map_err(StartError::Io)?.run())
}

/// The start-up work `/startupz` waits for (docs/reference.md §4, §9): in app mode the sibling
/// scan, which reads every file of both roots. It runs after binding, off the workers, so the
/// probes answer (503) while it runs.
fn start_up(
    settings: &Arc<Settings>,
    lifecycle: Arc<Lifecycle>,
    work: StartupWork,
    metrics: &Arc<Metrics>,
) {
    let settings = settings.clone();
    let metrics = metrics.clone();
    actix_web::rt::task::spawn_blocking(move || {
        if settings.static_files.mode == StaticMode::App {
            let report = static_files::scan::scan(&settings.static_files);
            metrics.scanned(report.stale.len(), report.missing.len());
            if let Some(summary) = report.summary() {
                log::warn!("{summary}");
            }
        }
        work();
        lifecycle.mark_started();
    });
}

fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Starts the file reload or the ACME client, and hands out the http-01 answers ACME leaves for
/// the redirect listener.
fn keep_certificates_current(
    https: Option<&mut Https>,
) -> Result<(Option<CertificateTask>, Option<Arc<Http01Challenges>>), StartError> {
    let Some(https) = https else {
        return Ok((None, None));
    };
    let task = https.keep_current().map_err(StartError::Io)?;
    Ok((task, https.challenges.clone()))
}

/// The sockets tandem serves on, bound (or inherited) before anything serves, so a taken port
/// stops the start whichever it is.
struct Listeners {
    main: TcpListener,
    local_addr: SocketAddr,
    /// A second handle on the main socket, so the stop sequence can close it on time (or,
    /// inherited, knows to leave it open).
    gate: Option<ListenerGate>,
    /// The plain-HTTP listener that redirects to HTTPS, when `tls.redirect_port` asks for one
    /// (configuration validation allows it only with HTTPS on).
    redirect: Option<TcpListener>,
}

impl Listeners {
    fn bind(settings: &Settings) -> Result<Self, StartError> {
        let (main, ownership) = bind(settings, "http", "server.port", settings.server.port)?;
        let redirect = match settings.tls.redirect_port {
            0 => None,
            port => Some(bind(settings, "redirect", "tls.redirect_port", port)?.0),
        };
        Ok(Self {
            local_addr: main.local_addr().map_err(StartError::Io)?,
            gate: main
                .try_clone()
                .ok()
                .map(|socket| ListenerGate::new(socket, ownership)),
            main,
            redirect,
        })
    }
}

/// The redirect listener on its socket, not yet running (docs/reference.md §4); with ACME it
/// also answers the CA's http-01 challenges.
fn serve_redirect(
    listener: Option<TcpListener>,
    settings: &Settings,
    challenges: Option<Arc<Http01Challenges>>,
) -> Result<Option<Server>, StartError> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let mut redirect = RedirectListener::new(settings.tls.public_port);
    if let Some(challenges) = challenges {
        redirect = redirect.answering(challenges);
    }
    redirect
        .serve(listener, &settings.server)
        .map(Some)
        .map_err(StartError::Io)
}

/// A listening socket on `server.host:port`: the one a service manager passed as `name`
/// (docs/reference.md §9), or one bound here with the configured backlog. `key` names the setting
/// that chose `port`, for the error.
fn bind(
    settings: &Settings,
    name: &str,
    key: &'static str,
    port: u16,
) -> Result<(TcpListener, Ownership), StartError> {
    let ip: IpAddr = settings.server.host.parse().map_err(|_| {
        StartError::Config(ConfigError::new(format!(
            "configuration key `server.host` is {:?}, which is not an IP address",
            settings.server.host
        )))
    })?;
    let addr = SocketAddr::new(ip, port);
    if let Some(listener) = inherited::take(name, addr)
        .map_err(|err| StartError::Config(ConfigError::new(err.to_string())))?
    {
        return Ok((listener, Ownership::Shared));
    }
    let fail = |source: io::Error| StartError::Bind { key, addr, source };
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
    Ok((socket.into(), Ownership::Own))
}
