//! Any UDP payload: classification, decoding and the describe layer never
//! panic; accepted datagrams re-encode exactly; every field range lies
//! inside the payload.
#![no_main]
use dhp2p::codec::classify::{classify, Datagram};
use dhp2p::decode::{describe, describe_with, hex_dump, render_tree, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let datagram = classify(data);
    match &datagram {
        Datagram::Ptcp(Ok(p)) => assert_eq!(p.to_vec(), data),
        Datagram::Cloud(Ok(m)) => assert_eq!(m.encode(), data),
        Datagram::Punch(Ok(m)) => assert_eq!(m.encode(), data),
        _ => {}
    }
    for desc in [
        describe(data),
        describe_with(data, Options { redact: false }),
    ] {
        assert_eq!(desc.kind, datagram.kind());
        for field in desc.walk() {
            if let Some(range) = &field.range {
                assert!(range.start <= range.end && range.end <= data.len());
            }
        }
        let _ = desc.to_json().to_string();
        let mut tree = String::new();
        render_tree(&desc, &mut tree);
        let _ = hex_dump(&desc.masked(data));
    }
});
