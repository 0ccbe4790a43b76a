//! Any bytes: the RTSP reader never panics, never uses more bytes than it
//! has, and credential ranges stay inside the input.
#![no_main]
use dhp2p::codec::rtsp::{credential_ranges, next_client_frame, read_stream, DigestAuthorization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = next_client_frame(data) {
        assert!(used > 0 && used <= data.len());
    }
    let _ = read_stream(data, &[data.len() / 2]);
    for r in credential_ranges(data) {
        assert!(r.start <= r.end && r.end <= data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(auth) = DigestAuthorization::parse(text) {
            let _ = auth.verify("DESCRIBE", "r", "n", "u", "p");
        }
    }
});
