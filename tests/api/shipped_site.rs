//! The shipped site (docs/reference.md §1): the status page in `htdocs/`, its fingerprinted assets in
//! `public/`, and their committed precompressed siblings.

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app, tandem_command, test_settings};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

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

/// The content-hash segment of a name the server already serves as fingerprinted
/// (`app.3f9a2c1b.js` → `3f9a2c1b`): which digits to compare with the content.
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

/// What `Cache-Control` tandem serves for `/public/<name>` with `public` as its asset root.
async fn served_cache_control(public: &Path, names: &[String]) -> Vec<String> {
    let mut settings = test_settings();
    settings.static_files.htdocs = repo().join("htdocs");
    settings.static_files.public = public.to_path_buf();
    let app = spawn_app(settings).await;
    let mut values = Vec::new();
    for name in names {
        let res = app.get(&format!("/public/{name}")).await;
        assert_eq!(res.status(), 200, "/public/{name}");
        values.push(res.headers()["cache-control"].to_str().unwrap().to_string());
    }
    values
}

#[tokio::test]
async fn the_server_recognises_fingerprints_as_the_spec_defines_them() {
    let cases: &[(&str, bool)] = &[
        ("app.3f9a2c1b.js", true),
        ("app.3F9A2C1B0.css", true),
        ("vendor.min.0123456789abcdef.js", true),
        ("app.3f9a2c1.js", false),
        ("3f9a2c1b.js", false),
        ("app.js.3f9a2c1b", false),
        ("app.css", false),
    ];
    let public = tempfile::tempdir().unwrap();
    for (name, _) in cases {
        fs::write(public.path().join(name), "x\n").unwrap();
    }
    let names: Vec<String> = cases.iter().map(|(name, _)| name.to_string()).collect();
    let served = served_cache_control(public.path(), &names).await;
    for ((name, fingerprinted), cache_control) in cases.iter().zip(served) {
        assert_eq!(
            cache_control == IMMUTABLE,
            *fingerprinted,
            "{name}: {cache_control}"
        );
    }
}

#[tokio::test]
async fn fingerprinted_assets_are_named_after_their_content() {
    let public = repo().join("public");
    let names = sources_in(&public);
    assert!(!names.is_empty(), "public/ ships the page's CSS and JS");
    let served = served_cache_control(&public, &names).await;
    for (name, cache_control) in names.iter().zip(served) {
        let is_code = name.ends_with(".css") || name.ends_with(".js");
        if cache_control != IMMUTABLE {
            assert!(
                !is_code,
                "public/{name} is served as {cache_control:?}: it must carry a content hash (sha256sum | cut -c1-8) in its name"
            );
            continue;
        }
        let segment = fingerprint(name).expect("the server saw a content hash in the name");
        let hash = sha256_hex(&fs::read(public.join(name)).unwrap());
        assert!(
            hash.starts_with(&segment.to_ascii_lowercase()),
            "public/{name} was edited without renaming: its content hash starts with {}; rename it to use that and update the pages that link it",
            &hash[..segment.len()]
        );
    }
}

#[tokio::test]
async fn a_shipped_asset_renamed_without_its_hash_is_not_immutable() {
    let shipped = repo().join("public");
    let copies = tempfile::tempdir().unwrap();
    let mut renamed = Vec::new();
    for name in sources_in(&shipped) {
        let Some(segment) = fingerprint(&name) else {
            continue;
        };
        let plain = name.replace(&format!(".{segment}"), "");
        fs::copy(shipped.join(&name), copies.path().join(&plain)).unwrap();
        renamed.push(plain);
    }
    assert!(!renamed.is_empty(), "public/ ships fingerprinted assets");
    let served = served_cache_control(copies.path(), &renamed).await;
    for (name, cache_control) in renamed.iter().zip(served) {
        assert_eq!(cache_control, "public, max-age=3600", "{name}");
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
