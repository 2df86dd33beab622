//! Serving the two document roots in `static.mode = "app"` (`docs/reference.md §5`): negotiation between an
//! original and its precompressed siblings, validators, conditional and range requests,
//! cache policy, directories and the safety rules. A request that hits the in-memory cache
//! ([`cache`]) is answered from precomputed headers and bytes without touching the disk, and
//! no request compresses more than a file already held in memory (once per version).

pub(crate) mod cache;
pub(crate) mod cache_control;
pub(crate) mod conditional;
pub(crate) mod entry;
pub(crate) mod freshness;
pub(crate) mod headers;
pub(crate) mod resolve;
pub mod scan;
pub(crate) mod stamp;
pub(crate) mod walk;

use std::{
    convert::Infallible,
    io::SeekFrom,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use actix_web::{
    HttpRequest, HttpResponse,
    body::{BodySize, BoxBody, MessageBody, SizedStream},
    http::{
        Method, StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    web::{self, Bytes},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use self::{
    cache::{Cache, Cached, Lookup},
    cache_control::CachePolicy,
    conditional::{RangeRequest, none_match, parse_range, strong_match},
    entry::{Builder, FileEntry, Kind, Representation, etag_of},
    freshness::Verdicts,
    resolve::{Refusal, resolve},
    stamp::Stamp,
};
use crate::{
    config::{ConfigError, StaticSettings},
    encoding::{Effort, Encoding, compress},
    negotiate::choose_encoding,
    problem::Problem,
};

/// The static file service: both roots, the configured encodings, and the cache.
pub struct StaticFiles {
    htdocs: PathBuf,
    public: PathBuf,
    encodings: Vec<Encoding>,
    policy: CachePolicy,
    cache: Cache,
    verdicts: Verdicts,
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
            // A few verdicts per cached path (one per sibling), forgotten together past that.
            verdicts: Verdicts::bounded(3 * cache::MAX_ENTRIES),
        })
    }

    /// The bytes of `htdocs/404.html`, for the error renderer: from the cache, with the same
    /// freshness as any file, so no request reads the disk for it. `None` when there is no such
    /// file, or it is over [`entry::MAX_CACHED_FILE_BYTES`] and so not kept in memory.
    pub fn not_found_page(&self) -> Option<Bytes> {
        let cached = self.lookup("/404.html", Instant::now()).ok()?;
        match &cached.entry.kind {
            Kind::File(file) => file.identity.body.clone(),
            _ => None,
        }
    }

    /// The cache's hits, misses and size, for `/metrics` (docs/reference.md §4).
    pub(crate) fn cache_figures(&self) -> cache::CacheFigures {
        self.cache.figures()
    }

    /// The entry for a raw request path, from the cache or freshly built from the disk.
    ///
    /// A miss stats and reads small files on the worker thread, like nginx does: they are local
    /// files of at most [`entry::MAX_CACHED_FILE_BYTES`], and a hit never does it again.
    /// Errors are boxed: they are the cold path, and `Problem` is large.
    fn lookup(&self, raw_path: &str, now: Instant) -> Result<Arc<Cached>, Box<Problem>> {
        if let Lookup::Fresh(cached) = self.cache.get(raw_path, now) {
            self.cache.count_hit();
            return Ok(cached);
        }
        let target = resolve(raw_path).map_err(|refusal| {
            Box::new(match refusal {
                Refusal::BadRequest(why) => Problem::bad_request(why),
                Refusal::Hidden => Problem::not_found("no route or file matches this path"),
            })
        })?;
        // Every spelling of a path (`/a.txt`, `/%61.txt`, `//a.txt`) shares one entry, so a file
        // is read, its siblings decoded and its compressed copies made once, not once per
        // spelling a client cares to invent.
        let key = target.cache_key();
        let cached = match self.cache.get(&key, now) {
            Lookup::Fresh(cached) => {
                self.cache.count_hit();
                cached
            }
            Lookup::Stale => {
                self.cache.count_miss();
                let entry = Builder {
                    htdocs: &self.htdocs,
                    public: &self.public,
                    encodings: &self.encodings,
                    policy: &self.policy,
                    verdicts: &self.verdicts,
                }
                .build(&target);
                self.cache.insert(&key, entry)
            }
        };
        self.cache.remember(raw_path, cached.clone());
        Ok(cached)
    }
}

/// The handler behind every path no route claims.
pub async fn serve(
    req: HttpRequest,
    files: web::Data<StaticFiles>,
) -> Result<HttpResponse, Problem> {
    answer(&req, &files, Instant::now()).await
}

/// The static files' answer to `req`, which arrived at `now`; the pipeline calls it directly for
/// paths it knows no route claims.
pub(crate) async fn answer(
    req: &HttpRequest,
    files: &StaticFiles,
    now: Instant,
) -> Result<HttpResponse, Problem> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(Problem::method_not_allowed("GET, HEAD"));
    }
    // A large file can change between lookup and open; the entry is rebuilt and tried again.
    for _ in 0..3 {
        let cached = files.lookup(req.path(), now).map_err(|p| *p)?;
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
                if let Some(response) = respond(files, req, &cached, file).await? {
                    return Ok(response);
                }
                cached.outdate();
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
    let rep = files.representation(req, cached, file);
    let etag: &str = &rep.etag;
    check_preconditions(req, file, etag).map_err(|p| *p)?;
    let prepared = rep.headers(file);
    if is_not_modified(req, file, etag) {
        return Ok(Some(prepared.not_modified()));
    }
    let head = req.method() == Method::HEAD;
    let len = rep.len();
    let range = if head {
        None
    } else {
        requested_range(req, file, etag, len).map_err(|p| *p)?
    };
    let (start, end) = range.unwrap_or((0, len.saturating_sub(1)));
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = match &rep.body {
        // HEAD: actix sends the length and drops the bytes; nothing is read either way.
        Some(body) => BoxBody::new(match range {
            Some(_) => body.slice(start as usize..=end as usize),
            None => body.clone(),
        }),
        None if head => BoxBody::new(HeadBody(count)),
        // Boxed: opening a file is the rare path (files over the cache's limit), and its future
        // would otherwise make every request's future too large for the allocator's fast path.
        None => match Box::pin(stream_from_disk(rep, start, count)).await {
            Some(stream) => stream,
            None => return Ok(None),
        },
    };
    let mut res = prepared.full(range.is_some(), body);
    if range.is_some() {
        res.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                .unwrap_or_else(|_| HeaderValue::from_static("bytes */0")),
        );
    }
    Ok(Some(res))
}

impl StaticFiles {
    /// The representation to send: the best encoding the client accepts that this file has as a
    /// fresh sibling or (small files) as a compressed copy, else the original.
    fn representation<'f>(
        &self,
        req: &HttpRequest,
        cached: &Cached,
        file: &'f FileEntry,
    ) -> &'f Representation {
        let accept = header_str(req, header::ACCEPT_ENCODING);
        let Some(encoding) = choose_encoding(accept, &self.encodings, |e| file.offers(e)) else {
            return &file.identity;
        };
        if let Some(sibling) = file.sibling(encoding) {
            return sibling;
        }
        compressed_copy(cached, file, encoding).unwrap_or(&file.identity)
    }
}

/// RFC 9110 §13.2.2 order: `If-Match`, else `If-Unmodified-Since`; a failure is 412.
fn check_preconditions(
    req: &HttpRequest,
    file: &FileEntry,
    etag: &str,
) -> Result<(), Box<Problem>> {
    let failed = match header_str(req, header::IF_MATCH) {
        Some(list) => !strong_match(list, etag),
        None => since(req, header::IF_UNMODIFIED_SINCE).is_some_and(|date| file.modified > date),
    };
    if failed {
        return Err(Box::new(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "the file does not match the request's If-Match or If-Unmodified-Since",
        )));
    }
    Ok(())
}

/// `If-None-Match`, else `If-Modified-Since`.
fn is_not_modified(req: &HttpRequest, file: &FileEntry, etag: &str) -> bool {
    match header_str(req, header::IF_NONE_MATCH) {
        Some(list) => none_match(list, etag),
        None => since(req, header::IF_MODIFIED_SINCE).is_some_and(|date| file.modified <= date),
    }
}

fn since(req: &HttpRequest, name: HeaderName) -> Option<SystemTime> {
    header_str(req, name).and_then(|v| httpdate::parse_http_date(v).ok())
}

/// `count` bytes of a large representation from `start`, read while sent. `None` when the file
/// on disk is no longer the one the entry describes.
async fn stream_from_disk(rep: &Representation, start: u64, count: u64) -> Option<BoxBody> {
    let mut file = open_unchanged(&rep.path, &rep.stamp).await?;
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await.ok()?;
    }
    let stream = ReaderStream::with_capacity(file.take(count), 64 * 1024);
    Some(BoxBody::new(SizedStream::new(count, stream)))
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

/// The cached body compressed in `encoding`, made once per file version: concurrent requests
/// wait for the one compressing instead of compressing too. `None` when the file is not held in
/// memory, or when compressing does not make it smaller (tiny files): the original is then the
/// better answer.
fn compressed_copy<'f>(
    cached: &Cached,
    file: &'f FileEntry,
    encoding: Encoding,
) -> Option<&'f Representation> {
    let body = file.identity.body.as_ref()?;
    let made = file.compressed[encoding.index()].get_or_init(|| {
        let out = match compress(encoding, Effort::OnTheFly, body) {
            Ok(out) => out,
            Err(err) => {
                log::warn!(
                    "cannot compress {} with {}: {err}",
                    file.identity.path.display(),
                    encoding.token()
                );
                return None;
            }
        };
        if out.len() >= body.len() {
            return None;
        }
        cached.charge(out.len());
        Some(Representation {
            encoding: Some(encoding),
            path: file.identity.path.clone(),
            stamp: file.identity.stamp,
            etag: etag_of(&file.identity.stamp, &format!("-{}", encoding.token())),
            body: Some(Bytes::from(out)),
            prepared: Default::default(),
        })
    });
    made.as_ref()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Static files over two empty roots in a temporary directory, and the `htdocs` root.
    fn empty_roots() -> (tempfile::TempDir, PathBuf, StaticFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (htdocs, public) = (dir.path().join("htdocs"), dir.path().join("public"));
        std::fs::create_dir(&htdocs).expect("htdocs");
        std::fs::create_dir(&public).expect("public");
        let settings = StaticSettings {
            htdocs: htdocs.clone(),
            public,
            ..StaticSettings::default()
        };
        let files = StaticFiles::new(&settings).expect("roots");
        (dir, htdocs, files)
    }

    #[test]
    fn the_not_found_page_comes_from_the_cache_and_follows_the_disk() {
        let (_dir, htdocs, files) = empty_roots();
        assert_eq!(files.not_found_page(), None);

        // A missing page is remembered like any missing file, and revalidated like one.
        let page = htdocs.join("404.html");
        std::fs::write(&page, "<h1>not here</h1>").expect("write 404.html");
        std::thread::sleep(Duration::from_millis(cache::REVALIDATE_AFTER_MS + 100));
        assert_eq!(
            files.not_found_page().as_deref(),
            Some(&b"<h1>not here</h1>"[..])
        );

        // Served from memory: removing the file changes nothing until the entry is revalidated...
        std::fs::remove_file(&page).expect("remove 404.html");
        assert_eq!(
            files.not_found_page().as_deref(),
            Some(&b"<h1>not here</h1>"[..])
        );
        // ...which happens within a second, as for every file.
        std::thread::sleep(Duration::from_millis(cache::REVALIDATE_AFTER_MS + 100));
        assert_eq!(files.not_found_page(), None);
    }

    #[test]
    fn every_spelling_of_a_path_shares_one_entry() {
        let (_dir, htdocs, files) = empty_roots();
        std::fs::write(htdocs.join("notes.txt"), "notes ".repeat(1000)).expect("write");
        let first = files.lookup("/notes.txt", Instant::now()).expect("plain");
        for spelling in ["/%6eotes.txt", "//notes.txt", "/notes%2Etxt"] {
            let other = files.lookup(spelling, Instant::now()).expect(spelling);
            assert!(Arc::ptr_eq(&first, &other), "{spelling}");
        }
        // Charged once, not once per spelling.
        assert_eq!(files.cache.bytes(), 6000);
    }

    #[test]
    fn an_entry_is_revalidated_by_the_time_its_request_arrived() {
        let (_dir, htdocs, files) = empty_roots();
        std::fs::write(htdocs.join("notes.txt"), "first").expect("write");
        let arrived = Instant::now();
        let first = files.lookup("/notes.txt", arrived).expect("first");
        std::fs::write(htdocs.join("notes.txt"), "second, longer").expect("rewrite");

        // A request that arrived within the interval gets the entry as it was, without a stat...
        let soon = arrived + Duration::from_millis(cache::REVALIDATE_AFTER_MS / 2);
        let again = files.lookup("/notes.txt", soon).expect("soon");
        assert!(Arc::ptr_eq(&first, &again));
        // ...and one that arrived after it makes the cache look at the disk again.
        let later = arrived + Duration::from_millis(cache::REVALIDATE_AFTER_MS + 100);
        let second = files.lookup("/notes.txt", later).expect("later");
        let body = match &second.entry.kind {
            Kind::File(file) => file.identity.body.clone(),
            _ => None,
        };
        assert_eq!(body.as_deref(), Some(&b"second, longer"[..]));
    }
}
