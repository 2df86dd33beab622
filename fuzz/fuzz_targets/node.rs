//! One forwarded node (`X-Real-IP`, an `X-Forwarded-For` entry, a `for=` value): never panics,
//! and any address it yields is canonical and survives a round trip through its own text.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/client_ip/forwarded.rs"]
mod forwarded;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        assert_eq!(forwarded::x_real_ip(&[data]), None);
        return;
    };
    if let Some(ip) = forwarded::parse_node(text) {
        assert_eq!(forwarded::canonical(ip), ip);
        assert_eq!(forwarded::parse_node(&ip.to_string()), Some(ip));
        if !text.contains(',') {
            assert_eq!(forwarded::x_real_ip(&[data]), Some(ip));
        }
    }
});
