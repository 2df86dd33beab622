//! The one walk over document roots, shared by the start-up scan, `tandem check` and
//! `tandem precompress` (`docs/reference.md §5` "Safety"): it sees the files a request could reach,
//! so dotfiles and dot-directories are skipped and a symlink is followed only when it stays in
//! its root.

use std::{
    collections::HashSet,
    ffi::OsString,
    io,
    path::{Path, PathBuf},
};

use crate::encoding::{is_compressible_file, sibling_source};

/// The files found under the roots.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Compressible files: the ones that have (or should have) siblings.
    pub(crate) sources: Vec<PathBuf>,
    /// Siblings whose source does not exist (any encoding, configured or not).
    pub(crate) orphans: Vec<PathBuf>,
    /// Regular files that are not compressible or already compressed.
    pub(crate) incompressible: u64,
    /// Symlinks that lead outside their root, dangle, or lead to directories.
    pub(crate) symlinks_skipped: u64,
    /// Directories and entries that could not be read, each naming its path.
    pub(crate) errors: Vec<String>,
}

pub(crate) fn error_for(path: &Path, action: &str, err: io::Error) -> String {
    format!("cannot {action} {}: {err}", path.display())
}

/// Walks `roots`, each directory once (roots may overlap), in sorted order so output comes in
/// the same order on every run. A directory or entry that cannot be read is recorded as an error
/// and the walk goes on.
pub(crate) fn walk(roots: &[PathBuf]) -> Tree {
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
            match list(&dir) {
                Ok(names) => {
                    for name in names {
                        tree.visit(&dir, &name, &canonical_root, &mut pending);
                    }
                }
                Err(err) => tree.errors.push(error_for(&dir, "list", err)),
            }
        }
    }
    tree
}

impl Tree {
    /// Files one directory entry: a directory to walk later, a source, a sibling, or neither.
    fn visit(&mut self, dir: &Path, name: &OsString, root: &Path, pending: &mut Vec<PathBuf>) {
        // tandem never serves a non-UTF-8 path or a dotfile, so neither needs a sibling.
        let Some(text) = name.to_str().filter(|t| !t.starts_with('.')) else {
            return;
        };
        let path = dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) => return self.errors.push(error_for(&path, "read", err)),
        };
        if meta.file_type().is_symlink() {
            match path.canonicalize() {
                Ok(target) if target.starts_with(root) && target.is_file() => {}
                // Directories reached through a link inside the root are walked under their
                // real name; anything outside is never read.
                _ => return self.symlinks_skipped += 1,
            }
        } else if meta.is_dir() {
            return pending.push(path);
        } else if !meta.is_file() {
            return;
        }
        if let Some((source, _)) = sibling_source(text) {
            if std::fs::symlink_metadata(dir.join(source)).is_err() {
                self.orphans.push(path);
            }
        } else if is_compressible_file(text) {
            self.sources.push(path);
        } else {
            self.incompressible += 1;
        }
    }
}

/// The entry names of `dir`, sorted.
fn list(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}
