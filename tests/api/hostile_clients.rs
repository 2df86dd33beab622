//! docs/reference.md §4 "Hostile clients": small versions of `bench/hostile/clients.sh` against
//! the real server. They check that normal clients are served (never refused) beside the
//! attack and what the attacker gets; the figures (latency, memory) are the bench script's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout},
};

use crate::helpers::{StaticRoots, TestApp, nginx_mode_settings, spawn_app, test_settings};

/// Reads to EOF (the server closed the connection) or until `limit` passes: the bytes, and
/// whether the server closed. A reset after the answer counts as closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&answer).into(), true),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&answer).into(), false),
        }
    }
}

/// `n` normal requests for `/json`, each on a new connection (as new visitors come): every one
/// must be accepted and answered 200.
async fn normal_client(app: &TestApp, n: usize) {
    for i in 0..n {
        let mut stream = TcpStream::connect(app.addr)
            .await
            .unwrap_or_else(|e| panic!("normal connection {i} beside the attack refused: {e}"));
        stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
        assert!(
            closed,
            "normal request {i} beside the attack: no complete answer"
        );
        assert!(
            answer.starts_with("HTTP/1.1 200 "),
            "normal request {i}: {answer}"
        );
    }
}

#[tokio::test]
async fn slowloris_connections_get_actix_bare_408_after_the_request_timeout_while_others_are_served()
 {
    let mut settings = nginx_mode_settings();
    settings.server.client_request_timeout_ms = 1000;
    let app = spawn_app(settings).await;
    let mut trickling = Vec::new();
    for i in 0..50 {
        let addr = app.addr;
        trickling.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            stream
                .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow\r\n")
                .await
                .unwrap();
            // Valid header bytes, one every 100 ms: the head never ends, never turns malformed.
            let line = format!("X-Trickle-{i}: 1\r\n").into_bytes();
            let mut answer = String::new();
            let mut closed = false;
            for byte in line.iter().cycle().take(100) {
                if stream.write_all(&[*byte]).await.is_err() {
                    closed = true;
                    break;
                }
                let (more, gone) = read_until_closed(&mut stream, Duration::from_millis(100)).await;
                answer.push_str(&more);
                if gone {
                    closed = true;
                    break;
                }
            }
            (answer, closed, started.elapsed())
        }));
    }
    sleep(Duration::from_millis(300)).await;
    normal_client(&app, 20).await;
    for task in trickling {
        let (answer, closed, lasted) = task.await.unwrap();
        assert!(
            closed,
            "a trickling connection was still open after {lasted:?}"
        );
        // Closed by this timeout, not by anything the trickle did (not before it), and not by
        // actix's default of 5 s (the setting took effect): a bound on a timer, not on speed.
        assert!(
            lasted >= Duration::from_millis(800) && lasted < Duration::from_secs(4),
            "closed after {lasted:?}"
        );
        // What the client gets is actix-http's own answer, written before tandem sees any
        // request (docs/reference.md §4): no body, no problem+json, no request ID.
        if !answer.is_empty() {
            let head = answer.to_ascii_lowercase();
            assert!(
                head.starts_with("http/1.1 408 request timeout\r\n"),
                "{answer}"
            );
            assert!(head.contains("content-length: 0\r\n"), "{answer}");
            assert!(head.contains("connection: close\r\n"), "{answer}");
            assert!(!head.contains("x-request-id"), "{answer}");
        }
    }
}

#[tokio::test]
async fn slow_readers_of_a_large_file_do_not_hold_up_other_clients() {
    let roots = StaticRoots::new();
    let big: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(roots.htdocs().join("big.bin"), &big).unwrap();
    let mut settings = roots.settings();
    settings.server.workers = 1;
    let app = spawn_app(settings).await;
    // Thirty clients ask for the file and read nothing: their sockets' buffers fill and the
    // server's writes to them wait.
    let mut readers = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        readers.push(stream);
    }
    sleep(Duration::from_millis(300)).await;
    normal_client(&app, 10).await;
    let whole = app.get("/big.bin").await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), big);
    // The slow readers were not dropped meanwhile: each still gets its bytes when it reads.
    for stream in &mut readers {
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
    }
}

#[tokio::test]
async fn new_clients_are_served_beside_many_idle_keep_alive_connections() {
    let mut settings = nginx_mode_settings();
    settings.server.workers = 1;
    let app = spawn_app(settings).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        timeout(Duration::from_secs(20), stream.read_exact(&mut head))
            .await
            .expect("every idle connection was served once")
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        idle.push(stream);
    }
    // 300 connections are open and silent; the cap (`server.max_connections`, 25,000 per
    // worker) is far away, so a new client is accepted and served at once.
    normal_client(&app, 20).await;
    drop(idle);
}

/// What a client announcing a huge body learnt: the answer, how many body bytes it had written
/// when the answer came, and whether the server then closed the connection while the client
/// went on sending.
struct Upload {
    answer: String,
    sent_before_answer: usize,
    closed_after: bool,
}

/// Sends a `POST` announcing a 10 GB body (or an endless chunked one) in 64 KiB pieces, and
/// goes on sending after the answer, as a hostile client would, for up to 10 s.
async fn upload(addr: std::net::SocketAddr, path: &str, chunked: bool) -> Upload {
    const SIZE: usize = 10_000_000_000;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {SIZE}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    // Ends with `true` when the server stopped taking the body (a write failed).
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let piece = vec![b' '; 64 * 1024];
            let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
            while chunked || sent.load(Ordering::SeqCst) < SIZE {
                let bytes = if chunked { &chunk } else { &piece };
                if write.write_all(bytes).await.is_err() {
                    return true;
                }
                sent.fetch_add(piece.len(), Ordering::SeqCst);
            }
            false
        })
    };
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        match timeout(Duration::from_secs(20), read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!("no answer to POST {path}: {other:?}"),
        }
    }
    let sent_before_answer = sent.load(Ordering::SeqCst);
    let closed_after = match timeout(Duration::from_secs(10), sender).await {
        Ok(ended) => ended.unwrap(),
        Err(_) => false,
    };
    Upload {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        sent_before_answer,
        closed_after,
    }
}

#[tokio::test]
async fn huge_uploads_are_refused_before_they_are_sent_and_never_read() {
    let app = spawn_app(nginx_mode_settings()).await;
    let cases = [
        ("/api/echo", false, "413"),
        ("/api/echo", true, "413"),
        ("/api/status", false, "413"),
        // `/api/status` takes no body: the method is refused before any body would be read.
        ("/api/status", true, "405"),
    ];
    for (path, chunked, status) in cases {
        let Upload {
            answer,
            sent_before_answer,
            closed_after,
        } = upload(app.addr, path, chunked).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{path} chunked={chunked}: {answer}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{answer}"
        );
        // The answer came while almost all of the body was still unsent: nothing waited for
        // (or buffered) the body. What was sent sits in socket buffers, a few MiB at most.
        assert!(
            sent_before_answer < 32 * 1024 * 1024,
            "{path} chunked={chunked}: {sent_before_answer} bytes sent before the answer"
        );
        // And the rest is not read: the server closes the connection on a client that goes on
        // sending, after reading and discarding for at most `client_disconnect_timeout_ms`
        // (actix-http would read a dropped chunked body to its end, which need not come).
        assert!(
            closed_after,
            "{path} chunked={chunked}: still taking the body 10 s after the answer"
        );
    }
}

/// What a raw request gets: the status and the whole answer, read until the server closes the
/// connection (the request does not ask it to; a connection still open after 10 s fails). A
/// server that answers before reading everything may reset the connection after its answer:
/// that counts as closed too.
fn closed_answer(port: u16, target: &str, headers: &str) -> (u16, String) {
    use std::io::{ErrorKind, Read, Write};
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may stop reading (and answer) before all of it is sent.
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !answer.is_empty() => break,
            Err(e) => panic!("{target}: the connection was not closed after the answer: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

fn problem_body(answer: &str) -> Value {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    serde_json::from_str(body).expect("a JSON body")
}

#[tokio::test]
async fn oversized_heads_get_414_or_431_as_problems_and_the_connection_closed() {
    let app = spawn_app(nginx_mode_settings()).await;
    let port = app.addr.port();
    tokio::task::spawn_blocking(move || {
        // Just over tandem's limits: tandem answers, as problem+json naming the request.
        let long_target = format!("/{}", "a".repeat(8 * 1024));
        let (status, answer) = closed_answer(port, &long_target, "X-Request-Id: long-target\r\n");
        assert_eq!(status, 414, "{answer}");
        let body = problem_body(&answer);
        assert_eq!(body["status"], 414);
        assert_eq!(body["request_id"], "long-target");

        let big_header = format!(
            "X-Big: {}\r\nX-Request-Id: big-header\r\n",
            "a".repeat(33 * 1024)
        );
        let (status, answer) = closed_answer(port, "/json", &big_header);
        assert_eq!(status, 431, "{answer}");
        let body = problem_body(&answer);
        assert_eq!(body["status"], 431);
        assert_eq!(body["request_id"], "big-header");

        // Over actix-http's own limits: it answers before tandem sees a request, with an empty
        // body (docs/reference.md §4 says so), and closes the connection too.
        let huge_header = format!("X-Big: {}\r\n", "a".repeat(140_000));
        let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
        let huge_target = format!("/{}", "a".repeat(70_000));
        for (target, headers, expected) in [
            ("/json", huge_header.as_str(), 431),
            ("/json", many_headers.as_str(), 431),
            (huge_target.as_str(), "", 400),
        ] {
            let (status, answer) = closed_answer(port, target, headers);
            assert_eq!(status, expected, "{answer}");
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("content-length: 0\r\n"),
                "{answer}"
            );
        }
    })
    .await
    .unwrap();
}

/// `keep_alive_secs` 1 and `client_request_timeout_ms` 1000: the watchdog closes a connection
/// that has had no request in flight and no new head for 2 s (docs/reference.md §4 "A slow
/// second head").
fn watched_settings(mut settings: tandem::Settings) -> tandem::Settings {
    settings.server.keep_alive_secs = 1;
    settings.server.client_request_timeout_ms = 1000;
    settings
}

const QUIET_LIMIT: Duration = Duration::from_secs(2);

/// Reads one sized answer on a kept-alive connection, and returns it.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("the connection is readable");
        assert!(n > 0, "closed before the answer ended: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .expect("a sized answer")
            .parse()
            .expect("a number");
        if answer.len() >= end + 4 + length {
            return String::from_utf8_lossy(&answer).into();
        }
    }
}

const FIRST_REQUEST: &[u8] = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_trickled_second_head_is_cut_once_the_connection_has_been_quiet_too_long() {
    let app = spawn_app(watched_settings(nginx_mode_settings())).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(FIRST_REQUEST).await.unwrap();
    let first = read_answer(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    let answered = Instant::now();
    // A valid head that never ends, one byte every 200 ms: each byte clears actix-http's
    // keep-alive timer, and actix-http does not time a second head.
    let head = b"GET /json HTTP/1.1\r\nHost: x\r\nX-Trickle: 1\r\n".iter();
    let filler = b"X-More: 1\r\n".iter().cycle();
    let mut closed = false;
    let mut seen = String::new();
    for byte in head.chain(filler).take(40) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let (more, gone) = read_until_closed(&mut stream, Duration::from_millis(200)).await;
        seen.push_str(&more);
        if gone {
            closed = true;
            break;
        }
    }
    let lasted = answered.elapsed();
    assert!(
        closed,
        "the trickling connection was still open after {lasted:?}"
    );
    // Not before the limit (the previous response ended just before `answered`), and by a
    // tolerant bound after it: a timer's bound, not a speed.
    assert!(
        lasted >= QUIET_LIMIT - Duration::from_millis(200) && lasted < QUIET_LIMIT * 2,
        "closed {lasted:?} after the first answer"
    );
    // No request exists for a head that never ended: the client sees the connection close.
    assert!(seen.is_empty(), "{seen}");
}

#[tokio::test]
async fn a_prompt_second_request_on_a_kept_alive_connection_is_served() {
    let app = spawn_app(watched_settings(nginx_mode_settings())).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // Each pause well within keep-alive (actix's clock is coarse, to half a second), all of
    // them together longer than the watchdog's limit: it counts from the last answer.
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < QUIET_LIMIT + Duration::from_millis(500) {
        stream.write_all(FIRST_REQUEST).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "request {i}: {answer}");
        sleep(Duration::from_millis(250)).await;
        i += 1;
    }
}

#[tokio::test]
async fn a_slow_reader_of_a_large_file_is_not_cut_by_the_head_watchdog() {
    let roots = StaticRoots::new();
    // Far more than the kernel's socket buffers hold, so the body is still being sent.
    let big: Vec<u8> = (0..24 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    std::fs::write(roots.htdocs().join("big.bin"), &big).unwrap();
    let app = spawn_app(watched_settings(roots.settings())).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::with_capacity(big.len() + 1024);
    let mut buf = vec![0u8; 16 * 1024];
    let started = Instant::now();
    while started.elapsed() < QUIET_LIMIT * 2 {
        let n = stream.read(&mut buf).await.expect("still connected");
        assert!(n > 0, "cut after {:?}", started.elapsed());
        received.extend_from_slice(&buf[..n]);
        sleep(Duration::from_millis(100)).await;
    }
    loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the rest in time")
            .expect("still connected");
        assert!(n > 0, "cut after {} bytes", received.len());
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
            && received.len() - end - 4 >= big.len()
        {
            assert_eq!(&received[end + 4..], &big[..]);
            return;
        }
    }
}

#[tokio::test]
async fn a_websocket_open_longer_than_the_limit_is_not_cut_by_the_head_watchdog() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::{connect_async, tungstenite::Message};

    let app = spawn_app(watched_settings(test_settings())).await;
    let (mut socket, _) = connect_async(format!("ws://{}/socket", app.addr))
        .await
        .unwrap();
    // Quiet on our side, but reading, so the server's heartbeat pings are answered.
    let quiet = timeout(QUIET_LIMIT * 2, socket.next()).await;
    assert!(quiet.is_err(), "the socket ended while quiet: {quiet:?}");
    socket.send(Message::text("still here")).await.unwrap();
    let echo = timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an echo in time")
        .expect("the socket is open")
        .expect("a valid message");
    assert_eq!(echo, Message::text("still here"));
}

#[tokio::test]
async fn a_slow_upload_longer_than_the_limit_is_not_cut_by_the_head_watchdog() {
    let app = spawn_app(watched_settings(nginx_mode_settings())).await;
    let body = format!("{{\"pad\":\"{}\"}}", "a".repeat(1190));
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // 50 bytes every 200 ms: the body takes ~4.8 s, twice the watchdog's limit.
    for piece in body.as_bytes().chunks(50) {
        sleep(Duration::from_millis(200)).await;
        stream.write_all(piece).await.expect("still connected");
    }
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains(&"a".repeat(1190)), "{answer}");
}
