//! Serving the two document roots in `static.mode = "app"` (SPEC §5): negotiation between an
//! original and its precompressed siblings, validators, conditional and range requests,
//! cache policy, directories and the safety rules. A request that hits the in-memory cache
//! ([`cache`]) is answered from precomputed headers and bytes without touching the disk.

pub mod cache;
pub mod cache_control;
pub mod conditional;
pub mod entry;
pub mod resolve;
pub mod scan;

use std::{
    collections::HashSet,
    convert::Infallible,
    io::SeekFrom,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use actix_web::{
    HttpRequest, HttpResponse,
    body::{BodySize, BodyStream, BoxBody, MessageBody, SizedStream},
    http::{
        Method, StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    web::{self, Bytes},
};
use async_compression::{
    Level,
    tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader};
use tokio_util::io::ReaderStream;

use self::{
    cache::{Cache, Cached, Lookup},
    cache_control::CachePolicy,
    conditional::{RangeRequest, none_match, parse_range, strong_match},
    entry::{Builder, FileEntry, Kind, Representation, Stamp, encoding_index, etag_of},
    resolve::{Refusal, resolve},
};
use crate::{
    config::{ConfigError, Encoding, StaticSettings},
    negotiate::choose_encoding,
    problem::Problem,
};

const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");

/// The static file service: both roots, the configured encodings, and the cache.
pub struct StaticFiles {
    htdocs: PathBuf,
    public: PathBuf,
    encodings: Vec<Encoding>,
    policy: CachePolicy,
    cache: Cache,
    warned: Mutex<HashSet<PathBuf>>,
}

impl StaticFiles {
    /// Resolves both roots to their real paths: every file served must stay under them.
    pub fn new(settings: &StaticSettings) -> Result<Self, ConfigError> {
        let canonical = |key: &str, path: &PathBuf| {
            std::fs::canonicalize(path).map_err(|err| {
                ConfigError::new(format!(
                    "configuration key `{key}` points to {}, which cannot be opened: {err}",
                    path.display()
                ))
            })
        };
        Ok(Self {
            htdocs: canonical("static.htdocs", &settings.htdocs)?,
            public: canonical("static.public", &settings.public)?,
            encodings: settings.encodings.clone(),
            policy: CachePolicy::from_settings(settings),
            cache: Cache::default(),
            warned: Mutex::new(HashSet::new()),
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// `htdocs/404.html` for browsers, from the cache like any file (so edits show within the
    /// cache's bound, and a 404 costs no disk read); `None` without one, or when it is too large
    /// to keep in memory.
    pub(crate) fn not_found_page(&self) -> Option<Bytes> {
        let cached = self.lookup("/404.html").ok()?;
        match &cached.entry.kind {
            Kind::File(file) => file.identity.body.clone(),
            Kind::NotFound | Kind::Redirect(_) => None,
        }
    }

    /// The entry for a raw request path, from the cache or freshly built from the disk.
    ///
    /// A miss stats and reads small files on the worker thread, like nginx does: they are local
    /// files of at most [`entry::MAX_CACHED_FILE_BYTES`], and a hit never does it again.
    /// Errors are boxed: they are the cold path, and `Problem` is large.
    fn lookup(&self, raw_path: &str) -> Result<Arc<Cached>, Box<Problem>> {
        if let Lookup::Fresh(cached) = self.cache.get(raw_path) {
            return Ok(cached);
        }
        let target = resolve(raw_path).map_err(|refusal| {
            Box::new(match refusal {
                Refusal::BadRequest(why) => Problem::bad_request(why),
                Refusal::Hidden => Problem::not_found("no route or file matches this path"),
            })
        })?;
        let entry = Builder {
            htdocs: &self.htdocs,
            public: &self.public,
            encodings: &self.encodings,
            policy: &self.policy,
            warned: &self.warned,
        }
        .build(&target);
        Ok(self.cache.insert(raw_path, entry))
    }
}

/// The handler behind every path no route claims.
pub async fn serve(
    req: HttpRequest,
    files: web::Data<StaticFiles>,
) -> Result<HttpResponse, Problem> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(Problem::method_not_allowed("GET, HEAD"));
    }
    // A large file can change between lookup and open; the entry is rebuilt and tried again.
    for _ in 0..3 {
        let cached = files.lookup(req.path()).map_err(|p| *p)?;
        match &cached.entry.kind {
            Kind::NotFound => {
                return Err(Problem::not_found("no route or file matches this path"));
            }
            Kind::Redirect(url) => {
                let location = match req.uri().query() {
                    Some(query) => format!("{url}?{query}"),
                    None => url.clone(),
                };
                return Ok(HttpResponse::MovedPermanently()
                    .insert_header((header::LOCATION, location))
                    .finish());
            }
            Kind::File(file) => {
                if let Some(response) = respond(&files, &req, &cached, file).await? {
                    return Ok(response);
                }
                files.cache.remove(req.path());
            }
        }
    }
    Err(Problem::service_unavailable(
        "the file kept changing while it was being read; try again",
    ))
}

fn header_str(req: &HttpRequest, name: HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Answers for one file. `None` when the disk no longer matches the entry.
async fn respond(
    files: &StaticFiles,
    req: &HttpRequest,
    cached: &Cached,
    file: &FileEntry,
) -> Result<Option<HttpResponse>, Problem> {
    let accept = header_str(req, header::ACCEPT_ENCODING);
    let chosen = choose_encoding(accept, &files.encodings, |e| file.offers(e));
    let mut rep = &file.identity;
    // Set when the representation is compressed while it is sent (large files only).
    let mut streamed = None;
    if let Some(encoding) = chosen {
        if let Some(sibling) = file.sibling(encoding) {
            rep = sibling;
        } else if let Some(body) = &file.identity.body {
            if let Some(compressed) = compressed_copy(cached, file, encoding, body).await {
                rep = compressed;
            }
        } else {
            streamed = Some(encoding);
        }
    }
    let streamed_etag = streamed.map(|e| etag_of(&file.identity.stamp, &format!("-{}", e.token())));
    let etag = streamed_etag.as_ref().unwrap_or(&rep.etag);
    let etag_str = etag.to_str().unwrap_or_default();

    // RFC 9110 §13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since.
    let since = |name| header_str(req, name).and_then(|v| httpdate::parse_http_date(v).ok());
    if let Some(list) = header_str(req, header::IF_MATCH) {
        if !strong_match(list, etag_str) {
            return Err(precondition_failed());
        }
    } else if since(header::IF_UNMODIFIED_SINCE).is_some_and(|date| file.modified > date) {
        return Err(precondition_failed());
    }
    let not_modified = match header_str(req, header::IF_NONE_MATCH) {
        Some(list) => none_match(list, etag_str),
        None => since(header::IF_MODIFIED_SINCE).is_some_and(|date| file.modified <= date),
    };
    if not_modified {
        let mut res = HttpResponse::NotModified();
        res.insert_header((header::ETAG, etag.clone()))
            .insert_header((header::LAST_MODIFIED, file.last_modified.clone()))
            .insert_header((header::CACHE_CONTROL, file.cache_control.clone()))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, NOSNIFF));
        if file.vary {
            res.insert_header((header::VARY, ACCEPT_ENCODING));
        }
        return Ok(Some(res.finish()));
    }

    let head = req.method() == Method::HEAD;
    let len = rep.len();
    let range = if head || streamed.is_some() {
        None
    } else {
        requested_range(req, file, etag_str, len).map_err(|p| *p)?
    };

    let mut res = HttpResponse::build(if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    });
    res.insert_header((header::CONTENT_TYPE, file.content_type.clone()))
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::LAST_MODIFIED, file.last_modified.clone()))
        .insert_header((header::CACHE_CONTROL, file.cache_control.clone()))
        .insert_header((header::ACCEPT_RANGES, BYTES))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, NOSNIFF));
    if file.vary {
        res.insert_header((header::VARY, ACCEPT_ENCODING));
    }
    if let Some(encoding) = streamed.or(rep.encoding) {
        res.insert_header((
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.token()),
        ));
    }
    let (start, end) = match range {
        Some((start, end)) => {
            res.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")));
            (start, end)
        }
        None => (0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };

    if let Some(encoding) = streamed {
        if head {
            return Ok(Some(res.finish()));
        }
        let Some(file_handle) = open_unchanged(&rep.path, &rep.stamp).await else {
            return Ok(None);
        };
        return Ok(Some(res.body(compressing_stream(encoding, file_handle))));
    }
    if let Some(body) = &rep.body {
        // HEAD: actix sends the length and drops the bytes; nothing is read either way.
        let body = if range.is_some() {
            body.slice(start as usize..=end as usize)
        } else {
            body.clone()
        };
        return Ok(Some(res.body(body)));
    }
    if head {
        return Ok(Some(res.body(HeadBody(count))));
    }
    let Some(mut file_handle) = open_unchanged(&rep.path, &rep.stamp).await else {
        return Ok(None);
    };
    if start > 0 && file_handle.seek(SeekFrom::Start(start)).await.is_err() {
        return Ok(None);
    }
    let stream = ReaderStream::with_capacity(file_handle.take(count), 64 * 1024);
    Ok(Some(res.body(SizedStream::new(count, stream))))
}

fn precondition_failed() -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "the file does not match the request's If-Match or If-Unmodified-Since",
    )
}

/// The byte range to send, if the request asks for one that `If-Range` still allows.
fn requested_range(
    req: &HttpRequest,
    file: &FileEntry,
    etag: &str,
    len: u64,
) -> Result<Option<(u64, u64)>, Box<Problem>> {
    let Some(range) = header_str(req, header::RANGE) else {
        return Ok(None);
    };
    if let Some(validator) = req.headers().get(header::IF_RANGE) {
        let validator = validator.to_str().unwrap_or_default().trim();
        let still_valid = if validator.starts_with('"') || validator.starts_with("W/") {
            strong_match(validator, etag)
        } else {
            httpdate::parse_http_date(validator).is_ok_and(|date| date == file.modified)
        };
        if !still_valid {
            return Ok(None);
        }
    }
    match parse_range(range, len) {
        RangeRequest::Ignore => Ok(None),
        RangeRequest::Satisfiable { start, end } => Ok(Some((start, end))),
        RangeRequest::Unsatisfiable => Err(Box::new(
            Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range is outside the {len} bytes of this representation"),
            )
            .with_header(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .unwrap_or_else(|_| HeaderValue::from_static("bytes */0")),
            ),
        )),
    }
}

/// The cached body compressed in `encoding`, made once per file version. `None` when
/// compressing does not make it smaller (tiny files): the original is then the better answer.
async fn compressed_copy<'f>(
    cached: &Cached,
    file: &'f FileEntry,
    encoding: Encoding,
    body: &Bytes,
) -> Option<&'f Representation> {
    let slot = &file.compressed[encoding_index(encoding)];
    if let Some(done) = slot.get() {
        return done.as_ref();
    }
    let mut out = Vec::with_capacity(body.len() / 2);
    let result = match encoding {
        // Moderate levels: this runs on a worker thread, once per file version.
        Encoding::Br => {
            BrotliEncoder::with_quality(&body[..], Level::Precise(5))
                .read_to_end(&mut out)
                .await
        }
        Encoding::Zstd => {
            ZstdEncoder::with_quality(&body[..], Level::Precise(6))
                .read_to_end(&mut out)
                .await
        }
        Encoding::Gzip => {
            GzipEncoder::with_quality(&body[..], Level::Precise(6))
                .read_to_end(&mut out)
                .await
        }
    };
    let rep = match result {
        Ok(_) if out.len() < body.len() => Some(Representation {
            encoding: Some(encoding),
            path: file.identity.path.clone(),
            stamp: file.identity.stamp,
            etag: etag_of(&file.identity.stamp, &format!("-{}", encoding.token())),
            body: Some(Bytes::from(out)),
        }),
        Ok(_) => None,
        Err(err) => {
            log::warn!(
                "cannot compress {} with {}: {err}",
                file.identity.path.display(),
                encoding.token()
            );
            None
        }
    };
    if slot.set(rep).is_ok()
        && let Some(Some(made)) = slot.get()
    {
        cached.charge(made.len() as usize);
    }
    slot.get()?.as_ref()
}

/// Opens `path` and checks it is still the file the entry describes.
async fn open_unchanged(path: &PathBuf, stamp: &Stamp) -> Option<tokio::fs::File> {
    let file = tokio::fs::File::open(path).await.ok()?;
    let meta = file.metadata().await.ok()?;
    let now = Stamp {
        len: meta.len(),
        modified: meta.modified().ok()?,
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
        is_file: meta.is_file(),
    };
    (now == *stamp).then_some(file)
}

/// A large file compressed while it is sent (no exact length, so no ranges).
fn compressing_stream(encoding: Encoding, file: tokio::fs::File) -> BoxBody {
    let reader = BufReader::with_capacity(64 * 1024, file);
    match encoding {
        Encoding::Br => BoxBody::new(BodyStream::new(ReaderStream::new(
            BrotliEncoder::with_quality(reader, Level::Precise(4)),
        ))),
        Encoding::Zstd => BoxBody::new(BodyStream::new(ReaderStream::new(
            ZstdEncoder::with_quality(reader, Level::Precise(3)),
        ))),
        Encoding::Gzip => BoxBody::new(BodyStream::new(ReaderStream::new(
            GzipEncoder::with_quality(reader, Level::Precise(6)),
        ))),
    }
}

/// The body of a HEAD answer for a file on disk: its length, and no reading at all.
struct HeadBody(u64);

impl MessageBody for HeadBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.0)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(None)
    }
}
