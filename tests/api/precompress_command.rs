//! `tandem precompress` (docs/reference.md §2, §5), run as the real binary on temporary trees.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, SystemTime},
};

use crate::helpers::tandem_command;

/// A temporary site: `htdocs/` and `public/` configured as the roots.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("htdocs")).unwrap();
        fs::create_dir(dir.path().join("public")).unwrap();
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = tandem_command();
        cmd.current_dir(self.dir.path())
            .env("TANDEM__STATIC__HTDOCS", self.path("htdocs"))
            .env("TANDEM__STATIC__PUBLIC", self.path("public"))
            .arg("precompress")
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sibling(path: &Path, extension: &str) -> PathBuf {
    PathBuf::from(format!("{}.{extension}", path.display()))
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, time: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

/// Well compressible text, a few KiB.
fn text() -> String {
    (0..400)
        .map(|i| format!("<p>line {i} of a page tandem serves precompressed</p>\n"))
        .collect()
}

/// Bytes no compressor can shrink, from the kernel's generator.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// Decodes with the reference command-line tool, not tandem's own code.
fn decode_with_cli(path: &Path, extension: &str) -> Vec<u8> {
    let tool = match extension {
        "br" => "brotli",
        "zst" => "zstd",
        "gz" => "gzip",
        other => panic!("unknown extension {other}"),
    };
    let output = Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .unwrap_or_else(|err| panic!("{tool} must be installed (see .ci/run): {err}"));
    assert!(
        output.status.success(),
        "{tool} failed on {}",
        path.display()
    );
    output.stdout
}

#[test]
fn siblings_carry_the_source_mtime_and_decode_back_to_the_source() {
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    let css = site.write("public/app.css", text().replace("<p>", "p { color: red } "));
    set_mtime(&html, SystemTime::now() - Duration::from_secs(3600));

    let output = site.run(&[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    for source in [&html, &css] {
        for extension in ["br", "zst", "gz"] {
            let compressed = sibling(source, extension);
            assert_eq!(
                mtime(&compressed),
                mtime(source),
                "{}",
                compressed.display()
            );
            assert_eq!(
                decode_with_cli(&compressed, extension),
                fs::read(source).unwrap()
            );
            assert!(fs::metadata(&compressed).unwrap().len() < fs::metadata(source).unwrap().len());
        }
    }
}

#[test]
fn no_temporary_files_are_left_beside_the_siblings() {
    let site = Site::new();
    site.write("htdocs/index.html", text());
    assert_eq!(code(&site.run(&[])), 0);
    let mut names: Vec<String> = fs::read_dir(site.path("htdocs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "index.html",
            "index.html.br",
            "index.html.gz",
            "index.html.zst"
        ]
    );
}

#[test]
fn fresh_siblings_are_skipped_and_force_rewrites_them() {
    let site = Site::new();
    let js = site.write("public/app.js", text());
    assert_eq!(code(&site.run(&[])), 0);
    let br = sibling(&js, "br");
    let first = inode(&br);

    let output = site.run(&[]);
    assert_eq!(code(&output), 0);
    assert_eq!(inode(&br), first, "a fresh sibling must not be rewritten");
    assert!(
        stdout(&output).lines().any(|l| l.starts_with("br ")
            && l.split_whitespace().nth(1) == Some("0")
            && l.split_whitespace().nth(2) == Some("1")),
        "{}",
        stdout(&output)
    );

    // A newer sibling is fresh too, whatever it contains.
    set_mtime(&br, mtime(&js) + Duration::from_secs(60));
    assert_eq!(code(&site.run(&[])), 0);
    assert_eq!(inode(&br), first);

    assert_eq!(code(&site.run(&["--force"])), 0);
    assert_ne!(inode(&br), first, "--force rewrites fresh siblings");
    assert_eq!(mtime(&br), mtime(&js));
}

#[test]
fn a_changed_source_makes_its_siblings_stale_and_a_run_rewrites_them() {
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    assert_eq!(code(&site.run(&[])), 0);
    let new_text = text().replace("line", "row");
    fs::write(&html, &new_text).unwrap();
    set_mtime(&html, SystemTime::now() + Duration::from_secs(5));

    let check = site.run(&["--check"]);
    assert_eq!(code(&check), 1, "{}", stdout(&check));
    assert!(
        stderr(&check).contains("index.html.br is stale"),
        "{}",
        stderr(&check)
    );

    assert_eq!(code(&site.run(&[])), 0);
    for extension in ["br", "zst", "gz"] {
        let compressed = sibling(&html, extension);
        assert_eq!(decode_with_cli(&compressed, extension), new_text.as_bytes());
        assert_eq!(mtime(&compressed), mtime(&html));
    }
    assert_eq!(code(&site.run(&["--check"])), 0);
}

#[test]
fn an_encoding_that_saves_less_than_five_percent_is_not_written() {
    let site = Site::new();
    let noise = site.write("htdocs/noise.txt", random_bytes(20_000));
    let output = site.run(&[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    for extension in ["br", "zst", "gz"] {
        assert!(!sibling(&noise, extension).exists(), "{extension}");
    }
    assert!(
        stdout(&output)
            .lines()
            .any(|l| l.starts_with("gzip ") && l.split_whitespace().nth(4) == Some("1")),
        "the summary counts it under saving<5%:\n{}",
        stdout(&output)
    );
    // Not missing: --check knows a run would not write it.
    assert_eq!(code(&site.run(&["--check"])), 0);
}

#[test]
fn a_stale_sibling_whose_source_no_longer_compresses_is_removed() {
    let site = Site::new();
    let data = site.write("htdocs/data.txt", text());
    assert_eq!(code(&site.run(&[])), 0);
    fs::write(&data, random_bytes(20_000)).unwrap();
    set_mtime(&data, SystemTime::now() + Duration::from_secs(5));
    assert_eq!(code(&site.run(&["--check"])), 1);
    assert_eq!(code(&site.run(&[])), 0);
    assert!(!sibling(&data, "br").exists());
    assert_eq!(code(&site.run(&["--check"])), 0);
}

#[test]
fn already_compressed_formats_are_never_compressed() {
    let site = Site::new();
    // Compressible bytes behind names that say "already compressed".
    let names = [
        "htdocs/a.png",
        "htdocs/a.jpg",
        "public/f.woff2",
        "public/x.zip",
        "public/m.mp4",
        "public/d.pdf",
        "public/bundle.tar.gz",
    ];
    for name in names {
        site.write(name, text());
    }
    let svg = site.write("htdocs/logo.svg", text());
    let output = site.run(&[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    for name in names {
        for extension in ["br", "zst", "gz"] {
            assert!(
                !sibling(&site.path(name), extension).exists(),
                "{name}.{extension}"
            );
        }
    }
    assert!(sibling(&svg, "br").exists());
}

#[test]
fn check_writes_nothing_and_exits_1_while_a_sibling_is_missing() {
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    let check = site.run(&["--check"]);
    assert_eq!(code(&check), 1);
    assert!(
        stderr(&check).contains("index.html.br is missing"),
        "{}",
        stderr(&check)
    );
    assert!(!sibling(&html, "br").exists(), "--check writes nothing");

    assert_eq!(code(&site.run(&[])), 0);
    let check = site.run(&["--check"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert!(stdout(&check).contains("every sibling is up to date"));

    fs::remove_file(sibling(&html, "zst")).unwrap();
    assert_eq!(code(&site.run(&["--check"])), 1);
}

#[test]
fn check_accepts_siblings_older_than_their_source_that_decode_to_it() {
    // What a fresh `git clone` produces: the same bytes, mtimes in checkout order.
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    assert_eq!(code(&site.run(&[])), 0);
    let br = sibling(&html, "br");
    let before = inode(&br);
    set_mtime(&html, mtime(&br) + Duration::from_millis(7));

    let check = site.run(&["--check"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert!(
        stdout(&check).contains("older than it"),
        "{}",
        stdout(&check)
    );
    assert!(mtime(&br) < mtime(&html), "--check changes nothing");

    // A run restores the mtime without recompressing.
    assert_eq!(code(&site.run(&[])), 0);
    assert_eq!(mtime(&br), mtime(&html));
    assert_eq!(inode(&br), before);
}

#[test]
fn check_rejects_a_newer_sibling_that_does_not_decode_to_its_source() {
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    assert_eq!(code(&site.run(&[])), 0);
    let gz = sibling(&html, "gz");
    fs::write(&gz, b"not gzip").unwrap();
    set_mtime(&gz, mtime(&html) + Duration::from_secs(1));
    let check = site.run(&["--check"]);
    assert_eq!(code(&check), 1);
    assert!(
        stderr(&check).contains("index.html.gz is stale"),
        "{}",
        stderr(&check)
    );
}

#[test]
fn prune_removes_siblings_whose_source_is_gone() {
    let site = Site::new();
    let old = site.write("public/old.js", text());
    let kept = site.write("public/kept.js", text());
    let archive = site.write("public/backup.tar.gz", random_bytes(100));
    assert_eq!(code(&site.run(&[])), 0);
    fs::remove_file(&old).unwrap();

    // Without --prune orphans stay.
    assert_eq!(code(&site.run(&[])), 0);
    assert!(sibling(&old, "br").exists());
    assert_eq!(code(&site.run(&["--check", "--prune"])), 1);
    assert!(
        sibling(&old, "br").exists(),
        "--check --prune removes nothing"
    );

    let output = site.run(&["--prune"]);
    assert_eq!(code(&output), 0);
    for extension in ["br", "zst", "gz"] {
        assert!(!sibling(&old, extension).exists());
        assert!(sibling(&kept, extension).exists());
    }
    assert!(
        archive.exists(),
        "a real archive is not an orphaned sibling"
    );
    assert!(stdout(&output).contains("3 orphaned siblings pruned"));
    assert_eq!(code(&site.run(&["--check", "--prune"])), 0);
}

#[test]
fn dotfiles_and_dot_directories_are_skipped() {
    let site = Site::new();
    let hidden = site.write("htdocs/.secret.txt", text());
    let inside = site.write("htdocs/.git/config.txt", text());
    let visible = site.write("htdocs/visible.txt", text());
    assert_eq!(code(&site.run(&[])), 0);
    assert!(!sibling(&hidden, "br").exists());
    assert!(!sibling(&inside, "br").exists());
    assert!(sibling(&visible, "br").exists());
}

#[test]
fn symlinks_leading_outside_the_root_are_never_followed() {
    let site = Site::new();
    let outside = site.write("outside/secret.txt", text());
    let link = site.path("htdocs/leak.txt");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    std::os::unix::fs::symlink(site.path("outside"), site.path("htdocs/dir")).unwrap();
    let target = site.write("htdocs/real.txt", text());
    let inner = site.path("htdocs/alias.txt");
    std::os::unix::fs::symlink(&target, &inner).unwrap();

    let output = site.run(&[]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(!sibling(&link, "br").exists());
    assert!(!sibling(&outside, "br").exists());
    assert!(!site.path("htdocs/dir/secret.txt.br").exists());
    assert!(
        sibling(&inner, "br").exists(),
        "a link inside the root is fine"
    );
}

#[test]
fn the_summary_counts_siblings_and_bytes_per_encoding() {
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    site.write("htdocs/logo.png", random_bytes(500));
    let output = site.run(&[]);
    assert_eq!(code(&output), 0);
    let out = stdout(&output);
    assert!(out.contains("1 compressible files"), "{out}");
    assert!(out.contains("skipped 1 not compressible"), "{out}");
    let size = fs::metadata(&html).unwrap().len().to_string();
    for (token, extension) in [("br", "br"), ("zstd", "zst"), ("gzip", "gz")] {
        let compressed = fs::metadata(sibling(&html, extension))
            .unwrap()
            .len()
            .to_string();
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(token))
            .unwrap_or_else(|| panic!("no {token} line in\n{out}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], "1", "{line}");
        assert_eq!(columns[6], size, "{line}");
        assert_eq!(columns[7], compressed, "{line}");
    }
}

#[test]
fn only_the_configured_encodings_are_written() {
    let site = Site::new();
    let html = site.write("htdocs/index.html", text());
    let output = site
        .command(&[])
        .env("TANDEM__STATIC__ENCODINGS", "gzip")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);
    assert!(sibling(&html, "gz").exists());
    assert!(!sibling(&html, "br").exists());
    assert!(!sibling(&html, "zst").exists());
}

#[test]
fn explicit_directories_replace_the_configured_roots() {
    let site = Site::new();
    let configured = site.write("htdocs/index.html", text());
    let other = site.write("other/page.html", text());
    let dir = site.path("other");
    assert_eq!(code(&site.run(&[dir.to_str().unwrap()])), 0);
    assert!(sibling(&other, "br").exists());
    assert!(!sibling(&configured, "br").exists());
}

#[test]
fn a_missing_directory_is_a_usage_error_that_names_it() {
    let site = Site::new();
    let output = site.run(&["no-such-dir"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("no-such-dir"),
        "{}",
        stderr(&output)
    );
    assert_eq!(code(&site.run(&["--check", "--force"])), 2);
}

#[test]
fn a_sibling_that_cannot_be_written_fails_the_run_and_is_named() {
    let site = Site::new();
    let locked = site.write("htdocs/locked.txt", text());
    // A directory where the sibling belongs cannot be replaced by a file (this holds for root too).
    fs::create_dir(sibling(&locked, "br")).unwrap();
    fs::write(sibling(&locked, "br").join("keep"), b"x").unwrap();
    let output = site.run(&[]);
    assert_eq!(code(&output), 1, "{}", stdout(&output));
    assert!(
        stderr(&output).contains("locked.txt.br"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn overlapping_directories_are_walked_once() {
    let site = Site::new();
    site.write("htdocs/index.html", text());
    site.write("htdocs/docs/guide.html", text());
    let htdocs = site.path("htdocs");
    let docs = site.path("htdocs/docs");
    let output = site.run(&[
        htdocs.to_str().unwrap(),
        docs.to_str().unwrap(),
        htdocs.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("2 compressible files"),
        "{}",
        stdout(&output)
    );
}
