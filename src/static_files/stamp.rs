//! What a file looks like from its metadata, so caches and verdicts know when to look again
//! (`docs/reference.md §5` "Edits"): a changed size, modification time or inode (a file replaced
//! by rename) is a new version.

use std::{fs, os::unix::fs::MetadataExt, path::Path, time::SystemTime};

/// Identity of a file's current contents as far as metadata can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub modified: SystemTime,
    pub inode: u64,
    pub is_file: bool,
}

impl Stamp {
    /// Follows symlinks, as serving does. `None` when nothing is there (or it cannot be read).
    pub fn of(path: &Path) -> Option<Self> {
        let meta = fs::metadata(path).ok()?;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok()?,
            inode: meta.ino(),
            is_file: meta.is_file(),
        })
    }
}
