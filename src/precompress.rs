//! `tandem precompress [DIR...]` (SPEC §2, §5): writes `.br`, `.zst` and `.gz` siblings beside
//! compressible files so the server (or nginx's `*_static` modules) can send them as they are.
//!
//! Freshness has two readings, and each is used where it is sound:
//! - a normal run trusts modification times (SPEC §5: a sibling older than its source is stale),
//!   but before recompressing an older sibling it decodes it: when it still decodes to the source
//!   (typical after `git clone`, which stamps files in checkout order) only its mtime is restored;
//! - `--check` ignores modification times, which say nothing in a fresh clone, and decodes every
//!   sibling: it passes when each one decodes to its source and each missing one is missing
//!   because it would not save 5 %.

use std::{
    collections::HashSet,
    ffi::OsString,
    fmt, io,
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use async_compression::{
    Level,
    tokio::bufread::{
        BrotliDecoder, BrotliEncoder, GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder,
    },
};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{compression::is_compressible, config::Encoding};

/// Extensions of formats that are already compressed: compressing them again wastes time for
/// nothing, whatever their media type says.
pub const ALREADY_COMPRESSED: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "avif", "heic", "heif", "jxl", "woff", "woff2", "zip",
    "gz", "tgz", "br", "zst", "zstd", "xz", "bz2", "lz", "lz4", "lzma", "7z", "rar", "jar", "apk",
    "mp4", "m4v", "m4a", "mov", "webm", "mkv", "avi", "mp3", "ogg", "oga", "ogv", "opus", "flac",
    "aac", "pdf", "docx", "xlsx", "pptx", "odt", "epub",
];

/// An encoding is written only when its sibling is at least this much (percent) smaller.
pub const MIN_SAVING_PERCENT: u64 = 5;

/// Files beyond this count get a progress bar (when stderr is a terminal).
const PROGRESS_THRESHOLD: usize = 50;

/// What `tandem precompress` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directories to walk; each is a root symlinks may not leave.
    pub roots: Vec<PathBuf>,
    /// Encodings to write (`static.encodings`).
    pub encodings: Vec<Encoding>,
    /// Rewrite siblings even when they are fresh.
    pub force: bool,
    /// Write nothing; report whether a run has work to do.
    pub check: bool,
    /// Remove siblings whose source is gone.
    pub prune: bool,
}

/// A failure that stops the command before any work: a usage or configuration error (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// True when `name` is a file `tandem precompress` writes siblings for: not a dotfile, not an
/// already-compressed format, and of a compressible media type.
pub fn is_candidate(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let Some((_, extension)) = name.rsplit_once('.') else {
        return false;
    };
    if ALREADY_COMPRESSED.contains(&extension.to_ascii_lowercase().as_str()) {
        return false;
    }
    mime_guess::from_path(name)
        .first()
        .is_some_and(|mime| is_compressible(mime.essence_str()))
}

/// When `name` is a precompressed sibling (`app.js.br`), its source's name and the encoding.
pub fn sibling_source(name: &str) -> Option<(&str, Encoding)> {
    Encoding::ALL.into_iter().find_map(|encoding| {
        let source = name.strip_suffix(encoding.extension())?.strip_suffix('.')?;
        is_candidate(source).then_some((source, encoding))
    })
}

/// The sibling of `source` in `encoding`: `F` becomes `F.br`, `F.zst` or `F.gz`.
pub fn sibling_path(source: &Path, encoding: Encoding) -> PathBuf {
    let mut name = source.as_os_str().to_os_string();
    name.push(".");
    name.push(encoding.extension());
    PathBuf::from(name)
}

/// True when a `compressed` representation of `original` bytes saves at least 5 %.
pub fn saves_enough(original: u64, compressed: u64) -> bool {
    // u128: no overflow whatever the sizes.
    u128::from(compressed) * 100 <= u128::from(original) * u128::from(100 - MIN_SAVING_PERCENT)
        && compressed < original
}

/// Compresses `data` at the levels SPEC §5 names: brotli 11, zstd 19, gzip 9.
pub async fn compress(encoding: Encoding, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 3);
    match encoding {
        Encoding::Br => {
            BrotliEncoder::with_quality(data, Level::Precise(11))
                .read_to_end(&mut out)
                .await?
        }
        Encoding::Zstd => {
            ZstdEncoder::with_quality(data, Level::Precise(19))
                .read_to_end(&mut out)
                .await?
        }
        Encoding::Gzip => {
            GzipEncoder::with_quality(data, Level::Precise(9))
                .read_to_end(&mut out)
                .await?
        }
    };
    Ok(out)
}

/// Decodes `data`, stopping after `limit` bytes so a hostile sibling cannot exhaust memory.
pub async fn decompress(encoding: Encoding, data: &[u8], limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Br => {
            BrotliDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .await?
        }
        Encoding::Zstd => {
            ZstdDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .await?
        }
        Encoding::Gzip => {
            GzipDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .await?
        }
    };
    Ok(out)
}

/// True when the sibling bytes decode to exactly `source` (a corrupt sibling does not).
async fn decodes_to(encoding: Encoding, sibling: &[u8], source: &[u8]) -> bool {
    let limit = source.len() as u64 + 1;
    decompress(encoding, sibling, limit)
        .await
        .is_ok_and(|decoded| decoded == source)
}

/// The files found under the roots.
#[derive(Debug, Default)]
struct Tree {
    /// Files to write siblings for.
    sources: Vec<PathBuf>,
    /// Siblings whose source does not exist (any encoding, configured or not).
    orphans: Vec<PathBuf>,
    /// Regular files that are not compressible or already compressed.
    incompressible: u64,
    /// Symlinks that lead outside their root, dangle, or lead to directories.
    symlinks_skipped: u64,
    /// Directories and entries that could not be read.
    errors: Vec<String>,
}

/// Walks `roots`: skips dotfiles and dot-directories, never leaves a root through a symlink and
/// visits each directory once (roots may overlap). A directory or entry that cannot be read is
/// recorded as an error naming it, and the walk goes on.
fn walk(roots: &[PathBuf]) -> Tree {
    let mut tree = Tree::default();
    let mut visited = HashSet::new();
    for root in roots {
        let canonical_root = match root.canonicalize() {
            Ok(path) => path,
            Err(err) => {
                tree.errors.push(error_for(root, "open", err));
                continue;
            }
        };
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            match dir.canonicalize() {
                Ok(canonical) => {
                    if !visited.insert(canonical) {
                        continue;
                    }
                }
                Err(err) => {
                    tree.errors.push(error_for(&dir, "open", err));
                    continue;
                }
            }
            let names = match list(&dir) {
                Ok(names) => names,
                Err(err) => {
                    tree.errors.push(error_for(&dir, "list", err));
                    continue;
                }
            };
            for name in names {
                let Some(text) = name.to_str() else {
                    // tandem never serves a non-UTF-8 path (SPEC §5), so it needs no sibling.
                    continue;
                };
                if text.starts_with('.') {
                    continue;
                }
                let path = dir.join(&name);
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(meta) => meta,
                    Err(err) => {
                        tree.errors.push(error_for(&path, "read", err));
                        continue;
                    }
                };
                let is_file = if meta.file_type().is_symlink() {
                    match path.canonicalize() {
                        Ok(target) if target.starts_with(&canonical_root) && target.is_file() => {
                            true
                        }
                        // Directories reached through a link inside the root are walked
                        // under their real name; anything outside is never read.
                        _ => {
                            tree.symlinks_skipped += 1;
                            continue;
                        }
                    }
                } else if meta.is_dir() {
                    pending.push(path);
                    continue;
                } else {
                    meta.is_file()
                };
                if !is_file {
                    continue;
                }
                if let Some((source, _)) = sibling_source(text) {
                    if std::fs::symlink_metadata(dir.join(source)).is_err() {
                        tree.orphans.push(path);
                    }
                } else if is_candidate(text) {
                    tree.sources.push(path);
                } else {
                    tree.incompressible += 1;
                }
            }
        }
    }
    tree
}

/// The entry names of `dir`, sorted so output and errors come in the same order on every run.
fn list(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// What happened (or, with `--check`, would happen) to one sibling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Up to date: fresh by mtime in a run, decoding to the source in a check.
    Fresh,
    /// Decodes to the source but was older: a run restored its mtime; a check notes it.
    Retimed,
    /// Written (or, in a check, would be written), and why.
    Written {
        before: u64,
        after: u64,
        reason: Reason,
    },
    /// Not written: it would save less than 5 %.
    LowSaving { before: u64, after: u64 },
    /// A stale sibling whose new content would save less than 5 %: removed (or would be).
    Removed,
}

/// Why a sibling is (re)written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Missing,
    /// Older than its source and no longer decoding to it.
    Stale,
    /// Newer than its source yet not decoding to it: only `--check` notices, `--force` fixes it.
    Mismatch,
    /// `--force`.
    Forced,
}

/// One sibling's job: the source file and the encoding.
#[derive(Debug, Clone)]
struct Job {
    source: PathBuf,
    encoding: Encoding,
}

fn error_for(path: &Path, action: &str, err: io::Error) -> String {
    format!("cannot {action} {}: {err}", path.display())
}

fn mtime(meta: &std::fs::Metadata, path: &Path) -> Result<SystemTime, String> {
    meta.modified()
        .map_err(|err| error_for(path, "read the modification time of", err))
}

/// Decides, and unless `check`, carries out what one sibling needs.
async fn process(job: Job, force: bool, check: bool) -> Result<Outcome, String> {
    let Job { source, encoding } = job;
    let sibling = sibling_path(&source, encoding);
    // The mtime is read before the content: if the source changes meanwhile, the sibling is
    // stamped older than the new source and so counts as stale, never as falsely fresh.
    let source_meta = tokio::fs::metadata(&source)
        .await
        .map_err(|err| error_for(&source, "read", err))?;
    let source_mtime = mtime(&source_meta, &source)?;
    let sibling_meta = tokio::fs::symlink_metadata(&sibling)
        .await
        .ok()
        .filter(|meta| meta.is_file());
    let sibling_fresh = match &sibling_meta {
        Some(meta) => mtime(meta, &sibling)? >= source_mtime,
        None => false,
    };
    if sibling_fresh && !force && !check {
        return Ok(Outcome::Fresh);
    }
    let data = tokio::fs::read(&source)
        .await
        .map_err(|err| error_for(&source, "read", err))?;
    if sibling_meta.is_some() && !force {
        let encoded = tokio::fs::read(&sibling)
            .await
            .map_err(|err| error_for(&sibling, "read", err))?;
        if decodes_to(encoding, &encoded, &data).await {
            if sibling_fresh {
                return Ok(Outcome::Fresh);
            }
            if !check {
                set_mtime(&sibling, source_mtime).await?;
            }
            return Ok(Outcome::Retimed);
        }
    }
    let compressed = compress(encoding, &data)
        .await
        .map_err(|err| error_for(&source, "compress", err))?;
    let (before, after) = (data.len() as u64, compressed.len() as u64);
    if !saves_enough(before, after) {
        if sibling_meta.is_none() {
            return Ok(Outcome::LowSaving { before, after });
        }
        // Keeping it would leave a sibling that never matches its source again.
        if !check {
            tokio::fs::remove_file(&sibling)
                .await
                .map_err(|err| error_for(&sibling, "remove", err))?;
        }
        return Ok(Outcome::Removed);
    }
    if !check {
        write_atomically(&sibling, &compressed, source_mtime).await?;
    }
    let reason = match (&sibling_meta, sibling_fresh, force) {
        (_, _, true) => Reason::Forced,
        (None, _, _) => Reason::Missing,
        (Some(_), false, _) => Reason::Stale,
        (Some(_), true, _) => Reason::Mismatch,
    };
    Ok(Outcome::Written {
        before,
        after,
        reason,
    })
}

async fn set_mtime(path: &Path, time: SystemTime) -> Result<(), String> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(|err| error_for(path, "open", err))?
        .into_std()
        .await;
    file.set_modified(time)
        .map_err(|err| error_for(path, "set the modification time of", err))
}

/// Distinguishes temporary files of concurrent jobs within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a dotfile beside `path` (never served, never walked), stamps it with
/// `mtime`, syncs it and renames it over `path`: readers see the old sibling or the new one.
async fn write_atomically(path: &Path, bytes: &[u8], mtime: SystemTime) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await?;
        file.write_all(bytes).await?;
        file.flush().await?;
        let file = file.into_std().await;
        file.set_modified(mtime)?;
        file.sync_data()?;
        drop(file);
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if let Err(err) = result {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(error_for(path, "write", err));
    }
    Ok(())
}

/// Per-encoding counts for the summary table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub written: u64,
    pub fresh: u64,
    pub retimed: u64,
    pub low_saving: u64,
    pub removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        match *outcome {
            Outcome::Fresh => self.fresh += 1,
            Outcome::Retimed => self.retimed += 1,
            Outcome::Written { before, after, .. } => {
                self.written += 1;
                self.bytes_before += before;
                self.bytes_after += after;
            }
            Outcome::LowSaving { .. } => self.low_saving += 1,
            Outcome::Removed => self.removed += 1,
        }
    }
}

/// Everything a run found and did.
#[derive(Debug, Default)]
pub struct Report {
    pub check: bool,
    pub sources: u64,
    pub incompressible: u64,
    pub symlinks_skipped: u64,
    pub per_encoding: Vec<(Encoding, Tally)>,
    pub orphans: Vec<PathBuf>,
    pub pruned: u64,
    pub errors: Vec<String>,
    /// With `--check`: every sibling a run would write or remove, and why.
    pub work: Vec<String>,
}

impl Report {
    /// True when `--check` found something a run would write or remove.
    pub fn has_work(&self) -> bool {
        !self.work.is_empty()
    }

    /// The exit status SPEC §2 asks for: 1 on a failure or when `--check` found work.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() || (self.check && self.has_work()) {
            1
        } else {
            0
        }
    }

    /// The summary table printed at the end of every run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let verb = if self.check { "to write" } else { "written" };
        out.push_str(&format!(
            "{} compressible files; skipped {} not compressible or already compressed and {} symlinks (out of the root, dangling or to a directory)\n",
            self.sources, self.incompressible, self.symlinks_skipped
        ));
        out.push_str(&format!(
            "{:<9}{:>9}{:>8}{:>9}{:>12}{:>9}{:>14}{:>13}{:>8}\n",
            "encoding",
            verb,
            "fresh",
            "retimed",
            "saving<5%",
            "removed",
            "bytes before",
            "bytes after",
            "saved"
        ));
        for (encoding, t) in &self.per_encoding {
            let saved = if t.bytes_before == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.1}%",
                    100.0 - (t.bytes_after as f64 * 100.0 / t.bytes_before as f64)
                )
            };
            out.push_str(&format!(
                "{:<9}{:>9}{:>8}{:>9}{:>12}{:>9}{:>14}{:>13}{:>8}\n",
                encoding.token(),
                t.written,
                t.fresh,
                t.retimed,
                t.low_saving,
                t.removed,
                t.bytes_before,
                t.bytes_after,
                saved
            ));
        }
        if !self.orphans.is_empty() {
            let what = if self.check {
                "orphaned siblings (source gone) to prune"
            } else if self.pruned > 0 {
                "orphaned siblings pruned"
            } else {
                "orphaned siblings (source gone; --prune removes them)"
            };
            out.push_str(&format!("{} {what}\n", self.orphans.len()));
        }
        if self.check {
            let retimed: u64 = self.per_encoding.iter().map(|(_, t)| t.retimed).sum();
            if retimed > 0 {
                out.push_str(&format!(
                    "{retimed} siblings match their source but are older than it: the server ignores them until `tandem precompress` restores their modification times\n"
                ));
            }
            out.push_str(if self.has_work() {
                "check: a run would write or remove siblings\n"
            } else {
                "check: every sibling is up to date\n"
            });
        }
        if !self.errors.is_empty() {
            out.push_str(&format!("{} errors\n", self.errors.len()));
        }
        out
    }
}

/// Runs the command on a multi-thread runtime with one worker and one job in flight per CPU.
pub fn run(options: Options) -> Result<Report, UsageError> {
    for root in &options.roots {
        if !root.is_dir() {
            return Err(UsageError(format!(
                "{} is not a directory; pass existing directories or fix static.htdocs / static.public",
                root.display()
            )));
        }
    }
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(parallelism)
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => Ok(runtime.block_on(execute(options, parallelism))),
        Err(err) => Ok(Report {
            errors: vec![format!("cannot start the compression threads: {err}")],
            ..Report::default()
        }),
    }
}

async fn execute(options: Options, parallelism: usize) -> Report {
    let mut report = Report {
        check: options.check,
        per_encoding: options
            .encodings
            .iter()
            .map(|&e| (e, Tally::default()))
            .collect(),
        ..Report::default()
    };
    let mut tree = walk(&options.roots);
    report.errors.append(&mut tree.errors);
    report.sources = tree.sources.len() as u64;
    report.incompressible = tree.incompressible;
    report.symlinks_skipped = tree.symlinks_skipped;

    let jobs: Vec<Job> = tree
        .sources
        .iter()
        .flat_map(|source| {
            options.encodings.iter().map(|&encoding| Job {
                source: source.clone(),
                encoding,
            })
        })
        .collect();
    let progress = if tree.sources.len() > PROGRESS_THRESHOLD && io::stderr().is_terminal() {
        let bar = ProgressBar::new(jobs.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} siblings {elapsed} {wide_msg}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let (force, check) = (options.force, options.check);
    let mut results = futures_util::stream::iter(jobs)
        .map(|job| {
            let label = (job.source.clone(), job.encoding);
            let handle = tokio::spawn(process(job, force, check));
            async move { (label, handle.await) }
        })
        .buffer_unordered(parallelism);
    let mut outcomes = Vec::new();
    while let Some(((source, encoding), joined)) = results.next().await {
        progress.inc(1);
        let result = joined.unwrap_or_else(|err| {
            Err(format!(
                "compressing {} failed unexpectedly: {err}",
                source.display()
            ))
        });
        outcomes.push((source, encoding, result));
    }
    progress.finish_and_clear();
    // Sorted so messages come in the same order whatever the scheduling.
    outcomes.sort_by(|a, b| (&a.0, a.1.token()).cmp(&(&b.0, b.1.token())));
    for (source, encoding, result) in outcomes {
        match result {
            Ok(outcome) => {
                if check {
                    let sibling = sibling_path(&source, encoding);
                    match outcome {
                        Outcome::Written { reason, .. } => report.work.push(match reason {
                            Reason::Missing => format!("{} is missing", sibling.display()),
                            Reason::Mismatch => format!(
                                "{} does not decode to {} (it is newer than the source, so only `tandem precompress --force` rewrites it)",
                                sibling.display(),
                                source.display()
                            ),
                            Reason::Stale | Reason::Forced => format!(
                                "{} is stale: it does not decode to {}",
                                sibling.display(),
                                source.display()
                            ),
                        }),
                        Outcome::Removed => report.work.push(format!(
                            "{} is stale and a fresh one would save less than {MIN_SAVING_PERCENT} %",
                            sibling.display()
                        )),
                        _ => {}
                    }
                }
                if let Some((_, tally)) =
                    report.per_encoding.iter_mut().find(|(e, _)| *e == encoding)
                {
                    tally.add(&outcome);
                }
            }
            Err(err) => report.errors.push(err),
        }
    }
    if options.prune {
        for orphan in &tree.orphans {
            if check {
                report
                    .work
                    .push(format!("{} has no source any more", orphan.display()));
            } else {
                match tokio::fs::remove_file(orphan).await {
                    Ok(()) => report.pruned += 1,
                    Err(err) => report.errors.push(error_for(orphan, "remove", err)),
                }
            }
        }
    }
    report.orphans = tree.orphans;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_compressible_types_that_are_not_already_compressed() {
        let cases: &[(&str, bool)] = &[
            ("index.html", true),
            ("app.3f9a2c1b.css", true),
            ("app.js", true),
            ("data.json", true),
            ("logo.svg", true),
            ("favicon.ico", true),
            ("robots.txt", true),
            ("font.ttf", true),
            ("module.wasm", true),
            ("photo.png", false),
            ("photo.JPG", false),
            ("font.woff2", false),
            ("archive.zip", false),
            ("app.js.gz", false),
            ("app.js.br", false),
            ("app.js.zst", false),
            ("doc.pdf", false),
            ("movie.mp4", false),
            ("LICENSE", false),
            ("blob.bin", false),
            (".hidden.css", false),
            (".env", false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_candidate(name), *expected, "{name}");
        }
    }

    #[test]
    fn siblings_are_recognised_only_for_candidate_sources() {
        let cases: &[(&str, Option<(&str, Encoding)>)] = &[
            ("app.js.br", Some(("app.js", Encoding::Br))),
            ("index.html.gz", Some(("index.html", Encoding::Gzip))),
            ("style.css.zst", Some(("style.css", Encoding::Zstd))),
            // A real archive is not a sibling: `archive.tar` is not something tandem compresses.
            ("archive.tar.gz", None),
            ("photo.png.br", None),
            ("notes.gz", None),
            ("app.js.zstd", None),
            ("app.jsgz", None),
        ];
        for (name, expected) in cases {
            assert_eq!(sibling_source(name), *expected, "{name}");
        }
    }

    #[test]
    fn sibling_paths_append_the_encoding_extension() {
        let source = Path::new("htdocs/app.3f9a2c1b.js");
        assert_eq!(
            sibling_path(source, Encoding::Br),
            Path::new("htdocs/app.3f9a2c1b.js.br")
        );
        assert_eq!(
            sibling_path(source, Encoding::Zstd),
            Path::new("htdocs/app.3f9a2c1b.js.zst")
        );
        assert_eq!(
            sibling_path(source, Encoding::Gzip),
            Path::new("htdocs/app.3f9a2c1b.js.gz")
        );
    }

    #[test]
    fn an_encoding_must_save_at_least_five_percent() {
        let cases: &[(u64, u64, bool)] = &[
            (1000, 950, true),
            (1000, 951, false),
            (1000, 100, true),
            (1000, 1000, false),
            (1000, 1200, false),
            (0, 20, false),
            (0, 0, false),
            (20, 19, true),
            (19, 19, false),
            (u64::MAX, u64::MAX / 2, true),
            (u64::MAX, u64::MAX - 1, false),
        ];
        for (original, compressed, expected) in cases {
            assert_eq!(
                saves_enough(*original, *compressed),
                *expected,
                "{original} -> {compressed}"
            );
        }
    }

    #[tokio::test]
    async fn every_encoding_round_trips() {
        let text = "tandem serves precompressed siblings. ".repeat(200);
        for encoding in Encoding::ALL {
            let compressed = compress(encoding, text.as_bytes()).await.unwrap();
            assert!(compressed.len() < text.len() / 10, "{encoding:?}");
            assert!(decodes_to(encoding, &compressed, text.as_bytes()).await);
            assert!(!decodes_to(encoding, &compressed, b"something else").await);
            assert!(!decodes_to(encoding, b"not compressed at all", text.as_bytes()).await);
        }
    }

    #[tokio::test]
    async fn decoding_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = compress(Encoding::Zstd, &zeros).await.unwrap();
        let decoded = decompress(Encoding::Zstd, &bomb, 1000).await.unwrap();
        assert_eq!(decoded.len(), 1000);
    }

    #[tokio::test]
    async fn compression_is_deterministic() {
        // Committed siblings must not churn when regenerated on another machine.
        let text = "deterministic output ".repeat(100);
        for encoding in Encoding::ALL {
            let a = compress(encoding, text.as_bytes()).await.unwrap();
            let b = compress(encoding, text.as_bytes()).await.unwrap();
            assert_eq!(a, b, "{encoding:?}");
        }
    }
}
