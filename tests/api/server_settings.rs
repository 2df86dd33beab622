//! docs/reference.md §3 `server.*` settings take effect on real connections: the slowloris guard, the idle
//! keep-alive timeout, the per-worker connection cap and TCP_NODELAY.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::helpers::{ipv6_loopback, nginx_mode_settings, skip, spawn_app};

fn read_some(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn slow_request_headers_are_cut_off_by_client_request_timeout() {
    let mut settings = nginx_mode_settings();
    settings.server.client_request_timeout_ms = 300;
    let app = spawn_app(settings).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        // The headers never finish: the server answers 408 or closes, well before 5 s.
        let answer = read_some(&mut stream).unwrap_or_default();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_keep_alive_secs() {
    let mut settings = nginx_mode_settings();
    settings.server.keep_alive_secs = 1;
    let app = spawn_app(settings).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(6)))
            .unwrap();
        stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = read_some(&mut stream).unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let started = Instant::now();
        // Idle now: the server closes the connection (read returns 0) after about a second.
        let rest = read_some(&mut stream).unwrap();
        assert_eq!(rest, "");
        let idle = started.elapsed();
        assert!(
            idle >= Duration::from_millis(500) && idle < Duration::from_secs(5),
            "{idle:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    let mut settings = nginx_mode_settings();
    settings.server.workers = 1;
    settings.server.max_connections = 1;
    let app = spawn_app(settings).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let mut first = TcpStream::connect(addr).unwrap();
        first
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(read_some(&mut first).unwrap().starts_with("HTTP/1.1 200"));
        // The single slot is held by `first` (kept alive): `second` is not served yet.
        let mut second = TcpStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        second
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(
            read_some(&mut second).is_err(),
            "served beyond max_connections"
        );
        drop(first);
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(read_some(&mut second).unwrap().starts_with("HTTP/1.1 200"));
    })
    .await
    .unwrap();
}

/// The port of a socket's address (IPv4 or IPv6), read with `get` (getsockname/getpeername).
fn socket_port(
    fd: i32,
    get: unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32,
) -> Option<u16> {
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr is a properly sized, writable sockaddr_storage.
    let rc = unsafe { get(fd, (&raw mut addr).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            let v4: libc::sockaddr_in = unsafe { std::ptr::read((&raw const addr).cast()) };
            Some(u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            let v6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const addr).cast()) };
            Some(u16::from_be(v6.sin6_port))
        }
        _ => None,
    }
}

#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    // Without TCP_NODELAY, a response whose head and body leave separately waits ~40 ms for the
    // client's delayed ACK. The server runs in this process, so find its end of our connection
    // among our own file descriptors and ask the kernel.
    let app = spawn_app(nginx_mode_settings()).await;
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(read_some(&mut stream).unwrap().starts_with("HTTP/1.1 200"));
        let client_port = stream.local_addr().unwrap().port();
        let mut found = None;
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if socket_port(fd, libc::getsockname) == Some(addr.port())
                && socket_port(fd, libc::getpeername) == Some(client_port)
            {
                let mut value: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: value/len describe a writable c_int.
                let rc = unsafe {
                    libc::getsockopt(
                        fd,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        (&raw mut value).cast(),
                        &mut len,
                    )
                };
                assert_eq!(rc, 0);
                found = Some(value);
            }
        }
        assert_eq!(
            found,
            Some(1),
            "the server's socket for our connection has TCP_NODELAY"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_wildcard_ipv6_host_serves_ipv4_and_ipv6() {
    if !ipv6_loopback() {
        skip("no IPv6 on lo: cannot check [::1]");
        return;
    }
    let mut settings = nginx_mode_settings();
    settings.server.host = "::".into();
    let app = spawn_app(settings).await;
    let port = app.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/healthz"),
        format!("http://[::1]:{port}/healthz"),
    ] {
        let res = app.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
    }
}
