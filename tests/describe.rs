//! The describe layer: field values, byte ranges, JSON shape, redaction and
//! the text renderers, on reference vectors.

use dhp2p::codec::classify::Kind;
use dhp2p::decode::{describe, describe_with, hex_dump, render_tree, Description, Options};
use serde_json::Value;

fn h(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(digits).expect("test vector is hex")
}

/// DH-P2P.md §11.8 D8: BIND realm 0x0a0b0c0d → 127.0.0.1:554.
fn bind_d8() -> Vec<u8> {
    h("50544350 0000002c 00000010 0000fffd 00000003 00001003
       11000000 0a0b0c0d 00000000 0000022a 7f000001")
}

/// DH-P2P.md §11.6: client → device Binding Request.
fn punch_request() -> Vec<u8> {
    h("ff fe ff e7 de ed 5b bd 00 01 02 03 04 05 06 07
       08 09 0a 0b 7f d5 ff f7 2b 61 98 57 d4 2b 81 e1
       ff fb ff f7 ff fe 63 bf 34 ff 8e f5")
}

/// DH-P2P.md §11.10: the online/p2psrv answer.
const US_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>";

/// DH-P2P.md §11.5: the type-1 p2p-channel body with its DevAuth, in a request.
fn devauth_request() -> Vec<u8> {
    let mut bytes =
        b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\nCSeq: 5\r\n\r\n".to_vec();
    bytes.extend_from_slice(b"<body><CreateDate>1700000000</CreateDate><DevAuth>G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI=</DevAuth><Nonce>1234567</Nonce><RandSalt>5daf91fc5cfc1be8e081cfb08f792726</RandSalt><UserName>admin</UserName><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrptV2>true</IpEncrptV2><LocalAddr>UcCslW2QRrw8Tz5yetiw</LocalAddr><version>5.0.0</version></body>");
    bytes
}

const DEVAUTH: &str = "G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI=";

fn field<'a>(d: &'a Description, key: &str) -> &'a dhp2p::decode::Field {
    d.find(key)
        .unwrap_or_else(|| panic!("no field {key} in {:#?}", d.fields))
}

fn range(d: &Description, key: &str) -> std::ops::Range<usize> {
    field(d, key).range.clone().expect("a byte range")
}

#[test]
fn ptcp_bind_fields_and_ranges() {
    // DH-P2P.md §11.8 D8
    let bytes = bind_d8();
    let d = describe(&bytes);
    assert_eq!(d.kind, Kind::Ptcp);
    assert_eq!(d.error, None);
    assert_eq!(
        d.summary,
        "sent=44 recv=16 pid=0x0000fffd lmid=3 rmid=4099 BIND realm=0x0a0b0c0d 127.0.0.1:554"
    );
    assert_eq!(range(&d, "ptcp.sent"), 4..8);
    assert_eq!(field(&d, "ptcp.sent").value, "44");
    assert_eq!(field(&d, "ptcp.sent").json, 44);
    assert_eq!(range(&d, "ptcp.recv"), 8..12);
    assert_eq!(field(&d, "ptcp.pid").value, "0x0000fffd");
    assert_eq!(range(&d, "ptcp.lmid"), 16..20);
    assert_eq!(field(&d, "ptcp.rmid").json, 4099);
    assert_eq!(range(&d, "ptcp.body"), 24..44);
    assert_eq!(range(&d, "ptcp.body.type"), 24..25);
    assert_eq!(field(&d, "ptcp.body.type").json, 0x11);
    assert_eq!(range(&d, "ptcp.body.length"), 25..28);
    assert_eq!(field(&d, "ptcp.body.length").json, 0);
    assert_eq!(range(&d, "ptcp.body.realm"), 28..32);
    assert_eq!(field(&d, "ptcp.body.realm").value, "0x0a0b0c0d");
    assert_eq!(range(&d, "ptcp.body.padding"), 32..36);
    assert_eq!(range(&d, "ptcp.body.port"), 36..40);
    assert_eq!(field(&d, "ptcp.body.port").json, 554);
    assert_eq!(range(&d, "ptcp.body.ip"), 40..44);
    assert_eq!(field(&d, "ptcp.body.ip").value, "127.0.0.1");
    assert_eq!(field(&d, "ptcp.body.target").range, None);
    // The hex pane's cursor on byte 41 selects the IPv4 field.
    assert_eq!(d.field_at(41).map(|f| f.key.as_str()), Some("ptcp.body.ip"));
}

#[test]
fn ptcp_bind_json() {
    // DH-P2P.md §11.8 D8
    let json = describe(&bind_d8()).to_json();
    assert_eq!(json["kind"], "ptcp");
    assert_eq!(json["length"], 44);
    let ptcp = &json["ptcp"];
    assert_eq!(ptcp["sent"], 44);
    assert_eq!(ptcp["recv"], 16);
    assert_eq!(ptcp["pid"], 0xfffd);
    assert_eq!(ptcp["lmid"], 3);
    assert_eq!(ptcp["rmid"], 4099);
    assert_eq!(ptcp["body_len"], 20);
    let body = &ptcp["body"];
    assert_eq!(body["type"], "BIND");
    assert_eq!(body["type_code"], 17);
    assert_eq!(body["realm"], 168_496_141);
    assert_eq!(body["port"], 554);
    assert_eq!(body["ip"], "127.0.0.1");
    assert_eq!(body["target"], "127.0.0.1:554");
    assert!(body["realm"].is_u64() && ptcp["sent"].is_u64());
}

#[test]
fn ptcp_status_json() {
    // DH-P2P.md §11.8 D10: STATUS CONN.
    let bytes = h("50544350 00000010 00000040 0000fffe 00001005 00000003
                   12000000 0a0b0c0d 00000000 434f4e4e");
    let d = describe(&bytes);
    assert_eq!(range(&d, "ptcp.body.status"), 36..40);
    let json = d.to_json();
    assert_eq!(json["ptcp"]["sent"], 16);
    assert_eq!(json["ptcp"]["recv"], 64);
    assert_eq!(json["ptcp"]["pid"], 65534);
    assert_eq!(json["ptcp"]["body"]["type"], "STATUS");
    assert_eq!(json["ptcp"]["body"]["type_code"], 18);
    assert_eq!(json["ptcp"]["body"]["realm"], 168_496_141);
    assert_eq!(json["ptcp"]["body"]["status"], "CONN");
}

#[test]
fn ptcp_data_payload_text_and_range() {
    // DH-P2P.md §11.8 D12: DATA with an RTSP OPTIONS.
    let mut bytes = h("50544350 00000040 00000020 0000fffc 00000005 00001005
                       10000033 0a0b0c0d 00000000");
    bytes.extend_from_slice(b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    let d = describe(&bytes);
    assert_eq!(range(&d, "ptcp.body.payload"), 36..87);
    assert_eq!(field(&d, "ptcp.body.length").json, 51);
    let json = d.to_json();
    assert_eq!(json["ptcp"]["body"]["payload_len"], 51);
    assert_eq!(
        json["ptcp"]["body"]["payload_text"],
        "OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    );
    assert!(d.summary.ends_with("DATA realm=0x0a0b0c0d len=51"));
}

#[test]
fn ptcp_malformed_keeps_header() {
    // D16's header with a 5-byte body: neither SYN nor a sub-header.
    let bytes = h("50544350 00000048 0000007f 0000fffc 00001008 00000006 1300000000");
    let d = describe(&bytes);
    assert_eq!(d.kind, Kind::Ptcp);
    assert!(d.error.as_deref().unwrap().contains("offset 24"));
    assert_eq!(field(&d, "ptcp.sent").json, 72);
    let json = d.to_json();
    assert_eq!(json["error"], Value::from(d.error.clone().unwrap()));
    assert_eq!(json["ptcp"]["sent"], 72);
    assert!(json["ptcp"].get("body").is_none());
}

#[test]
fn cloud_response_us_element() {
    // DH-P2P.md §11.10
    let d = describe(US_REPLY);
    assert_eq!(d.kind, Kind::Cloud);
    assert_eq!(d.summary, "200 OK CSeq=2 US=198.51.100.5:8800");
    let us = field(&d, "cloud.body.US");
    assert_eq!(us.value, "198.51.100.5:8800");
    assert_eq!(us.json, "198.51.100.5:8800");
    let start = US_REPLY.windows(4).position(|w| w == b"<US>").unwrap();
    assert_eq!(
        us.range,
        Some(start..start + "<US>198.51.100.5:8800</US>".len())
    );
    assert_eq!(range(&d, "cloud.status_line"), 0..15);
    assert_eq!(range(&d, "cloud.code"), 9..12);
    assert_eq!(field(&d, "cloud.code").json, 200);
    let headers = d.find_all("cloud.header");
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].label, "CSeq");
    assert_eq!(headers[0].range, Some(17..24));
    assert_eq!(headers[1].label, "Content-Length");
    assert_eq!(range(&d, "cloud.body"), 48..US_REPLY.len());

    let json = d.to_json();
    assert_eq!(json["kind"], "cloud");
    let cloud = &json["cloud"];
    assert_eq!(cloud["response"]["code"], 200);
    assert_eq!(cloud["response"]["reason"], "OK");
    assert_eq!(cloud["cseq"], 2);
    assert_eq!(cloud["headers"][0], serde_json::json!(["CSeq", "2"]));
    assert_eq!(
        cloud["body"]["elements"],
        serde_json::json!([["US", "198.51.100.5:8800"]])
    );
    assert_eq!(cloud["content_length_matches"], true);
}

#[test]
fn cloud_request_json_names_endpoint_and_serial() {
    // DH-P2P.md §11.3 request line and headers ([rs] form, no body lines).
    let bytes = b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\n\
CSeq: 5\r\n\
Authorization: WSSE profile=\"UsernameToken\"\r\n\
X-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"wPDkbCjD8sSUexuKBVFC7WSFCgg=\", Nonce=\"2000000001\", Created=\"2024-01-02T03:04:07Z\"\r\n\
\r\n\
<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrpt>true</IpEncrpt><LocalAddr>127.0.0.1:50000</LocalAddr><version>5.0.0</version></body>";
    let d = describe(bytes);
    assert_eq!(
        d.summary,
        "DHPOST /device/ABC123456789XYZ/p2p-channel CSeq=5"
    );
    let json = d.to_json();
    let request = &json["cloud"]["request"];
    assert_eq!(request["method"], "DHPOST");
    assert_eq!(request["path"], "/device/ABC123456789XYZ/p2p-channel");
    assert_eq!(request["endpoint"], "p2p-channel");
    assert_eq!(request["serial"], "ABC123456789XYZ");
    // The WSSE digest stays: a one-time digest of a public key.
    assert_eq!(
        json["cloud"]["wsse"]["password_digest"],
        "wPDkbCjD8sSUexuKBVFC7WSFCgg="
    );
    let digest = field(&d, "cloud.wsse.password_digest");
    let r = digest.range.clone().unwrap();
    assert_eq!(&bytes[r], b"wPDkbCjD8sSUexuKBVFC7WSFCgg=");
    // Both readings of LocalAddr with IpEncrpt=true (DH-P2P §12 item 8).
    assert_eq!(
        field(&d, "cloud.body.LocalAddr.addresses").json,
        serde_json::json!(["127.0.0.1:50000"])
    );
    assert_eq!(
        field(&d, "cloud.body.LocalAddr.ip_encrpt").json,
        serde_json::json!(["128.255.255.254:50000"])
    );
    assert_eq!(range(&d, "cloud.method"), 0..6);
    assert_eq!(range(&d, "cloud.path"), 7..42);
}

#[test]
fn cloud_info_element_is_decrypted() {
    // FIELD-NOTES.md §3.1: the published prefix of a real Info value.
    let bytes = b"HTTP/1.1 200 OK\r\n\r\n<body><DevVersion>6.7.11</DevVersion><Info>sJRI1JVcQjAKP/skwV5WD6+E9B+t</Info></body>";
    let d = describe(bytes);
    // The prefix is not complete JSON: the decoder error is shown.
    let error = field(&d, "cloud.body.Info.decrypt_error");
    assert!(error.value.contains("JSON"), "{}", error.value);
    assert!(d.summary.contains("DevVersion=6.7.11"));
}

#[test]
fn punch_request_identify_range() {
    // DH-P2P.md §11.6
    let bytes = punch_request();
    let d = describe(&bytes);
    assert_eq!(d.kind, Kind::Punch);
    assert_eq!(
        d.summary,
        "Binding Request txid=fffefdfcfbfaf9f8f7f6f5f4 identify=d4 9e 67 a8 2b d4 7e 1e addr=203.0.113.10:40000"
    );
    assert_eq!(range(&d, "punch.type"), 0..2);
    assert_eq!(range(&d, "punch.length"), 2..4);
    assert_eq!(range(&d, "punch.cookie"), 4..8);
    assert_eq!(range(&d, "punch.transaction_id"), 8..20);
    let identify = field(&d, "punch.attr.identify");
    assert_eq!(identify.range, Some(24..32));
    assert_eq!(identify.value, "d4 9e 67 a8 2b d4 7e 1e");
    let attrs = d.find_all("punch.attr");
    assert_eq!(attrs.len(), 2);
    assert_eq!(attrs[0].range, Some(20..32));
    assert_eq!(attrs[1].range, Some(32..44));
    assert_eq!(range(&d, "punch.attr.port"), 38..40);
    assert_eq!(range(&d, "punch.attr.ip"), 40..44);
    assert_eq!(field(&d, "punch.attr.address").value, "203.0.113.10:40000");
}

#[test]
fn punch_json_shape() {
    // DH-P2P.md §11.6
    let json = describe(&punch_request()).to_json();
    assert_eq!(json["kind"], "punch");
    let punch = &json["punch"];
    assert_eq!(punch["type"], "Binding Request");
    assert_eq!(punch["type_code"], 1);
    assert_eq!(punch["length"], 24);
    assert_eq!(punch["cookie"], "2112a442");
    assert_eq!(punch["magic_cookie"], true);
    assert_eq!(punch["transaction_id"], "fffefdfcfbfaf9f8f7f6f5f4");
    assert_eq!(punch["attributes"][0]["type"], "ICE-CONTROLLING");
    assert_eq!(punch["attributes"][0]["type_code"], 32810);
    assert_eq!(
        punch["attributes"][0]["identify"],
        "d4 9e 67 a8 2b d4 7e 1e"
    );
    assert_eq!(punch["attributes"][1]["type"], "SOURCE-ADDRESS");
    assert_eq!(punch["attributes"][1]["address"], "203.0.113.10:40000");
    assert!(punch["attributes"][1]["address_plain"].is_string());
    assert_eq!(punch["trailing"], "");
}

#[test]
fn punch_py_confirm_trailing_attribute() {
    // DH-P2P.md §5.1 [py] confirm: length 12 and an address after it.
    let bytes = h("fe fe ff f3 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8
                   a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1
                   ff fb ff f7 ff fe a8 13 3f 57 fe 37");
    let d = describe(&bytes);
    assert_eq!(range(&d, "punch.trailing"), 32..44);
    let json = d.to_json();
    assert_eq!(json["punch"]["length"], 12);
    assert_eq!(
        json["punch"]["trailing_attributes"][0]["address"],
        "192.168.1.200:22508"
    );
    assert!(d.summary.contains("trailing=12B"));
}

#[test]
fn unknown_json_shape() {
    let bytes = b"hello world";
    let json = describe(bytes).to_json();
    assert_eq!(json["kind"], "unknown");
    assert_eq!(json["length"], 11);
    assert!(json.get("error").is_none());
}

#[test]
fn devauth_is_redacted_everywhere_by_default() {
    // DH-P2P.md §11.5 body
    let bytes = devauth_request();
    let d = describe(&bytes);
    let devauth = field(&d, "cloud.body.DevAuth");
    assert_eq!(devauth.value, "<redacted>");
    let json_text = d.to_json().to_string();
    assert!(!json_text.contains(DEVAUTH), "{json_text}");
    assert!(json_text.contains("<redacted>"));
    let mut tree = String::new();
    render_tree(&d, &mut tree);
    assert!(!tree.contains(DEVAUTH) && tree.contains("DevAuth: <redacted>"));
    // The secret's bytes are masked in what a hex dump shows.
    let start = bytes
        .windows(DEVAUTH.len())
        .position(|w| w == DEVAUTH.as_bytes())
        .unwrap();
    assert_eq!(d.secrets, vec![start..start + DEVAUTH.len()]);
    let masked = d.masked(&bytes);
    assert!(masked[start..start + DEVAUTH.len()]
        .iter()
        .all(|&b| b == b'*'));
    assert_eq!(masked.len(), bytes.len());
    assert!(!hex_dump(&masked).contains("G4lq"));
    // Other elements stay readable.
    assert_eq!(field(&d, "cloud.body.UserName").value, "admin");
}

#[test]
fn devauth_shown_when_redaction_is_off() {
    let bytes = devauth_request();
    let d = describe_with(&bytes, Options { redact: false });
    assert_eq!(field(&d, "cloud.body.DevAuth").value, DEVAUTH);
    assert_eq!(d.masked(&bytes).as_ref(), bytes.as_slice());
    assert!(d.to_json().to_string().contains(DEVAUTH));
}

#[test]
fn rtsp_digest_response_in_ptcp_data_is_redacted() {
    let rtsp = b"DESCRIBE rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 3\r\nAuthorization: Digest username=\"admin\", realm=\"Login to x\", nonce=\"abc\", uri=\"rtsp://127.0.0.1:554/\", response=\"0123456789abcdef0123456789abcdef\"\r\n\r\n";
    let mut bytes = h("50544350 00000040 00000020 0000fffc 00000005 00001005");
    bytes.extend_from_slice(&[0x10, 0, 0, u8::try_from(rtsp.len()).unwrap()]);
    bytes.extend_from_slice(&h("0a0b0c0d 00000000"));
    bytes.extend_from_slice(rtsp);
    let d = describe(&bytes);
    assert!(d.is_decoded());
    let json = d.to_json();
    let text = json["ptcp"]["body"]["payload_text"].as_str().unwrap();
    assert!(text.contains("response=\"<redacted>\""), "{text}");
    assert!(text.contains("username=\"admin\""));
    let hex_payload = json["ptcp"]["body"]["payload"].as_str().unwrap();
    assert!(!hex_payload.contains(&hex::encode("0123456789abcdef")));
    assert_eq!(d.secrets.len(), 1);
    assert_eq!(d.secrets[0].len(), 32);
    let raw = describe_with(&bytes, Options { redact: false }).to_json();
    assert!(raw["ptcp"]["body"]["payload_text"]
        .as_str()
        .unwrap()
        .contains("0123456789abcdef0123456789abcdef"));
}

#[test]
fn render_tree_indents_like_tshark() {
    let d = describe(&bind_d8());
    let mut tree = String::new();
    render_tree(&d, &mut tree);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], "Phony TCP (Dahua P2P)");
    assert!(lines.contains(&"    Bytes Sent: 44"));
    assert!(lines.contains(&"    Body: BIND (0x11)"));
    assert!(lines.contains(&"        Realm: 0x0a0b0c0d"));
    assert!(lines.contains(&"        Target IPv4: 127.0.0.1"));
}

#[test]
fn hex_dump_matches_the_reference_layout() {
    // DH-P2P.md §11.8 D8, the dump exactly as the reference prints it.
    let expected = "\
0000  50 54 43 50 00 00 00 2c 00 00 00 10 00 00 ff fd  |PTCP...,........|
0010  00 00 00 03 00 00 10 03 11 00 00 00 0a 0b 0c 0d  |................|
0020  00 00 00 00 00 00 02 2a 7f 00 00 01              |.......*....|
";
    assert_eq!(hex_dump(&bind_d8()), expected);
    assert_eq!(hex_dump(&[]), "");
}

mod props {
    use std::net::Ipv4Addr;

    use dhp2p::codec::ptcp::{Body, Header, Packet, Status};
    use dhp2p::decode::dissect::parse_hex;
    use dhp2p::decode::{describe, hex_dump};
    use proptest::prelude::*;

    fn body_strategy() -> impl Strategy<Value = (u8, u32, u32, [u8; 4], Vec<u8>)> {
        (
            0u8..4,
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
    }

    proptest! {
        /// Every ranged header and sub-header field of any PTCP packet points
        /// at the bytes that hold its value.
        #[test]
        fn ptcp_ranges_hold_the_values(
            sent in any::<u32>(), recv in any::<u32>(), pid in any::<u32>(),
            lmid in any::<u32>(), rmid in any::<u32>(),
            (which, realm, port, ip, data) in body_strategy(),
        ) {
            let body = match which {
                0 => Body::Data { realm, payload: &data },
                1 => Body::Bind { realm, port, ip: Ipv4Addr::from(ip), len_field: 8 },
                2 => Body::status(realm, if port % 2 == 0 { Status::Conn } else { Status::Disc }),
                _ => Body::Empty,
            };
            let header = Header { sent, recv, pid, lmid, rmid };
            let bytes = Packet { header, body }.to_vec();
            let d = describe(&bytes);
            prop_assert!(d.is_decoded());
            let be = |key: &str| {
                let r = d.find(key).and_then(|f| f.range.clone()).expect(key);
                let mut word = [0u8; 4];
                word.copy_from_slice(&bytes[r]);
                u32::from_be_bytes(word)
            };
            prop_assert_eq!(be("ptcp.sent"), sent);
            prop_assert_eq!(be("ptcp.recv"), recv);
            prop_assert_eq!(be("ptcp.pid"), pid);
            prop_assert_eq!(be("ptcp.lmid"), lmid);
            prop_assert_eq!(be("ptcp.rmid"), rmid);
            let json = d.to_json();
            prop_assert_eq!(&json["ptcp"]["sent"], &serde_json::json!(sent));
            prop_assert_eq!(&json["ptcp"]["rmid"], &serde_json::json!(rmid));
            if which < 3 {
                prop_assert_eq!(be("ptcp.body.realm"), realm);
                prop_assert_eq!(&json["ptcp"]["body"]["realm"], &serde_json::json!(realm));
            }
            if which == 1 {
                prop_assert_eq!(be("ptcp.body.port"), port);
                prop_assert_eq!(be("ptcp.body.ip"), u32::from_be_bytes(ip));
            }
            if which == 0 && !data.is_empty() {
                let r = d.find("ptcp.body.payload").and_then(|f| f.range.clone()).unwrap();
                prop_assert_eq!(&bytes[r], data.as_slice());
            }
        }

        /// What `hex_dump` prints, `parse_hex` reads back, and so are the
        /// plain, colon and `0x` forms.
        #[test]
        fn hex_forms_parse_back(bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            prop_assert_eq!(parse_hex(&hex_dump(&bytes)).unwrap(), bytes.clone());
            prop_assert_eq!(parse_hex(&hex::encode(&bytes)).unwrap(), bytes.clone());
            let colons: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
            prop_assert_eq!(parse_hex(&colons.join(":")).unwrap(), bytes.clone());
            let prefixed: Vec<String> = bytes.iter().map(|b| format!("0x{b:02x}")).collect();
            prop_assert_eq!(parse_hex(&prefixed.join(", ")).unwrap(), bytes.clone());
        }
    }
}
