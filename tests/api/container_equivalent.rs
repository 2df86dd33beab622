//! docs/reference.md §10 `Dockerfile`, without a Docker engine: the compiled binary run the way the image
//! runs it — an /app-like directory holding htdocs/ and public/, `TANDEM__SERVER__HOST=0.0.0.0`,
//! the port from the environment, an unprivileged user (when the tests run as root), and
//! `tandem healthcheck` as the HEALTHCHECK — then stopped with the image's STOPSIGNAL.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{IpAddr, UdpSocket},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::helpers::{free_port, raw_get, skip, tandem_command, unprivileged_user};

/// The directory layout of the image's /app: copies of the repository's htdocs/ and public/.
fn image_like_app_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for root in ["htdocs", "public"] {
        let from = repo.join(root);
        let to = dir.path().join(root);
        assert!(from.is_dir(), "the repository ships {root}/");
        copy_tree(&from, &to);
    }
    // Readable by the unprivileged user, as the image's root-owned copies are.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// `tandem <args>` as the image's ENTRYPOINT would run it, listening on `port`.
fn image_command(app_dir: &Path, port: u16, args: &[&str]) -> Command {
    let mut cmd = tandem_command();
    cmd.args(args)
        .current_dir(app_dir)
        .env("TANDEM__SERVER__HOST", "0.0.0.0")
        .env("RUST_LOG", "info")
        // The image keeps the default port so a platform's PORT applies; use that path here.
        .env("PORT", port.to_string())
        .stdin(Stdio::null());
    if let Some((uid, gid)) = unprivileged_user() {
        // std also clears root's supplementary groups when it sets the uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

struct Container {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Container {
    fn start(app_dir: &Path, port: u16) -> Self {
        let mut child = image_command(app_dir, port, &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let container = Self { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(raw_get(port, "/healthz"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "tandem did not answer; stderr:\n{}",
                container.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        container
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The machine's address on its default route, if it has one.
fn non_loopback_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    // connect() on UDP only picks a route; nothing is sent.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn get(ip: IpAddr, port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[test]
fn image_equivalent_runs_unprivileged_on_all_interfaces_is_healthy_and_stops_on_sigterm() {
    let app_dir = image_like_app_dir();
    let port = free_port();
    let mut container = Container::start(app_dir.path(), port);
    let pid = container.child.id();

    assert!(
        container.stderr().contains(&format!("0.0.0.0:{port}")),
        "logs the wildcard bind:\n{}",
        container.stderr()
    );
    if let Some((uid, _)) = unprivileged_user() {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let ids: Vec<u32> = uids
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(ids, [uid; 4], "real, effective, saved and fs uid dropped");
        let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups.trim_end(), "Groups:", "no supplementary groups kept");
    }

    // Reachable on every interface, not only loopback.
    assert_eq!(get("127.0.0.1".parse().unwrap(), port, "/healthz").0, 200);
    match non_loopback_address() {
        Some(ip) => assert_eq!(get(ip, port, "/api/status").0, 200, "via {ip}"),
        None => skip("no non-loopback address to check the 0.0.0.0 bind from"),
    }

    // HEALTHCHECK ["tandem", "healthcheck"], same environment and user.
    let health = image_command(app_dir.path(), port, &["healthcheck"])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "healthcheck: {}",
        String::from_utf8_lossy(&health.stderr)
    );
    let nothing_there = free_port();
    let health = image_command(app_dir.path(), nothing_there, &["healthcheck"])
        .output()
        .unwrap();
    assert_eq!(health.status.code(), Some(1), "no server, unhealthy");

    // STOPSIGNAL SIGTERM: a clean exit 0 (PID 1 in the image, so nothing else would reap it).
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = container.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tandem did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "stderr:\n{}", container.stderr());
}

#[test]
fn image_equivalent_serves_the_shipped_page() {
    let app_dir = image_like_app_dir();
    let port = free_port();
    let _container = Container::start(app_dir.path(), port);
    let (status, text) = get("127.0.0.1".parse().unwrap(), port, "/");
    assert_eq!(status, 200, "{text}");
    let index = fs::read_to_string(app_dir.path().join("htdocs/index.html")).unwrap();
    assert!(text.ends_with(&index), "GET / is htdocs/index.html");
}
