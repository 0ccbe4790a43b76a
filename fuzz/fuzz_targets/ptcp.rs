//! Any datagram: PTCP decoding never panics, and what it accepts re-encodes
//! to the same bytes.
#![no_main]
use dhp2p::codec::ptcp::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        assert_eq!(p.to_vec(), data);
        let _ = p.to_string();
    }
});
