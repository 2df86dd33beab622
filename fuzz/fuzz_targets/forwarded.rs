//! RFC 7239 `Forwarded` over arbitrary header lines (one per `\n`): never panics, never yields
//! more entries than there are bytes, and the client the walk picks is the peer or an entry.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/client_ip/forwarded.rs"]
mod forwarded;

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let entries = forwarded::forwarded_for(&lines);
    assert!(entries.len() <= data.len() + 1);
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let client = forwarded::walk_from_right(&entries, peer, |ip| ip.is_loopback());
    assert!(client == peer || entries.contains(&Some(client)));
    for ip in entries.into_iter().flatten() {
        assert_eq!(forwarded::canonical(ip), ip);
    }
    let _ = forwarded::x_forwarded_proto(&lines);
});
