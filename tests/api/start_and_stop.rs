//! docs/reference.md §9 through the real binary and real signals: the readiness flip and drain window,
//! in-flight requests finishing after SIGTERM, no accepted request lost under load, the second
//! signal, and exit status 0.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::helpers::{BinaryServer, raw_get};

const NGINX_MODE: (&str, &str) = ("TANDEM__STATIC__MODE", "nginx");

/// A request the server has started (its head parsed: `100 Continue` came back) and that waits
/// for the rest of its body, which holds the process open until it is sent or the shutdown
/// timeout cuts it off.
struct StalledUpload {
    stream: TcpStream,
    rest: &'static [u8],
}

impl StalledUpload {
    fn start(port: u16) -> Self {
        let body: &'static [u8] = br#"{"slow":"upload"}"#;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        write!(
            stream,
            "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("write the head");
        let mut interim = [0u8; 25];
        stream
            .read_exact(&mut interim)
            .expect("the server answers the head");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream
            .write_all(&body[..5])
            .expect("write part of the body");
        Self {
            stream,
            rest: &body[5..],
        }
    }

    /// Sends the rest of the body and returns the whole answer.
    fn finish(mut self) -> String {
        self.stream.write_all(self.rest).expect("write the rest");
        let mut response = String::new();
        let _ = self.stream.read_to_string(&mut response);
        response
    }
}

/// Polls until a new connection is refused (the listener is closed), and proves the process was
/// still running when that happened: a refused connection after the exit would prove nothing.
fn wait_until_refused_while_running(server: &mut BinaryServer) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Accepted (still draining), or the SYN was dropped (the listener is closing).
            Ok(_) | Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "the listener never closed; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the listener must close while the process still serves what it accepted; stderr:\n{}",
        server.stderr()
    );
}

/// Polls `/readyz` until it answers 503: the stop signal has been handled.
fn wait_until_draining(server: &BinaryServer) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((503, text)) = raw_get(server.port, "/readyz") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never turned 503; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_drains_then_stops_and_exits_0() {
    let mut server =
        BinaryServer::start(&[NGINX_MODE, ("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "3")]);
    assert_eq!(raw_get(server.port, "/readyz").unwrap().0, 200);
    // Accepted before the signal: it keeps the process alive after the listener closes.
    let upload = StalledUpload::start(server.port);
    server.signal(libc::SIGTERM);
    // Draining: not ready, but alive and still serving.
    let text = wait_until_draining(&server);
    assert!(text.contains(r#"{"status":"draining"}"#), "{text}");
    assert_eq!(raw_get(server.port, "/healthz").unwrap().0, 200);
    let (status, text) = raw_get(server.port, "/json").unwrap();
    assert_eq!(status, 200);
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    wait_until_refused_while_running(&mut server);
    let response = upload.finish();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(server.stderr().contains("SIGTERM"), "{}", server.stderr());
}

#[test]
fn sigint_stops_gracefully_too() {
    let mut server = BinaryServer::start(&[NGINX_MODE]);
    server.signal(libc::SIGINT);
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.stderr()
    );
    assert!(server.stderr().contains("SIGINT"), "{}", server.stderr());
}

#[test]
fn an_in_flight_request_finishes_after_sigterm() {
    let mut server = BinaryServer::start(&[NGINX_MODE]);
    // The request is accepted and half received when the stop signal arrives.
    let upload = StalledUpload::start(server.port);
    server.signal(libc::SIGTERM);
    // The stop goes on around it: the listener closes, the request still completes.
    wait_until_refused_while_running(&mut server);
    let response = upload.finish();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""echo":{"slow":"upload"}"#),
        "{response}"
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.stderr()
    );
}

#[test]
fn in_flight_requests_are_cut_off_after_the_shutdown_timeout() {
    // 2 s, not 1: actix checks its workers once a second, so even a zero timeout takes 1 s.
    const TIMEOUT: Duration = Duration::from_secs(2);
    let mut server =
        BinaryServer::start(&[NGINX_MODE, ("TANDEM__SERVER__SHUTDOWN_TIMEOUT_SECS", "2")]);
    let mut upload = StalledUpload::start(server.port);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    // The stalled upload never completes: the stop is bounded by the timeout, not by the client.
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.stderr()
    );
    let elapsed = signalled.elapsed();
    assert!(
        elapsed >= TIMEOUT,
        "the in-flight request got {elapsed:?}, less than shutdown_timeout_secs"
    );
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // Cut off: the connection ended without an answer.
    let mut response = String::new();
    let _ = upload.stream.read_to_string(&mut response);
    assert_eq!(response, "", "a cut-off request gets no answer");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server =
        BinaryServer::start(&[NGINX_MODE, ("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "30")]);
    server.signal(libc::SIGTERM);
    // Only once the first is handled: two signals sent together may arrive as one.
    wait_until_draining(&server);
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    let second = Instant::now();
    server.signal(libc::SIGTERM);
    let code = server.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(1), "{}", server.stderr());
    assert!(second.elapsed() < Duration::from_secs(5));
    assert!(
        server.stderr().contains("received again"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_stop_under_steady_load_loses_no_accepted_request() {
    // Every request must be answered 200: the limiter is not what this test is about.
    let mut server = BinaryServer::start(&[
        NGINX_MODE,
        ("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "1"),
        ("TANDEM__SERVER__SHUTDOWN_TIMEOUT_SECS", "30"),
        ("TANDEM__RATE_LIMIT__ENABLED", "false"),
    ]);
    // Holds the process open after the listener closes, so refusals are seen while it runs.
    let upload = StalledUpload::start(server.port);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, refused, lost) =
                (stop.clone(), ok.clone(), refused.clone(), lost.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(15);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match TcpStream::connect(("127.0.0.1", port)) {
                        Err(_) => {
                            // Not accepted: the listener is closed. That loses nothing.
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Ok(mut stream) => {
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            let sent = stream.write_all(
                                b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            );
                            let mut response = String::new();
                            let read = stream.read_to_string(&mut response);
                            if sent.is_ok() && read.is_ok() && response.starts_with("HTTP/1.1 200")
                            {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else if response.is_empty() && sent.is_ok() {
                                // Connected after the listener stopped accepting (kernel backlog):
                                // counted separately below.
                                lost.lock()
                                    .unwrap()
                                    .push(format!("empty answer ({read:?})"));
                            } else {
                                lost.lock()
                                    .unwrap()
                                    .push(format!("{sent:?} {read:?} {response:?}"));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "the load never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = ok.load(Ordering::Relaxed);
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while refused.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no connection was ever refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "connections were refused while the process still ran (the upload holds it)"
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let response = upload.finish();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        server.stderr()
    );
    let lost = lost.lock().unwrap();
    assert!(
        ok.load(Ordering::Relaxed) > before,
        "requests were served during the drain"
    );
    assert!(
        lost.is_empty(),
        "lost {} accepted requests: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
