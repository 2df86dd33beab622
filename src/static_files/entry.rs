//! What a request path means on disk right now: a file with its representations (the original
//! and its fresh `.br`/`.zst`/`.gz` siblings) and precomputed headers, a directory to redirect
//! into, or nothing (`docs/reference.md §5` "Encodings", "Headers", "Directories", "Safety").

use std::{
    fs,
    path::{Component, Path, PathBuf},
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{http::header::HeaderValue, web::Bytes};
use bytestring::ByteString;

use super::{
    cache_control::{CachePolicy, content_type},
    freshness::Verdicts,
    headers::{Fields, Prepared, PreparedSlot},
    resolve::{Root, Target},
    stamp::Stamp,
};
use crate::encoding::{Encoding, is_compressible_file, sibling_path};

/// Files up to this size are held in memory (and compressed on the fly when they have no
/// sibling); larger ones are streamed from disk as they are.
pub const MAX_CACHED_FILE_BYTES: u64 = 1 << 20;

/// A path an entry depends on, and what it looked like when the entry was built.
#[derive(Debug)]
pub struct Watched {
    path: PathBuf,
    stamp: Option<Stamp>,
}

impl Watched {
    fn now(path: PathBuf) -> Self {
        let stamp = Stamp::of(&path);
        Self { path, stamp }
    }

    pub fn unchanged(&self) -> bool {
        Stamp::of(&self.path) == self.stamp
    }
}

pub struct Entry {
    pub kind: Kind,
    pub watched: Vec<Watched>,
}

pub enum Kind {
    NotFound,
    /// A directory with an `index.html`, asked for without the trailing slash: its URL.
    Redirect(String),
    File(Box<FileEntry>),
}

/// One way of sending a file: the original or one of its encodings.
pub struct Representation {
    pub encoding: Option<Encoding>,
    pub path: PathBuf,
    pub stamp: Stamp,
    pub etag: ByteString,
    /// The whole representation, for files small enough to keep.
    pub body: Option<Bytes>,
    /// Its response headers, made once.
    pub prepared: PreparedSlot,
}

impl Representation {
    /// Its response headers, made on first use.
    pub(crate) fn headers(&self, file: &FileEntry) -> &Prepared {
        self.prepared.get(|| Fields {
            etag: &self.etag,
            encoding: self.encoding,
            content_type: &file.content_type,
            last_modified: &file.last_modified,
            cache_control: &file.cache_control,
            vary: file.vary,
        })
    }

    pub fn len(&self) -> u64 {
        self.body
            .as_ref()
            .map_or(self.stamp.len, |b| b.len() as u64)
    }
}

pub struct FileEntry {
    pub content_type: HeaderValue,
    pub cache_control: HeaderValue,
    pub last_modified: HeaderValue,
    /// Last-Modified at the one-second precision HTTP dates have.
    pub modified: SystemTime,
    /// `Vary: Accept-Encoding` belongs on every answer: the file has siblings or is compressible.
    pub vary: bool,
    pub identity: Representation,
    /// Fresh siblings (decoding to the original) in configured encodings.
    pub siblings: Vec<Representation>,
    /// Compressible, held in memory and without any fresh sibling: compressed by tandem itself,
    /// once per version.
    pub on_the_fly: bool,
    /// On-the-fly compressed copies of a cached body, made on first demand, by
    /// `Encoding::ALL` index. `None` inside: compression did not make it smaller.
    pub compressed: [OnceLock<Option<Representation>>; 3],
}

impl FileEntry {
    pub fn offers(&self, encoding: Encoding) -> bool {
        self.on_the_fly || self.sibling(encoding).is_some()
    }

    pub fn sibling(&self, encoding: Encoding) -> Option<&Representation> {
        self.siblings
            .iter()
            .find(|rep| rep.encoding == Some(encoding))
    }
}

impl Entry {
    /// Bytes of file contents this entry holds.
    pub(crate) fn body_bytes(&self) -> usize {
        match &self.kind {
            Kind::File(file) => std::iter::once(&file.identity)
                .chain(&file.siblings)
                .filter_map(|rep| rep.body.as_ref())
                .map(Bytes::len)
                .sum(),
            _ => 0,
        }
    }

    fn not_found(watched: Vec<Watched>) -> Self {
        Self {
            kind: Kind::NotFound,
            watched,
        }
    }
}

/// An entity tag from what identifies a file's contents: modification time, length, inode. Each
/// representation is its own file, so each has its own tag.
/// Kept as text (the conditional requests compare it per request) that shares its bytes with
/// the header value it is sent as.
pub(crate) fn etag_of(stamp: &Stamp, suffix: &str) -> ByteString {
    let nanos = stamp
        .modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    ByteString::from(format!(
        "\"{nanos:x}-{:x}-{:x}{suffix}\"",
        stamp.len, stamp.inode
    ))
}

/// Builds entries from the disk.
pub(crate) struct Builder<'a> {
    pub(crate) htdocs: &'a Path,
    pub(crate) public: &'a Path,
    pub(crate) encodings: &'a [Encoding],
    pub(crate) policy: &'a CachePolicy,
    pub(crate) verdicts: &'a Verdicts,
}

impl Builder<'_> {
    fn root_dir(&self, root: Root) -> &Path {
        match root {
            Root::Htdocs => self.htdocs,
            Root::Public => self.public,
        }
    }

    pub(crate) fn build(&self, target: &Target) -> Entry {
        let root = self.root_dir(target.root);
        let mut candidate = root.to_path_buf();
        candidate.extend(&target.segments);
        if target.directory {
            return self.file(target.root, candidate.join("index.html"));
        }
        match Stamp::of(&candidate) {
            Some(stamp) if stamp.is_file => self.file(target.root, candidate),
            Some(_) => {
                let index = candidate.join("index.html");
                let is_index =
                    Stamp::of(&index).is_some_and(|s| s.is_file) && self.inside(root, &index);
                let watched = vec![Watched::now(candidate), Watched::now(index)];
                let kind = if is_index {
                    Kind::Redirect(target.directory_url())
                } else {
                    Kind::NotFound
                };
                Entry { kind, watched }
            }
            None => Entry::not_found(vec![Watched::now(candidate)]),
        }
    }

    /// True when `path`, all symlinks followed, is inside `root` and not hidden there.
    fn inside(&self, root: &Path, path: &Path) -> bool {
        let Ok(real) = fs::canonicalize(path) else {
            return false;
        };
        real.strip_prefix(root).is_ok_and(|rel| {
            rel.components().all(|c| match c {
                Component::Normal(name) => !name.as_encoded_bytes().starts_with(b"."),
                _ => false,
            })
        })
    }

    fn file(&self, root_kind: Root, path: PathBuf) -> Entry {
        let root = self.root_dir(root_kind);
        let original = Watched::now(path.clone());
        let found = original.stamp.filter(|s| s.is_file);
        let mut watched = vec![original];
        let Some(stamp) = found.filter(|_| self.inside(root, &path)) else {
            return Entry::not_found(watched);
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Entry::not_found(watched);
        };
        let compressible = is_compressible_file(name);
        let (siblings, any_sibling) = if compressible {
            self.siblings(root, (&path, stamp), &mut watched)
        } else {
            (Vec::new(), false)
        };
        let identity = representation(None, &path, stamp, "");
        let (mime, is_html) = content_type(name);
        let modified = whole_seconds(stamp.modified);
        let file = FileEntry {
            content_type: HeaderValue::from_str(&mime)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            cache_control: self.policy.for_file(root_kind, name, is_html),
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
            modified,
            vary: any_sibling || compressible,
            // Only bytes already in memory are compressed, once: a large file is never
            // compressed per request (issue 13's unbounded CPU).
            on_the_fly: compressible && siblings.is_empty() && identity.body.is_some(),
            identity,
            siblings,
            compressed: Default::default(),
        };
        Entry {
            kind: Kind::File(Box::new(file)),
            watched,
        }
    }

    /// The fresh siblings of the file at `source` in the configured encodings, and whether any
    /// sibling file exists at all (fresh or not). Every sibling path is watched.
    fn siblings(
        &self,
        root: &Path,
        (source, stamp): (&Path, Stamp),
        watched: &mut Vec<Watched>,
    ) -> (Vec<Representation>, bool) {
        let mut siblings = Vec::new();
        let mut any_sibling = false;
        for &encoding in self.encodings {
            let sibling = Watched::now(sibling_path(source, encoding));
            if let Some(s) = sibling.stamp.filter(|s| s.is_file) {
                any_sibling = true;
                if self.inside(root, &sibling.path)
                    && self
                        .verdicts
                        .is_fresh(encoding, (&sibling.path, s), (source, stamp))
                {
                    siblings.push(representation(Some(encoding), &sibling.path, s, ""));
                }
            }
            watched.push(sibling);
        }
        (siblings, any_sibling)
    }
}

/// Last-Modified at the one-second precision HTTP dates have.
fn whole_seconds(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// A representation of the file at `path`, its bytes read when small. The bytes are only kept
/// if the file did not change while being read, so headers and body always agree.
fn representation(
    encoding: Option<Encoding>,
    path: &Path,
    stamp: Stamp,
    suffix: &str,
) -> Representation {
    let body = (stamp.len <= MAX_CACHED_FILE_BYTES)
        .then(|| fs::read(path).ok())
        .flatten()
        .filter(|bytes| {
            bytes.len() as u64 == stamp.len && Stamp::of(path).is_some_and(|now| now == stamp)
        })
        .map(Bytes::from);
    Representation {
        encoding,
        path: path.to_path_buf(),
        etag: etag_of(&stamp, suffix),
        stamp,
        body,
        prepared: PreparedSlot::default(),
    }
}
