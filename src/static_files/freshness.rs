//! Whether a precompressed sibling may be served (`docs/reference.md §5` "Encodings"): it must
//! decode to exactly its source's bytes. Modification times decide nothing, since `git clone`
//! stamps files in checkout order; they only tell when a verdict has to be made again, so each
//! sibling is decoded once per version of itself and its source, never per request.

use std::{
    collections::HashMap,
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
    sync::Mutex,
};

use super::stamp::Stamp;
use crate::encoding::{Encoding, decodes_to};

/// True when the sibling file decodes to the source file. A file that cannot be read is no
/// match: the original is served instead.
pub(crate) fn sibling_matches(encoding: Encoding, sibling: &Path, source: &Path) -> bool {
    let open = |path: &Path| File::open(path).map(|f| BufReader::with_capacity(64 * 1024, f));
    match (open(sibling), open(source)) {
        (Ok(sibling), Ok(source)) => decodes_to(encoding, sibling, source).unwrap_or(false),
        _ => false,
    }
}

/// The verdicts made so far, by sibling path, with the stamps of both files they were made for.
pub(crate) struct Verdicts {
    made: Mutex<HashMap<PathBuf, Verdict>>,
    /// More verdicts than this are forgotten at once: they are remade on demand.
    max: usize,
}

#[derive(Clone, Copy)]
struct Verdict {
    source: Stamp,
    sibling: Stamp,
    fresh: bool,
}

impl Verdicts {
    /// Remembers at most `max` verdicts.
    pub(crate) fn bounded(max: usize) -> Self {
        Self {
            made: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Whether the sibling is fresh, decoding it only when either file changed since the last
    /// verdict. A new stale verdict is logged once.
    pub(crate) fn is_fresh(
        &self,
        encoding: Encoding,
        (sibling, sibling_stamp): (&Path, Stamp),
        (source, source_stamp): (&Path, Stamp),
    ) -> bool {
        let known = self
            .made
            .lock()
            .ok()
            .and_then(|made| made.get(sibling).copied());
        if let Some(verdict) = known
            && verdict.source == source_stamp
            && verdict.sibling == sibling_stamp
        {
            return verdict.fresh;
        }
        let fresh = sibling_matches(encoding, sibling, source);
        if !fresh {
            log::warn!(
                "{} does not decode to its original and is not served; run `tandem precompress` to refresh it",
                sibling.display()
            );
        }
        if let Ok(mut made) = self.made.lock() {
            if made.len() >= self.max {
                made.clear();
            }
            let verdict = Verdict {
                source: source_stamp,
                sibling: sibling_stamp,
                fresh,
            };
            made.insert(sibling.to_path_buf(), verdict);
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Effort, compress};

    #[test]
    fn a_verdict_is_made_once_per_version_of_both_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("page.html");
        let sibling = dir.path().join("page.html.gz");
        let text = "<p>same bytes</p>".repeat(100);
        std::fs::write(&source, &text).expect("write source");
        let gz = compress(Encoding::Gzip, Effort::OnTheFly, text.as_bytes()).expect("gzip");
        std::fs::write(&sibling, &gz).expect("write sibling");
        let stamps = || {
            (
                Stamp::of(&sibling).expect("sibling stamp"),
                Stamp::of(&source).expect("source stamp"),
            )
        };
        let verdicts = Verdicts::bounded(8);
        let (sib, src) = stamps();
        assert!(verdicts.is_fresh(Encoding::Gzip, (&sibling, sib), (&source, src)));

        // Same stamps: the remembered verdict, even though the bytes on disk now differ.
        std::fs::write(&sibling, b"garbage, same stamp as far as the verdict knows").expect("w");
        assert!(verdicts.is_fresh(Encoding::Gzip, (&sibling, sib), (&source, src)));
        // New stamps: decoded again, and now stale.
        let (sib, src) = stamps();
        assert!(!verdicts.is_fresh(Encoding::Gzip, (&sibling, sib), (&source, src)));
    }
}
