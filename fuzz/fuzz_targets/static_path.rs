//! The static path resolver (docs/reference.md §5 "Safety") over arbitrary request paths: never
//! panics, and whatever it accepts stays below its root: every segment is a plain file name (no
//! `.`, `..`, separator, control character or leading dot), joining them under a root adds only
//! normal components, and the redirect URL built from it is local and resolves to the same
//! place.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/static_files/resolve.rs"]
mod resolve;

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use resolve::{Refusal, Root, resolve};

fuzz_target!(|data: &[u8]| {
    // actix hands the resolver the path as a `str`.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let target = match resolve(raw) {
        Ok(target) => target,
        Err(Refusal::BadRequest(why)) => {
            assert!(!why.is_empty());
            return;
        }
        Err(Refusal::Hidden) => return,
    };
    assert!(raw.starts_with('/'));
    let root = Path::new("/srv/root");
    let mut joined = root.to_path_buf();
    for segment in &target.segments {
        assert!(!segment.is_empty(), "{raw:?}: empty segment");
        assert!(
            !segment.starts_with('.'),
            "{raw:?}: hidden or dot segment {segment:?}"
        );
        assert!(
            !segment.contains(['/', '\\', '\0']),
            "{raw:?}: separator in {segment:?}"
        );
        assert!(
            !segment.chars().any(char::is_control),
            "{raw:?}: control in {segment:?}"
        );
        joined.push(segment);
    }
    assert!(
        joined.starts_with(root),
        "{raw:?} escapes the root: {joined:?}"
    );
    let below: Vec<Component<'_>> = joined.strip_prefix(root).unwrap().components().collect();
    assert_eq!(below.len(), target.segments.len(), "{raw:?}: {joined:?}");
    assert!(
        below.iter().all(|c| matches!(c, Component::Normal(_))),
        "{raw:?}: {joined:?}"
    );
    assert!(target.cache_key().starts_with('\0'));

    // The redirect a directory gets: a local path (never `//host`) naming the same place.
    let url = target.directory_url();
    assert!(
        url.starts_with('/') && !url.starts_with("//"),
        "{raw:?} redirects to {url:?}"
    );
    let again = resolve(&url).unwrap_or_else(|r| panic!("{raw:?}: {url:?} refused: {r:?}"));
    assert_eq!(again.root, target.root, "{raw:?} -> {url:?}");
    assert_eq!(again.segments, target.segments, "{raw:?} -> {url:?}");
    assert!(again.directory);
    if target.root == Root::Htdocs {
        assert_ne!(target.segments.first().map(String::as_str), Some("public"));
    }
});
