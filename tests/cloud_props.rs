//! Round-trip properties of the cloud codec, a 100k-input smoke loop over
//! random and mutated datagrams, and explicit hostile inputs.

use dhp2p::codec::cloud::{
    decode, format_addr_list, format_created_offset, format_created_utc, looks_like_cloud,
    parse_addr_list, parse_created, CloudError, Endpoint, Header, Identify, Message, Method,
    Request, Response, Separator, TypedBody, Wsse, XmlBody, XmlElement, MAX_HEADERS, MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, SocketAddrV4};

const TOKEN: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}";
const LINE_TEXT: &str = "[^\r\n]{0,40}";

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::DhGet),
        Just(Method::DhPost),
        Just(Method::NfGet),
        Just(Method::NfPost),
        Just(Method::Get),
        Just(Method::Post),
        TOKEN.prop_map(|t| Method::from_token(&t)),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (TOKEN, LINE_TEXT, any::<bool>()).prop_map(|(name, value, bare)| {
        if bare {
            Header {
                name,
                value: String::new(),
                separator: Separator::Colon,
            }
        } else {
            Header::new(name, value)
        }
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        xml_body().prop_map(|b| b.to_bytes()),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        method(),
        "[^\r\n]{1,40}",
        "HTTP/[^ \r\n]{0,5}",
        proptest::collection::vec(header(), 0..12),
        body(),
    )
        .prop_map(|(method, path, version, headers, body)| Request {
            method,
            path,
            version,
            headers,
            body,
        })
}

fn response() -> impl Strategy<Value = Response> {
    (
        "HTTP/[^ \r\n]{0,5}",
        100u16..=999,
        LINE_TEXT,
        proptest::collection::vec(header(), 0..12),
        body(),
    )
        .prop_map(|(version, code, reason, headers, body)| Response {
            version,
            code,
            reason,
            headers,
            body,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        request().prop_map(Message::Request),
        response().prop_map(Message::Response)
    ]
}

fn xml_element() -> impl Strategy<Value = XmlElement> {
    let name = "[A-Za-z_][A-Za-z0-9_.-]{0,12}";
    prop_oneof![
        3 => (name, "[^\u{0}]{0,24}").prop_map(|(n, t)| XmlElement::leaf(n, t)),
        1 => (name, "[a-z]{1,6}", "[a-z0-9 ]{0,8}")
            .prop_map(|(n, inner, t)| XmlElement::nested(n, format!("<{inner}>{t}</{inner}>"))),
    ]
}

fn xml_body() -> impl Strategy<Value = XmlBody> {
    proptest::collection::vec(xml_element(), 0..12).prop_map(XmlBody::from_elements)
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let id = "[A-Za-z0-9._-]{1,20}";
    prop_oneof![
        Just(Endpoint::ProbeP2pSrv),
        Just(Endpoint::OnlineRelay),
        Just(Endpoint::OnlineStun),
        Just(Endpoint::P2pStunProbe),
        Just(Endpoint::TcpRelayClientBind),
        Just(Endpoint::RelayAgent),
        id.prop_map(|serial| Endpoint::OnlineP2pSrv { serial }),
        id.prop_map(|serial| Endpoint::ProbeDevice { serial }),
        id.prop_map(|serial| Endpoint::InfoDevice { serial }),
        id.prop_map(|serial| Endpoint::P2pChannel { serial }),
        id.prop_map(|serial| Endpoint::RelayChannel { serial }),
        id.prop_map(|serial| Endpoint::LocalChannel { serial }),
        id.prop_map(|serial| Endpoint::TcpRelayChannel { serial }),
        id.prop_map(|token| Endpoint::RelayStart { token }),
        id.prop_map(|token| Endpoint::RelayUnbind { token }),
        "/other/[a-z]{1,8}".prop_map(Endpoint::Other),
    ]
}

proptest! {
    #[test]
    fn decode_inverts_encode(m in message()) {
        let bytes = m.encode();
        prop_assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn encode_inverts_decode_on_near_miss_bytes(
        prefix in prop_oneof![
            Just(&b"DHGET "[..]), Just(&b"HTTP/1.1 "[..]), Just(&b"NFPOST /x HTTP/1.1\r\n"[..])
        ],
        chunks in proptest::collection::vec(
            prop_oneof![
                Just(b"\r\n".to_vec()), Just(b": ".to_vec()), Just(b" ".to_vec()),
                Just(b"200".to_vec()), Just(b"HTTP/1.1".to_vec()), Just(b"<body>".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..6),
            ],
            0..24,
        ),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend(chunks.concat());
        if let Ok(m) = decode(&bytes) {
            prop_assert_eq!(m.encode(), bytes);
            let _ = m.xml_body();
        }
    }

    #[test]
    fn xml_body_round_trips(b in xml_body()) {
        let parsed = XmlBody::parse(b.as_str()).unwrap();
        prop_assert_eq!(&parsed, &b);
        prop_assert_eq!(XmlBody::from_elements(parsed.elements().to_vec()), b);
    }

    #[test]
    fn xml_body_in_a_message_round_trips(b in xml_body(), code in 100u16..=599) {
        let r = Response::new(code, "OK").with_body(b.to_bytes());
        let m = decode(&r.encode()).unwrap();
        prop_assert!(m.content_length_matches());
        prop_assert_eq!(m.xml_body().unwrap(), Some(b));
    }

    #[test]
    fn identify_round_trips(bytes in any::<[u8; 8]>()) {
        let id = Identify(bytes);
        prop_assert_eq!(id.to_string().parse::<Identify>().unwrap(), id);
        let padded = bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ");
        prop_assert_eq!(padded.parse::<Identify>().unwrap(), id);
    }

    #[test]
    fn endpoint_round_trips(e in endpoint()) {
        prop_assert_eq!(Endpoint::parse(&e.path()), e);
    }

    #[test]
    fn addr_list_round_trips(ips in proptest::collection::vec(any::<[u8; 4]>(), 1..6), port: u16) {
        let ips: Vec<Ipv4Addr> = ips.into_iter().map(Ipv4Addr::from).collect();
        let parsed = parse_addr_list(&format_addr_list(&ips, port)).unwrap();
        let expected: Vec<SocketAddrV4> = ips.iter().map(|ip| SocketAddrV4::new(*ip, port)).collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn created_round_trips(secs in 86_400i64..253_402_214_400, minutes in -1439i32..=1439) {
        prop_assert_eq!(parse_created(&format_created_utc(secs).unwrap()).unwrap(), secs);
        let with_offset = format_created_offset(secs, minutes * 60).unwrap();
        prop_assert_eq!(parse_created(&with_offset).unwrap(), secs);
    }

    #[test]
    fn wsse_round_trips(
        username in "[^\"]{0,40}", password_digest in "[A-Za-z0-9+/=]{0,28}",
        nonce in "-?[0-9]{1,10}", created in "[0-9T:Z+-]{0,25}",
    ) {
        let w = Wsse { username, password_digest, nonce, created };
        prop_assert_eq!(Wsse::parse(&w.header_value()).unwrap(), w);
    }
}

/// Known-good datagrams: the references of DH-P2P §11 and FIELD-NOTES §2.
fn seeds() -> Vec<Vec<u8>> {
    [
        &b"DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 1\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\nX-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"JpL3CgK92AyJzUvBm3aSlB/MmNM=\", Nonce=\"123456789\", Created=\"2024-01-02T03:04:05Z\"\r\n\r\n"[..],
        b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\nCSeq: 5\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\nX-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"wPDkbCjD8sSUexuKBVFC7WSFCgg=\", Nonce=\"2000000001\", Created=\"2024-01-02T03:04:07Z\"\r\nContent-Type: \r\nContent-Length: 144\r\n\r\n<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrpt>true</IpEncrpt><LocalAddr>127.0.0.1:50000</LocalAddr><version>5.0.0</version></body>",
        b"NFPOST /relay/start/0123456789abcdef HTTP/1.1\r\nX-Version: 6.7.15\r\nX-Sversion: 1.1.0\r\nX-ToUType: Client/Dmss_Android\r\nCSeq: -2087321493\r\nContent-Type: \r\nContent-Length: 56\r\n\r\n<body><Client>:0</Client><Dev>ABC123456789XYZ</Dev></body>",
        b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>",
        b"HTTP/1.1 200 OK\r\nCSeq: 6\r\nContent-Length: 78\r\n\r\n<body><Token>0123456789abcdef</Token><Agent>198.51.100.20:30000</Agent></body>",
        b"HTTP/1.1 200 Server Nat Info!\r\nCSeq: 5\r\nContent-Length: 92\r\n\r\n<body><LocalAddr>192.168.1.200:22508</LocalAddr><PubAddr>203.0.113.10:40000</PubAddr></body>",
        b"HTTP/1.1 403 Forbidden\r\nCSeq: 5\r\nContent-Length: 95\r\n\r\n<body><ErrCode>4</ErrCode><Error>DevPwd_InvalidSalt</Error><Policy>p2p,udprelay</Policy></body>",
        b"HTTP/1.1 200 OK\r\nDate: 2025-07-14T12:10:45Z\r\nCSeq: 1\r\n\r\n",
        b"HTTP/1.1 100 Trying\r\nCSeq: 5\r\n\r\n",
        b"HTTP/1.1 200 Server Nat Info!\r\n\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

const INTERESTING: &[u8] = b"<>/&;:\" \r\n=!?[]-#x0";
const EXTREME_LENGTHS: [&str; 6] = [
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "",
];

fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let len = v.len();
        match rng.gen_range(0..9) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => v.truncate(rng.gen_range(0..=len)),
            2 => v.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
            3 => {
                let i = rng.gen_range(0..=len);
                let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                v.splice(i..i, extra);
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            5 => {
                // Overwrite the Content-Length value with an extreme one.
                let text = String::from_utf8_lossy(&v).into_owned();
                if let Some(at) = text.find("Content-Length: ") {
                    let start = at + "Content-Length: ".len();
                    let end = text[start..].find("\r\n").map_or(text.len(), |e| start + e);
                    let value = EXTREME_LENGTHS[rng.gen_range(0..EXTREME_LENGTHS.len())];
                    if text.is_char_boundary(start) && text.is_char_boundary(end) {
                        v = format!("{}{}{}", &text[..start], value, &text[end..]).into_bytes();
                    }
                }
            }
            6 if len > 0 => {
                // Duplicate a slice (repeated headers, repeated elements).
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                let copy = v[a..b].to_vec();
                for _ in 0..rng.gen_range(1..8) {
                    v.splice(b..b, copy.iter().copied());
                }
            }
            7 if len > 0 => {
                let i = rng.gen_range(0..len);
                v.remove(i);
            }
            _ => {
                v = (0..rng.gen_range(0..300))
                    .map(|_| rng.gen::<u8>())
                    .collect()
            }
        }
    }
    v
}

/// What the smoke loop reached with one input.
#[derive(PartialEq)]
enum Reached {
    Rejected,
    Head,
    XmlBody,
}

fn exercise(bytes: &[u8]) -> Reached {
    let _ = looks_like_cloud(bytes);
    let Ok(m) = decode(bytes) else {
        return Reached::Rejected;
    };
    assert_eq!(m.encode(), bytes, "accepted input must re-encode exactly");
    let _ = (
        m.cseq(),
        m.content_length(),
        m.content_length_matches(),
        m.wsse(),
    );
    if let Ok(Some(xml)) = m.xml_body() {
        assert_eq!(XmlBody::parse(xml.as_str()).unwrap(), xml);
        let endpoint = match &m {
            Message::Request(r) => r.endpoint(),
            Message::Response(_) => Endpoint::P2pChannel { serial: "X".into() },
        };
        let _ = TypedBody::of_request(&endpoint, &xml);
        let _ = TypedBody::of_response(&endpoint, &xml);
        return Reached::XmlBody;
    }
    Reached::Head
}

#[test]
fn smoke_loop_random_and_mutated_inputs() {
    let mut rng = SmallRng::seed_from_u64(0xC10D_2024);
    let seeds = seeds();
    for seed in &seeds {
        assert!(exercise(seed) != Reached::Rejected, "seed must decode");
    }
    let (mut accepted, mut with_xml) = (0usize, 0usize);
    for i in 0..100_000 {
        let input = if i % 10 == 0 {
            (0..rng.gen_range(0..200))
                .map(|_| rng.gen::<u8>())
                .collect()
        } else {
            let seed = &seeds[rng.gen_range(0..seeds.len())];
            mutate(&mut rng, seed)
        };
        match exercise(&input) {
            Reached::Rejected => {}
            Reached::Head => accepted += 1,
            Reached::XmlBody => {
                accepted += 1;
                with_xml += 1;
            }
        }
    }
    eprintln!("smoke loop: {accepted} heads accepted, {with_xml} with a valid XML body");
    // Most mutations leave the head (and often the body) intact: make sure
    // both decoders were really exercised.
    assert!(accepted > 20_000, "only {accepted} accepted");
    assert!(with_xml > 5_000, "only {with_xml} valid XML bodies");
}

fn body_error(body: &str) -> CloudError {
    XmlBody::parse(body).expect_err("hostile body must be rejected")
}

#[test]
fn hostile_deep_nesting_is_an_error() {
    let body = format!(
        "<body>{}{}</body>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    assert!(matches!(
        body_error(&body),
        CloudError::XmlTooDeep {
            max: MAX_XML_DEPTH,
            ..
        }
    ));
    // In a datagram the head still decodes; only the body is refused.
    let m = decode(&Response::new(200, "OK").with_body(body).encode()).unwrap();
    assert!(matches!(m.xml_body(), Err(CloudError::XmlTooDeep { .. })));
    // Just inside the cap is fine and kept as raw inner text.
    let inner = MAX_XML_DEPTH - 2;
    let ok = format!(
        "<body><a>{}x{}</a></body>",
        "<b>".repeat(inner),
        "</b>".repeat(inner)
    );
    assert!(XmlBody::parse(&ok).unwrap().elements()[0].nested);
}

#[test]
fn hostile_element_count_is_an_error() {
    let body = format!("<body>{}</body>", "<a>1</a>".repeat(100_000));
    assert!(matches!(
        body_error(&body),
        CloudError::TooManyXmlElements {
            max: MAX_XML_ELEMENTS,
            ..
        }
    ));
    let at_cap = format!("<body>{}</body>", "<a/>".repeat(MAX_XML_ELEMENTS));
    assert_eq!(
        XmlBody::parse(&at_cap).unwrap().elements().len(),
        MAX_XML_ELEMENTS
    );
}

#[test]
fn hostile_garbage_xml_is_an_error() {
    let cases = [
        "<body><a></b></body>",
        "<body><a>&unknown;</a></body>",
        "<body><a>&amp</a></body>",
        "<body><a>&#xZZ;</a></body>",
        "<body>loose text</body>",
        "<notbody><a>1</a></notbody>",
        "<body></body><body/>",
        "<body></body>trailing",
        "<body><a x></a></body>",
        "<!DOCTYPE body [<!ENTITY e 'x'>]><body><a>&e;</a></body>",
        "<body><a>",
        "<body",
        "<body><![CDATA[x]]></body>",
        "<<<>>>",
        "</body>",
        "just text",
    ];
    for case in cases {
        assert!(XmlBody::parse(case).is_err(), "{case:?} must be rejected");
    }
    // Standard entities and character references are resolved, not refused.
    let ok = XmlBody::parse("<body><a>x &amp; &lt;y&gt; &#65;</a></body>").unwrap();
    assert_eq!(ok.get("a"), Some("x & <y> A"));
}

#[test]
fn hostile_non_utf8_body_is_an_error_with_offset() {
    let mut bytes = b"HTTP/1.1 200 OK\r\n\r\n<body><a>".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"</a></body>");
    let m = decode(&bytes).unwrap();
    assert_eq!(m.xml_body(), Err(CloudError::NonUtf8Body { offset: 28 }));
    assert_eq!(m.encode(), bytes);
}

#[test]
fn hostile_non_utf8_head_is_an_error_with_offset() {
    let bytes = b"HTTP/1.1 200 O\xffK\r\n\r\n";
    assert_eq!(decode(bytes), Err(CloudError::NonUtf8Head { offset: 14 }));
}

#[test]
fn hostile_missing_head_terminator() {
    let bytes = b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n";
    assert_eq!(
        decode(bytes),
        Err(CloudError::HeadUnterminated { len: bytes.len() })
    );
    assert!(matches!(
        decode(b"DHGET /probe/p2psrv HTTP/1.1"),
        Err(CloudError::HeadUnterminated { .. })
    ));
}

#[test]
fn hostile_lying_content_length_is_reported_not_fatal() {
    for value in ["1000", "0", "-1", "18446744073709551616", "", "abc"] {
        let bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n<body></body>");
        let m = decode(bytes.as_bytes()).unwrap();
        assert!(!m.content_length_matches(), "{value}");
        assert_eq!(m.encode(), bytes.as_bytes());
        assert_eq!(m.xml_body().unwrap().unwrap().elements(), &[]);
    }
}

#[test]
fn hostile_too_many_headers() {
    let head = |n: usize| format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-A: b\r\n".repeat(n));
    assert!(decode(head(MAX_HEADERS).as_bytes()).is_ok());
    assert_eq!(
        decode(head(MAX_HEADERS + 1).as_bytes()),
        Err(CloudError::TooManyHeaders { max: MAX_HEADERS })
    );
}

#[test]
fn hostile_bare_line_breaks_and_bad_lines() {
    assert_eq!(
        decode(b"HTTP/1.1 200 OK\nCSeq: 1\r\n\r\n"),
        Err(CloudError::BareLineBreak { offset: 15 })
    );
    assert_eq!(
        decode(b"HTTP/1.1 200 OK\r\nCSeq: 1\r\r\n\r\n"),
        Err(CloudError::BareLineBreak { offset: 24 })
    );
    assert!(matches!(
        decode(b"HTTP/1.1 20x OK\r\n\r\n"),
        Err(CloudError::BadStatusCode { offset: 9, .. })
    ));
    assert!(matches!(
        decode(b"HTTP/1.1 2000 OK\r\n\r\n"),
        Err(CloudError::BadStatusCode { .. })
    ));
    assert!(matches!(
        decode(b"HTTP/1.1 200\r\n\r\n"),
        Err(CloudError::BadStatusLine { .. })
    ));
    assert!(matches!(
        decode(b"DHGET /probe/p2psrv\r\n\r\n"),
        Err(CloudError::BadRequestLine { .. })
    ));
    assert!(matches!(
        decode(b"DHGET /x RTSP/1.0\r\n\r\n"),
        Err(CloudError::BadRequestLine { .. })
    ));
    // An empty reason phrase after the space is kept (and re-encoded).
    let m = decode(b"HTTP/1.1 200 \r\n\r\n").unwrap();
    assert_eq!(m.as_response().unwrap().reason, "");
}

#[test]
fn other_protocols_are_not_cloud_messages() {
    let ptcp = b"PTCP\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x01\x00";
    let stun = [0xffu8, 0xfe, 0xff, 0xe7, 0xde, 0xed, 0x5b, 0xbd];
    for bytes in [&ptcp[..], &stun[..], b"", b" GET / HTTP/1.1\r\n\r\n"] {
        assert_eq!(decode(bytes), Err(CloudError::NotCloud));
        assert!(!looks_like_cloud(bytes));
    }
    assert!(looks_like_cloud(b"NFGET /online/stun HTTP/1.1\r\n"));
    assert!(looks_like_cloud(b"HTTP/1.1 100 Trying\r\n\r\n"));
    assert!(!looks_like_cloud(b"OPTIONS rtsp://x RTSP/1.0\r\n"));
    // The decoder itself takes any method token.
    let m = decode(b"RELAY /x HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(
        m.as_request().unwrap().method,
        Method::Other("RELAY".into())
    );
}
