//! The figures tandem keeps about itself (docs/reference.md §4 `/metrics`, §3 `metrics.listen`):
//! what the request pipeline counts ([`requests`]), what other parts already know and are read
//! only when scraped (open WebSockets and their close codes, the static cache, the start-up
//! scan, draining), the Prometheus text exposition, its own listener ([`listener`]) and the
//! recent history behind the status page's chart ([`history`]).
//!
//! The figures are always kept, whether or not `/metrics` is served: recording costs a few atomic
//! adds per request, and the status page reads them through `/api/metrics`.

pub(crate) mod class;
pub(crate) mod history;
pub(crate) mod listener;
mod pulled;
mod requests;

use std::{io, sync::Arc};

use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

pub(crate) use self::requests::RequestFigures;
use self::{history::History, pulled::Pulled};
use crate::{
    config::MetricsListen,
    lifecycle::Lifecycle,
    static_files::{StaticFiles, cache::CacheFigures},
    websocket::registry::{CLOSE_CODES, SocketRegistry},
};

/// Every figure of `/metrics`, and the registry that renders them.
pub(crate) struct Metrics {
    registry: Registry,
    requests: RequestFigures,
    stale_siblings: IntGauge,
    missing_siblings: IntGauge,
    sockets: Arc<SocketRegistry>,
    history: History,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the figures read when scraped, owned by the parts that keep them.
pub(crate) struct Sources {
    pub(crate) sockets: Arc<SocketRegistry>,
    /// `None` in `nginx` mode: no static files, no cache.
    pub(crate) static_files: Option<Arc<StaticFiles>>,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

impl Metrics {
    pub(crate) fn new(sources: Sources) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = RequestFigures::register(&registry)?;
        let stale_siblings = IntGauge::new(
            "tandem_static_stale_siblings",
            "Precompressed siblings that do not decode to their original, found by the start-up scan (never served).",
        )?;
        let missing_siblings = IntGauge::new(
            "tandem_static_missing_siblings",
            "Precompressed siblings a compressible file lacks, found by the start-up scan.",
        )?;
        registry.register(Box::new(stale_siblings.clone()))?;
        registry.register(Box::new(missing_siblings.clone()))?;
        register_sources(&registry, &sources)?;
        Ok(Self {
            registry,
            requests,
            stale_siblings,
            missing_siblings,
            sockets: sources.sockets,
            history: History::default(),
        })
    }

    /// The per-request figures, for the pipeline.
    pub(crate) fn requests(&self) -> &RequestFigures {
        &self.requests
    }

    /// Records what the start-up scan found (docs/reference.md §9).
    pub(crate) fn scanned(&self, stale: usize, missing: usize) {
        self.stale_siblings
            .set(i64::try_from(stale).unwrap_or(i64::MAX));
        self.missing_siblings
            .set(i64::try_from(missing).unwrap_or(i64::MAX));
    }

    /// WebSockets open now.
    pub(crate) fn open_sockets(&self) -> usize {
        self.sockets.open()
    }

    /// The JSON of `/api/metrics`: the last few minutes for the status page's chart.
    pub(crate) fn summary(&self) -> serde_json::Value {
        self.history.summary(self)
    }

    /// Every figure in the Prometheus text format, with its content type.
    pub(crate) fn exposition(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut out) {
            log::warn!("cannot render /metrics: {err}");
        }
        (encoder.format_type().to_string(), out)
    }
}

/// The figures read from their owners at each scrape.
fn register_sources(registry: &Registry, sources: &Sources) -> prometheus::Result<()> {
    let sockets = sources.sockets.clone();
    registry.register(Box::new(Pulled::gauge(
        "tandem_websockets_open",
        "WebSockets open now.",
        move || sockets.open() as f64,
    )?))?;
    let sockets = sources.sockets.clone();
    registry.register(Box::new(Pulled::counters(
        "tandem_websocket_closes_total",
        "WebSockets ended, by the close code tandem sent (other: a code the client chose; none: no close frame, the peer went away).",
        "code",
        &CLOSE_CODES,
        move || sockets.closes().map(|n| n as f64).to_vec(),
    )?))?;
    let lifecycle = sources.lifecycle.clone();
    registry.register(Box::new(Pulled::gauge(
        "tandem_draining",
        "1 from the first stop signal on (docs/reference.md §9), 0 while serving normally.",
        move || f64::from(u8::from(lifecycle.is_draining())),
    )?))?;
    if let Some(files) = &sources.static_files {
        register_cache(registry, files)?;
    }
    Ok(())
}

fn register_cache(registry: &Registry, files: &Arc<StaticFiles>) -> prometheus::Result<()> {
    let read = |files: &Arc<StaticFiles>, pick: fn(&CacheFigures) -> f64| {
        let files = files.clone();
        move || pick(&files.cache_figures())
    };
    registry.register(Box::new(Pulled::counter(
        "tandem_static_cache_hits_total",
        "Static lookups answered from the in-memory representation cache.",
        read(files, |f| f.hits as f64),
    )?))?;
    registry.register(Box::new(Pulled::counter(
        "tandem_static_cache_misses_total",
        "Static lookups that built their cache entry from the disk.",
        read(files, |f| f.misses as f64),
    )?))?;
    registry.register(Box::new(Pulled::gauge(
        "tandem_static_cache_bytes",
        "Bytes of file contents (originals, siblings, compressed copies) the cache holds now.",
        read(files, |f| f.bytes as f64),
    )?))?;
    registry.register(Box::new(Pulled::gauge(
        "tandem_static_cache_entries",
        "Request paths the cache remembers now.",
        read(files, |f| f.entries as f64),
    )?))?;
    Ok(())
}

/// The figures as the server runs them: the sampler behind `/api/metrics`, and `/metrics` on its
/// own listener when `metrics.listen` asks for one.
pub(crate) struct Exposure {
    pub(crate) metrics: Arc<Metrics>,
    /// The `/metrics` server, running; `None` with `metrics.listen = "off"`.
    pub(crate) server: Option<listener::Running>,
    _sampler: history::Sampler,
}

impl Exposure {
    /// Builds the figures, starts sampling them and, if asked, serves `/metrics`. Must run inside
    /// actix's runtime.
    pub(crate) fn start(listen: MetricsListen, sources: Sources) -> io::Result<Self> {
        let metrics = Arc::new(Metrics::new(sources).map_err(io::Error::other)?);
        let server = match listen {
            MetricsListen::Off => None,
            MetricsListen::At(addr) => Some(listener::Running::start(addr, metrics.clone())?),
        };
        Ok(Self {
            _sampler: history::Sampler::spawn(metrics.clone()),
            metrics,
            server,
        })
    }
}
