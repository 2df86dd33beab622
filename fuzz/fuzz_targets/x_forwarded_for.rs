//! `X-Forwarded-For` over arbitrary header lines (one per `\n`): never panics, and the client
//! the walk picks is the peer or one of the entries, never an invented address.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/client_ip/forwarded.rs"]
mod forwarded;

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

fn trusted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127 || v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0xdb8,
    }
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let entries = forwarded::x_forwarded_for(&lines);
    assert!(entries.len() <= data.len());
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let client = forwarded::walk_from_right(&entries, peer, trusted);
    assert!(client == peer || entries.contains(&Some(client)));
    for ip in entries.into_iter().flatten() {
        assert_eq!(forwarded::canonical(ip), ip);
    }
});
