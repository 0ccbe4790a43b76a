//! Any datagram: cloud decoding never panics, what it accepts re-encodes to
//! the same bytes, and the on-demand readers (XML body, WSSE, views) never
//! panic on what it accepts.
#![no_main]
use dhp2p::codec::cloud::{self, Message, TypedBody};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = cloud::decode(data) {
        assert_eq!(message.encode(), data);
        let _ = message.wsse();
        let _ = message.content_length_matches();
        if let Ok(Some(xml)) = message.xml_body() {
            let endpoint = match &message {
                Message::Request(r) => r.endpoint(),
                Message::Response(_) => cloud::Endpoint::P2pChannel {
                    serial: String::new(),
                },
            };
            let _ = TypedBody::of_request(&endpoint, &xml);
            let _ = TypedBody::of_response(&endpoint, &xml);
            // A body rebuilt from its elements parses to the same elements.
            let rebuilt = cloud::XmlBody::from_elements(xml.elements().to_vec());
            if let Ok(again) = cloud::XmlBody::parse(rebuilt.as_str()) {
                assert_eq!(again.elements(), xml.elements());
            }
        }
    }
});
