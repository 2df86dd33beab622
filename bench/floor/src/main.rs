//! The framework floor for `bench/static.sh` and `bench/layer_cost.sh`: a bare actix-web server
//! that answers the rows tandem's static-file benchmark measures (docs/reference.md §5) with the
//! same bytes and the same representation headers, prepared in memory at start. Whatever tandem
//! costs above this per request is tandem's own, not the framework's.
//!
//!     floor --htdocs DIR [--port P] [--workers N] [--layers N]
//!     floor --files DIR  [--port P] [--workers N] [--layers N]
//!
//! `--htdocs` serves `/page.html`, `/app.js` and `/image.png` from those files of `DIR` and their
//! `.br` siblings where they have one (304 on a matching `If-None-Match`), and a problem+json 404
//! for every other path. `--files` serves `DIR` through
//! `actix_files::Files` instead, for the README's comparison. `--layers N` wraps N pass-through
//! `from_fn` middlewares around either, to price a layer on its own.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::UNIX_EPOCH,
};

use actix_files::Files;
use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::header::{self, HeaderValue},
    middleware::{Next, from_fn},
    rt::net::TcpStream,
    web::{self, Bytes},
};

/// tandem's 404 body, byte for byte in length; tandem writes a fresh request ID where the floor
/// repeats a fixed one (making the ID is part of tandem's own cost).
const NOT_FOUND: &str = "{\"detail\":\"no route or file matches this path\",\
    \"request_id\":\"7ca519c2-d9ef-4bbb-b027-6c5c496d36c0\",\"status\":404,\
    \"title\":\"Not Found\",\"type\":\"about:blank\"}";

/// The most pass-through layers `--layers` accepts: tandem has seven today.
const MAX_LAYERS: usize = 8;

/// What the command line asked for.
struct Options {
    port: u16,
    workers: usize,
    layers: usize,
    content: Content,
}

enum Content {
    /// The benchmark's files and the 404 answered from memory.
    Memory(PathBuf),
    /// A directory served by `actix_files::Files`.
    Files(PathBuf),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut port = 8080;
    let mut workers = 1;
    let mut layers = 0;
    let mut content = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = number(&flag, &value()?)?,
            "--workers" => workers = number(&flag, &value()?)?,
            "--layers" => layers = number(&flag, &value()?)?,
            "--htdocs" => content = Some(Content::Memory(value()?.into())),
            "--files" => content = Some(Content::Files(value()?.into())),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if layers > MAX_LAYERS {
        return Err(format!("--layers is at most {MAX_LAYERS}, got {layers}"));
    }
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let content = content.ok_or("one of --htdocs DIR or --files DIR is required")?;
    Ok(Options {
        port,
        workers,
        layers,
        content,
    })
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} takes a whole number, got {value:?}"))
}

/// The files the benchmark's rows ask for, with their content types; each is sent as br when
/// it has a `.br` sibling and the client accepts br, as tandem sends it.
const FILES: [(&str, &str); 3] = [
    ("page.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("image.png", "image/png"),
];

/// One file with everything tandem's cache holds for it: its bodies and header values.
struct Page {
    path: String,
    content_type: HeaderValue,
    identity: Bytes,
    identity_etag: HeaderValue,
    /// The `.br` sibling, when the file has one.
    brotli: Option<(Bytes, HeaderValue)>,
    last_modified: HeaderValue,
}

/// Every file of [`FILES`], looked up by request path.
struct Pages(Vec<Page>);

impl Pages {
    fn load(htdocs: &Path) -> Result<Self, String> {
        FILES
            .iter()
            .map(|(name, content_type)| Page::load(htdocs, name, content_type))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn get(&self, path: &str) -> Option<&Page> {
        self.0.iter().find(|page| page.path == path)
    }
}

impl Page {
    fn load(htdocs: &Path, name: &str, content_type: &'static str) -> Result<Self, String> {
        let read = |name: &str| {
            let path = htdocs.join(name);
            let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let body = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok::<_, String>((Bytes::from(body), meta))
        };
        let (identity, identity_meta) = read(name)?;
        let sibling = format!("{name}.br");
        let brotli = if htdocs.join(&sibling).exists() {
            let (body, meta) = read(&sibling)?;
            Some((body, etag(&meta)?))
        } else {
            None
        };
        let modified = identity_meta
            .modified()
            .map_err(|e| format!("{name} has no modification time: {e}"))?;
        Ok(Self {
            path: format!("/{name}"),
            content_type: HeaderValue::from_static(content_type),
            identity,
            identity_etag: etag(&identity_meta)?,
            brotli,
            last_modified: value(httpdate::fmt_http_date(modified))?,
        })
    }
}

/// The same shape of entity tag tandem derives: modification time, length, inode.
fn etag(meta: &fs::Metadata) -> Result<HeaderValue, String> {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    value(format!("\"{nanos:x}-{:x}-{:x}\"", meta.len(), meta.ino()))
}

fn value(text: String) -> Result<HeaderValue, String> {
    HeaderValue::try_from(text).map_err(|e| format!("not a header value: {e}"))
}

/// The whole of the floor's "static file server": a path comparison per file, one comparison
/// per header it reads.
fn answer(req: &HttpRequest, pages: &Pages) -> HttpResponse {
    let Some(page) = pages.get(req.path()) else {
        return HttpResponse::NotFound()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .content_type("application/problem+json")
            .body(NOT_FOUND);
    };
    let accepts_brotli = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("br"));
    let (body, etag, brotli) = match &page.brotli {
        Some((body, etag)) if accepts_brotli => (body, etag, true),
        _ => (&page.identity, &page.identity_etag, false),
    };
    let fresh = req.headers().get(header::IF_NONE_MATCH) == Some(etag);
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.clone()))
        .insert_header((header::LAST_MODIFIED, page.last_modified.clone()))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    if page.brotli.is_some() {
        res.insert_header((header::VARY, HeaderValue::from_static("accept-encoding")));
    }
    if fresh {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, page.content_type.clone()))
        .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
    if brotli {
        res.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("br")));
    }
    res.body(body.clone())
}

/// A layer that does nothing but pass the request on: the price of `from_fn` itself.
async fn pass(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    next.call(req).await
}

/// The app with `$n` pass-through layers; each count is its own type, hence a macro.
macro_rules! layered {
    ($app:expr, 0) => { $app };
    ($app:expr, $n:tt $(, $rest:tt)*) => { layered!($app $(, $rest)*).wrap(from_fn(pass)) };
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("floor: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("floor: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What each worker's app serves; cloned into every worker.
#[derive(Clone)]
enum Serving {
    Memory(Arc<Pages>),
    Files(PathBuf),
}

impl Serving {
    fn app(
        &self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        > + use<>,
    > {
        match self {
            Serving::Memory(pages) => {
                let pages = pages.clone();
                App::new().default_service(web::to(move |req: HttpRequest| {
                    let res = answer(&req, &pages);
                    async move { res }
                }))
            }
            Serving::Files(root) => {
                App::new().service(Files::new("/", root).use_etag(true).use_last_modified(true))
            }
        }
    }
}

/// Starts the server with `$app` as each worker's app, set up as tandem sets up its own.
macro_rules! start {
    ($app:expr, $port:expr, $workers:expr) => {
        HttpServer::new($app)
            .workers($workers)
            .on_connect(|conn, _| {
                // As tandem does: without it a body waits behind its head for Nagle (~40 ms).
                if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
                    let _ = tcp.set_nodelay(true);
                }
            })
            .bind(("127.0.0.1", $port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", $port))?
            .run()
    };
}

#[actix_web::main]
async fn serve(options: Options) -> Result<(), String> {
    let Options {
        port,
        workers,
        layers,
        content,
    } = options;
    let serving = match content {
        Content::Memory(htdocs) => Serving::Memory(Arc::new(Pages::load(&htdocs)?)),
        Content::Files(root) => Serving::Files(root),
    };
    let s = serving;
    let server = match layers {
        0 => start!(move || layered!(s.app(), 0), port, workers),
        1 => start!(move || layered!(s.app(), 1, 0), port, workers),
        2 => start!(move || layered!(s.app(), 2, 1, 0), port, workers),
        3 => start!(move || layered!(s.app(), 3, 2, 1, 0), port, workers),
        4 => start!(move || layered!(s.app(), 4, 3, 2, 1, 0), port, workers),
        5 => start!(move || layered!(s.app(), 5, 4, 3, 2, 1, 0), port, workers),
        6 => start!(
            move || layered!(s.app(), 6, 5, 4, 3, 2, 1, 0),
            port,
            workers
        ),
        7 => start!(
            move || layered!(s.app(), 7, 6, 5, 4, 3, 2, 1, 0),
            port,
            workers
        ),
        _ => start!(
            move || layered!(s.app(), 8, 7, 6, 5, 4, 3, 2, 1, 0),
            port,
            workers
        ),
    };
    server.await.map_err(|e| format!("server stopped: {e}"))
}
