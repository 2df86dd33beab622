//! docs/reference.md §5 "Cache-Control" and "Edits on disk ... visible within 1 second".

use std::time::Duration;

use crate::helpers::{StaticRoots, TestApp, spawn_app};

async fn cache_control(app: &TestApp, path: &str) -> String {
    let res = app.get(path).await;
    assert_eq!(res.status(), 200, "{path}");
    res.headers()["cache-control"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn fingerprinted_public_assets_are_immutable_for_a_year() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    assert_eq!(
        cache_control(&app, "/public/app.3f9a2c1b.js").await,
        "public, max-age=31536000, immutable"
    );
}

#[tokio::test]
async fn other_assets_get_the_configured_max_age() {
    let roots = StaticRoots::new();
    let mut settings = roots.settings();
    settings.static_files.public_max_age_secs = 600;
    let app = spawn_app(settings).await;
    for path in [
        "/public/app.js",
        "/public/css/site.css",
        "/robots.txt",
        "/logo.png",
    ] {
        assert_eq!(
            cache_control(&app, path).await,
            "public, max-age=600",
            "{path}"
        );
    }
}

#[tokio::test]
async fn html_documents_get_the_configured_html_cache_control() {
    let roots = StaticRoots::new();
    let mut settings = roots.settings();
    settings.static_files.html_cache_control = "no-cache, must-revalidate".into();
    let app = spawn_app(settings).await;
    for path in ["/", "/index.html", "/page.html", "/docs/"] {
        assert_eq!(
            cache_control(&app, path).await,
            "no-cache, must-revalidate",
            "{path}"
        );
    }
    let default = spawn_app(roots.settings()).await;
    assert_eq!(cache_control(&default, "/page.html").await, "no-cache");
}

/// Long enough for the cache's half-second revalidation, short of the reference's one second (§5) plus
/// the request's own time.
const EDIT_VISIBLE: Duration = Duration::from_millis(1100);

#[tokio::test]
async fn a_changed_file_is_served_within_a_second() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let robots = roots.htdocs().join("robots.txt");
    let before = app.get("/robots.txt").await;
    let old_etag = before.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(before.text().await.unwrap(), "User-agent: *\nAllow: /\n");

    // Same length, new contents: only the mtime tells.
    std::fs::write(&robots, "User-agent: *\nAllow: -\n").unwrap();
    tokio::time::sleep(EDIT_VISIBLE).await;
    let after = app.get("/robots.txt").await;
    assert_ne!(after.headers()["etag"].to_str().unwrap(), old_etag);
    assert_eq!(after.text().await.unwrap(), "User-agent: *\nAllow: -\n");
}

#[tokio::test]
async fn new_and_removed_files_are_seen_within_a_second() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    assert_eq!(app.get("/fresh.txt").await.status(), 404);
    std::fs::write(roots.htdocs().join("fresh.txt"), "new\n").unwrap();
    tokio::time::sleep(EDIT_VISIBLE).await;
    let res = app.get("/fresh.txt").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "new\n");

    assert_eq!(app.get("/robots.txt").await.status(), 200);
    std::fs::remove_file(roots.htdocs().join("robots.txt")).unwrap();
    tokio::time::sleep(EDIT_VISIBLE).await;
    assert_eq!(app.get("/robots.txt").await.status(), 404);
}

#[tokio::test]
async fn new_and_removed_siblings_are_seen_within_a_second() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let br = || app.get_with("/page.html", &[("accept-encoding", "br, gzip")]);
    assert_eq!(br().await.headers()["content-encoding"], "br");
    std::fs::remove_file(roots.htdocs().join("page.html.br")).unwrap();
    tokio::time::sleep(EDIT_VISIBLE).await;
    assert_eq!(br().await.headers()["content-encoding"], "gzip");

    // A sibling appearing for a file that had none replaces on-the-fly compression.
    let css = roots.public().join("css/site.css");
    let res = app
        .get_with("/public/css/site.css", &[("accept-encoding", "br")])
        .await;
    assert!(res.headers().get("content-encoding").is_none());
    let sibling = roots.public().join("css/site.css.br");
    // A sibling is served only when it decodes to its original.
    let mut written = Vec::new();
    std::io::Read::read_to_end(
        &mut brotli::CompressorReader::new(&std::fs::read(&css).unwrap()[..], 4096, 1, 22),
        &mut written,
    )
    .unwrap();
    std::fs::write(&sibling, &written).unwrap();
    let when = std::fs::metadata(&css).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&sibling)
        .unwrap()
        .set_modified(when)
        .unwrap();
    tokio::time::sleep(EDIT_VISIBLE).await;
    let res = app
        .get_with("/public/css/site.css", &[("accept-encoding", "br")])
        .await;
    assert_eq!(res.headers()["content-encoding"], "br");
    assert_eq!(res.bytes().await.unwrap(), written);
}

#[tokio::test]
async fn a_sibling_going_stale_stops_being_served_within_a_second() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let req = || app.get_with("/public/app.js", &[("accept-encoding", "br")]);
    assert_eq!(req().await.headers()["content-encoding"], "br");
    // An edit makes every sibling stale: none decodes to the new content.
    let app_js = roots.public().join("app.js");
    let mut edited = std::fs::read(&app_js).unwrap();
    edited.extend_from_slice(b"\n// edited\n");
    std::fs::write(&app_js, &edited).unwrap();
    tokio::time::sleep(EDIT_VISIBLE).await;
    let res = req().await;
    // Compressed from the (newer) original instead.
    let body = res.bytes().await.unwrap();
    let original = std::fs::read(roots.public().join("app.js")).unwrap();
    assert_eq!(crate::helpers::decode(Some("br"), &body).await, original);
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_seen_within_a_second() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let robots = roots.htdocs().join("robots.txt");
    let before = app.get("/robots.txt").await;
    let old_etag = before.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(before.text().await.unwrap(), "User-agent: *\nAllow: /\n");

    // Same length and modification time: only the inode tells (an atomic deploy's rename).
    let old = std::fs::metadata(&robots).unwrap();
    let staged = roots.htdocs().join(".robots.txt.new");
    std::fs::write(&staged, "User-agent: *\nAllow: -\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(old.modified().unwrap())
        .unwrap();
    std::fs::rename(&staged, &robots).unwrap();
    let new = std::fs::metadata(&robots).unwrap();
    assert_eq!(
        (new.len(), new.modified().unwrap()),
        (old.len(), old.modified().unwrap())
    );
    assert_ne!(
        std::os::unix::fs::MetadataExt::ino(&new),
        std::os::unix::fs::MetadataExt::ino(&old)
    );

    tokio::time::sleep(EDIT_VISIBLE).await;
    let after = app.get("/robots.txt").await;
    // A new tag too, or a cache revalidating with the old one would keep the old bytes.
    assert_ne!(after.headers()["etag"].to_str().unwrap(), old_etag);
    assert_eq!(after.text().await.unwrap(), "User-agent: *\nAllow: -\n");
}
