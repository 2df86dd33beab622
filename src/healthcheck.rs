//! `tandem healthcheck` (docs/reference.md §2): asks the local server's `/healthz`, without curl, for Docker's
//! HEALTHCHECK.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::Duration,
};

use crate::config::Settings;

const TIMEOUT: Duration = Duration::from_secs(3);

/// The address to probe: the configured one, with a wildcard host replaced by loopback.
pub fn probe_address(settings: &Settings) -> SocketAddr {
    let ip = match settings.server.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, settings.server.port)
}

/// `Ok(())` when `/healthz` answered 200, else a sentence saying what happened.
pub fn check(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|err| format!("cannot set timeouts on {addr}: {err}"))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tandem-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|err| format!("cannot send to {addr}: {err}"))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(err) => return Err(format!("no answer from {addr}: {err}")),
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("http://{addr}/healthz answered {code}")),
        None => Err(format!("http://{addr}/healthz sent no HTTP status line")),
    }
}
