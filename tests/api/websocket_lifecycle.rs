//! SPEC §7 and §9 over a socket's life: heartbeat pings, closing silent clients, the
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
    assert!(
        opened.elapsed() >= Duration::from_secs(2),
        "not before client_timeout_secs"
    );
    assert!(socket.hung_up(WAIT).await);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected_past_the_timeout() {
    let app = app_with_heartbeat(1, 2).await;
    let mut socket = RawSocket::connect(app.addr).await;
    let until = Instant::now() + Duration::from_millis(3500);
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
    socket.send(true, TEXT, b"during the drain").await;
    assert_eq!(
        socket.next_frame(WAIT).await.unwrap().payload,
        b"during the drain"
    );
    app.lifecycle.begin_stop();
    assert_eq!(socket.expect_close(WAIT).await, GOING_AWAY);
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_dropped_after_the_timeout() {
    let app = app_with_heartbeat(1, 2).await;
    let mut socket = RawSocket::connect(app.addr).await;
    // Flood until the echoes back up into our unread receive buffer and the server's writes stall.
    let message = crate::websocket_client::encode(true, TEXT, &[b'x'; 16 * 1024], true);
    let flood_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < flood_until {
        if tokio::time::timeout(Duration::from_millis(200), socket.send_raw(&message))
            .await
            .is_err()
        {
            break;
        }
    }
    tokio::time::sleep(flood_until.saturating_duration_since(Instant::now())).await;
    // The server gave up on the stalled echo: what it had queued drains, then the connection
    // ends without a close frame (a server still waiting would answer and later send 1011).
    let mut saw_close = false;
    while let Some(frame) = socket.next_frame(Duration::from_secs(10)).await {
        saw_close |= frame.opcode == crate::websocket_client::CLOSE;
    }
    assert!(
        !saw_close,
        "the stalled socket was dropped, not closed by the keepalive"
    );
}
