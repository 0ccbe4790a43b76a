//! Any datagram: punch decoding never panics, and what it accepts re-encodes
//! to the same bytes.
#![no_main]
use dhp2p::codec::punch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = punch::decode(data) {
        assert_eq!(message.encode(), data);
        let _ = message.identify();
        let _ = message
            .address()
            .map(|a| (a.addr_inverted(), a.addr_plain()));
        let _ = message.trailing_attributes();
    }
});
