//! The bounded in-memory cache behind static serving (`docs/reference.md §5` "Edits on disk ... visible within
//! 1 second"): what each request path resolved to, with small files' bytes and every header
//! precomputed, so a hit costs no file I/O. An entry is revalidated against the size, mtime and
//! inode of every path it depends on at most every [`REVALIDATE_AFTER_MS`], by one request while
//! the others keep using it.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use super::entry::{Entry, Watched};

/// How old an entry may be before the files it was built from are looked at again. Half the
/// the reference's one-second bound (§5), leaving room for the request that notices.
pub const REVALIDATE_AFTER_MS: u64 = 500;
/// At most this many request paths are remembered.
pub const MAX_ENTRIES: usize = 16_384;
/// Bytes of file contents (originals, siblings, compressed copies) held at once.
pub const MAX_BYTES: usize = 64 << 20;
/// Longest key worth remembering; longer paths are resolved every time.
const MAX_KEY_LEN: usize = 1024;

/// An entry and when it was last known to match the disk.
pub struct Cached {
    pub entry: Entry,
    checked_ms: AtomicU64,
    /// Found out of date: every key that shares this entry must rebuild it.
    outdated: AtomicBool,
    /// Bytes charged to the cache for this entry, returned when it is dropped.
    charged: AtomicUsize,
    budget: Arc<AtomicUsize>,
}

impl Cached {
    /// Charges `bytes` more (an on-the-fly compressed copy) to the cache budget.
    pub fn charge(&self, bytes: usize) {
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        self.budget.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Cached {
    /// Marks the entry out of date under every key that shares it: the next lookup rebuilds it.
    pub(crate) fn outdate(&self) {
        self.outdated.store(true, Ordering::Relaxed);
    }
}

impl Drop for Cached {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(self.charged.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Request path to entry. Keyed by ahash with per-process random keys: the paths are the
/// clients' own, so the hash must resist a flood of colliding ones.
type Paths = HashMap<Box<str>, Arc<Cached>, ahash::RandomState>;

pub struct Cache {
    map: RwLock<Paths>,
    epoch: Instant,
    bytes: Arc<AtomicUsize>,
    /// Requests answered from an entry as it was, and entries built, for `/metrics` (§4).
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            map: RwLock::new(Paths::default()),
            epoch: Instant::now(),
            bytes: Arc::new(AtomicUsize::new(0)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

/// What `/metrics` reports of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheFigures {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) bytes: usize,
    pub(crate) entries: usize,
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// Current enough to serve.
    Fresh(Arc<Cached>),
    /// Missing or out of date: build a new entry.
    Stale,
}

impl Lookup {
    #[cfg(test)]
    fn is_fresh(&self) -> bool {
        matches!(self, Lookup::Fresh(_))
    }
}

impl Cache {
    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes of file contents held now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Request paths remembered now.
    fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }

    /// A lookup was answered from an entry as it was.
    pub(crate) fn count_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A lookup had to build its entry.
    pub(crate) fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn figures(&self) -> CacheFigures {
        CacheFigures {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.bytes(),
            entries: self.len(),
        }
    }

    /// The entry for `key` as of `now` (the request's start: the pipeline has read the clock
    /// already, and a read costs as much as the rest of a hit's bookkeeping here).
    pub fn get(&self, key: &str, now: Instant) -> Lookup {
        let found = match self.map.read() {
            Ok(map) => map.get(key).cloned(),
            Err(_) => None,
        };
        let Some(cached) = found else {
            return Lookup::Stale;
        };
        if cached.outdated.load(Ordering::Relaxed) {
            self.remove(key);
            return Lookup::Stale;
        }
        let now = self.ms_at(now);
        let checked = cached.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(checked) < REVALIDATE_AFTER_MS {
            return Lookup::Fresh(cached);
        }
        // One request revalidates; concurrent ones serve the entry they have (a few µs older).
        if cached
            .checked_ms
            .compare_exchange(checked, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Lookup::Fresh(cached);
        }
        if cached.entry.watched.iter().all(Watched::unchanged) {
            Lookup::Fresh(cached)
        } else {
            cached.outdate();
            self.remove(key);
            Lookup::Stale
        }
    }

    /// Stores `entry` for `key`, evicting when the cache is over its bounds.
    pub fn insert(&self, key: &str, entry: Entry) -> Arc<Cached> {
        let charged = entry.body_bytes();
        self.bytes.fetch_add(charged, Ordering::Relaxed);
        let cached = Arc::new(Cached {
            entry,
            checked_ms: AtomicU64::new(self.now_ms()),
            outdated: AtomicBool::new(false),
            charged: AtomicUsize::new(charged),
            budget: self.bytes.clone(),
        });
        self.remember(key, cached.clone());
        cached
    }

    /// Makes `key` (another spelling of a path) find `cached` too: its bytes are held, and
    /// charged, once.
    pub(crate) fn remember(&self, key: &str, cached: Arc<Cached>) {
        if key.len() > MAX_KEY_LEN {
            return;
        }
        if let Ok(mut map) = self.map.write() {
            // Halving once may not be enough when the entries left hold most of the bytes.
            while !map.is_empty() && (map.len() >= MAX_ENTRIES || self.bytes() > MAX_BYTES) {
                evict_half(&mut map);
            }
            map.insert(key.into(), cached);
        }
    }

    fn remove(&self, key: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(key);
        }
    }
}

/// Drops every other entry. The map's iteration order is effectively random, which is a fair
/// enough choice of victims for a cache whose misses cost one stat and one small read.
fn evict_half(map: &mut Paths) {
    let mut keep = false;
    map.retain(|_, _| {
        keep = !keep;
        keep
    });
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::UNIX_EPOCH};

    use actix_web::{http::header::HeaderValue, web::Bytes};

    use super::*;
    use crate::static_files::{
        entry::{FileEntry, Kind, Representation},
        stamp::Stamp,
    };

    /// An entry holding `bytes` of file contents.
    fn file_of(bytes: usize) -> Entry {
        let stamp = Stamp {
            len: bytes as u64,
            modified: UNIX_EPOCH,
            inode: 1,
            is_file: true,
        };
        let header = HeaderValue::from_static("x");
        let identity = Representation {
            encoding: None,
            path: PathBuf::from("f"),
            stamp,
            etag: "x".into(),
            body: Some(Bytes::from(vec![b'a'; bytes])),
            prepared: Default::default(),
        };
        let file = FileEntry {
            content_type: header.clone(),
            cache_control: header.clone(),
            last_modified: header,
            modified: UNIX_EPOCH,
            vary: false,
            identity,
            siblings: Vec::new(),
            on_the_fly: false,
            compressed: Default::default(),
        };
        Entry {
            kind: Kind::File(Box::new(file)),
            watched: Vec::new(),
        }
    }

    #[test]
    fn at_most_max_entries_paths_are_remembered() {
        let cache = Cache::default();
        for i in 0..MAX_ENTRIES + 100 {
            drop(cache.insert(&format!("/f{i}"), file_of(0)));
            assert!(cache.len() <= MAX_ENTRIES, "{} after {i}", cache.len());
        }
        // Eviction drops about half, not everything.
        assert!(cache.len() > MAX_ENTRIES / 4, "{}", cache.len());
    }

    #[test]
    fn at_most_max_bytes_of_contents_are_held() {
        let cache = Cache::default();
        let mb = 1 << 20;
        for i in 0..200 {
            drop(cache.insert(&format!("/big{i}"), file_of(mb)));
            assert!(
                cache.bytes() <= MAX_BYTES,
                "{} bytes after {i}",
                cache.bytes()
            );
        }
        assert!(cache.bytes() > MAX_BYTES / 4, "{}", cache.bytes());
        // Compressed copies count too, and an evicted entry gives its bytes back when dropped.
        let cached = cache.insert("/extra", file_of(mb));
        let before = cache.bytes();
        cached.charge(1000);
        assert_eq!(cache.bytes(), before + 1000);
        let mut i = 0;
        while cache.get("/extra", Instant::now()).is_fresh() {
            drop(cache.insert(&format!("/more{i}"), file_of(mb)));
            i += 1;
        }
        let without = cache.bytes();
        drop(cached);
        assert_eq!(cache.bytes(), without - mb - 1000);
    }

    #[test]
    fn longer_keys_are_never_remembered() {
        let cache = Cache::default();
        let key = format!("/{}", "a".repeat(MAX_KEY_LEN));
        drop(cache.insert(&key, file_of(10)));
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
    }
}
