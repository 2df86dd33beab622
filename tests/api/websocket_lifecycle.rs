//! docs/reference.md §7 and §9 over a socket's life: heartbeat pings, closing silent clients, the
//! `websocket.max_connections` cap (503 before the upgrade), and close 1001 on shutdown.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{
    helpers::{BinaryServer, TestApp, spawn_app, test_settings},
    websocket_client::{PING, PONG, RawSocket, TEXT},
};

const WAIT: Duration = Duration::from_secs(5);
const GOING_AWAY: u16 = 1001;

async fn app_with_heartbeat(heartbeat_secs: u64, client_timeout_secs: u64) -> TestApp {
    let mut settings = test_settings();
    settings.websocket.heartbeat_secs = heartbeat_secs;
    settings.websocket.client_timeout_secs = client_timeout_secs;
    spawn_app(settings).await
}

#[tokio::test]
async fn the_server_pings_every_heartbeat_and_closes_a_client_that_stays_silent() {
    let app = app_with_heartbeat(1, 2).await;
    let mut socket = RawSocket::connect(app.addr).await;
    let opened = Instant::now();
    let ping = socket.next_frame(WAIT).await.expect("a ping");
    assert_eq!(ping.opcode, PING);
    // Never answer: the server gives up after client_timeout_secs and says why.
    let code = socket.expect_close(WAIT).await;
    assert_eq!(code, 1011, "keepalive timeout");
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "closed after {elapsed:?}, before client_timeout_secs"
    );
    assert!(
        elapsed < Duration::from_secs(2 + 4),
        "closed after {elapsed:?}, long after client_timeout_secs"
    );
    assert!(socket.hung_up(WAIT).await);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected_past_the_timeout() {
    // Pings every second, 3 s of silence allowed: each pong has about 2 s to arrive, which a
    // loaded machine still manages, and 4.5 s outlasts the timeout.
    let app = app_with_heartbeat(1, 3).await;
    let mut socket = RawSocket::connect(app.addr).await;
    let until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < until {
        let remaining = until.saturating_duration_since(Instant::now());
        let Ok(frame) = tokio::time::timeout(remaining, socket.next_frame(WAIT)).await else {
            break;
        };
        let frame = frame.expect("the socket stays open");
        assert_eq!(frame.opcode, PING, "only pings arrive on an idle socket");
        socket.send(true, PONG, &frame.payload).await;
    }
    socket.send(true, TEXT, b"still here").await;
    let echo = socket.next_frame(WAIT).await.unwrap();
    assert_eq!(echo.payload, b"still here");
}

async fn upgrade_status(app: &TestApp) -> reqwest::Response {
    app.get_with(
        "/socket",
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
    )
    .await
}

#[tokio::test]
async fn one_socket_over_max_connections_gets_503_before_the_upgrade() {
    let mut settings = test_settings();
    settings.websocket.max_connections = 2;
    let app = spawn_app(settings).await;
    let url = format!("ws://{}/socket", app.addr);
    let (mut first, _) = connect_async(&url).await.unwrap();
    let (_second, _) = connect_async(&url).await.unwrap();

    let refused = upgrade_status(&app).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("websocket.max_connections")
    );

    // A place frees up when a socket closes.
    first.close(None).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if connect_async(&url).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed socket's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_cap_is_exact_when_many_clients_connect_at_once() {
    let mut settings = test_settings();
    settings.websocket.max_connections = 5;
    let app = spawn_app(settings).await;
    let url = format!("ws://{}/socket", app.addr);
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect_async(url).await.ok().map(|(socket, _)| socket) })
        })
        .collect();
    let mut open = Vec::new();
    for attempt in attempts {
        if let Some(socket) = attempt.await.unwrap() {
            open.push(socket);
        }
    }
    assert_eq!(open.len(), 5);

    // Every socket that disconnects, however it leaves, gives its place back.
    for mut socket in open.drain(..3) {
        socket.send(Message::Close(None)).await.unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while open.len() < 5 {
        if let Ok((socket, _)) = connect_async(&url).await {
            open.push(socket);
        } else {
            assert!(Instant::now() < deadline, "places were not given back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(upgrade_status(&app).await.status(), 503);
}

#[tokio::test]
async fn every_open_socket_gets_close_1001_when_the_server_stops() {
    let app = spawn_app(test_settings()).await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(RawSocket::connect(app.addr).await);
    }
    app.lifecycle.begin_stop();
    for socket in &mut sockets {
        assert_eq!(socket.expect_close(WAIT).await, GOING_AWAY);
        assert!(socket.hung_up(WAIT).await);
    }
}

#[tokio::test]
async fn sigterm_closes_open_sockets_with_1001_and_the_process_exits_0_promptly() {
    let mut server = BinaryServer::start(&[("TANDEM__SERVER__SHUTDOWN_TIMEOUT_SECS", "30")]);
    let addr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(RawSocket::connect(addr).await);
    }
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    for socket in &mut sockets {
        assert_eq!(socket.expect_close(WAIT).await, GOING_AWAY);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(10));
        (status, server.stderr())
    })
    .await
    .unwrap();
    assert_eq!(status.0, Some(0), "stderr:\n{}", status.1);
    // Far less than shutdown_timeout_secs: open sockets do not hold the workers.
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_socket_opened_while_draining_works_until_the_listener_closes() {
    let app = spawn_app(test_settings()).await;
    app.lifecycle.begin_drain();
    let mut socket = RawSocket::connect(app.addr).await;
    // Draining adds `Connection: close` to answers, but a 101 must keep its upgrade.
    let head = socket.handshake.to_ascii_lowercase();
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    socket.send(true, TEXT, b"during the drain").await;
    assert_eq!(
        socket.next_frame(WAIT).await.unwrap().payload,
        b"during the drain"
    );
    app.lifecycle.begin_stop();
    assert_eq!(socket.expect_close(WAIT).await, GOING_AWAY);
}

/// A socket whose client sent `sent` whole messages and reads nothing: the echoes back up into
/// its receive buffer, the server's writes stall, it stops reading, and the client's writes
/// block. `flooding` is when the flood began, `blocked` when the client's writes stopped; the
/// server's stall began between the two.
struct StalledSocket {
    socket: RawSocket,
    sent: usize,
    flooding: Instant,
    blocked: Instant,
}

async fn stall(app: &TestApp) -> StalledSocket {
    let mut socket = RawSocket::connect(app.addr).await;
    let message = crate::websocket_client::encode(true, TEXT, &[b'x'; 16 * 1024], true);
    let flooding = Instant::now();
    let mut sent = 0;
    loop {
        // A write cut off here leaves half a frame, which the server then waits for: harmless.
        match tokio::time::timeout(Duration::from_millis(200), socket.try_send_raw(&message)).await
        {
            Err(_) => break,
            Ok(Ok(())) => sent += 1,
            Ok(Err(err)) => panic!("the connection ended while the server still read: {err}"),
        }
        assert!(
            flooding.elapsed() < Duration::from_secs(10),
            "the server never stopped reading"
        );
    }
    StalledSocket {
        socket,
        sent,
        flooding,
        blocked: Instant::now(),
    }
}

/// Reads until `echoes` text frames came back, or the connection ends (`false`). A close frame
/// fails the test: a client that reads nothing would not read one, so the server must not wait
/// to send it.
async fn read_echoes(socket: &mut RawSocket, echoes: usize) -> (usize, bool) {
    let mut seen = 0;
    while seen < echoes {
        match socket.next_frame(Duration::from_secs(10)).await {
            None => return (seen, false),
            Some(frame) if frame.opcode == TEXT => seen += 1,
            Some(frame) => assert_ne!(
                frame.opcode,
                crate::websocket_client::CLOSE,
                "the stalled socket must be dropped, not closed"
            ),
        }
    }
    (seen, true)
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_not_dropped_before_the_timeout() {
    let app = app_with_heartbeat(1, 4).await;
    let mut stalled = stall(&app).await;
    // Stalled for 1.5 s, well inside the 4 s the server allows it.
    let reading_at = stalled.blocked + Duration::from_millis(1500);
    assert!(
        reading_at < stalled.flooding + Duration::from_millis(3500),
        "the flood took too long to stall the socket to test anything"
    );
    tokio::time::sleep_until(reading_at.into()).await;
    // Still served: once read, every message sent comes back.
    let (seen, open) = read_echoes(&mut stalled.socket, stalled.sent).await;
    assert!(open, "dropped after {seen} of {} echoes", stalled.sent);
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_dropped_after_the_timeout() {
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
    let app = app_with_heartbeat(1, CLIENT_TIMEOUT.as_secs()).await;
    let mut stalled = stall(&app).await;
    // Generously after the timeout (the server's stall began before our writes blocked).
    tokio::time::sleep_until((stalled.blocked + CLIENT_TIMEOUT + Duration::from_secs(2)).into())
        .await;
    // What the server had queued drains, then the connection ends without a close frame, and
    // without the echoes of messages it had given up on.
    let (seen, open) = read_echoes(&mut stalled.socket, stalled.sent).await;
    assert!(
        !open,
        "all {} echoes came back: the stalled socket was still served",
        stalled.sent
    );
    assert!(seen < stalled.sent);
}
