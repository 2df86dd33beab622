//! docs/reference.md §5 "Directories" and §4 "anything else, GET/HEAD: a static file".

use std::time::{Duration, Instant};

use crate::helpers::{BinaryServer, StaticRoots, raw_get, spawn_app};

#[tokio::test]
async fn root_serves_htdocs_index() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        res.text().await.unwrap(),
        std::fs::read_to_string(roots.htdocs().join("index.html")).unwrap()
    );
}

#[tokio::test]
async fn a_directory_without_its_slash_redirects_keeping_the_query() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/docs").await;
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.get("/docs?lang=en&x=1").await;
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "/docs/?lang=en&x=1");
}

#[tokio::test]
async fn a_directory_with_its_slash_serves_its_index() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        std::fs::read_to_string(roots.htdocs().join("docs/index.html")).unwrap()
    );
}

#[tokio::test]
async fn directories_are_never_listed() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    for path in ["/no-index", "/no-index/", "/public/css/", "/public/css"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(!res.text().await.unwrap().contains("notes.txt"));
    }
}

#[tokio::test]
async fn public_paths_resolve_under_the_public_root_only() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/public/app.js").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.bytes().await.unwrap(),
        std::fs::read(roots.public().join("app.js")).unwrap()
    );
    // htdocs files are not under /public/, public files are not at the top.
    assert_eq!(app.get("/public/page.html").await.status(), 404);
    assert_eq!(app.get("/app.js").await.status(), 404);
}

#[tokio::test]
async fn public_root_with_an_index_redirects_and_serves_it() {
    let roots = StaticRoots::new();
    std::fs::write(roots.public().join("index.html"), "<p>assets</p>\n").unwrap();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/public").await;
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "/public/");
    assert_eq!(
        app.get("/public/").await.text().await.unwrap(),
        "<p>assets</p>\n"
    );
}

#[tokio::test]
async fn a_missing_file_is_a_problem_or_the_404_page_for_browsers() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/missing.html").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .get_with(
            "/missing.html",
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.text().await.unwrap(),
        std::fs::read_to_string(roots.htdocs().join("404.html")).unwrap()
    );
}

#[tokio::test]
async fn nginx_mode_serves_no_files() {
    let roots = StaticRoots::new();
    let mut settings = roots.settings();
    settings.static_files.mode = tandem::config::StaticMode::Nginx;
    let app = spawn_app(settings).await;
    assert_eq!(app.get("/page.html").await.status(), 404);
    assert_eq!(app.get("/").await.status(), 404);
}

/// Polls `/startupz` from the moment the binary starts, over a large tree: only 503 (scan
/// running) or 200, 200 for good once it comes, and the scan's summary logged by then. Whether
/// the first poll lands before the scan ends depends on the machine's load, so the 503 itself is
/// proven where start-up can be held open: `lifecycle_answers::
/// startupz_answers_503_until_the_start_up_work_is_done_then_200` (the work runs after the scan).
#[test]
fn startupz_turns_200_once_the_static_roots_are_scanned_and_stays_200() {
    let roots = StaticRoots::new();
    // Enough compressible files without siblings that the scan takes a while.
    for dir in 0..100 {
        let dir = roots.htdocs().join(format!("many/{dir}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in 0..200 {
            std::fs::write(dir.join(format!("{file}.txt")), "text\n").unwrap();
        }
    }
    let htdocs = roots.htdocs().display().to_string();
    let public = roots.public().display().to_string();
    let server = BinaryServer::spawn(&[
        ("TANDEM__STATIC__HTDOCS", htdocs.as_str()),
        ("TANDEM__STATIC__PUBLIC", public.as_str()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answers = Vec::new();
    while answers.last() != Some(&200) {
        assert!(
            Instant::now() < deadline,
            "{answers:?}; stderr:\n{}",
            server.stderr()
        );
        if let Ok((status, _)) = raw_get(server.port, "/startupz") {
            answers.push(status);
        }
    }
    assert!(answers.iter().all(|&s| s == 503 || s == 200), "{answers:?}");
    // Logged before `/startupz` turned 200; the harness may still be reading it.
    let stderr =
        server.stderr_once_it_says("missing precompressed siblings", Duration::from_secs(5));
    assert!(
        stderr.contains("missing precompressed siblings"),
        "the scan ran: {stderr}"
    );
    for _ in 0..5 {
        assert_eq!(raw_get(server.port, "/startupz").unwrap().0, 200);
    }
}
