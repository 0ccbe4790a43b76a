//! Classification by content: every reference datagram lands in the right
//! kind and decodes; malformed look-alikes keep their kind with an error;
//! 100k random and mutated inputs go through `classify`, `describe`,
//! `to_json` and `render_tree` without a panic.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhp2p::codec::classify::{classify, kind_of, Datagram, Kind};
use dhp2p::codec::cloud::{Endpoint, Message, Method};
use dhp2p::codec::ptcp::{Body, Status};
use dhp2p::codec::punch::{Attribute, MessageType};
use dhp2p::decode::{describe, render_tree};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Bytes of a hex text; spaces and line breaks are ignored.
fn h(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(digits).expect("test vector is hex")
}

const IDENTIFY: [u8; 8] = [0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e];

fn ptcp(bytes: &[u8]) -> dhp2p::codec::ptcp::Packet<'_> {
    assert_eq!(kind_of(bytes), Kind::Ptcp);
    match classify(bytes) {
        Datagram::Ptcp(Ok(packet)) => {
            assert_eq!(packet.to_vec(), bytes, "PTCP round trip");
            packet
        }
        other => panic!("expected a decoded PTCP packet, got {other:?}"),
    }
}

fn cloud(bytes: &[u8]) -> Message {
    assert_eq!(kind_of(bytes), Kind::Cloud);
    match classify(bytes) {
        Datagram::Cloud(Ok(message)) => {
            assert_eq!(message.encode(), bytes, "cloud round trip");
            message
        }
        other => panic!("expected a decoded cloud message, got {other:?}"),
    }
}

fn punch(bytes: &[u8]) -> dhp2p::codec::punch::PunchMessage {
    assert_eq!(kind_of(bytes), Kind::Punch);
    match classify(bytes) {
        Datagram::Punch(Ok(message)) => {
            assert_eq!(message.encode(), bytes, "punch round trip");
            message
        }
        other => panic!("expected a decoded punch message, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// PTCP

// DH-P2P.md §11.7 A1: client→agent SYN.
#[test]
fn ptcp_a1_syn() {
    let bytes = h("50544350 00000000 00000000 0002ffff 00000000 00000000 00030100");
    let p = ptcp(&bytes);
    assert_eq!(
        (p.header.sent, p.header.recv, p.header.pid),
        (0, 0, 0x0002_ffff)
    );
    assert_eq!((p.header.lmid, p.header.rmid), (0, 0));
    assert_eq!(p.body, Body::Syn);
}

// DH-P2P.md §11.7 A3: 0x17 REQUEST SIGN.
#[test]
fn ptcp_a3_sign_request() {
    let bytes =
        h("50544350 00000004 00000004 0000ffff 00000001 00000000 17000000 00000000 00000000");
    let p = ptcp(&bytes);
    assert_eq!((p.header.sent, p.header.recv, p.header.lmid), (4, 4, 1));
    assert_eq!(p.body, Body::SignRequest);
}

// DH-P2P.md §11.7 A4: empty ACK.
#[test]
fn ptcp_a4_empty_ack() {
    let bytes = h("50544350 00000004 00000010 0000ffff 00000001 00000001");
    let p = ptcp(&bytes);
    assert_eq!((p.header.sent, p.header.recv), (4, 16));
    assert_eq!((p.header.lmid, p.header.rmid), (1, 1));
    assert_eq!(p.body, Body::Empty);
}

// DH-P2P.md §11.7 A5: 0x18 SIGN (type assumed by the reference).
#[test]
fn ptcp_a5_sign() {
    let bytes = h("50544350 00000004 00000010 0000ffff 00000002 00000001
                     18000000 00000000 00000000 5349474e2d4558414d504c452d303031");
    let p = ptcp(&bytes);
    assert_eq!(
        p.body,
        Body::Sign {
            sign: b"SIGN-EXAMPLE-001"
        }
    );
}

// DH-P2P.md §11.8 D3: 0x19 AUTH with the sign.
#[test]
fn ptcp_d3_auth() {
    let bytes = h("50544350 00000004 00000004 0000ffff 00000001 00001000
                     19000000 00000000 00000000 5349474e2d4558414d504c452d303031");
    let p = ptcp(&bytes);
    assert_eq!(p.header.rmid, 4096);
    assert_eq!(
        p.body,
        Body::Auth {
            sign: b"SIGN-EXAMPLE-001"
        }
    );
}

// DH-P2P.md §11.8 D5: device's 0x1A.
#[test]
fn ptcp_d5_auth_reply() {
    let bytes =
        h("50544350 00000004 00000020 0000ffff 00001002 00000001 1a000000 00000000 00000000");
    let p = ptcp(&bytes);
    assert_eq!(p.header.lmid, 4098);
    assert_eq!(p.body, Body::AuthReply { data: &[] });
}

// DH-P2P.md §11.8 D6: client's 0x1B.
#[test]
fn ptcp_d6_auth_confirm() {
    let bytes =
        h("50544350 00000020 00000010 0000fffe 00000002 00001002 1b000000 00000000 00000000");
    let p = ptcp(&bytes);
    assert_eq!(p.header.pid, 0x0000_fffe);
    assert_eq!(p.body, Body::AuthConfirm);
}

// DH-P2P.md §11.8 D8: BIND realm 0x0a0b0c0d → 127.0.0.1:554 (len 0, original client).
#[test]
fn ptcp_d8_bind() {
    let bytes = h("50544350 0000002c 00000010 0000fffd 00000003 00001003
                     11000000 0a0b0c0d 00000000 0000022a 7f000001");
    let p = ptcp(&bytes);
    assert_eq!(
        p.body,
        Body::Bind {
            realm: 0x0a0b_0c0d,
            port: 554,
            ip: Ipv4Addr::LOCALHOST,
            len_field: 0
        }
    );
}

// DH-P2P.md §11.8 D10: STATUS CONN.
#[test]
fn ptcp_d10_status_conn() {
    let bytes = h("50544350 00000010 00000040 0000fffe 00001005 00000003
                     12000000 0a0b0c0d 00000000 434f4e4e");
    let p = ptcp(&bytes);
    assert_eq!(p.body, Body::status(0x0a0b_0c0d, Status::Conn));
}

// DH-P2P.md §11.8 D12: DATA, an RTSP OPTIONS of 51 bytes.
#[test]
fn ptcp_d12_data() {
    let mut bytes = h("50544350 00000040 00000020 0000fffc 00000005 00001005
                       10000033 0a0b0c0d 00000000");
    let rtsp = b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    bytes.extend_from_slice(rtsp);
    assert_eq!(bytes.len(), 87);
    let p = ptcp(&bytes);
    assert_eq!(
        p.body,
        Body::Data {
            realm: 0x0a0b_0c0d,
            payload: rtsp
        }
    );
}

// DH-P2P.md §11.8 D16: HEARTBEAT.
#[test]
fn ptcp_d16_heartbeat() {
    let bytes =
        h("50544350 00000048 0000007f 0000fffc 00001008 00000006 13000000 00000000 00000000");
    let p = ptcp(&bytes);
    assert_eq!((p.header.sent, p.header.recv), (72, 127));
    assert_eq!(p.body, Body::Heartbeat);
}

// DH-P2P.md §11.8 D20: STATUS DISC.
#[test]
fn ptcp_d20_status_disc() {
    let bytes = h("50544350 0000008b 00000054 0000fffa 00000009 00001009
                     12000000 0a0b0c0d 00000000 44495343");
    let p = ptcp(&bytes);
    assert_eq!(p.body, Body::status(0x0a0b_0c0d, Status::Disc));
}

// DH-P2P.md §11.9 [ext] and FIELD-NOTES.md §4.1: mcw0's real DVRIP packet.
#[test]
fn ptcp_mcw0_real_data() {
    let bytes = h("50544350 00000018 00000014 0000ffeb 0000001c 0533fe32
                     10000020 36ef034a 00000000
                     a0010000 00000000 c4a3af48 9956b6b4 54abaeb6 0121d671 05020001 0000a1aa");
    let p = ptcp(&bytes);
    assert_eq!((p.header.sent, p.header.recv), (24, 20));
    assert_eq!((p.header.pid, p.header.lmid), (0x0000_ffeb, 28));
    assert_eq!(p.header.rmid, 0x0533_fe32);
    match p.body {
        Body::Data { realm, payload } => {
            assert_eq!(realm, 0x36ef_034a);
            assert_eq!(payload.len(), 32);
            assert_eq!(payload[..2], [0xa0, 0x01]);
        }
        other => panic!("expected DATA, got {other:?}"),
    }
}

// FIELD-NOTES.md §4.1 [cap]: captured BIND body (len 8) behind the D8 header.
#[test]
fn ptcp_captured_bind_len_8() {
    let bytes = h("50544350 0000002c 00000010 0000fffd 00000003 00001003
                     11000008 fffffe91 00000000 00009391 7f000001");
    let p = ptcp(&bytes);
    assert_eq!(p.body, Body::bind(0xffff_fe91, 37777, Ipv4Addr::LOCALHOST));
}

// FIELD-NOTES.md §4.1 [cap]: captured STATUS CONN body behind the D10 header.
#[test]
fn ptcp_captured_status_conn() {
    let bytes = h("50544350 00000010 00000040 0000fffe 00001005 00000003
                   12000000 5f7f1ce8 00000000 434f4e4e");
    assert_eq!(ptcp(&bytes).body, Body::status(0x5f7f_1ce8, Status::Conn));
}

// FIELD-NOTES.md §4.1 [cap]: captured STATUS DISC body behind the D10 header.
#[test]
fn ptcp_captured_status_disc() {
    let bytes = h("50544350 00000010 00000040 0000fffe 00001005 00000003
                   12000000 ffd2c46c 00000000 44495343");
    assert_eq!(ptcp(&bytes).body, Body::status(0xffd2_c46c, Status::Disc));
}

// FIELD-NOTES.md §4.1 [cap]: captured HEARTBEAT body behind the D16 header.
#[test]
fn ptcp_captured_heartbeat() {
    let bytes = h("50544350 00000048 0000007f 0000fffc 00001008 00000006
                   13000000 00000000 00000000");
    assert_eq!(ptcp(&bytes).body, Body::Heartbeat);
}

// ---------------------------------------------------------------------------
// Cloud

// DH-P2P.md §11.2: DHGET /probe/p2psrv (251 bytes).
const PROBE_P2PSRV: &[u8] = b"DHGET /probe/p2psrv HTTP/1.1\r\n\
CSeq: 1\r\n\
Authorization: WSSE profile=\"UsernameToken\"\r\n\
X-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"JpL3CgK92AyJzUvBm3aSlB/MmNM=\", Nonce=\"123456789\", Created=\"2024-01-02T03:04:05Z\"\r\n\
\r\n";

#[test]
fn cloud_probe_p2psrv_request() {
    // DH-P2P.md §11.2
    assert_eq!(PROBE_P2PSRV.len(), 251);
    let m = cloud(PROBE_P2PSRV);
    let r = m.as_request().expect("a request");
    assert_eq!(r.method, Method::DhGet);
    assert_eq!(r.endpoint(), Endpoint::ProbeP2pSrv);
    assert_eq!(m.cseq(), Some(1));
    let wsse = m.wsse().unwrap().expect("X-WSSE present");
    assert_eq!(wsse.password_digest, "JpL3CgK92AyJzUvBm3aSlB/MmNM=");
    assert_eq!(wsse.nonce, "123456789");
    assert!(m.xml_body().unwrap().is_none());
}

#[test]
fn cloud_p2p_channel_request() {
    // DH-P2P.md §11.3, [py] form (456 bytes).
    let bytes = b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\n\
CSeq: 5\r\n\
Authorization: WSSE profile=\"UsernameToken\"\r\n\
X-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"wPDkbCjD8sSUexuKBVFC7WSFCgg=\", Nonce=\"2000000001\", Created=\"2024-01-02T03:04:07Z\"\r\n\
Content-Type: \r\n\
Content-Length: 144\r\n\
\r\n\
<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrpt>true</IpEncrpt><LocalAddr>127.0.0.1:50000</LocalAddr><version>5.0.0</version></body>";
    assert_eq!(bytes.len(), 456);
    let m = cloud(bytes);
    let r = m.as_request().unwrap();
    assert_eq!(r.method, Method::DhPost);
    assert_eq!(
        r.endpoint(),
        Endpoint::P2pChannel {
            serial: "ABC123456789XYZ".into()
        }
    );
    assert_eq!(m.cseq(), Some(5));
    assert_eq!(m.content_length(), Some(144));
    assert!(m.content_length_matches());
    let xml = m.xml_body().unwrap().unwrap();
    assert_eq!(xml.get("Identify"), Some("d4 9e 67 a8 2b d4 7e 1e"));
    assert_eq!(xml.get("LocalAddr"), Some("127.0.0.1:50000"));
    assert_eq!(xml.get("version"), Some("5.0.0"));
}

#[test]
fn cloud_relay_start_request() {
    // DH-P2P.md §11.4, [rs] form (293 bytes: no Content-* lines).
    let bytes = b"DHPOST /relay/start/0123456789abcdef HTTP/1.1\r\n\
CSeq: 7\r\n\
Authorization: WSSE profile=\"UsernameToken\"\r\n\
X-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"uoYoHkA41IOMCMQXAdoQtFPxQlw=\", Nonce=\"42\", Created=\"2024-01-02T03:04:09Z\"\r\n\
\r\n\
<body><Client>:0</Client></body>";
    assert_eq!(bytes.len(), 293);
    let m = cloud(bytes);
    assert_eq!(
        m.as_request().unwrap().endpoint(),
        Endpoint::RelayStart {
            token: "0123456789abcdef".into()
        }
    );
    assert_eq!(m.xml_body().unwrap().unwrap().get("Client"), Some(":0"));
}

#[test]
fn cloud_probe_reply_without_body() {
    // DH-P2P.md §11.10: probe reply.
    let m = cloud(b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n\r\n");
    let r = m.as_response().unwrap();
    assert_eq!((r.code, r.reason.as_str()), (200, "OK"));
    assert_eq!(m.cseq(), Some(1));
}

#[test]
fn cloud_online_p2psrv_reply() {
    // DH-P2P.md §11.10: the US answer.
    let m = cloud(b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>");
    assert!(m.content_length_matches());
    assert_eq!(
        m.xml_body().unwrap().unwrap().get("US"),
        Some("198.51.100.5:8800")
    );
}

#[test]
fn cloud_relay_agent_reply() {
    // DH-P2P.md §11.10: Token and Agent.
    let m = cloud(b"HTTP/1.1 200 OK\r\nCSeq: 6\r\nContent-Length: 78\r\n\r\n<body><Token>0123456789abcdef</Token><Agent>198.51.100.20:30000</Agent></body>");
    let xml = m.xml_body().unwrap().unwrap();
    assert_eq!(xml.get("Token"), Some("0123456789abcdef"));
    assert_eq!(xml.get("Agent"), Some("198.51.100.20:30000"));
}

#[test]
fn cloud_trying() {
    // DH-P2P.md §11.10 and FIELD-NOTES.md §2.3: 100 Trying before the 200.
    let m = cloud(b"HTTP/1.1 100 Trying\r\nCSeq: 5\r\n\r\n");
    assert_eq!(m.as_response().unwrap().code, 100);
}

#[test]
fn cloud_server_nat_info() {
    // DH-P2P.md §11.10: the final p2p-channel answer.
    let m = cloud(b"HTTP/1.1 200 Server Nat Info!\r\nCSeq: 5\r\nContent-Length: 92\r\n\r\n<body><LocalAddr>192.168.1.200:22508</LocalAddr><PubAddr>203.0.113.10:40000</PubAddr></body>");
    assert_eq!(m.as_response().unwrap().reason, "Server Nat Info!");
    let xml = m.xml_body().unwrap().unwrap();
    assert_eq!(xml.get("PubAddr"), Some("203.0.113.10:40000"));
    assert_eq!(xml.get("LocalAddr"), Some("192.168.1.200:22508"));
}

#[test]
fn cloud_agent_notification_without_headers() {
    // DH-P2P.md §11.10: the agent's notification after relay-channel.
    let m = cloud(b"HTTP/1.1 200 Server Nat Info!\r\n\r\n");
    assert!(m.headers().is_empty());
    assert_eq!(m.cseq(), None);
}

#[test]
fn cloud_forbidden_invalid_salt() {
    // FIELD-NOTES.md §2.3: 403 on p2p-channel, Content-Length 95.
    let m = cloud(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 95\r\n\r\n<body><ErrCode>4</ErrCode><Error>DevPwd_InvalidSalt</Error><Policy>p2p,udprelay</Policy></body>");
    assert!(m.content_length_matches());
    let xml = m.xml_body().unwrap().unwrap();
    assert_eq!(xml.get("ErrCode"), Some("4"));
    assert_eq!(xml.get("Error"), Some("DevPwd_InvalidSalt"));
    assert_eq!(xml.get("Policy"), Some("p2p,udprelay"));
}

// ---------------------------------------------------------------------------
// Punch

#[test]
fn punch_binding_request() {
    // DH-P2P.md §11.6: client → device Binding Request.
    let m = punch(&h("ff fe ff e7 de ed 5b bd 00 01 02 03 04 05 06 07
                      08 09 0a 0b 7f d5 ff f7 2b 61 98 57 d4 2b 81 e1
                      ff fb ff f7 ff fe 63 bf 34 ff 8e f5"));
    assert_eq!(m.message_type, MessageType::BindingRequest);
    assert!(m.has_magic_cookie());
    assert_eq!(m.transaction_id[0], 0xff);
    assert_eq!(m.identify(), Some(IDENTIFY));
    assert!(matches!(m.attributes[0], Attribute::IceControlling(_)));
    assert_eq!(
        m.address().unwrap().addr_inverted(),
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000)
    );
    assert!(m.trailing.is_empty());
}

#[test]
fn punch_binding_success_rs_form() {
    // DH-P2P.md §11.6: Binding Success, [rs] form (address inverted).
    let m = punch(&h("fe fe ff e7 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8
                      a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1
                      ff fb ff f7 ff fe a8 13 3f 57 fe 37"));
    assert_eq!(m.message_type, MessageType::BindingSuccess);
    assert_eq!(m.transaction_id[0], 0x5e);
    assert!(matches!(m.attributes[0], Attribute::IceControlled(_)));
    assert_eq!(
        m.address().unwrap().addr_inverted(),
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508)
    );
}

#[test]
fn punch_binding_success_py_form() {
    // DH-P2P.md §11.6: [py] form, bytes 38..43 written plain.
    let m = punch(&h("fe fe ff e7 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8
                      a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1
                      ff fb ff f7 ff fe 57 ec c0 a8 01 c8"));
    assert_eq!(
        m.address().unwrap().addr_plain(),
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508)
    );
}

#[test]
fn punch_captured_request() {
    // FIELD-NOTES.md §5.1 [cap]: the official client's Binding Request.
    let m = punch(&h("fffeffe7 deed5bbd b303ef13412b12aef9bab266 7fd5fff7
                      2b619857d42b81e1 fffbfff7fffe a8132102d265"));
    assert_eq!(m.message_type, MessageType::BindingRequest);
    assert_eq!(m.identify(), Some(IDENTIFY));
    let addr = m.address().unwrap().addr_inverted();
    assert_eq!(addr.port(), 22508);
    assert_eq!(*addr.ip(), Ipv4Addr::new(222, 253, 45, 154));
}

#[test]
fn punch_captured_success() {
    // FIELD-NOTES.md §5.1 [cap]: the official client's Binding Success.
    let m = punch(&h("fefeffe7 deed5bbd d3fa95ab9298c8e06b6e844e 7fd6fff7
                      2b619857d42b81e1 fffbfff7fffe a8133f57fe37"));
    assert_eq!(m.message_type, MessageType::BindingSuccess);
    assert_eq!(
        m.address().unwrap().addr_inverted(),
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508)
    );
}

#[test]
fn punch_confirm_with_trailing_address() {
    // DH-P2P.md §5.1 [py] confirm (length 12, address after it), cookie and
    // txid of §11.6.
    let m = punch(&h("fe fe ff f3 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8
                      a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1
                      ff fb ff f7 ff fe a8 13 3f 57 fe 37"));
    assert_eq!(m.declared_length(), 12);
    assert_eq!(m.attributes, vec![Attribute::IceControlled(IDENTIFY)]);
    assert_eq!(m.trailing.len(), 12);
}

// ---------------------------------------------------------------------------
// Malformed look-alikes keep their kind

#[test]
fn wrong_magic_is_unknown() {
    let bytes = h("50544358 00000000 00000000 0002ffff 00000000 00000000 00030100");
    assert_eq!(classify(&bytes), Datagram::Unknown);
    let d = describe(&bytes);
    assert_eq!(d.kind, Kind::Unknown);
    assert!(d.error.is_none());
    assert!(!d.is_decoded());
}

#[test]
fn ptcp_magic_and_three_bytes_is_malformed_ptcp() {
    let bytes = b"PTCP\x00\x00\x00";
    assert!(matches!(classify(bytes), Datagram::Ptcp(Err(_))));
    let d = describe(bytes);
    assert_eq!(d.kind, Kind::Ptcp);
    let error = d.error.expect("an error");
    assert!(
        error.contains("truncated") && error.contains("offset 0"),
        "{error}"
    );
}

#[test]
fn dhget_without_head_end_is_malformed_cloud() {
    let bytes = b"DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 1\r\n";
    assert!(matches!(classify(bytes), Datagram::Cloud(Err(_))));
    let d = describe(bytes);
    assert_eq!(d.kind, Kind::Cloud);
    assert!(d.error.unwrap().contains("CRLFCRLF"));
}

#[test]
fn ff_and_ten_bytes_is_unknown() {
    let mut bytes = vec![0xff];
    bytes.extend([0u8; 10]);
    assert_eq!(classify(&bytes), Datagram::Unknown);
    assert_eq!(describe(&bytes).kind, Kind::Unknown);
}

#[test]
fn ff_prefixed_44_bytes_non_stun_is_punch_with_or_without_error() {
    // Inverted: type 0x00aa, length 0x5555 (far past the end): an error.
    let mut bytes = vec![0xff, 0x55, 0xaa, 0xaa];
    bytes.extend([0x11u8; 40]);
    assert_eq!(bytes.len(), 44);
    let d = describe(&bytes);
    assert_eq!(d.kind, Kind::Punch);
    assert!(d.error.unwrap().contains("offset 2"));
    // Inverted: type 0x0000, length 24, one unknown attribute of 20 bytes: ok.
    let mut stun = vec![0x00, 0x00, 0x00, 0x18];
    stun.extend([0x21, 0x12, 0xa4, 0x42]);
    stun.extend([0u8; 12]);
    stun.extend([0x12, 0x34, 0x00, 0x14]);
    stun.extend([0x99u8; 20]);
    let wire: Vec<u8> = stun.iter().map(|b| !b).collect();
    assert_eq!((wire.len(), wire[0]), (44, 0xff));
    let d = describe(&wire);
    assert_eq!(d.kind, Kind::Punch);
    assert!(d.error.is_none());
    assert_eq!(d.to_json()["punch"]["attributes"][0]["type_code"], 0x1234);
}

// ---------------------------------------------------------------------------
// Smoke loop

/// Known-good datagrams of every kind to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut data = h("50544350 00000040 00000020 0000fffc 00000005 00001005
                      10000033 0a0b0c0d 00000000");
    data.extend_from_slice(
        b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nAuthorization: Digest username=\"a\", response=\"0123\"\r\n\r\n",
    );
    vec![
        h("50544350 00000000 00000000 0002ffff 00000000 00000000 00030100"),
        h("50544350 0000002c 00000010 0000fffd 00000003 00001003
           11000008 fffffe91 00000000 00009391 7f000001"),
        h("50544350 00000010 00000040 0000fffe 00001005 00000003
           12000000 0a0b0c0d 00000000 434f4e4e 00"),
        data,
        h("50544350 00000004 00000004 0000ffff 00000001 00001000
           19000000 00000000 00000000 5349474e2d4558414d504c452d303031"),
        PROBE_P2PSRV.to_vec(),
        b"HTTP/1.1 200 Server Nat Info!\r\nCSeq: 5\r\nContent-Length: 92\r\n\r\n<body><LocalAddr>192.168.1.200:22508</LocalAddr><PubAddr>203.0.113.10:40000</PubAddr></body>".to_vec(),
        b"DHPOST /device/X/p2p-channel HTTP/1.1\r\nCSeq: 5\r\n\r\n<body><CreateDate>1700000000</CreateDate><DevAuth>G4lq=</DevAuth><Info>sJRI1JVcQjAKP/skwV5WD6+E9B+t</Info><IpEncrpt>true</IpEncrpt><LocalAddr>63.87.143.254,63.87.254.173:50000</LocalAddr></body>".to_vec(),
        h("ff fe ff e7 de ed 5b bd 00 01 02 03 04 05 06 07
           08 09 0a 0b 7f d5 ff f7 2b 61 98 57 d4 2b 81 e1
           ff fb ff f7 ff fe 63 bf 34 ff 8e f5"),
        h("fe fe ff f3 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8
           a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1
           ff fb ff f7 ff fe a8 13 3f 57 fe 37"),
    ]
}

fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..6) {
            0 if !bytes.is_empty() => {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => bytes.truncate(rng.gen_range(0..=bytes.len())),
            2 => {
                let extra = rng.gen_range(1..32);
                bytes.extend((0..extra).map(|_| rng.gen::<u8>()));
            }
            3 => {
                let i = rng.gen_range(0..=bytes.len());
                bytes.insert(i, rng.gen());
            }
            4 if bytes.len() >= 4 => {
                // Length fields sit at 2 (punch), 24..28 (PTCP) and in text.
                let i = rng.gen_range(0..bytes.len() - 3);
                let extreme: [u8; 4] = [0xff, 0x00, 0x7f, 0x80].map(|b| b ^ rng.gen::<u8>() & 1);
                bytes[i..i + 4].copy_from_slice(&extreme);
            }
            _ => {
                let text = [&b"\r\n\r\n"[..], b"<", b"</body>", b"&amp;", b"\xff", b":"];
                let piece = text[rng.gen_range(0..text.len())];
                let i = rng.gen_range(0..=bytes.len());
                bytes.splice(i..i, piece.iter().copied());
            }
        }
    }
    bytes
}

fn exercise(bytes: &[u8]) {
    let datagram = classify(bytes);
    match &datagram {
        Datagram::Ptcp(Ok(p)) => assert_eq!(p.to_vec(), bytes),
        Datagram::Cloud(Ok(m)) => assert_eq!(m.encode(), bytes),
        Datagram::Punch(Ok(m)) => assert_eq!(m.encode(), bytes),
        _ => {}
    }
    let d = describe(bytes);
    assert_eq!(d.kind, datagram.kind());
    assert_eq!(d.error.is_some(), datagram.is_malformed());
    for field in d.walk() {
        if let Some(range) = &field.range {
            assert!(range.start <= range.end && range.end <= bytes.len());
        }
    }
    let json = d.to_json();
    assert_eq!(json["kind"], d.kind.as_str());
    let mut tree = String::new();
    render_tree(&d, &mut tree);
    assert!(!tree.is_empty());
}

#[test]
fn smoke_loop_random_and_mutated_inputs() {
    let mut rng = SmallRng::seed_from_u64(0x00d1_55ec);
    let seeds = seeds();
    for seed in &seeds {
        exercise(seed);
    }
    for i in 0..100_000u32 {
        let bytes = if i % 4 == 0 {
            let len = rng.gen_range(0..96);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Give the classifier something to bite on.
            let prefixes: [&[u8]; 5] = [b"PTCP", b"DHPOST ", b"HTTP/", &[0xff], &[0xfe]];
            if rng.gen_bool(0.7) {
                let prefix = prefixes[rng.gen_range(0..prefixes.len())];
                bytes.splice(0..0, prefix.iter().copied());
            }
            bytes
        } else {
            let seed = &seeds[rng.gen_range(0..seeds.len())];
            mutate(&mut rng, seed)
        };
        exercise(&bytes);
    }
}
