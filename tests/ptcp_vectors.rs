//! PTCP codec against every PTCP vector in the protocol references.
//!
//! DH-P2P.md §11.7/§11.8 vectors were derived from the reference client's
//! algorithm; FIELD-NOTES.md §4.1 bodies were lifted from a DMSS capture; the
//! DH-P2P.md §11.9 packet was accepted by a real device.

use std::net::Ipv4Addr;

use dhp2p::codec::ptcp::{Body, Header, Packet, PtcpError, Status, PID_IDLE, PID_SYN};

/// Decodes `bytes`, checks that encoding gives the same bytes back.
fn decode_roundtrip(bytes: &[u8]) -> Packet<'_> {
    let p = Packet::decode(bytes).unwrap_or_else(|e| panic!("decode failed: {e}"));
    assert_eq!(p.to_vec(), bytes, "re-encoding differs");
    assert_eq!(p.encoded_len(), bytes.len());
    p
}

fn assert_header(p: &Packet<'_>, sent: u32, recv: u32, pid: u32, lmid: u32, rmid: u32) {
    assert_eq!(
        p.header,
        Header {
            sent,
            recv,
            pid,
            lmid,
            rmid
        }
    );
}

/// DH-P2P.md §11.7 A1: client→agent SYN (28 bytes).
#[test]
fn vector_a1() {
    let bytes = hex::decode("5054435000000000000000000002ffff000000000000000000030100").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 0, 0, 0x0002ffff, 0, 0);
    assert_eq!(p.body.encoded_len(), 4);
    assert_eq!(p.body, Body::Syn);
}

/// DH-P2P.md §11.7 A2: agent→client SYN (28 bytes).
#[test]
fn vector_a2() {
    let bytes = hex::decode("5054435000000000000000040002ffff000000000000000000030100").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 0, 4, 0x0002ffff, 0, 0);
    assert_eq!(p.body.encoded_len(), 4);
    assert_eq!(p.body, Body::Syn);
}

/// DH-P2P.md §11.7 A3: client→agent 0x17 REQUEST SIGN (36 bytes).
#[test]
fn vector_a3() {
    let bytes =
        hex::decode("5054435000000004000000040000ffff0000000100000000170000000000000000000000")
            .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 4, 4, 0x0000ffff, 1, 0);
    assert_eq!(p.body.encoded_len(), 12);
    assert_eq!(p.body, Body::SignRequest);
}

/// DH-P2P.md §11.7 A4: agent→client empty ACK (24 bytes).
#[test]
fn vector_a4() {
    let bytes = hex::decode("5054435000000004000000100000ffff0000000100000001").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 4, 16, 0x0000ffff, 1, 1);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.7 A5: agent→client 0x18 SIGN (type assumed) (52 bytes).
#[test]
fn vector_a5() {
    let bytes = hex::decode("5054435000000004000000100000ffff00000002000000011800000000000000000000005349474e2d4558414d504c452d303031").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 4, 16, 0x0000ffff, 2, 1);
    assert_eq!(p.body.encoded_len(), 28);
    assert_eq!(
        p.body,
        Body::Sign {
            sign: b"SIGN-EXAMPLE-001"
        }
    );
}

/// DH-P2P.md §11.7 A6: client→agent empty ACK ([py] only) (24 bytes).
#[test]
fn vector_a6() {
    let bytes = hex::decode("5054435000000010000000200000fffe0000000200000002").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 16, 32, 0x0000fffe, 2, 2);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D1: client→device SYN (28 bytes).
#[test]
fn vector_d1() {
    let bytes = hex::decode("5054435000000000000000000002ffff000000000000000000030100").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 0, 0, 0x0002ffff, 0, 0);
    assert_eq!(p.body.encoded_len(), 4);
    assert_eq!(p.body, Body::Syn);
}

/// DH-P2P.md §11.8 D2: device→client SYN (28 bytes).
#[test]
fn vector_d2() {
    let bytes = hex::decode("5054435000000000000000040002ffff000010000000000000030100").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 0, 4, 0x0002ffff, 4096, 0);
    assert_eq!(p.body.encoded_len(), 4);
    assert_eq!(p.body, Body::Syn);
}

/// DH-P2P.md §11.8 D3: client→device 0x19 AUTH + sign (52 bytes).
#[test]
fn vector_d3() {
    let bytes = hex::decode("5054435000000004000000040000ffff00000001000010001900000000000000000000005349474e2d4558414d504c452d303031").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 4, 4, 0x0000ffff, 1, 4096);
    assert_eq!(p.body.encoded_len(), 28);
    assert_eq!(
        p.body,
        Body::Auth {
            sign: b"SIGN-EXAMPLE-001"
        }
    );
}

/// DH-P2P.md §11.8 D4: device→client empty ACK (24 bytes).
#[test]
fn vector_d4() {
    let bytes = hex::decode("5054435000000004000000200000ffff0000100100000001").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 4, 32, 0x0000ffff, 4097, 1);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D5: device→client 0x1A (36 bytes).
#[test]
fn vector_d5() {
    let bytes =
        hex::decode("5054435000000004000000200000ffff00001002000000011a0000000000000000000000")
            .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 4, 32, 0x0000ffff, 4098, 1);
    assert_eq!(p.body.encoded_len(), 12);
    assert_eq!(p.body, Body::AuthReply { data: &[] });
}

/// DH-P2P.md §11.8 D6: client→device 0x1B (36 bytes).
#[test]
fn vector_d6() {
    let bytes =
        hex::decode("5054435000000020000000100000fffe00000002000010021b0000000000000000000000")
            .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 32, 16, 0x0000fffe, 2, 4098);
    assert_eq!(p.body.encoded_len(), 12);
    assert_eq!(p.body, Body::AuthConfirm);
}

/// DH-P2P.md §11.8 D7: device→client empty ACK (tunnel ready) (24 bytes).
#[test]
fn vector_d7() {
    let bytes = hex::decode("50544350000000100000002c0000fffe0000100300000002").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 16, 44, 0x0000fffe, 4099, 2);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D8: client→device BIND realm 0x0a0b0c0d → 127.0.0.1:554 (44 bytes).
#[test]
fn vector_d8() {
    let bytes = hex::decode(
        "505443500000002c000000100000fffd0000000300001003110000000a0b0c0d000000000000022a7f000001",
    )
    .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 44, 16, 0x0000fffd, 3, 4099);
    assert_eq!(p.body.encoded_len(), 20);
    assert_eq!(
        p.body,
        Body::Bind {
            realm: 0x0a0b0c0d,
            port: 554,
            ip: Ipv4Addr::LOCALHOST,
            len_field: 0
        }
    );
}

/// DH-P2P.md §11.8 D9: device→client empty ACK (24 bytes).
#[test]
fn vector_d9() {
    let bytes = hex::decode("5054435000000010000000400000fffe0000100400000003").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 16, 64, 0x0000fffe, 4100, 3);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D10: device→client STATUS CONN (40 bytes).
#[test]
fn vector_d10() {
    let bytes = hex::decode(
        "5054435000000010000000400000fffe0000100500000003120000000a0b0c0d00000000434f4e4e",
    )
    .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 16, 64, 0x0000fffe, 4101, 3);
    assert_eq!(p.body.encoded_len(), 16);
    assert_eq!(p.body, Body::status(0x0a0b0c0d, Status::Conn));
}

/// DH-P2P.md §11.8 D11: client→device empty ACK (24 bytes).
#[test]
fn vector_d11() {
    let bytes = hex::decode("5054435000000040000000200000fffc0000000400001005").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 64, 32, 0x0000fffc, 4, 4101);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D12: client→device DATA (RTSP OPTIONS, 51 bytes) (87 bytes).
#[test]
fn vector_d12() {
    let bytes = hex::decode("5054435000000040000000200000fffc0000000500001005100000330a0b0c0d000000004f5054494f4e5320727473703a2f2f3132372e302e302e313a3535342f20525453502f312e300d0a435365713a20310d0a0d0a").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 64, 32, 0x0000fffc, 5, 4101);
    assert_eq!(p.body.encoded_len(), 63);
    let Body::Data { realm, payload } = p.body else {
        panic!("not DATA: {:?}", p.body)
    };
    assert_eq!(realm, 0x0a0b0c0d);
    assert_eq!(payload.len(), 51);
    assert!(hex::encode(payload).starts_with("4f5054494f4e5320727473703a2f2f3132372e302e302e31"));
}

/// DH-P2P.md §11.8 D13: device→client empty ACK (24 bytes).
#[test]
fn vector_d13() {
    let bytes = hex::decode("50544350000000200000007f0000fffd0000100600000005").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 32, 127, 0x0000fffd, 4102, 5);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D14: device→client DATA (RTSP reply, 28 bytes) (64 bytes).
#[test]
fn vector_d14() {
    let bytes = hex::decode("50544350000000200000007f0000fffd00001007000000051000001c0a0b0c0d00000000525453502f312e3020323030204f4b0d0a435365713a20310d0a0d0a").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 32, 127, 0x0000fffd, 4103, 5);
    assert_eq!(p.body.encoded_len(), 40);
    let Body::Data { realm, payload } = p.body else {
        panic!("not DATA: {:?}", p.body)
    };
    assert_eq!(realm, 0x0a0b0c0d);
    assert_eq!(payload.len(), 28);
    assert!(hex::encode(payload).starts_with("525453502f312e3020323030204f4b0d0a435365713a2031"));
}

/// DH-P2P.md §11.8 D15: client→device empty ACK (24 bytes).
#[test]
fn vector_d15() {
    let bytes = hex::decode("505443500000007f000000480000fffb0000000600001007").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 127, 72, 0x0000fffb, 6, 4103);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D16: device→client HEARTBEAT (36 bytes).
#[test]
fn vector_d16() {
    let bytes =
        hex::decode("50544350000000480000007f0000fffc0000100800000006130000000000000000000000")
            .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 72, 127, 0x0000fffc, 4104, 6);
    assert_eq!(p.body.encoded_len(), 12);
    assert_eq!(p.body, Body::Heartbeat);
}

/// DH-P2P.md §11.8 D17: client→device empty ACK (24 bytes).
#[test]
fn vector_d17() {
    let bytes = hex::decode("505443500000007f000000540000fffb0000000700001008").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 127, 84, 0x0000fffb, 7, 4104);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D18: client→device HEARTBEAT ([rs] duplex keepalive) (36 bytes).
#[test]
fn vector_d18() {
    let bytes =
        hex::decode("505443500000007f000000540000fffb0000000800001008130000000000000000000000")
            .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 127, 84, 0x0000fffb, 8, 4104);
    assert_eq!(p.body.encoded_len(), 12);
    assert_eq!(p.body, Body::Heartbeat);
}

/// DH-P2P.md §11.8 D19: device→client empty ACK (24 bytes).
#[test]
fn vector_d19() {
    let bytes = hex::decode("50544350000000540000008b0000fffb0000100900000008").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 84, 139, 0x0000fffb, 4105, 8);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D20: client→device STATUS DISC (40 bytes).
#[test]
fn vector_d20() {
    let bytes = hex::decode(
        "505443500000008b000000540000fffa0000000900001009120000000a0b0c0d0000000044495343",
    )
    .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 139, 84, 0x0000fffa, 9, 4105);
    assert_eq!(p.body.encoded_len(), 16);
    assert_eq!(p.body, Body::status(0x0a0b0c0d, Status::Disc));
}

/// DH-P2P.md §11.8 D21: device→client empty ACK (24 bytes).
#[test]
fn vector_d21() {
    let bytes = hex::decode("50544350000000540000009b0000fffb0000100a00000009").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 84, 155, 0x0000fffb, 4106, 9);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// DH-P2P.md §11.8 D22: device→client STATUS DISC (40 bytes).
#[test]
fn vector_d22() {
    let bytes = hex::decode(
        "50544350000000540000009b0000fffb0000100b00000009120000000a0b0c0d0000000044495343",
    )
    .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 84, 155, 0x0000fffb, 4107, 9);
    assert_eq!(p.body.encoded_len(), 16);
    assert_eq!(p.body, Body::status(0x0a0b0c0d, Status::Disc));
}

/// DH-P2P.md §11.8 D23: client→device empty ACK (24 bytes).
#[test]
fn vector_d23() {
    let bytes = hex::decode("505443500000009b000000640000fff90000000a0000100b").unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 155, 100, 0x0000fff9, 10, 4107);
    assert_eq!(p.body.encoded_len(), 0);
    assert_eq!(p.body, Body::Empty);
}

/// The reference client's counter rules (DH-P2P §6.2, Appendix B `Session`),
/// used to rebuild the §11.8 exchange from fields alone.
struct RefSession {
    sent: u32,
    recv: u32,
    k: u32,
    id: u32,
    rmid: u32,
}

impl RefSession {
    fn new(lmid0: u32) -> Self {
        RefSession {
            sent: 0,
            recv: 0,
            k: 0,
            id: lmid0,
            rmid: 0,
        }
    }
    fn send(&mut self, body: Body<'_>) -> Vec<u8> {
        let pid = if body == Body::Syn {
            PID_SYN
        } else {
            PID_IDLE - self.k
        };
        let header = Header {
            sent: self.sent,
            recv: self.recv,
            pid,
            lmid: self.id,
            rmid: self.rmid,
        };
        let bytes = Packet { header, body }.to_vec();
        self.sent += body.encoded_len() as u32;
        self.id += 1;
        if !body.is_empty() && body != Body::Syn {
            self.k += 1;
        }
        bytes
    }
    fn receive(&mut self, datagram: &[u8]) {
        let p = Packet::decode(datagram).unwrap();
        self.recv += p.body.encoded_len() as u32;
        self.rmid = p.header.lmid;
    }
}

/// DH-P2P.md §11.8: the whole device session D1..D23, rebuilt from fields by
/// two reference-rule sessions, byte for byte, with the final states.
#[test]
fn vector_11_8_rebuilt_from_fields() {
    let src = include_str!("../../shared/protocol/DH-P2P.md");
    let expected = dumps_of(src, "### 11.8", "### 11.9");
    assert_eq!(expected.len(), 23);
    let sign: &[u8] = b"SIGN-EXAMPLE-001";
    let realm = 0x0a0b_0c0d;
    let options = b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    let reply = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n";
    let (mut c, mut d) = (RefSession::new(0), RefSession::new(0x1000));
    // (from_client, body) in the order of the vectors.
    let script: Vec<(bool, Body<'_>)> = vec![
        (true, Body::Syn),
        (false, Body::Syn),
        (true, Body::Auth { sign }),
        (false, Body::Empty),
        (false, Body::AuthReply { data: &[] }),
        (true, Body::AuthConfirm),
        (false, Body::Empty),
        (
            true,
            Body::Bind {
                realm,
                port: 554,
                ip: Ipv4Addr::LOCALHOST,
                len_field: 0,
            },
        ),
        (false, Body::Empty),
        (false, Body::status(realm, Status::Conn)),
        (true, Body::Empty),
        (
            true,
            Body::Data {
                realm,
                payload: options,
            },
        ),
        (false, Body::Empty),
        (
            false,
            Body::Data {
                realm,
                payload: reply,
            },
        ),
        (true, Body::Empty),
        (false, Body::Heartbeat),
        (true, Body::Empty),
        (true, Body::Heartbeat),
        (false, Body::Empty),
        (true, Body::status(realm, Status::Disc)),
        (false, Body::Empty),
        (false, Body::status(realm, Status::Disc)),
        (true, Body::Empty),
    ];
    for (i, ((from_client, body), want)) in script.into_iter().zip(&expected).enumerate() {
        let (tx, rx) = if from_client {
            (&mut c, &mut d)
        } else {
            (&mut d, &mut c)
        };
        let got = tx.send(body);
        assert_eq!(hex::encode(&got), hex::encode(want), "D{}", i + 1);
        rx.receive(&got);
    }
    assert_eq!((c.sent, c.recv, c.k, c.id, c.rmid), (155, 100, 6, 11, 4107));
    assert_eq!((d.sent, d.recv, d.k, d.id, d.rmid), (100, 155, 5, 4108, 10));
}

/// Hex dumps (`0000  50 54 …`) between two headings of a reference file.
fn dumps_of(src: &str, from: &str, to: &str) -> Vec<Vec<u8>> {
    let start = src.find(from).unwrap();
    let end = start + src[start..].find(to).unwrap();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in src[start..end].lines() {
        let is_dump = line.len() > 6
            && line.as_bytes()[..4].iter().all(u8::is_ascii_hexdigit)
            && &line[4..6] == "  ";
        if is_dump {
            let hex: String = line[6..line.len().min(54)].split_whitespace().collect();
            current
                .get_or_insert_with(Vec::new)
                .extend(hex::decode(hex).unwrap());
        } else if let Some(done) = current.take() {
            out.push(done);
        }
    }
    out.extend(current);
    out
}

/// DH-P2P.md §11.7: the agent exchange rebuilt the same way.
#[test]
fn vector_11_7_rebuilt_from_fields() {
    let src = include_str!("../../shared/protocol/DH-P2P.md");
    let expected = dumps_of(src, "### 11.7", "### 11.8");
    assert_eq!(expected.len(), 6);
    let (mut c, mut a) = (RefSession::new(0), RefSession::new(0));
    let script = [
        (true, Body::Syn),
        (false, Body::Syn),
        (true, Body::SignRequest),
        (false, Body::Empty),
        (
            false,
            Body::Sign {
                sign: b"SIGN-EXAMPLE-001",
            },
        ),
        (true, Body::Empty),
    ];
    for (i, ((from_client, body), want)) in script.into_iter().zip(&expected).enumerate() {
        let (tx, rx) = if from_client {
            (&mut c, &mut a)
        } else {
            (&mut a, &mut c)
        };
        let got = tx.send(body);
        assert_eq!(got, *want, "A{}", i + 1);
        rx.receive(&got);
    }
}

/// DH-P2P.md §11.9 / FIELD-NOTES §4.1: mcw0's DVRIP REALM request through the
/// relay agent, accepted by a real device (pid = 0xFFFF - bytes received).
#[test]
fn vector_11_9_real_dvrip_packet() {
    let bytes = hex::decode(
        concat!(
            "50544350000000180000001400 00ffeb0000001c0533fe32",
            "1000002036ef034a00000000",
            "a001000000000000c4a3af489956b6b454abaeb60121d67105020001 0000a1aa"
        )
        .replace(' ', ""),
    )
    .unwrap();
    let p = decode_roundtrip(&bytes);
    assert_header(&p, 24, 20, 0x0000_ffeb, 28, 0x0533_fe32);
    assert_eq!(p.header.rmid, 87_293_490);
    let Body::Data { realm, payload } = p.body else {
        panic!("not DATA: {:?}", p.body)
    };
    assert_eq!(realm, 0x36ef_034a);
    assert_eq!(payload.len(), 32);
    assert_eq!(&payload[..2], &[0xa0, 0x01], "DVRIP 0xa001 REALM request");
    assert_eq!(p.body.encoded_len(), 44);
}

fn body_roundtrip(hex_body: &str) -> (Vec<u8>, Body<'static>) {
    let bytes: &'static [u8] = Box::leak(hex::decode(hex_body).unwrap().into_boxed_slice());
    let body = Body::decode(bytes).unwrap();
    let mut out = Vec::new();
    body.encode(&mut out);
    assert_eq!(out, bytes);
    (out, body)
}

/// FIELD-NOTES §4.1 [cap]: SYNC body.
#[test]
fn captured_syn_body() {
    assert_eq!(body_roundtrip("00030100").1, Body::Syn);
}

/// FIELD-NOTES §4.1 [cap]: HEARTBEAT body.
#[test]
fn captured_heartbeat_body() {
    assert_eq!(
        body_roundtrip("130000000000000000000000").1,
        Body::Heartbeat
    );
}

/// FIELD-NOTES §4.1 [cap] and C4: BIND carries len = 8; rebuilt by `Body::bind`.
#[test]
fn captured_bind_body_len_8() {
    let (bytes, body) = body_roundtrip(
        "11000008fffffe91000000000000939 17f000001"
            .replace(' ', "")
            .as_str(),
    );
    assert_eq!(body, Body::bind(0xffff_fe91, 37777, Ipv4Addr::LOCALHOST));
    let mut built = Vec::new();
    Body::bind(0xffff_fe91, 37777, Ipv4Addr::LOCALHOST).encode(&mut built);
    assert_eq!(built, bytes);
    assert_eq!(body.realm(), Some(0xffff_fe91));
}

/// DH-P2P.md §6.4 / Appendix A (mcw0): BIND with len = 0, port 37777.
#[test]
fn original_bind_body_len_0() {
    let (_, body) = body_roundtrip("110000000a0b0c0d00000000000093917f000001");
    assert_eq!(
        body,
        Body::Bind {
            realm: 0x0a0b0c0d,
            port: 37777,
            ip: Ipv4Addr::LOCALHOST,
            len_field: 0
        }
    );
}

/// FIELD-NOTES §4.1 [cap]: STATUS CONN keeps len = 0.
#[test]
fn captured_status_conn_body() {
    let (_, body) = body_roundtrip("120000005f7f1ce800000000434f4e4e");
    assert_eq!(body, Body::status(0x5f7f1ce8, Status::Conn));
}

/// FIELD-NOTES §4.1 [cap]: STATUS DISC.
#[test]
fn captured_status_disc_body() {
    let (_, body) = body_roundtrip("12000000ffd2c46c0000000044495343");
    assert_eq!(body, Body::status(0xffd2c46c, Status::Disc));
}

/// FIELD-NOTES §4.1 (PR parser): a NUL after CONN is tolerated and kept.
#[test]
fn status_with_nul_trailer() {
    let (_, body) = body_roundtrip("120000000000000700000000434f4e4e00");
    assert_eq!(
        body,
        Body::Status {
            realm: 7,
            status: Status::Conn,
            trailer: &[0]
        }
    );
}

/// FIELD-NOTES §4.1 (PR test): `12 000b34 …` with ASCII `+8K` is not a
/// STATUS; it is kept whole as an unknown command.
#[test]
fn type_0x12_with_length_is_unknown() {
    let (bytes, body) = body_roundtrip("12000b340000000100000000" /* + "+8K" */);
    assert_eq!(
        body,
        Body::Unknown {
            body_type: 0x12,
            bytes: &bytes[..]
        }
        .clone()
    );
    let (_, body) = body_roundtrip("12000b3400000001000000002b384b");
    assert!(matches!(
        body,
        Body::Unknown {
            body_type: 0x12,
            ..
        }
    ));
}

/// DH-P2P.md §14: the dissector shows SYN as type 0 with length 0x030100;
/// we decode it as SYN, and a 4-byte body that is not SYN is an error.
#[test]
fn four_byte_non_syn_body_is_an_error() {
    let bytes = hex::decode("5054435000000000000000000002ffff000000000000000000030101").unwrap();
    assert_eq!(
        Packet::decode(&bytes),
        Err(PtcpError::SubHeaderTruncated { have: 4 })
    );
}

/// C3: `len` is 24 bits; a 70000-byte payload round-trips (BJ types_test.go).
#[test]
fn data_len_is_24_bits() {
    let payload = vec![0x5a; 70_000];
    let p = Packet {
        header: Header::default(),
        body: Body::Data {
            realm: 1,
            payload: &payload,
        },
    };
    let bytes = p.to_vec();
    assert_eq!(&bytes[24..28], &[0x10, 0x01, 0x11, 0x70]);
    assert_eq!(Packet::decode(&bytes).unwrap(), p);
}

#[test]
fn wrong_magic_is_named() {
    let mut bytes =
        hex::decode("5054435000000000000000000002ffff000000000000000000030100").unwrap();
    bytes[3] = b'X';
    assert_eq!(
        Packet::decode(&bytes),
        Err(PtcpError::BadMagic { found: *b"PTCX" })
    );
    assert!(PtcpError::BadMagic { found: *b"PTCX" }
        .to_string()
        .contains("offset 0"));
}

#[test]
fn truncated_header_is_named() {
    assert_eq!(
        Packet::decode(b"PTCP\0\0\0"),
        Err(PtcpError::HeaderTruncated { have: 7 })
    );
    assert_eq!(
        Packet::decode(b""),
        Err(PtcpError::HeaderTruncated { have: 0 })
    );
}

/// A DATA length field that claims more than the datagram holds.
#[test]
fn lying_data_length_is_an_error() {
    let mut bytes = hex::decode(
        "505443500000000000000000 0000ffff0000000100000000 1000ffff0000000100000000 41424344"
            .replace(' ', ""),
    )
    .unwrap();
    assert_eq!(
        Packet::decode(&bytes),
        Err(PtcpError::DataLengthMismatch {
            declared: 0xffff,
            have: 4
        })
    );
    // and one that claims less
    bytes[25..28].copy_from_slice(&[0, 0, 2]);
    assert_eq!(
        Packet::decode(&bytes),
        Err(PtcpError::DataLengthMismatch {
            declared: 2,
            have: 4
        })
    );
    assert!(Packet::decode(&bytes)
        .unwrap_err()
        .to_string()
        .contains("offset 25"));
}

/// DH-P2P.md §6.3: both reference parsers reject DATA with non-zero padding;
/// we keep it, verbatim, as an unknown body instead of losing it.
#[test]
fn data_with_padding_is_kept_as_unknown() {
    let (_, body) = body_roundtrip("100000020000000100000001abcd");
    assert!(matches!(
        body,
        Body::Unknown {
            body_type: 0x10,
            ..
        }
    ));
    assert_eq!(body.command_data(), &[0xab, 0xcd]);
    assert_eq!(body.realm(), Some(1));
}

/// A heartbeat naming a realm is not canonical: kept as unknown.
#[test]
fn heartbeat_with_realm_is_unknown() {
    let (_, body) = body_roundtrip("130000000000000900000000");
    assert!(matches!(
        body,
        Body::Unknown {
            body_type: 0x13,
            ..
        }
    ));
}

/// Unknown types keep every byte (DH-P2P §6.4: [rs] keeps them as commands).
#[test]
fn unknown_type_is_kept() {
    let (_, body) = body_roundtrip("7f000000000000000000000001020304");
    assert_eq!(body.body_type(), Some(0x7f));
    assert_eq!(body.name(), "UNKNOWN");
    assert_eq!(body.command_data(), &[1, 2, 3, 4]);
}

/// The reply to 0x17 is read as `body[12..]` whatever its type (DH-P2P §6.5).
#[test]
fn sign_is_command_data() {
    let (_, body) = body_roundtrip("18000000000000000000000053494721");
    assert_eq!(body, Body::Sign { sign: b"SIG!" });
    assert_eq!(body.command_data(), b"SIG!");
}

/// The summary line names the body and its key fields.
#[test]
fn display_summary() {
    let bytes = hex::decode(
        "5054435000000010000000400000fffe0000100500000003120000000a0b0c0d00000000434f4e4e",
    )
    .unwrap();
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(
        p.to_string(),
        "sent=16 recv=64 pid=0x0000fffe lmid=4101 rmid=3 STATUS realm=0x0a0b0c0d CONN"
    );
}
