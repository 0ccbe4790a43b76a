//! Reference vectors of the cloud signalling: every request and response text
//! of DH-P2P.md §11 and FIELD-NOTES.md §2, decoded field by field and rebuilt
//! byte for byte where the builder can make them.

use dhp2p::codec::cloud::{
    build_request, build_sdk_stun_warmup, decode, format_addr_list, format_created_offset,
    format_created_utc, p2p_channel_auth_body, p2p_channel_body, parse_addr_list, parse_created,
    relay_agent_body, relay_channel_auth_body, relay_channel_body, relay_start_body, AgentInfo,
    ChannelAnswer, ChannelRequest, CloudError, DeviceAuthBlock, Endpoint, ErrorBody, HostPort,
    Identify, InfoDeviceAnswer, Message, Method, P2pSrvInfo, RelayInfo, RelayStartRequest, Request,
    RequestParams, RequestStyle, Response, SdkHeaders, Separator, TypedBody, WsseAuth, XmlBody,
    XmlElement,
};
use dhp2p::codec::crypto::wsse_digest;
use std::net::{Ipv4Addr, SocketAddrV4};

const USER: &str = "cba1b29e32cb17aa46b8ff9e73c7f40b";
const KEY: &str = "996103384cdf19179e19243e959bbf8b";
const PY: RequestStyle = RequestStyle::Legacy {
    content_headers: true,
};
const RS: RequestStyle = RequestStyle::Legacy {
    content_headers: false,
};
const IDENTIFY: Identify = Identify([0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e]);

fn request(bytes: &[u8]) -> Request {
    match decode(bytes).expect("vector decodes") {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {r:?}"),
    }
}

fn response(bytes: &[u8]) -> Response {
    match decode(bytes).expect("vector decodes") {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {r:?}"),
    }
}

fn auth<'a>(nonce: &'a str, created: &'a str) -> Option<WsseAuth<'a>> {
    Some(WsseAuth {
        username: USER,
        key: KEY,
        nonce,
        created,
    })
}

fn header_names(headers: &[dhp2p::codec::cloud::Header]) -> Vec<&str> {
    headers.iter().map(|h| h.name.as_str()).collect()
}

// DH-P2P.md §11.1
#[test]
fn dhp2p_11_1_wsse_digest() {
    assert_eq!(
        wsse_digest("123456789", "2024-01-02T03:04:05Z", USER, KEY),
        "JpL3CgK92AyJzUvBm3aSlB/MmNM="
    );
}

// DH-P2P.md §11.2
const PROBE_P2PSRV: &[u8] = b"DHGET /probe/p2psrv HTTP/1.1\r\n\
CSeq: 1\r\n\
Authorization: WSSE profile=\"UsernameToken\"\r\n\
X-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"JpL3CgK92AyJzUvBm3aSlB/MmNM=\", Nonce=\"123456789\", Created=\"2024-01-02T03:04:05Z\"\r\n\
\r\n";

// DH-P2P.md §11.2
#[test]
fn dhp2p_11_2_probe_p2psrv_is_rebuilt_exactly() {
    assert_eq!(PROBE_P2PSRV.len(), 251);
    for style in [PY, RS] {
        let built = build_request(
            &style,
            &RequestParams {
                path: "/probe/p2psrv",
                cseq: Some(1),
                auth: auth("123456789", "2024-01-02T03:04:05Z"),
                ..Default::default()
            },
        );
        assert_eq!(built.encode(), PROBE_P2PSRV);
    }
}

// DH-P2P.md §11.2
#[test]
fn dhp2p_11_2_probe_p2psrv_decodes() {
    let r = request(PROBE_P2PSRV);
    assert_eq!(r.method, Method::DhGet);
    assert_eq!(r.path, "/probe/p2psrv");
    assert_eq!(r.endpoint(), Endpoint::ProbeP2pSrv);
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(
        header_names(&r.headers),
        ["CSeq", "Authorization", "X-WSSE"]
    );
    assert_eq!(r.cseq(), Some(1));
    assert_eq!(
        r.header("authorization"),
        Some("WSSE profile=\"UsernameToken\"")
    );
    let wsse = r.wsse().unwrap().unwrap();
    assert_eq!(wsse.username, USER);
    assert_eq!(wsse.password_digest, "JpL3CgK92AyJzUvBm3aSlB/MmNM=");
    assert_eq!(wsse.nonce, "123456789");
    assert_eq!(wsse.created, "2024-01-02T03:04:05Z");
    assert!(wsse.digest_matches(KEY));
    assert!(!wsse.digest_matches("wrong key"));
    assert!(r.body.is_empty());
    assert!(!r.has_body());
    assert_eq!(r.xml_body().unwrap(), None);
    assert_eq!(r.content_length(), None);
    assert!(r.content_length_matches());
    assert_eq!(Message::Request(r).encode(), PROBE_P2PSRV);
}

// DH-P2P.md §11.3
const P2P_CHANNEL_BODY: &str = "<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrpt>true</IpEncrpt><LocalAddr>127.0.0.1:50000</LocalAddr><version>5.0.0</version></body>";
const P2P_CHANNEL_WSSE: &str = "X-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"wPDkbCjD8sSUexuKBVFC7WSFCgg=\", Nonce=\"2000000001\", Created=\"2024-01-02T03:04:07Z\"\r\n";

fn p2p_channel_py() -> Vec<u8> {
    let mut v = b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\nCSeq: 5\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\n".to_vec();
    v.extend_from_slice(P2P_CHANNEL_WSSE.as_bytes());
    v.extend_from_slice(b"Content-Type: \r\nContent-Length: 144\r\n\r\n");
    v.extend_from_slice(P2P_CHANNEL_BODY.as_bytes());
    v
}

fn p2p_channel_rs() -> Vec<u8> {
    let mut v = b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\nCSeq: 5\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\n".to_vec();
    v.extend_from_slice(P2P_CHANNEL_WSSE.as_bytes());
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(P2P_CHANNEL_BODY.as_bytes());
    v
}

fn build_p2p_channel(style: &RequestStyle) -> Request {
    let body = p2p_channel_body(&IDENTIFY, 50000);
    build_request(
        style,
        &RequestParams {
            path: "/device/ABC123456789XYZ/p2p-channel",
            body: &body,
            cseq: Some(5),
            auth: auth("2000000001", "2024-01-02T03:04:07Z"),
            request_id: None,
        },
    )
}

// DH-P2P.md §11.3
#[test]
fn dhp2p_11_3_p2p_channel_python_form_is_rebuilt_exactly() {
    assert_eq!(P2P_CHANNEL_BODY.len(), 144);
    assert_eq!(p2p_channel_body(&IDENTIFY, 50000), P2P_CHANNEL_BODY);
    let expected = p2p_channel_py();
    assert_eq!(expected.len(), 456);
    assert_eq!(build_p2p_channel(&PY).encode(), expected);
}

// DH-P2P.md §11.3
#[test]
fn dhp2p_11_3_p2p_channel_rust_form_is_rebuilt_exactly() {
    let expected = p2p_channel_rs();
    assert_eq!(expected.len(), 419);
    assert_eq!(build_p2p_channel(&RS).encode(), expected);
}

// DH-P2P.md §11.3
#[test]
fn dhp2p_11_3_p2p_channel_decodes() {
    let bytes = p2p_channel_py();
    let r = request(&bytes);
    assert_eq!(r.method, Method::DhPost);
    assert_eq!(
        r.endpoint(),
        Endpoint::P2pChannel {
            serial: "ABC123456789XYZ".into()
        }
    );
    assert_eq!(
        header_names(&r.headers),
        [
            "CSeq",
            "Authorization",
            "X-WSSE",
            "Content-Type",
            "Content-Length"
        ]
    );
    let content_type = &r.headers[3];
    assert_eq!(content_type.value, "");
    assert_eq!(content_type.separator, Separator::ColonSpace);
    assert_eq!(r.cseq(), Some(5));
    assert_eq!(r.content_length(), Some(144));
    assert!(r.content_length_matches());
    assert!(r.wsse().unwrap().unwrap().digest_matches(KEY));
    let xml = r.xml_body().unwrap().unwrap();
    assert_eq!(xml.as_str(), P2P_CHANNEL_BODY);
    let names: Vec<&str> = xml.elements().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Identify", "IpEncrpt", "LocalAddr", "version"]);
    let TypedBody::ChannelRequest(body) = TypedBody::of_request(&r.endpoint(), &xml) else {
        panic!("p2p-channel request body is a ChannelRequest");
    };
    assert_eq!(body.identify.as_deref(), Some("d4 9e 67 a8 2b d4 7e 1e"));
    assert_eq!(
        body.identify.unwrap().parse::<Identify>().unwrap(),
        IDENTIFY
    );
    assert_eq!(body.ip_encrpt.as_deref(), Some("true"));
    assert_eq!(body.local_addr.as_deref(), Some("127.0.0.1:50000"));
    assert_eq!(body.version.as_deref(), Some("5.0.0"));
    assert_eq!(body.dev_auth, None);
    assert_eq!(Message::Request(r).encode(), bytes);
    // The [rs] form decodes to the same body without the Content-* lines.
    let rs = request(&p2p_channel_rs());
    assert_eq!(rs.header("Content-Length"), None);
    assert_eq!(rs.xml_body().unwrap().unwrap(), xml);
}

// DH-P2P.md §11.4
const RELAY_START_HEAD: &str = "DHPOST /relay/start/0123456789abcdef HTTP/1.1\r\nCSeq: 7\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\nX-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"uoYoHkA41IOMCMQXAdoQtFPxQlw=\", Nonce=\"42\", Created=\"2024-01-02T03:04:09Z\"\r\n";

fn build_relay_start(style: &RequestStyle) -> Request {
    let body = relay_start_body(None);
    build_request(
        style,
        &RequestParams {
            path: "/relay/start/0123456789abcdef",
            body: &body,
            cseq: Some(7),
            auth: auth("42", "2024-01-02T03:04:09Z"),
            request_id: None,
        },
    )
}

// DH-P2P.md §11.4
#[test]
fn dhp2p_11_4_relay_start_python_form_is_rebuilt_exactly() {
    let expected = format!(
        "{RELAY_START_HEAD}Content-Type: \r\nContent-Length: 32\r\n\r\n<body><Client>:0</Client></body>"
    );
    assert_eq!(expected.len(), 329);
    assert_eq!(build_relay_start(&PY).encode(), expected.as_bytes());
    let r = request(expected.as_bytes());
    assert_eq!(
        r.endpoint(),
        Endpoint::RelayStart {
            token: "0123456789abcdef".into()
        }
    );
    let xml = r.xml_body().unwrap().unwrap();
    assert_eq!(
        RelayStartRequest::from_xml(&xml),
        RelayStartRequest {
            client: Some(":0".into()),
            dev: None
        }
    );
}

// DH-P2P.md §11.4
#[test]
fn dhp2p_11_4_relay_start_rust_form_is_rebuilt_exactly() {
    let expected = format!("{RELAY_START_HEAD}\r\n<body><Client>:0</Client></body>");
    assert_eq!(expected.len(), 293);
    assert_eq!(build_relay_start(&RS).encode(), expected.as_bytes());
    let r = request(expected.as_bytes());
    assert_eq!(r.wsse().unwrap().unwrap().nonce, "42");
    assert!(r.wsse().unwrap().unwrap().digest_matches(KEY));
    assert_eq!(Message::Request(r).encode(), expected.as_bytes());
}

const SALT: &str = "5daf91fc5cfc1be8e081cfb08f792726";

// DH-P2P.md §11.5
#[test]
fn dhp2p_11_5_p2p_channel_auth_body() {
    let expected = "<body><CreateDate>1700000000</CreateDate><DevAuth>G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI=</DevAuth><Nonce>1234567</Nonce><RandSalt>5daf91fc5cfc1be8e081cfb08f792726</RandSalt><UserName>admin</UserName><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrptV2>true</IpEncrptV2><LocalAddr>UcCslW2QRrw8Tz5yetiw</LocalAddr><version>5.0.0</version></body>";
    let block = DeviceAuthBlock {
        create_date: "1700000000",
        dev_auth: "G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI=",
        nonce: "1234567",
        rand_salt: Some(SALT),
        user_name: "admin",
    };
    assert_eq!(
        p2p_channel_auth_body(&block, &IDENTIFY, "UcCslW2QRrw8Tz5yetiw"),
        expected
    );
    let xml = XmlBody::parse(expected).unwrap();
    let body = ChannelRequest::from_xml(&xml);
    assert_eq!(body.create_date.as_deref(), Some("1700000000"));
    assert_eq!(
        body.dev_auth.as_deref(),
        Some("G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI=")
    );
    assert_eq!(body.nonce.as_deref(), Some("1234567"));
    assert_eq!(body.rand_salt.as_deref(), Some(SALT));
    assert_eq!(body.user_name.as_deref(), Some("admin"));
    assert_eq!(body.identify.as_deref(), Some("d4 9e 67 a8 2b d4 7e 1e"));
    assert_eq!(body.ip_encrpt_v2.as_deref(), Some("true"));
    assert_eq!(body.ip_encrpt, None);
    assert_eq!(body.local_addr.as_deref(), Some("UcCslW2QRrw8Tz5yetiw"));
    assert_eq!(body.version.as_deref(), Some("5.0.0"));
}

// DH-P2P.md §11.5
#[test]
fn dhp2p_11_5_relay_channel_auth_body() {
    let expected = "<body><CreateDate>1700000005</CreateDate><DevAuth>amZStEKlVFIkAcEsjpuoEB97rqQdoYXk/cyQxw2z2ws=</DevAuth><Nonce>987654321</Nonce><RandSalt>5daf91fc5cfc1be8e081cfb08f792726</RandSalt><UserName>admin</UserName><agentAddr>198.51.100.20:30000</agentAddr></body>";
    let block = DeviceAuthBlock {
        create_date: "1700000005",
        dev_auth: "amZStEKlVFIkAcEsjpuoEB97rqQdoYXk/cyQxw2z2ws=",
        nonce: "987654321",
        rand_salt: Some(SALT),
        user_name: "admin",
    };
    assert_eq!(
        relay_channel_auth_body(&block, "198.51.100.20:30000"),
        expected
    );
    let body = ChannelRequest::from_xml(&XmlBody::parse(expected).unwrap());
    assert_eq!(body.nonce.as_deref(), Some("987654321"));
    assert_eq!(body.agent_addr.as_deref(), Some("198.51.100.20:30000"));
}

// DH-P2P.md §11.5 inputs, FIELD-NOTES.md §3.3 (EW omits RandSalt for an empty salt)
#[test]
fn field_notes_3_3_rand_salt_omitted_or_empty() {
    let mut block = DeviceAuthBlock {
        create_date: "1700000005",
        dev_auth: "amZStEKlVFIkAcEsjpuoEB97rqQdoYXk/cyQxw2z2ws=",
        nonce: "987654321",
        rand_salt: None,
        user_name: "admin",
    };
    let omitted = relay_channel_auth_body(&block, "198.51.100.20:30000");
    assert_eq!(
        omitted,
        "<body><CreateDate>1700000005</CreateDate><DevAuth>amZStEKlVFIkAcEsjpuoEB97rqQdoYXk/cyQxw2z2ws=</DevAuth><Nonce>987654321</Nonce><UserName>admin</UserName><agentAddr>198.51.100.20:30000</agentAddr></body>"
    );
    block.rand_salt = Some("");
    let empty = relay_channel_auth_body(&block, "198.51.100.20:30000");
    assert!(empty.contains("<Nonce>987654321</Nonce><RandSalt></RandSalt><UserName>"));
    let body = ChannelRequest::from_xml(&XmlBody::parse(&empty).unwrap());
    assert_eq!(body.rand_salt.as_deref(), Some(""));
}

// DH-P2P.md §2.5 (relay-channel, type 0)
#[test]
fn dhp2p_2_5_relay_channel_type0_body() {
    assert_eq!(
        relay_channel_body("198.51.100.20:30000"),
        "<body><agentAddr>198.51.100.20:30000</agentAddr></body>"
    );
}

// DH-P2P.md §11.10 (probe replies)
#[test]
fn dhp2p_11_10_probe_reply() {
    let bytes = b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n\r\n";
    let r = response(bytes);
    assert_eq!(
        (r.version.as_str(), r.code, r.reason.as_str()),
        ("HTTP/1.1", 200, "OK")
    );
    assert_eq!(r.cseq(), Some(1));
    assert_eq!(r.xml_body().unwrap(), None);
    assert_eq!(
        Response::new(200, "OK").with_header("CSeq", "1").encode(),
        bytes
    );
}

// DH-P2P.md §11.10 (/online/p2psrv answer)
#[test]
fn dhp2p_11_10_p2psrv_answer() {
    let bytes =
        b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>";
    let r = response(bytes);
    assert_eq!(r.code, 200);
    assert_eq!(r.content_length(), Some(39));
    assert!(r.content_length_matches());
    let xml = r.xml_body().unwrap().unwrap();
    let endpoint = Endpoint::OnlineP2pSrv {
        serial: "ABC123456789XYZ".into(),
    };
    let TypedBody::P2pSrv(info) = TypedBody::of_response(&endpoint, &xml) else {
        panic!("p2psrv answer");
    };
    assert_eq!(info.us.as_deref(), Some("198.51.100.5:8800"));
    assert_eq!(info.ds, None);
    let us: HostPort = info.us.unwrap().parse().unwrap();
    assert_eq!(
        us.to_socket_addr_v4(),
        Some("198.51.100.5:8800".parse().unwrap())
    );
    let rebuilt = Response::new(200, "OK")
        .with_header("CSeq", "2")
        .with_body(XmlBody::from_pairs(&[("US", "198.51.100.5:8800")]).to_bytes());
    assert_eq!(rebuilt.encode(), bytes);
}

// DH-P2P.md §11.10 (/online/relay answer)
#[test]
fn dhp2p_11_10_relay_answer() {
    let bytes = b"HTTP/1.1 200 OK\r\nCSeq: 4\r\nContent-Length: 49\r\n\r\n<body><Address>198.51.100.6:8800</Address></body>";
    let r = response(bytes);
    assert_eq!(r.cseq(), Some(4));
    let xml = r.xml_body().unwrap().unwrap();
    assert_eq!(
        RelayInfo::from_xml(&xml).address.as_deref(),
        Some("198.51.100.6:8800")
    );
    let rebuilt = Response::new(200, "OK")
        .with_header("CSeq", "4")
        .with_body(XmlBody::from_pairs(&[("Address", "198.51.100.6:8800")]).to_bytes());
    assert_eq!(rebuilt.encode(), bytes);
}

// DH-P2P.md §11.10 (/relay/agent answer)
#[test]
fn dhp2p_11_10_agent_answer() {
    let bytes = b"HTTP/1.1 200 OK\r\nCSeq: 6\r\nContent-Length: 78\r\n\r\n<body><Token>0123456789abcdef</Token><Agent>198.51.100.20:30000</Agent></body>";
    let r = response(bytes);
    let xml = r.xml_body().unwrap().unwrap();
    assert_eq!(
        TypedBody::of_response(&Endpoint::RelayAgent, &xml),
        TypedBody::Agent(AgentInfo {
            token: Some("0123456789abcdef".into()),
            agent: Some("198.51.100.20:30000".into()),
        })
    );
    let rebuilt = Response::new(200, "OK").with_header("CSeq", "6").with_body(
        XmlBody::from_pairs(&[
            ("Token", "0123456789abcdef"),
            ("Agent", "198.51.100.20:30000"),
        ])
        .to_bytes(),
    );
    assert_eq!(rebuilt.encode(), bytes);
}

// DH-P2P.md §11.10 (provisional p2p-channel answer)
#[test]
fn dhp2p_11_10_trying() {
    let bytes = b"HTTP/1.1 100 Trying\r\nCSeq: 5\r\n\r\n";
    let r = response(bytes);
    assert_eq!((r.code, r.reason.as_str()), (100, "Trying"));
    assert_eq!(r.cseq(), Some(5));
    assert_eq!(
        Response::new(100, "Trying")
            .with_header("CSeq", "5")
            .encode(),
        bytes
    );
}

// DH-P2P.md §11.10 (final p2p-channel answer; reason phrase per FIELD-NOTES C9)
#[test]
fn dhp2p_11_10_server_nat_info() {
    let bytes = b"HTTP/1.1 200 Server Nat Info!\r\nCSeq: 5\r\nContent-Length: 92\r\n\r\n<body><LocalAddr>192.168.1.200:22508</LocalAddr><PubAddr>203.0.113.10:40000</PubAddr></body>";
    let r = response(bytes);
    assert_eq!(r.reason, "Server Nat Info!");
    assert!(r.content_length_matches());
    let xml = r.xml_body().unwrap().unwrap();
    let endpoint = Endpoint::P2pChannel {
        serial: "ABC123456789XYZ".into(),
    };
    let TypedBody::ChannelAnswer(answer) = TypedBody::of_response(&endpoint, &xml) else {
        panic!("p2p-channel answer");
    };
    assert_eq!(answer.local_addr.as_deref(), Some("192.168.1.200:22508"));
    assert_eq!(answer.pub_addr.as_deref(), Some("203.0.113.10:40000"));
    assert_eq!(answer.nonce, None);
    assert_eq!(
        parse_addr_list(&answer.local_addr.unwrap()).unwrap(),
        [SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508)]
    );
    let rebuilt = Response::new(200, "Server Nat Info!")
        .with_header("CSeq", "5")
        .with_body(
            XmlBody::from_pairs(&[
                ("LocalAddr", "192.168.1.200:22508"),
                ("PubAddr", "203.0.113.10:40000"),
            ])
            .to_bytes(),
        );
    assert_eq!(rebuilt.encode(), bytes);
}

// DH-P2P.md §11.10 (device needs type >= 1)
#[test]
fn dhp2p_11_10_forbidden() {
    let bytes = b"HTTP/1.1 403 Forbidden\r\nCSeq: 5\r\n\r\n";
    let r = response(bytes);
    assert_eq!((r.code, r.reason.as_str()), (403, "Forbidden"));
    assert_eq!(r.xml_body().unwrap(), None);
    assert_eq!(
        Response::new(403, "Forbidden")
            .with_header("CSeq", "5")
            .encode(),
        bytes
    );
}

// DH-P2P.md §11.10 (agent notification after relay-channel)
#[test]
fn dhp2p_11_10_agent_notification() {
    let bytes = b"HTTP/1.1 200 Server Nat Info!\r\n\r\n";
    let r = response(bytes);
    assert_eq!((r.code, r.reason.as_str()), (200, "Server Nat Info!"));
    assert!(r.headers.is_empty());
    assert_eq!(r.cseq(), None);
    assert_eq!(Response::new(200, "Server Nat Info!").encode(), bytes);
}

// FIELD-NOTES.md §2.3 (probe reply with Date, KN #17)
#[test]
fn field_notes_2_3_probe_reply_with_date() {
    let bytes = b"HTTP/1.1 200 OK\r\nDate: 2025-07-14T12:10:45Z\r\nCSeq: 1\r\n\r\n";
    let r = response(bytes);
    assert_eq!(header_names(&r.headers), ["Date", "CSeq"]);
    assert_eq!(r.header("date"), Some("2025-07-14T12:10:45Z"));
    assert_eq!(
        parse_created(r.header("Date").unwrap()).unwrap(),
        1_752_495_045
    );
    assert_eq!(r.cseq(), Some(1));
    let rebuilt = Response::new(200, "OK")
        .with_header("Date", "2025-07-14T12:10:45Z")
        .with_header("CSeq", "1");
    assert_eq!(rebuilt.encode(), bytes);
}

// FIELD-NOTES.md §2.3 (/online/p2psrv with DS and US, KN #3 #13; host
// substituted by a 12-character documentation address so Content-Length stays 65)
#[test]
fn field_notes_2_3_p2psrv_ds_us() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Type: \r\nContent-Length: 65\r\n\r\n<body><DS>198.51.100.5:8802</DS><US>198.51.100.5:8803</US></body>";
    let r = response(bytes);
    assert_eq!(r.header("Content-Type"), Some(""));
    assert_eq!(r.content_length(), Some(65));
    assert!(r.content_length_matches());
    let info = P2pSrvInfo::from_xml(&r.xml_body().unwrap().unwrap());
    assert_eq!(info.ds.as_deref(), Some("198.51.100.5:8802"));
    assert_eq!(info.us.as_deref(), Some("198.51.100.5:8803"));
    assert_eq!(Message::Response(r).encode(), bytes);
}

// FIELD-NOTES.md §2.3 (403 on p2p-channel, KN #2, Content-Length 95)
#[test]
fn field_notes_2_3_invalid_salt_error() {
    let body = "<body><ErrCode>4</ErrCode><Error>DevPwd_InvalidSalt</Error><Policy>p2p,udprelay</Policy></body>";
    assert_eq!(body.len(), 95);
    let bytes = format!("HTTP/1.1 403 Forbidden\r\nCSeq: 5\r\nContent-Length: 95\r\n\r\n{body}");
    let r = response(bytes.as_bytes());
    assert_eq!(r.code, 403);
    let xml = r.xml_body().unwrap().unwrap();
    let endpoint = Endpoint::P2pChannel { serial: "X".into() };
    assert_eq!(
        TypedBody::of_response(&endpoint, &xml),
        TypedBody::Error(ErrorBody {
            err_code: Some("4".into()),
            error: Some("DevPwd_InvalidSalt".into()),
            policy: Some("p2p,udprelay".into()),
        })
    );
    let rebuilt = Response::new(403, "Forbidden")
        .with_header("CSeq", "5")
        .with_body(
            XmlBody::from_pairs(&[
                ("ErrCode", "4"),
                ("Error", "DevPwd_InvalidSalt"),
                ("Policy", "p2p,udprelay"),
            ])
            .to_bytes(),
        );
    assert_eq!(rebuilt.encode(), bytes.as_bytes());
}

// FIELD-NOTES.md §2.3 (/info/device answer, EW; Info is the published prefix of §3.1)
#[test]
fn field_notes_2_3_info_device() {
    let bytes = b"HTTP/1.1 200 OK\r\nCSeq: 3\r\nContent-Length: 85\r\n\r\n<body><DevVersion>6.7.11</DevVersion><Info>sJRI1JVcQjAKP/skwV5WD6+E9B+t</Info></body>";
    let r = response(bytes);
    assert!(r.content_length_matches());
    let xml = r.xml_body().unwrap().unwrap();
    let endpoint = Endpoint::InfoDevice {
        serial: "ABC".into(),
    };
    assert_eq!(
        TypedBody::of_response(&endpoint, &xml),
        TypedBody::InfoDeviceAnswer(InfoDeviceAnswer {
            dev_version: Some("6.7.11".into()),
            info: Some("sJRI1JVcQjAKP/skwV5WD6+E9B+t".into()),
        })
    );
    let rebuilt = Response::new(200, "OK").with_header("CSeq", "3").with_body(
        XmlBody::from_pairs(&[
            ("DevVersion", "6.7.11"),
            ("Info", "sJRI1JVcQjAKP/skwV5WD6+E9B+t"),
        ])
        .to_bytes(),
    );
    assert_eq!(rebuilt.encode(), bytes);
    // FIELD-NOTES §2.4: Info may be empty.
    let empty =
        XmlBody::parse("<body><DevVersion>6.7.11</DevVersion><Info></Info></body>").unwrap();
    assert_eq!(InfoDeviceAnswer::from_xml(&empty).info.as_deref(), Some(""));
}

// FIELD-NOTES.md §2.2 (DMSS app 2.6.20 header order; signed CSeq and nonce; Created with an offset)
#[test]
fn field_notes_2_2_sdk_p2p_channel_request() {
    let created = "2026-09-06T10:18:35+03:00";
    let nonce = "-1534236921";
    let digest = wsse_digest(nonce, created, USER, KEY);
    let body = "<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify></body>";
    let expected = format!(
        "NFPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\n\
X-Version: 6.7.15\r\n\
X-Sversion: 1.1.0\r\n\
x-pcs-request-id: 0123456789abcdef0123456789abcdef\r\n\
X-ToUType: Client/Dmss_Android\r\n\
CSeq: -2087321493\r\n\
Authorization: WSSE profile=\"UsernameToken\"\r\n\
X-WSSE: UsernameToken Username=\"{USER}\", PasswordDigest=\"{digest}\", Nonce=\"{nonce}\", Created=\"{created}\"\r\n\
Content-Type: \r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let built = build_request(
        &RequestStyle::Sdk(SdkHeaders::dmss()),
        &RequestParams {
            path: "/device/ABC123456789XYZ/p2p-channel",
            body,
            cseq: Some(-2_087_321_493),
            auth: auth(nonce, created),
            request_id: Some("0123456789abcdef0123456789abcdef"),
        },
    );
    assert_eq!(built.encode(), expected.as_bytes());
    let r = request(expected.as_bytes());
    assert_eq!(r.method, Method::NfPost);
    assert_eq!(r.cseq(), Some(-2_087_321_493));
    assert_eq!(r.header("X-SVERSION"), Some("1.1.0"));
    let wsse = r.wsse().unwrap().unwrap();
    assert_eq!(wsse.nonce, nonce);
    assert_eq!(wsse.created, created);
    assert!(wsse.digest_matches(KEY));
    assert_eq!(parse_created(&wsse.created).unwrap(), 1_788_679_115);
    assert_eq!(
        format_created_offset(1_788_679_115, 3 * 3600).unwrap(),
        created
    );
    assert_eq!(built, r);
}

// FIELD-NOTES.md §2.2 (EasyViewer Pro variant: X-TSVersion, NFGET without a body)
#[test]
fn field_notes_2_2_easyviewer_headers() {
    let built = build_request(
        &RequestStyle::Sdk(SdkHeaders::easyviewer()),
        &RequestParams {
            path: "/online/relay",
            cseq: Some(3),
            auth: auth("4256704150", "2023-12-18T19:19:43Z"),
            ..Default::default()
        },
    );
    assert_eq!(built.method, Method::NfGet);
    assert_eq!(
        header_names(&built.headers),
        [
            "X-Version",
            "X-TSVersion",
            "X-ToUType",
            "CSeq",
            "Authorization",
            "X-WSSE"
        ]
    );
    assert_eq!(built.header("X-Version"), Some("6.7.11"));
    assert_eq!(built.header("X-TSVersion"), Some("TS_1.1.4"));
    assert_eq!(request(&built.encode()), built);
}

// FIELD-NOTES.md §2.2 (/online/stun warm-up: only X-ToUType)
#[test]
fn field_notes_2_2_sdk_stun_warmup() {
    let built = build_sdk_stun_warmup("Client/Dmss_Android");
    let expected = b"NFGET /online/stun HTTP/1.1\r\nX-ToUType: Client/Dmss_Android\r\n\r\n";
    assert_eq!(built.encode(), expected);
    let r = request(expected);
    assert_eq!(r.endpoint(), Endpoint::OnlineStun);
    assert_eq!(r.wsse().unwrap(), None);
    assert_eq!(r.cseq(), None);
}

// FIELD-NOTES.md C10 (SDK bodies carry <Dev> on /relay/agent and /relay/start)
#[test]
fn field_notes_c10_dev_bodies() {
    assert_eq!(
        relay_start_body(Some("ABC123456789XYZ")),
        "<body><Client>:0</Client><Dev>ABC123456789XYZ</Dev></body>"
    );
    assert_eq!(
        relay_agent_body("ABC123456789XYZ"),
        "<body><Dev>ABC123456789XYZ</Dev></body>"
    );
}

// FIELD-NOTES.md C11 (DF core/localaddr_test.go)
#[test]
fn field_notes_c11_comma_list_local_addr() {
    let list = parse_addr_list("10.8.0.2,192.168.1.10,192.168.1.10:50000").unwrap();
    assert_eq!(
        list,
        [
            SocketAddrV4::new(Ipv4Addr::new(10, 8, 0, 2), 50000),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 50000),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 50000),
        ]
    );
    assert_eq!(
        format_addr_list(
            &[Ipv4Addr::new(10, 8, 0, 2), Ipv4Addr::new(192, 168, 1, 10)],
            50000
        ),
        "10.8.0.2,192.168.1.10:50000"
    );
}

// FIELD-NOTES.md C11 (KN main.py @41fda6d, IpEncrpt form; MC answer form)
#[test]
fn field_notes_c11_captured_list_forms() {
    let list = parse_addr_list("63.87.143.254,63.87.254.173:50000").unwrap();
    assert_eq!(
        list,
        [
            SocketAddrV4::new(Ipv4Addr::new(63, 87, 143, 254), 50000),
            SocketAddrV4::new(Ipv4Addr::new(63, 87, 254, 173), 50000),
        ]
    );
    let mc = parse_addr_list("192.168.57.20,192.168.0.108:51980").unwrap();
    assert_eq!(
        mc[0],
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 57, 20), 51980)
    );
    assert!(matches!(
        parse_addr_list("192.168.57.20,192.168.0.108"),
        Err(CloudError::BadAddress { .. })
    ));
    assert!(parse_addr_list("UcCslW2QRrw8Tz5yetiw").is_err());
}

// DH-P2P.md §2.5 (Identify: lowercase hex without zero padding)
#[test]
fn dhp2p_2_5_identify_text_form() {
    assert_eq!(IDENTIFY.to_string(), "d4 9e 67 a8 2b d4 7e 1e");
    let small = Identify([0x0a, 0x00, 0x01, 0xff, 0x10, 0x0f, 0x7e, 0x00]);
    assert_eq!(small.to_string(), "a 0 1 ff 10 f 7e 0");
    assert_eq!("a 0 1 ff 10 f 7e 0".parse::<Identify>().unwrap(), small);
    assert_eq!(
        "0A 00 01 FF 10 0F 7E 00".parse::<Identify>().unwrap(),
        small
    );
    assert!("a 0 1 ff 10 f 7e".parse::<Identify>().is_err());
    assert!("a 0 1 ff 10 f 7e 0 0".parse::<Identify>().is_err());
    assert!("a 0 1 ff 10 f 7e 100".parse::<Identify>().is_err());
    assert!("a 0 1 ff 10 f 7e +1".parse::<Identify>().is_err());
}

// DH-P2P.md §2.3 (Created: UTC, no fraction, literal Z)
#[test]
fn dhp2p_2_3_created_format() {
    assert_eq!(
        format_created_utc(1_704_164_645).unwrap(),
        "2024-01-02T03:04:05Z"
    );
    assert_eq!(
        parse_created("2024-01-02T03:04:05Z").unwrap(),
        1_704_164_645
    );
    assert_eq!(
        parse_created("2024-01-02T05:34:05+02:30").unwrap(),
        1_704_164_645
    );
    assert_eq!(
        parse_created("2024-01-01T22:04:05-05:00").unwrap(),
        1_704_164_645
    );
    assert!(matches!(
        parse_created("2024-01-02 03:04:05"),
        Err(CloudError::BadCreated { .. })
    ));
    assert!(format_created_utc(i64::MAX).is_err());
}

// DH-P2P.md §2.5 and FIELD-NOTES.md §2.4 (endpoint table)
#[test]
fn endpoints_of_every_known_path() {
    let sn = || "ABC123456789XYZ".to_owned();
    let cases = [
        ("/probe/p2psrv", Endpoint::ProbeP2pSrv),
        (
            "/online/p2psrv/ABC123456789XYZ",
            Endpoint::OnlineP2pSrv { serial: sn() },
        ),
        (
            "/probe/device/ABC123456789XYZ",
            Endpoint::ProbeDevice { serial: sn() },
        ),
        (
            "/info/device/ABC123456789XYZ",
            Endpoint::InfoDevice { serial: sn() },
        ),
        ("/online/relay", Endpoint::OnlineRelay),
        ("/online/stun", Endpoint::OnlineStun),
        ("/p2p/stun/probe", Endpoint::P2pStunProbe),
        (
            "/device/ABC123456789XYZ/p2p-channel",
            Endpoint::P2pChannel { serial: sn() },
        ),
        (
            "/device/ABC123456789XYZ/relay-channel",
            Endpoint::RelayChannel { serial: sn() },
        ),
        (
            "/device/ABC123456789XYZ/local-channel",
            Endpoint::LocalChannel { serial: sn() },
        ),
        (
            "/device/ABC123456789XYZ/tcprelay-channel",
            Endpoint::TcpRelayChannel { serial: sn() },
        ),
        ("/tcprelay/client-bind", Endpoint::TcpRelayClientBind),
        ("/relay/agent", Endpoint::RelayAgent),
        (
            "/relay/start/0123456789abcdef",
            Endpoint::RelayStart {
                token: "0123456789abcdef".into(),
            },
        ),
        (
            "/relay/unbind/0123456789abcdef",
            Endpoint::RelayUnbind {
                token: "0123456789abcdef".into(),
            },
        ),
        (
            "/device//p2p-channel",
            Endpoint::Other("/device//p2p-channel".into()),
        ),
        (
            "/online/p2psrv/a/b",
            Endpoint::Other("/online/p2psrv/a/b".into()),
        ),
        ("probe/p2psrv", Endpoint::Other("probe/p2psrv".into())),
    ];
    for (path, endpoint) in cases {
        assert_eq!(Endpoint::parse(path), endpoint, "{path}");
        assert_eq!(endpoint.path(), path);
    }
    // Serials are kept exactly as written (MC: IMOU wanted lower case).
    assert_eq!(
        Endpoint::parse("/probe/device/abc123"),
        Endpoint::ProbeDevice {
            serial: "abc123".into()
        }
    );
}

// FIELD-NOTES.md §2.4 (p2p-channel answer keys seen by MC, unknown keys kept in order)
#[test]
fn field_notes_2_4_channel_answer_extra_keys() {
    let text = "<body><Identify>0 0 0 0 0 0 0 0</Identify><IpEncrpt>true</IpEncrpt><LocalAddr>192.168.57.20,192.168.0.108:51980</LocalAddr><NatValueT>268435455</NatValueT><PubAddr>203.0.113.10:51980</PubAddr><Relay>0</Relay><version>5.0.0</version><Unknown><a>1</a></Unknown></body>";
    let xml = XmlBody::parse(text).unwrap();
    let answer = ChannelAnswer::from_xml(&xml);
    assert_eq!(answer.nat_value_t.as_deref(), Some("268435455"));
    assert_eq!(answer.relay.as_deref(), Some("0"));
    assert_eq!(answer.identify.as_deref(), Some("0 0 0 0 0 0 0 0"));
    let last = xml.elements().last().unwrap();
    assert_eq!(last, &XmlElement::nested("Unknown", "<a>1</a>"));
    assert_eq!(xml.as_str(), text);
}

// DH-P2P.md §2.4 (a broken body still decodes as a message; the body error is separate)
#[test]
fn broken_body_still_decodes_the_head() {
    let bytes = b"HTTP/1.1 200 OK\r\nCSeq: 9\r\nContent-Length: 12\r\n\r\n<body><US>x</body>";
    let r = response(bytes);
    assert_eq!(r.cseq(), Some(9));
    assert!(!r.content_length_matches());
    let err = r.xml_body().unwrap_err();
    assert!(
        matches!(err, CloudError::Xml { offset, .. } if offset >= 45),
        "{err:?}"
    );
    assert_eq!(Message::Response(r).encode(), bytes);
}

// DH-P2P.md §2.4 (every header line has ": "; an unparseable X-WSSE is an error only when asked)
#[test]
fn header_forms_and_lazy_wsse() {
    let bytes = b"DHGET /online/relay HTTP/1.1\r\nCSeq: 3\r\nX-WSSE: garbage\r\nX-Empty:\r\n\r\n";
    let r = request(bytes);
    assert_eq!(r.headers[2].separator, Separator::Colon);
    assert_eq!(r.header("x-empty"), Some(""));
    assert!(matches!(r.wsse(), Err(CloudError::BadWsse { .. })));
    assert_eq!(r.encode(), bytes);
    assert!(matches!(
        decode(b"DHGET /online/relay HTTP/1.1\r\nCSeq:3\r\n\r\n"),
        Err(CloudError::BadHeaderLine { offset: 30, .. })
    ));
    assert!(matches!(
        decode(b"DHGET /online/relay HTTP/1.1\r\nCSeq 3\r\n\r\n"),
        Err(CloudError::BadHeaderLine { offset: 30, .. })
    ));
}

// The wire layout the describer highlights comes from the codec: the start
// line, header and body ranges are where the encoder writes them, and XML
// element spans are where the XML reader found them (comments and
// whitespace included), WSSE values where the WSSE parser read them.
#[test]
fn layout_and_element_spans_point_at_the_exact_bytes() {
    let bytes: &[u8] = b"HTTP/1.1 200 OK\r\nCSeq: 9\r\nX-Bare:\r\nContent-Length: 66\r\n\r\n<body>\n <!-- <US>not this</US> -->\n <US>1.2.3.4:5</US><Empty/>\n</body>";
    let message = decode(bytes).unwrap();
    let layout = message.layout();
    let text = |r: &std::ops::Range<usize>| &bytes[r.clone()];
    assert_eq!(text(&layout.start_line), b"HTTP/1.1 200 OK");
    assert_eq!(text(&layout.start_parts[1]), b"200");
    assert_eq!(text(&layout.start_parts[2]), b"OK");
    assert_eq!(text(&layout.headers[0].line), b"CSeq: 9");
    assert_eq!(text(&layout.headers[0].value), b"9");
    assert_eq!(text(&layout.headers[1].name), b"X-Bare");
    assert!(layout.headers[1].value.is_empty());
    assert_eq!(text(&layout.body), message.body());

    let xml = message.xml_body().unwrap().unwrap();
    let body = message.body();
    let spans = xml.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(&body[spans[0].outer.clone()], b"<US>1.2.3.4:5</US>");
    assert_eq!(&body[spans[0].inner.clone()], b"1.2.3.4:5");
    assert_eq!(&body[spans[1].outer.clone()], b"<Empty/>");
    assert!(spans[1].inner.is_empty());

    // A body written by the encoder knows its spans too, identical to
    // reading it back.
    let built = XmlBody::from_pairs(&[("Token", "a&b"), ("US", "x")]);
    let parsed = XmlBody::parse(built.as_str()).unwrap();
    assert_eq!(built.spans(), parsed.spans());
    assert_eq!(&built.as_str()[built.spans()[0].inner.clone()], "a&amp;b");

    let wsse = "UsernameToken Username=\"P2PClient\", PasswordDigest=\"d/+=\", Nonce=\"-12\", Created=\"2024-01-01T00:00:00Z\"";
    let at = dhp2p::codec::cloud::WsseRanges::locate(wsse).unwrap();
    assert_eq!(&wsse[at.username], "P2PClient");
    assert_eq!(&wsse[at.password_digest], "d/+=");
    assert_eq!(&wsse[at.nonce], "-12");
    assert_eq!(&wsse[at.created], "2024-01-01T00:00:00Z");
}
