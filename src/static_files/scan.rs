//! The start-up look at both roots (SPEC §9, §4): precompressed siblings that are stale or
//! missing, and files no request can reach because a route has their path.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{cache_control::content_type, entry::is_stale};
use crate::{
    compression::is_compressible,
    config::{Encoding, StaticSettings},
    routes::ROUTES,
};

/// What the scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SiblingReport {
    /// Files looked at (originals, not siblings).
    pub files: usize,
    /// Siblings older than their original: never served until refreshed.
    pub stale: Vec<PathBuf>,
    /// Siblings a compressible original lacks, one per configured encoding.
    pub missing: Vec<PathBuf>,
}

impl SiblingReport {
    /// One line for the start-up log, or `None` when every sibling is in place.
    pub fn summary(&self) -> Option<String> {
        if self.stale.is_empty() && self.missing.is_empty() {
            return None;
        }
        Some(format!(
            "static files: {} stale and {} missing precompressed siblings among {} files; stale ones are not served and compressible files without siblings are compressed on the fly (run `tandem precompress`; `tandem check` lists them)",
            self.stale.len(),
            self.missing.len(),
            self.files
        ))
    }
}

/// Walks both roots. Dotfiles and dot-directories are skipped (they are never served), and
/// symlinked directories are not followed (no loops, nothing outside the roots).
pub fn scan(settings: &StaticSettings) -> SiblingReport {
    let mut report = SiblingReport::default();
    for root in [&settings.htdocs, &settings.public] {
        let mut files = Vec::new();
        walk(root, &mut files);
        files.sort();
        for file in &files {
            if is_sibling(file) {
                continue;
            }
            report.files += 1;
            let Some(modified) = modified(file) else {
                continue;
            };
            let compressible = file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| is_compressible(&content_type(name).0));
            for &encoding in &settings.encodings {
                let sibling = sibling_path(file, encoding);
                match self::modified(&sibling) {
                    Some(at) if is_stale(at, modified) => report.stale.push(sibling),
                    Some(_) => {}
                    None if compressible => report.missing.push(sibling),
                    None => {}
                }
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
            "{} is older than its original and will not be served; run `tandem precompress`",
            sibling.display()
        ));
    }
    for sibling in &report.missing {
        lines.push(format!(
            "{} is missing; the original will be compressed on the fly instead; run `tandem precompress`",
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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, out);
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
}

fn sibling_path(file: &Path, encoding: Encoding) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(encoding.extension());
    PathBuf::from(name)
}

/// `x.css.br` beside `x.css` is a sibling, not a file of its own.
fn is_sibling(file: &Path) -> bool {
    Encoding::ALL.iter().any(|e| {
        file.extension().is_some_and(|ext| ext == e.extension())
            && file.with_extension("").is_file()
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok())
}
