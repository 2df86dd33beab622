//! `tandem precompress [DIR...]` (`docs/reference.md §2`, `§5`): writes `.br`, `.zst` and `.gz`
//! siblings beside compressible files so the server (or nginx's `*_static` modules) can send them
//! as they are.
//!
//! Freshness is the server's one rule: a sibling is fresh when it decodes to exactly its source,
//! whatever the modification times say (a fresh `git clone` stamps files in checkout order). A run
//! rewrites every sibling that is not fresh and, as a courtesy to tools that compare dates, moves
//! a fresh sibling's older modification time up to its source's; `--check` writes nothing and
//! fails when a run would write or remove a sibling.

use std::{
    fmt, io,
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    encoding::{Effort, Encoding, compress, decodes_to, sibling_path},
    static_files::walk::{Tree, error_for, walk},
};

/// An encoding is written only when its sibling is at least this much (percent) smaller.
pub(crate) const MIN_SAVING_PERCENT: u64 = 5;

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

/// True when a `compressed` representation of `original` bytes saves at least 5 %.
fn saves_enough(original: u64, compressed: u64) -> bool {
    // u128: no overflow whatever the sizes.
    u128::from(compressed) * 100 <= u128::from(original) * u128::from(100 - MIN_SAVING_PERCENT)
        && compressed < original
}

/// What happened (or, with `--check`, would happen) to one sibling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Decodes to its source.
    Fresh,
    /// Decodes to its source but was older: a run restored its mtime; a check notes it.
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
pub(crate) enum Reason {
    Missing,
    /// Not decoding to its source.
    Stale,
    /// `--force`.
    Forced,
}

/// One sibling's job: the source file and the encoding.
#[derive(Debug, Clone)]
struct Job {
    source: PathBuf,
    encoding: Encoding,
}

fn mtime(meta: &std::fs::Metadata, path: &Path) -> Result<SystemTime, String> {
    meta.modified()
        .map_err(|err| error_for(path, "read the modification time of", err))
}

/// Decides, and unless `check`, carries out what one sibling needs.
fn process(job: &Job, force: bool, check: bool) -> Result<Outcome, String> {
    let Job { source, encoding } = job;
    let sibling = sibling_path(source, *encoding);
    // The mtime is read before the content: if the source changes meanwhile, the sibling is
    // stamped older than the new source, and the next run decodes it and sees it is stale.
    let source_meta = std::fs::metadata(source).map_err(|err| error_for(source, "read", err))?;
    let source_mtime = mtime(&source_meta, source)?;
    let data = std::fs::read(source).map_err(|err| error_for(source, "read", err))?;
    let existing = std::fs::symlink_metadata(&sibling)
        .ok()
        .filter(|meta| meta.is_file());
    if let Some(meta) = &existing
        && !force
        && is_fresh(*encoding, &sibling, &data)?
    {
        if mtime(meta, &sibling)? >= source_mtime {
            return Ok(Outcome::Fresh);
        }
        if !check {
            set_mtime(&sibling, source_mtime)?;
        }
        return Ok(Outcome::Retimed);
    }
    let compressed = compress(*encoding, Effort::Precompress, &data)
        .map_err(|err| error_for(source, "compress", err))?;
    let (before, after) = (data.len() as u64, compressed.len() as u64);
    if !saves_enough(before, after) {
        if existing.is_none() {
            return Ok(Outcome::LowSaving { before, after });
        }
        // Keeping it would leave a sibling that never matches its source again.
        if !check {
            std::fs::remove_file(&sibling).map_err(|err| error_for(&sibling, "remove", err))?;
        }
        return Ok(Outcome::Removed);
    }
    if !check {
        write_atomically(&sibling, &compressed, source_mtime)?;
    }
    let reason = match (&existing, force) {
        (_, true) => Reason::Forced,
        (None, _) => Reason::Missing,
        (Some(_), _) => Reason::Stale,
    };
    Ok(Outcome::Written {
        before,
        after,
        reason,
    })
}

/// The server's rule: the sibling decodes to exactly `source`.
fn is_fresh(encoding: Encoding, sibling: &Path, source: &[u8]) -> Result<bool, String> {
    let file = std::fs::File::open(sibling).map_err(|err| error_for(sibling, "read", err))?;
    decodes_to(encoding, io::BufReader::new(file), source)
        .map_err(|err| error_for(sibling, "read", err))
}

fn set_mtime(path: &Path, time: SystemTime) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .map_err(|err| error_for(path, "set the modification time of", err))
}

/// Distinguishes temporary files of concurrent jobs within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a dotfile beside `path` (never served, never walked), stamps it with
/// `mtime`, syncs it and renames it over `path`: readers see the old sibling or the new one.
fn write_atomically(path: &Path, bytes: &[u8], mtime: SystemTime) -> Result<(), String> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.set_modified(mtime)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(error_for(path, "write", err));
    }
    Ok(())
}

/// Per-encoding counts for the summary table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) written: u64,
    pub(crate) fresh: u64,
    pub(crate) retimed: u64,
    pub(crate) low_saving: u64,
    pub(crate) removed: u64,
    pub(crate) bytes_before: u64,
    pub(crate) bytes_after: u64,
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
    pub(crate) check: bool,
    pub(crate) sources: u64,
    pub(crate) incompressible: u64,
    pub(crate) symlinks_skipped: u64,
    pub(crate) per_encoding: Vec<(Encoding, Tally)>,
    pub(crate) orphans: Vec<PathBuf>,
    pub(crate) pruned: u64,
    pub errors: Vec<String>,
    /// With `--check`: every sibling a run would write or remove, and why.
    pub work: Vec<String>,
}

impl Report {
    /// True when `--check` found something a run would write or remove.
    pub fn has_work(&self) -> bool {
        !self.work.is_empty()
    }

    /// The exit status docs/reference.md §2 asks for: 1 on a failure or when `--check` found work.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() || (self.check && self.has_work()) {
            1
        } else {
            0
        }
    }

    /// The summary table printed at the end of every run.
    pub fn summary(&self) -> String {
        let verb = if self.check { "to write" } else { "written" };
        let mut out = format!(
            "{} compressible files; skipped {} not compressible or already compressed and {} symlinks (out of the root, dangling or to a directory)\n",
            self.sources, self.incompressible, self.symlinks_skipped
        );
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
        for (encoding, tally) in &self.per_encoding {
            out.push_str(&tally.row(*encoding));
        }
        out.push_str(&self.closing_lines());
        out
    }

    /// Orphans, the `--check` verdict and the error count, under the table.
    fn closing_lines(&self) -> String {
        let mut out = String::new();
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
                    "{retimed} siblings match their source but are older than it: they are fresh and served; a run moves their modification times up\n"
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

impl Tally {
    /// This encoding's row of the summary table.
    fn row(&self, encoding: Encoding) -> String {
        let saved = if self.bytes_before == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.1}%",
                100.0 - (self.bytes_after as f64 * 100.0 / self.bytes_before as f64)
            )
        };
        format!(
            "{:<9}{:>9}{:>8}{:>9}{:>12}{:>9}{:>14}{:>13}{:>8}\n",
            encoding.token(),
            self.written,
            self.fresh,
            self.retimed,
            self.low_saving,
            self.removed,
            self.bytes_before,
            self.bytes_after,
            saved
        )
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
    let mut tree = walk(&options.roots);
    let mut report = Report::for_tree(&options, &mut tree);
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
    let progress = progress_bar(tree.sources.len(), jobs.len());
    let (force, check) = (options.force, options.check);
    let mut results = futures_util::stream::iter(jobs)
        .map(|job| async move {
            let source = job.source.clone();
            let encoding = job.encoding;
            let joined = tokio::task::spawn_blocking(move || process(&job, force, check)).await;
            let result = joined.unwrap_or_else(|err| {
                Err(format!(
                    "compressing {} failed unexpectedly: {err}",
                    source.display()
                ))
            });
            (source, encoding, result)
        })
        .buffer_unordered(parallelism);
    let mut outcomes = Vec::new();
    while let Some(outcome) = results.next().await {
        progress.inc(1);
        outcomes.push(outcome);
    }
    progress.finish_and_clear();
    // Sorted so messages come in the same order whatever the scheduling.
    outcomes.sort_by(|a, b| (&a.0, a.1.token()).cmp(&(&b.0, b.1.token())));
    for (source, encoding, result) in outcomes {
        report.record(&source, encoding, result);
    }
    if options.prune {
        report.prune(&tree.orphans);
    }
    report.orphans = tree.orphans;
    report
}

/// A bar over `jobs` siblings for a tree of `files` sources, when stderr is a terminal.
fn progress_bar(files: usize, jobs: usize) -> ProgressBar {
    if files <= PROGRESS_THRESHOLD || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(jobs as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} siblings {elapsed} {wide_msg}")
    {
        bar.set_style(style);
    }
    bar
}

impl Report {
    /// An empty report for the files `tree` found; takes its errors.
    fn for_tree(options: &Options, tree: &mut Tree) -> Self {
        Self {
            check: options.check,
            per_encoding: options
                .encodings
                .iter()
                .map(|&e| (e, Tally::default()))
                .collect(),
            errors: std::mem::take(&mut tree.errors),
            sources: tree.sources.len() as u64,
            incompressible: tree.incompressible,
            symlinks_skipped: tree.symlinks_skipped,
            ..Self::default()
        }
    }

    /// Counts one sibling's outcome and, with `--check`, notes the work a run would do.
    fn record(&mut self, source: &Path, encoding: Encoding, result: Result<Outcome, String>) {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(err) => return self.errors.push(err),
        };
        if self.check {
            let sibling = sibling_path(source, encoding);
            match outcome {
                Outcome::Written { reason, .. } => self.work.push(match reason {
                    Reason::Missing => format!("{} is missing", sibling.display()),
                    Reason::Stale | Reason::Forced => format!(
                        "{} is stale: it does not decode to {}",
                        sibling.display(),
                        source.display()
                    ),
                }),
                Outcome::Removed => self.work.push(format!(
                    "{} is stale and a fresh one would save less than {MIN_SAVING_PERCENT} %",
                    sibling.display()
                )),
                _ => {}
            }
        }
        if let Some((_, tally)) = self.per_encoding.iter_mut().find(|(e, _)| *e == encoding) {
            tally.add(&outcome);
        }
    }

    /// Removes (or, with `--check`, notes) siblings whose source is gone.
    fn prune(&mut self, orphans: &[PathBuf]) {
        for orphan in orphans {
            if self.check {
                self.work
                    .push(format!("{} has no source any more", orphan.display()));
                continue;
            }
            match std::fs::remove_file(orphan) {
                Ok(()) => self.pruned += 1,
                Err(err) => self.errors.push(error_for(orphan, "remove", err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
