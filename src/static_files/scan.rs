//! The start-up look at both roots (`docs/reference.md §9`, `§4`): precompressed siblings that are
//! stale (they do not decode to their source, the one rule [`super::freshness`] applies) or
//! missing, and files no request can reach because a route has their path.

use std::path::PathBuf;

use super::{entry::MAX_CACHED_FILE_BYTES, freshness::sibling_matches, walk::walk};
use crate::{config::StaticSettings, encoding::sibling_path, routes::ROUTES};

/// What the scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SiblingReport {
    /// Files looked at (originals, not siblings).
    pub files: usize,
    /// Siblings that do not decode to their original: never served until refreshed.
    pub stale: Vec<PathBuf>,
    /// Siblings a compressible original lacks, one per configured encoding, with whether the
    /// original is too large to be compressed on the fly (it is then sent uncompressed).
    pub missing: Vec<(PathBuf, bool)>,
}

impl SiblingReport {
    /// One line for the start-up log, or `None` when every sibling is in place.
    pub fn summary(&self) -> Option<String> {
        if self.stale.is_empty() && self.missing.is_empty() {
            return None;
        }
        Some(format!(
            "static files: {} stale and {} missing precompressed siblings among {} files; stale ones are not served and compressible files without siblings are compressed on the fly up to 1 MiB, sent uncompressed above (run `tandem precompress`; `tandem check` lists them)",
            self.stale.len(),
            self.missing.len(),
            self.files
        ))
    }
}

/// Walks both roots as [`walk`] does and decodes every sibling of every compressible file.
pub fn scan(settings: &StaticSettings) -> SiblingReport {
    let tree = walk(&[settings.htdocs.clone(), settings.public.clone()]);
    let mut sources = tree.sources;
    sources.sort();
    let mut report = SiblingReport {
        files: sources.len() + tree.incompressible as usize,
        ..SiblingReport::default()
    };
    for source in &sources {
        let Ok(meta) = std::fs::metadata(source) else {
            continue;
        };
        for &encoding in &settings.encodings {
            let sibling = sibling_path(source, encoding);
            if !sibling.is_file() {
                report
                    .missing
                    .push((sibling, meta.len() > MAX_CACHED_FILE_BYTES));
            } else if !sibling_matches(encoding, &sibling, source) {
                report.stale.push(sibling);
            }
        }
    }
    report
}

/// Files under `htdocs` whose URL a route answers instead, with that route.
pub fn shadowed_by_routes(settings: &StaticSettings) -> Vec<(PathBuf, String)> {
    let mut shadowed = Vec::new();
    for route in ROUTES.iter().map(|route| route.path) {
        let path = settings.htdocs.join(route.trim_start_matches('/'));
        if path.exists() {
            shadowed.push((path, (*route).to_string()));
        }
    }
    let public = settings.htdocs.join("public");
    if public.exists() {
        shadowed.push((public, "/public/ (static.public)".to_string()));
    }
    shadowed
}

/// The warnings `tandem check` prints, one per line: each stale and missing sibling, each file
/// shadowed by a route.
pub fn check_warnings(settings: &StaticSettings) -> Vec<String> {
    let report = scan(settings);
    let mut lines = Vec::new();
    for sibling in &report.stale {
        lines.push(format!(
            "{} does not decode to its original and will not be served; run `tandem precompress`",
            sibling.display()
        ));
    }
    for (sibling, large) in &report.missing {
        let instead = if *large {
            "the original (over 1 MiB) will be sent uncompressed"
        } else {
            "the original will be compressed on the fly instead"
        };
        lines.push(format!(
            "{} is missing; {instead}; run `tandem precompress`",
            sibling.display()
        ));
    }
    for (file, route) in shadowed_by_routes(settings) {
        lines.push(format!(
            "{} can never be served: the route {route} answers its path",
            file.display()
        ));
    }
    lines
}
