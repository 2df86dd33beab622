//! docs/reference.md §7, the happy path of `/socket`: echo of text and binary, reassembly of fragments, pings,
//! the close handshake, and the HTTP answers to requests that are not WebSocket handshakes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tandem::Settings;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

use crate::{
    helpers::{spawn_app, test_settings},
    websocket_client::{BINARY, CONTINUATION, PING, PONG, RawSocket, TEXT},
};

const WAIT: Duration = Duration::from_secs(5);

fn ws_url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/socket")
}

async fn next_message<S>(socket: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("an answer in time")
        .expect("the socket is open")
        .expect("a valid message")
}

fn settings() -> Settings {
    test_settings()
}

#[tokio::test]
async fn text_and_binary_messages_come_back_unchanged() {
    let app = spawn_app(settings()).await;
    let (mut socket, _) = connect_async(ws_url(app.addr)).await.unwrap();
    let big_text = "ü".repeat(20_000); // 40 000 bytes: a 16-bit length, multibyte characters
    let messages = [
        Message::text("hello"),
        Message::text(""),
        Message::text(big_text),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(Vec::new()),
        Message::binary(vec![7u8; 65_536]), // exactly websocket.max_message_bytes
    ];
    for message in messages {
        socket.send(message.clone()).await.unwrap();
        assert_eq!(next_message(&mut socket).await, message);
    }
}

#[tokio::test]
async fn many_messages_sent_at_once_come_back_in_order() {
    let app = spawn_app(settings()).await;
    let (mut socket, _) = connect_async(ws_url(app.addr)).await.unwrap();
    for i in 0..200 {
        socket
            .feed(Message::text(format!("message {i}")))
            .await
            .unwrap();
    }
    socket.flush().await.unwrap();
    for i in 0..200 {
        assert_eq!(
            next_message(&mut socket).await,
            Message::text(format!("message {i}"))
        );
    }
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_and_echoed_whole() {
    let app = spawn_app(settings()).await;
    let mut socket = RawSocket::connect(app.addr).await;

    socket.send(false, TEXT, "Grüß ".as_bytes()).await;
    // "€" (E2 82 AC) split across two fragments, with a ping in the middle of the message.
    socket.send(false, CONTINUATION, b"\xE2\x82").await;
    socket.send(true, PING, b"mid-message").await;
    socket.send(true, CONTINUATION, b"\xAC!").await;
    let pong = socket.next_frame(WAIT).await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"mid-message"[..])
    );
    let echo = socket.next_frame(WAIT).await.unwrap();
    assert!(echo.fin);
    assert_eq!(echo.opcode, TEXT);
    assert_eq!(String::from_utf8(echo.payload).unwrap(), "Grüß €!");

    socket.send(false, BINARY, &[1, 2]).await;
    socket.send(false, CONTINUATION, &[]).await;
    socket.send(true, CONTINUATION, &[3]).await;
    let echo = socket.next_frame(WAIT).await.unwrap();
    assert_eq!((echo.opcode, echo.payload), (BINARY, vec![1, 2, 3]));
}

#[tokio::test]
async fn pings_get_pongs_with_the_same_payload() {
    let app = spawn_app(settings()).await;
    let (mut socket, _) = connect_async(ws_url(app.addr)).await.unwrap();
    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut socket).await,
        Message::Pong(b"are you there".to_vec().into())
    );
}

#[tokio::test]
async fn the_close_handshake_echoes_the_clients_code() {
    let app = spawn_app(settings()).await;
    for code in [CloseCode::Normal, CloseCode::Away, CloseCode::Library(4321)] {
        let (mut socket, _) = connect_async(ws_url(app.addr)).await.unwrap();
        socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: "bye".into(),
            })))
            .await
            .unwrap();
        match next_message(&mut socket).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, code),
            other => panic!("expected a close frame, got {other:?}"),
        }
        // After the handshake the server ends the connection.
        let end = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
        assert!(end.is_none() || end.unwrap().is_err());
    }
}

#[tokio::test]
async fn a_close_without_a_code_is_answered_without_one() {
    let app = spawn_app(settings()).await;
    let mut socket = RawSocket::connect(app.addr).await;
    socket.send(true, 0x8, &[]).await;
    assert_eq!(socket.expect_close(WAIT).await, 1005);
    assert!(socket.hung_up(WAIT).await);
}

#[tokio::test]
async fn a_plain_get_is_told_to_upgrade_with_426_problem_details() {
    let app = spawn_app(settings()).await;
    let response = app.get("/socket").await;
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 426);
    assert_eq!(body["title"], "Upgrade Required");
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn an_unsupported_websocket_version_is_told_which_one_to_use() {
    let app = spawn_app(settings()).await;
    let response = app
        .get_with(
            "/socket",
            &[
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", "8"),
            ],
        )
        .await;
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}

#[tokio::test]
async fn other_methods_on_the_socket_get_405_with_allow() {
    let app = spawn_app(settings()).await;
    let response = app
        .request(reqwest::Method::POST, "/socket", &[], None)
        .await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_handshake_without_a_valid_key_or_connection_upgrade_is_a_400_problem() {
    let app = spawn_app(settings()).await;
    let upgrade = ("upgrade", "websocket");
    let version = ("sec-websocket-version", "13");
    let good_key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("no key", vec![upgrade, ("connection", "upgrade"), version]),
        (
            "a key that is not 16 bytes in base64",
            vec![
                upgrade,
                ("connection", "upgrade"),
                version,
                ("sec-websocket-key", "not a key"),
            ],
        ),
        (
            "a key of the wrong length",
            vec![
                upgrade,
                ("connection", "upgrade"),
                version,
                ("sec-websocket-key", "c2hvcnQ="),
            ],
        ),
        (
            "no Connection: upgrade",
            vec![upgrade, ("connection", "keep-alive"), version, good_key],
        ),
    ];
    for (case, headers) in cases {
        let response = app.get_with("/socket", &headers).await;
        assert_eq!(response.status(), 400, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{case}"
        );
    }
}
