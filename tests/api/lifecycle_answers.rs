//! Answers at the edges of the process's life and of a socket's: `/startupz` before start-up
//! work is done, responses while draining (however they were produced), and a close frame whose
//! reason is not UTF-8 (RFC 6455 §8.1).

use std::{
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

use tandem::Application;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    helpers::{spawn_app, spawn_app_with_panicking_route, test_settings},
    websocket_client::{CLOSE, RawSocket},
};

#[tokio::test]
async fn startupz_answers_503_until_the_start_up_work_is_done_then_200() {
    // The start-up work waits for the test's word, so the state before it is observable.
    let (release, hold) = mpsc::channel::<()>();
    let hold = Mutex::new(hold);
    let app = Application::build_with(
        test_settings(),
        None,
        Box::new(move || {
            let _ = hold
                .lock()
                .map(|rx| rx.recv_timeout(Duration::from_secs(30)));
        }),
    )
    .expect("the test server builds");
    let url = format!("http://{}/startupz", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "starting"})
    );
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.get(&url).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/startupz stayed {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_websocket_upgrade_answered_while_draining_keeps_connection_upgrade() {
    let app = spawn_app(test_settings()).await;
    app.lifecycle.begin_drain();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET /socket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(n, 1, "the connection closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(!head.contains("close"), "{head}");
}

#[tokio::test]
async fn while_draining_even_a_panicking_handlers_500_closes_its_connection() {
    let app = spawn_app_with_panicking_route().await;
    app.lifecycle.begin_drain();
    for path in ["/test/panic", "/no/such/route", "/json"] {
        let res = app.get(path).await;
        assert_eq!(res.headers()["connection"], "close", "{path}");
        assert!(res.headers().contains_key("x-request-id"), "{path}");
    }
    let res = app.get("/test/panic").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_close_frame_whose_reason_is_not_utf8_closes_with_1007() {
    let app = spawn_app(test_settings()).await;
    let mut socket = RawSocket::connect(app.addr).await;
    // Code 1000, then a reason that is not UTF-8.
    socket.send(true, CLOSE, b"\x03\xe8bye \xff\xfe").await;
    assert_eq!(socket.expect_close(Duration::from_secs(5)).await, 1007);
}

#[tokio::test]
async fn a_close_frame_with_a_utf8_reason_is_answered_with_its_code() {
    let app = spawn_app(test_settings()).await;
    let mut socket = RawSocket::connect(app.addr).await;
    socket.send(true, CLOSE, b"\x03\xe8bye \xc3\xa9").await;
    assert_eq!(socket.expect_close(Duration::from_secs(5)).await, 1000);
}
