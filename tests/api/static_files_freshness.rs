//! The one freshness rule (`docs/reference.md §5` "Encodings"): a precompressed sibling is fresh
//! when it decodes to its source, whatever the modification times say, and the server,
//! `tandem check` and `tandem precompress --check` agree on it. Also: a file replaced by rename
//! is seen even when only its inode changed.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, SystemTime},
};

use crate::helpers::{StaticRoots, decode, spawn_app, tandem_command};

/// Long enough for the cache to look at the disk again (it does every half second).
const EDIT_VISIBLE: Duration = Duration::from_millis(1200);

fn page() -> String {
    "<p>the same page, committed with its siblings</p>\n".repeat(200)
}

/// A copy of the fixtures where `page.html` has only a brotli sibling, written by
/// `tandem precompress` itself.
fn site_with_brotli_page() -> (StaticRoots, PathBuf, PathBuf) {
    let roots = StaticRoots::new();
    let html = roots.htdocs().join("page.html");
    for ext in ["br", "gz", "zst"] {
        std::fs::remove_file(roots.htdocs().join(format!("page.html.{ext}"))).unwrap();
    }
    std::fs::write(&html, page()).unwrap();
    let out = run(&roots, &["precompress", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        roots,
        html.clone(),
        PathBuf::from(format!("{}.br", html.display())),
    )
}

/// A server on the roots, brotli only, like the commands below.
async fn brotli_only_server(roots: &StaticRoots) -> crate::helpers::TestApp {
    let mut settings = roots.settings();
    settings.static_files.encodings = vec![tandem::config::Encoding::Br];
    spawn_app(settings).await
}

/// Runs the binary on the roots, brotli only, so the fixture's other files need no siblings.
fn run(roots: &StaticRoots, args: &[&str]) -> Output {
    tandem_command()
        .args(args)
        .arg(roots.htdocs().join("page.html").parent().unwrap())
        .env("TANDEM__STATIC__HTDOCS", roots.htdocs())
        .env("TANDEM__STATIC__PUBLIC", roots.public())
        .env("TANDEM__STATIC__ENCODINGS", "br")
        .output()
        .unwrap()
}

fn check(roots: &StaticRoots) -> Output {
    tandem_command()
        .arg("check")
        .env("TANDEM__STATIC__HTDOCS", roots.htdocs())
        .env("TANDEM__STATIC__PUBLIC", roots.public())
        .env("TANDEM__STATIC__ENCODINGS", "br")
        .output()
        .unwrap()
}

/// `tandem precompress --check` on the page alone (the fixtures' other files lack siblings).
fn precompress_check(roots: &StaticRoots, html: &Path) -> Output {
    let dir = tempfile::tempdir().unwrap();
    for name in ["page.html", "page.html.br"] {
        let from = html.with_file_name(name);
        let to = dir.path().join(name);
        std::fs::copy(&from, &to).unwrap();
        let when = std::fs::metadata(&from).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    tandem_command()
        .args(["precompress", "--check"])
        .arg(dir.path())
        .env("TANDEM__STATIC__HTDOCS", roots.htdocs())
        .env("TANDEM__STATIC__PUBLIC", roots.public())
        .env("TANDEM__STATIC__ENCODINGS", "br")
        .output()
        .unwrap()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[tokio::test]
async fn a_sibling_older_than_its_source_with_the_same_content_is_fresh_everywhere() {
    // What a fresh `git clone` leaves: the right bytes, stamped in checkout order.
    let (roots, html, br) = site_with_brotli_page();
    roots.shift_mtime(&br, -60);
    assert!(mtime(&br) < mtime(&html));

    let app = brotli_only_server(&roots).await;
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br")])
        .await;
    assert_eq!(res.headers()["content-encoding"], "br");
    assert_eq!(res.bytes().await.unwrap(), std::fs::read(&br).unwrap());

    let out = check(&roots);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("page.html.br"), "{stderr}");

    let out = precompress_check(&roots, &html);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_sibling_whose_content_differs_is_stale_everywhere_even_when_newer() {
    let (roots, html, br) = site_with_brotli_page();
    // A valid brotli stream of other bytes, stamped after its source.
    let mut other = Vec::new();
    std::io::Read::read_to_end(
        &mut brotli::CompressorReader::new(&b"<p>last week's page</p>"[..], 4096, 5, 22),
        &mut other,
    )
    .unwrap();
    std::fs::write(&br, &other).unwrap();
    roots.shift_mtime(&br, 60);
    assert!(mtime(&br) > mtime(&html));

    let app = brotli_only_server(&roots).await;
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br")])
        .await;
    // Not the sibling: the original, compressed by tandem itself.
    let encoding = res
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let body = res.bytes().await.unwrap();
    assert_ne!(body, other);
    assert_eq!(decode(encoding.as_deref(), &body).await, page().as_bytes());

    let out = check(&roots);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("page.html.br does not decode to its original"),
        "{stderr}"
    );

    let out = precompress_check(&roots, &html);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("page.html.br is stale"));
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_seen_when_only_its_inode_changes() {
    let roots = StaticRoots::new();
    let robots = roots.htdocs().join("robots.txt");
    let before = std::fs::read(&robots).unwrap();
    let app = spawn_app(roots.settings()).await;
    assert_eq!(app.get("/robots.txt").await.bytes().await.unwrap(), before);

    // Same length, same modification time, other bytes: only the inode tells them apart.
    let after: Vec<u8> = before.iter().map(|b| b.to_ascii_uppercase()).collect();
    assert_ne!(after, before, "the fixture needs lower-case letters");
    let staged = roots.htdocs().join(".robots.txt.new");
    std::fs::write(&staged, &after).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(mtime(&robots))
        .unwrap();
    std::fs::rename(&staged, &robots).unwrap();

    tokio::time::sleep(EDIT_VISIBLE).await;
    assert_eq!(app.get("/robots.txt").await.bytes().await.unwrap(), after);
}
