//! Property tests and a smoke loop for the codec's RTSP reader: framing
//! never panics, never claims more bytes than it was given, reads a stream
//! fed in pieces the same as all at once, and redaction ranges always
//! cover the Digest `response` / Basic token and stay inside the input.

use dhp2p::codec::rtsp::{
    self, credential_ranges, next_client_frame, parse_authorization, ClientFrame, Credentials,
    DigestAuthorization,
};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SEEDS: [&[u8]; 5] = [
    b"DESCRIBE rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0 RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Digest username=\"admin\", realm=\"Login to X\", nonce=\"n\", uri=\"/\", response=\"0123456789abcdef\"\r\n\r\n",
    b"SET_PARAMETER rtsp://h/ RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 5\r\n\r\nhello",
    b"$\x01\x00\x08\x81\xc9\x00\x07abcd",
    b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Length: 4\r\n\r\nv=0\n",
    b"OPTIONS * RTSP/1.0\r\nProxy-Authorization: Basic YWRtaW46YWRtaW4=\r\n\r\n",
];

fn mutate(rng: &mut SmallRng, v: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..5) {
        match rng.gen_range(0..5) {
            0 if !v.is_empty() => {
                let at = rng.gen_range(0..v.len());
                v[at] ^= 1 << rng.gen_range(0..8);
            }
            1 => v.truncate(rng.gen_range(0..=v.len())),
            2 => {
                let at = rng.gen_range(0..=v.len());
                v.insert(
                    at,
                    *b"\r\n:$ 9\"=,\\\xff".get(rng.gen_range(0..11)).unwrap(),
                );
            }
            3 => {
                if v.first() == Some(&b'$') && v.len() >= 4 {
                    v[2] = 0xff;
                    v[3] = 0xff;
                } else {
                    v.extend_from_slice(b"Content-Length: 18446744073709551615\r\n\r\n");
                }
            }
            _ => v.extend((0..rng.gen_range(0..32)).map(|_| rng.gen::<u8>())),
        }
    }
}

/// Everything the reader offers, run on one input; panics only on a
/// broken invariant.
fn exercise(v: &[u8]) {
    if let Ok(Some((frame, used))) = next_client_frame(v) {
        assert!(used > 0 && used <= v.len(), "used {used} of {}", v.len());
        if let ClientFrame::Interleaved(f) = frame {
            assert_eq!(used, f.total_len());
        }
    }
    for r in credential_ranges(v) {
        assert!(
            r.start <= r.end && r.end <= v.len(),
            "{r:?} outside {}",
            v.len()
        );
    }
    let mut covered = 0usize;
    for item in rtsp::read_stream(v, &[v.len() / 2, 3]) {
        match item {
            rtsp::StreamItem::Message { head, body_len, .. } => {
                assert!(head.start >= covered && head.end + body_len <= v.len());
                covered = head.end + body_len;
            }
            rtsp::StreamItem::Interleaved { offset, frame } => {
                assert!(offset >= covered && offset + frame.total_len() <= v.len());
                covered = offset + frame.total_len();
            }
            rtsp::StreamItem::Unrecognised(range) => {
                assert!(range.start >= covered && range.end <= v.len());
                covered = range.end;
            }
            rtsp::StreamItem::InterleavedCut { offset, .. } => assert!(offset < v.len()),
            rtsp::StreamItem::NotRtsp => {}
        }
    }
    let _ = rtsp::content_length(v);
    let _ = rtsp::head_len(v);
    for line in rtsp::line_ranges(v) {
        assert!(line.end <= v.len());
        if let Some(f) = rtsp::header_field(v, line.clone()) {
            assert!(f.name.end <= line.end && f.value.end <= line.end);
        }
    }
    if let Ok(text) = std::str::from_utf8(v) {
        if let Some(auth) = DigestAuthorization::parse(text) {
            let _ = auth.verify("DESCRIBE", "r", "n", "admin", "pw");
        }
    }
}

#[test]
fn smoke_loop_of_mutated_and_random_inputs_never_panics() {
    let mut rng = SmallRng::seed_from_u64(2326);
    for i in 0..120_000u32 {
        let v = if i % 8 == 0 {
            (0..rng.gen_range(0..200))
                .map(|_| rng.gen::<u8>())
                .collect()
        } else {
            let mut v = SEEDS[rng.gen_range(0..SEEDS.len())].to_vec();
            mutate(&mut rng, &mut v);
            v
        };
        exercise(&v);
    }
}

/// A server reading a connection byte by byte sees the same requests and
/// frames as one reading it all at once.
#[test]
fn incremental_reading_matches_reading_at_once() {
    let mut stream = Vec::new();
    for seed in [SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[4]] {
        stream.extend_from_slice(seed);
    }
    let mut at_once = Vec::new();
    let mut rest = &stream[..];
    while let Ok(Some((frame, used))) = next_client_frame(rest) {
        at_once.push(frame);
        rest = &rest[used..];
    }
    assert_eq!(at_once.len(), 4);
    assert!(rest.is_empty());

    let mut piecewise = Vec::new();
    let mut buf = Vec::new();
    for &b in &stream {
        buf.push(b);
        while let Some((frame, used)) = next_client_frame(&buf).unwrap() {
            piecewise.push(frame);
            buf.drain(..used);
        }
    }
    assert_eq!(piecewise, at_once);
    // An empty buffer (everything consumed) waits for more, it is no error.
    assert_eq!(next_client_frame(b""), Ok(None));
    let ClientFrame::Request(describe) = &at_once[0] else {
        panic!("DESCRIBE expected first")
    };
    assert_eq!(describe.cseq(), Some("2"));
    let ClientFrame::Request(set) = &at_once[1] else {
        panic!("SET_PARAMETER expected second")
    };
    assert_eq!(set.body, b"hello");
}

#[test]
fn redaction_ranges_cover_exactly_the_secret_bytes() {
    let text = SEEDS[0];
    let ranges = credential_ranges(text);
    assert_eq!(ranges.len(), 1);
    assert_eq!(&text[ranges[0].clone()], b"0123456789abcdef");
    let basic = SEEDS[4];
    let ranges = credential_ranges(basic);
    assert_eq!(ranges.len(), 1);
    assert_eq!(&basic[ranges[0].clone()], b"YWRtaW46YWRtaW4=");
    // A parameter merely ending in `response` is not the response; an
    // escaped quote does not end the value.
    let tricky = br#"Digest xresponse="no", username="a\"b", response="ab\"cd""#;
    let Credentials::Digest {
        params,
        well_formed,
    } = parse_authorization(tricky)
    else {
        panic!("Digest expected")
    };
    assert!(well_formed);
    assert_eq!(params.len(), 3);
    let secrets = parse_authorization(tricky).secret_ranges(tricky);
    assert_eq!(secrets.len(), 1);
    assert_eq!(&tricky[secrets[0].clone()], br#"ab\"cd"#);
    // An unterminated value is still redacted to its end.
    let cut = br#"Digest username="a", response="deadbe"#;
    let secrets = parse_authorization(cut).secret_ranges(cut);
    assert_eq!(&cut[secrets[0].clone()], b"deadbe");
    assert!(DigestAuthorization::parse(std::str::from_utf8(cut).unwrap()).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any Digest response value, quoted with escapes, is found whole.
    #[test]
    fn digest_response_is_always_found(
        secret in "[ -~]{1,40}",
        before in "[a-z]{1,8}",
        spaces in " {0,3}",
    ) {
        let escaped = secret.replace('\\', "\\\\").replace('"', "\\\"");
        let header = format!(
            "Authorization:{spaces}Digest {before}=\"x, y\", response{spaces}={spaces}\"{escaped}\", uri=\"/\"\r\n"
        );
        let bytes = header.as_bytes();
        let ranges = credential_ranges(bytes);
        prop_assert_eq!(ranges.len(), 1);
        prop_assert_eq!(&bytes[ranges[0].clone()], escaped.as_bytes());
    }

    /// Arbitrary bytes: no panic, ranges in bounds, framing in bounds.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        exercise(&bytes);
    }
}
