//! The shipped site (SPEC §1): the status page in `htdocs/`, its fingerprinted assets in
//! `public/`, and their committed precompressed siblings.

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::helpers::tandem_command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Names of the files in `dir`, precompressed siblings and dotfiles left out.
fn sources_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            !name.starts_with('.')
                && ![".br", ".gz", ".zst"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix))
        })
        .collect();
    names.sort();
    names
}

/// The content-hash segment of a file name (`app.3f9a2c1b.js` → `3f9a2c1b`), as SPEC §5 defines
/// it: 8 or more hex digits between dots.
fn fingerprint(name: &str) -> Option<&str> {
    let segments: Vec<&str> = name.split('.').collect();
    segments
        .iter()
        .skip(1)
        .take(segments.len().saturating_sub(2))
        .copied()
        .find(|s| s.len() >= 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn fingerprint_segments_are_found_as_the_spec_defines_them() {
    let cases: &[(&str, Option<&str>)] = &[
        ("app.3f9a2c1b.js", Some("3f9a2c1b")),
        ("app.3F9A2C1B0.css", Some("3F9A2C1B0")),
        ("vendor.min.0123456789abcdef.js", Some("0123456789abcdef")),
        ("app.3f9a2c1.js", None),
        ("3f9a2c1b.js", None),
        ("app.js.3f9a2c1b", None),
        ("app.css", None),
    ];
    for (name, expected) in cases {
        assert_eq!(fingerprint(name), *expected, "{name}");
    }
}

#[test]
fn fingerprinted_assets_are_named_after_their_content() {
    let public = repo().join("public");
    let names = sources_in(&public);
    assert!(!names.is_empty(), "public/ ships the page's CSS and JS");
    for name in names {
        let is_code = name.ends_with(".css") || name.ends_with(".js");
        let Some(segment) = fingerprint(&name) else {
            assert!(
                !is_code,
                "public/{name} must carry a content hash (sha256sum | cut -c1-8) in its name"
            );
            continue;
        };
        let hash = sha256_hex(&fs::read(public.join(&name)).unwrap());
        assert!(
            hash.starts_with(&segment.to_ascii_lowercase()),
            "public/{name} was edited without renaming: its content hash starts with {}; rename it to use that and update the pages that link it",
            &hash[..segment.len()]
        );
    }
}

#[test]
fn pages_link_only_assets_that_exist() {
    let htdocs = repo().join("htdocs");
    for name in sources_in(&htdocs)
        .into_iter()
        .filter(|n| n.ends_with(".html"))
    {
        let html = fs::read_to_string(htdocs.join(&name)).unwrap();
        let links: Vec<&str> = html
            .split(['"', '\''])
            .filter(|s| s.starts_with("/public/"))
            .collect();
        assert!(!links.is_empty(), "htdocs/{name} links its stylesheet");
        for link in links {
            let path = repo().join(link.trim_start_matches('/'));
            assert!(
                path.is_file(),
                "htdocs/{name} links {link}, which does not exist"
            );
        }
    }
}

#[test]
fn the_document_root_holds_what_the_spec_names() {
    let htdocs = repo().join("htdocs");
    assert_eq!(
        sources_in(&htdocs),
        ["404.html", "favicon.ico", "index.html", "robots.txt"]
    );
    let icon = fs::read(htdocs.join("favicon.ico")).unwrap();
    // ICONDIR: reserved 0, type 1 (icon), at least one image.
    assert_eq!(&icon[..4], &[0, 0, 1, 0], "favicon.ico is an ICO file");
    assert!(u16::from_le_bytes([icon[4], icon[5]]) >= 1);
    let robots = fs::read_to_string(htdocs.join("robots.txt")).unwrap();
    assert!(robots.contains("User-agent: *"));
}

#[test]
fn the_status_page_talks_to_the_api_and_the_socket() {
    let public = repo().join("public");
    let script = sources_in(&public)
        .into_iter()
        .find(|n| n.ends_with(".js"))
        .expect("the page's script");
    let js = fs::read_to_string(public.join(script)).unwrap();
    for needle in ["/api/status", "/socket", "hello from the status page"] {
        assert!(js.contains(needle), "the script uses {needle}");
    }
    let html = fs::read_to_string(repo().join("htdocs/index.html")).unwrap();
    for field in [
        "service",
        "version",
        "status",
        "client_ip",
        "uptime",
        "static_mode",
        "request_id",
    ] {
        assert!(html.contains(&format!("id=\"f-{field}\"")), "{field}");
    }
}

#[test]
fn the_committed_siblings_are_up_to_date() {
    let output = tandem_command()
        .current_dir(repo())
        .args(["precompress", "--check", "--prune"])
        .arg(repo().join("htdocs"))
        .arg(repo().join("public"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "run `tandem precompress --prune` and commit the siblings:\n{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}
