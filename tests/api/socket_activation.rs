//! docs/reference.md §9, "Socket activation": the real binary started the way systemd starts it
//! from `deploy/tandem.socket` (the listening socket as fd 3, `LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`), with this test in systemd's place: it binds the socket, keeps its own copy,
//! and starts one tandem after another on it. The proof that matters: connections made while no
//! tandem accepts wait in the queue and the next process serves every one of them.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{BinaryServer, StaticRoots, free_port, raw_get};

/// The service manager's side: a listening socket that outlives every tandem started on it.
pub struct Activator {
    pub listener: TcpListener,
}

impl Activator {
    pub fn new() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").expect("bind the activated socket"))
    }

    pub fn on(listener: TcpListener) -> Self {
        Self { listener }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().expect("local addr").port()
    }

    /// A `tandem serve` command that receives the socket as fd 3 with `LISTEN_FDS=1`, `env` and
    /// `LISTEN_PID` set to its own pid (by `sh`, which `exec`s tandem and so keeps the pid).
    pub fn command(&self, env: &[(&str, &str)]) -> Command {
        passing(self.listener.as_raw_fd(), env)
    }

    /// Starts tandem on the socket without waiting for it (a request would wait in the queue).
    pub fn spawn(&self, env: &[(&str, &str)]) -> BinaryServer {
        BinaryServer::run(self.command(env), self.port())
    }
}

/// `tandem serve` with `fd` passed as fd 3, the way `Activator::command` describes.
fn passing(fd: RawFd, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.current_dir(crate::helpers::fixtures())
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" serve"#)
        .arg(env!("CARGO_BIN_EXE_tandem"))
        .env("LISTEN_FDS", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("TANDEM") || key == "PORT" || key.starts_with("LISTEN_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: dup2 and fcntl are async-signal-safe, and the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears close-on-exec, but not when the socket already is fd 3.
            let flags = libc::fcntl(3, libc::F_GETFD);
            if flags == -1 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

const NGINX_MODE: (&str, &str) = ("TANDEM__STATIC__MODE", "nginx");

/// Waits until stderr shows `needle`, failing with the stderr when it does not in time.
fn wait_for_line(server: &BinaryServer, needle: &str) -> String {
    let stderr = server.stderr_once_it_says(needle, Duration::from_secs(15));
    assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    stderr
}

#[test]
fn a_socket_passed_by_name_is_served_whatever_the_configured_port() {
    let activator = Activator::new();
    // The configured port is another one: the name `http` is what picks the socket.
    let other = free_port().to_string();
    let server = activator.spawn(&[
        NGINX_MODE,
        ("TANDEM__SERVER__PORT", &other),
        ("LISTEN_FDNAMES", "http"),
    ]);
    let (status, text) = raw_get(activator.port(), "/api/status").expect("served");
    assert_eq!(status, 200, "{text}");
    let stderr = wait_for_line(&server, "inherited from the service manager");
    assert!(stderr.contains(r#"named "http""#), "{stderr}");
    assert!(
        TcpStream::connect(("127.0.0.1", other.parse::<u16>().unwrap())).is_err(),
        "tandem bound the configured port as well"
    );
}

#[test]
fn an_unnamed_socket_is_taken_for_the_address_it_is_bound_to() {
    let activator = Activator::new();
    let port = activator.port().to_string();
    let server = activator.spawn(&[NGINX_MODE, ("TANDEM__SERVER__PORT", &port)]);
    let (status, text) = raw_get(activator.port(), "/healthz").expect("served");
    assert_eq!(status, 200, "{text}");
    wait_for_line(
        &server,
        "inherited from the service manager (fd 3, 127.0.0.1:",
    );
}

#[test]
fn an_inherited_descriptor_that_is_not_a_listening_tcp_socket_is_exit_2() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    // The same hand-over, with a datagram socket in fd 3.
    let cmd = passing(udp.as_raw_fd(), &[NGINX_MODE, ("LISTEN_FDNAMES", "http")]);
    let mut server = BinaryServer::run(cmd, free_port());
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(2),
        "{}",
        server.stderr()
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains(
            r#"inherited file descriptor 3 (named "http") from LISTEN_FDS is a datagram socket, not a listening TCP socket"#
        ),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
}

/// A GET sent while no tandem accepts: connected (the queue took it), answered later.
struct QueuedRequest {
    stream: TcpStream,
}

impl QueuedRequest {
    fn send(port: u16, path: &str) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect("the inherited socket still listens: the connection queues, not refused");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("the request is written into the queued connection");
        Self { stream }
    }

    /// True when nothing has answered yet (no byte within `wait`, no close, no reset).
    fn still_waiting(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.peek(&mut byte) {
            Err(err) => matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(_) => false,
        }
    }

    fn response(mut self) -> String {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut response = String::new();
        if let Err(err) = self.stream.read_to_string(&mut response) {
            panic!("the queued connection failed instead of being served: {err}");
        }
        response
    }
}

#[test]
fn the_next_process_serves_the_connections_that_queued_while_none_accepted() {
    let roots = StaticRoots::new();
    let (htdocs, public) = (roots.htdocs(), roots.public());
    let env = [
        ("TANDEM__STATIC__HTDOCS", htdocs.to_str().unwrap()),
        ("TANDEM__STATIC__PUBLIC", public.to_str().unwrap()),
        ("TANDEM__RATE_LIMIT__ENABLED", "false"),
        ("LISTEN_FDNAMES", "http"),
    ];
    let activator = Activator::new();
    let port = activator.port();
    let mut first = activator.spawn(&env);
    assert_eq!(raw_get(port, "/api/status").unwrap().0, 200);

    first.signal(libc::SIGTERM);
    wait_for_line(&first, "no longer accepting on the inherited socket");
    assert_eq!(
        first.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        first.stderr()
    );
    let served_by_first = first.stderr().matches("tandem::access").count();

    // No tandem runs: every connection is completed by the kernel and waits in the queue. With
    // the SYN filter or shutdown() of an owned socket, these would hang or be refused.
    let mut queued: Vec<QueuedRequest> = (0..20)
        .map(|i| QueuedRequest::send(port, if i % 2 == 0 { "/api/status" } else { "/" }))
        .collect();
    assert!(
        queued[0].still_waiting(Duration::from_millis(300)),
        "a stopped tandem must not answer"
    );

    let second = activator.spawn(&env);
    let started = Instant::now();
    for (i, request) in queued.drain(..).enumerate() {
        let response = request.response();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "queued request {i} got: {response}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    wait_for_line(&second, "inherited from the service manager");
    // A client can read its whole response before the access line is written and collected.
    let access_lines = |stderr: &str| stderr.matches("tandem::access").count();
    let stderr = second.stderr_once(|stderr| access_lines(stderr) >= 20, Duration::from_secs(15));
    assert_eq!(
        access_lines(&stderr),
        20,
        "the second process served all of them:\n{stderr}"
    );
    assert_eq!(served_by_first, 1, "{}", first.stderr());
}

#[test]
fn a_stop_on_an_inherited_socket_lets_in_flight_requests_finish_and_keeps_it_listening() {
    let activator = Activator::new();
    let port = activator.port();
    let mut server = activator.spawn(&[
        NGINX_MODE,
        ("LISTEN_FDNAMES", "http"),
        ("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "1"),
    ]);
    assert_eq!(raw_get(port, "/healthz").unwrap().0, 200);
    // A request in flight across the stop: the head sent, the body not yet.
    let mut upload = TcpStream::connect(("127.0.0.1", port)).unwrap();
    upload
        .write_all(b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\"")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    wait_for_line(&server, "no longer accepting on the inherited socket");
    // Still running (the upload holds it), no longer accepting, and the socket still listens.
    let mut waiting = QueuedRequest::send(port, "/healthz");
    assert!(waiting.still_waiting(Duration::from_millis(500)));
    assert!(server.child.try_wait().unwrap().is_none());
    upload.write_all(b":1}").unwrap();
    let mut response = String::new();
    upload
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = upload.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    // The listening socket survived this process: the waiting request is served by the next.
    let _next = activator.spawn(&[NGINX_MODE, ("LISTEN_FDNAMES", "http")]);
    assert!(waiting.response().starts_with("HTTP/1.1 200"));
    let addr: SocketAddr = activator.listener.local_addr().unwrap();
    assert!(TcpStream::connect(addr).is_ok());
}
