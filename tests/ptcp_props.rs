//! Property tests and a smoke loop for the PTCP codec: every generated packet
//! round-trips, and no input (random or mutated) makes the decoder panic.

use std::net::Ipv4Addr;

use dhp2p::codec::ptcp::{Body, Header, Packet, Status};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(sent, recv, pid, lmid, rmid)| Header {
            sent,
            recv,
            pid,
            lmid,
            rmid,
        })
}

/// Owned description of a body, turned into a borrowed `Body` in the test.
#[derive(Debug, Clone)]
enum Spec {
    Empty,
    Syn,
    Data(u32, Vec<u8>),
    Bind(u32, u32, [u8; 4], bool),
    Status(u32, bool, Vec<u8>),
    Heartbeat,
    SignRequest,
    Sign(Vec<u8>),
    Auth(Vec<u8>),
    AuthReply(Vec<u8>),
    AuthConfirm,
    Unknown(Vec<u8>),
}

fn spec() -> impl Strategy<Value = Spec> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..1400);
    prop_oneof![
        Just(Spec::Empty),
        Just(Spec::Syn),
        (any::<u32>(), bytes()).prop_map(|(r, p)| Spec::Data(r, p)),
        (any::<u32>(), any::<u32>(), any::<[u8; 4]>(), any::<bool>())
            .prop_map(|(r, p, ip, l)| Spec::Bind(r, p, ip, l)),
        (
            any::<u32>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(r, c, t)| Spec::Status(r, c, t)),
        Just(Spec::Heartbeat),
        Just(Spec::SignRequest),
        bytes().prop_map(Spec::Sign),
        bytes().prop_map(Spec::Auth),
        bytes().prop_map(Spec::AuthReply),
        Just(Spec::AuthConfirm),
        // Unknown types: first byte outside the known set, at least a sub-header.
        (
            0x20u8..=0xff,
            proptest::collection::vec(any::<u8>(), 11..64)
        )
            .prop_map(|(t, mut b)| {
                b.insert(0, t);
                Spec::Unknown(b)
            }),
    ]
}

fn body(spec: &Spec) -> Body<'_> {
    match spec {
        Spec::Empty => Body::Empty,
        Spec::Syn => Body::Syn,
        Spec::Data(realm, p) => Body::Data {
            realm: *realm,
            payload: p,
        },
        Spec::Bind(realm, port, ip, captured) => Body::Bind {
            realm: *realm,
            port: *port,
            ip: Ipv4Addr::from(*ip),
            len_field: if *captured { 8 } else { 0 },
        },
        Spec::Status(realm, conn, trailer) => Body::Status {
            realm: *realm,
            status: if *conn { Status::Conn } else { Status::Disc },
            trailer,
        },
        Spec::Heartbeat => Body::Heartbeat,
        Spec::SignRequest => Body::SignRequest,
        Spec::Sign(s) => Body::Sign { sign: s },
        Spec::Auth(s) => Body::Auth { sign: s },
        Spec::AuthReply(d) => Body::AuthReply { data: d },
        Spec::AuthConfirm => Body::AuthConfirm,
        Spec::Unknown(b) => Body::Unknown {
            body_type: b[0],
            bytes: b,
        },
    }
}

proptest! {
    #[test]
    fn typed_packets_round_trip(header in header(), spec in spec()) {
        let p = Packet { header, body: body(&spec) };
        let bytes = p.to_vec();
        prop_assert_eq!(bytes.len(), p.encoded_len());
        let back = Packet::decode(&bytes).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn accepted_bytes_re_encode_exactly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut datagram = b"PTCP".to_vec();
        datagram.extend_from_slice(&bytes);
        if let Ok(p) = Packet::decode(&datagram) {
            prop_assert_eq!(p.to_vec(), datagram);
        }
    }

    #[test]
    fn sub_header_bytes_re_encode_exactly(t in 0x10u8..0x1c, len in 0u32..16, realm in 0u32..3, pad in 0u32..2, data in proptest::collection::vec(any::<u8>(), 0..24)) {
        let mut datagram = vec![0u8; 24];
        datagram[..4].copy_from_slice(b"PTCP");
        datagram.extend_from_slice(&((u32::from(t) << 24) | len).to_be_bytes());
        datagram.extend_from_slice(&realm.to_be_bytes());
        datagram.extend_from_slice(&pad.to_be_bytes());
        datagram.extend_from_slice(&data);
        if let Ok(p) = Packet::decode(&datagram) {
            prop_assert_eq!(p.to_vec(), datagram);
        }
    }
}

/// Seeds for the smoke loop: every body shape the references show.
const SEEDS: &[&str] = &[
    "5054435000000000000000000002ffff000000000000000000030100",
    "505443500000000400000010 0000ffff0000000200000001 180000000000000000000000 5349474e2d4558414d504c452d303031",
    "5054435000000040000000200000fffc0000000500001005 100000330a0b0c0d00000000 4f5054494f4e5320727473703a2f2f",
    "5054435000000010000000400000fffe0000100500000003 120000000a0b0c0d00000000434f4e4e",
    "50544350000000180000001400 00ffeb0000001c0533fe32 1000002036ef034a00000000 a001000000000000c4a3af489956b6b454abaeb60121d67105020001 0000a1aa",
    "505443500000002c000000100000fffd0000000300001003 11000008fffffe910000000000009391 7f000001",
    "505443500000004800000007f0000fffc0000100800000006 130000000000000000000000",
];

/// Smoke loop: 100k random and mutated datagrams. Every accepted one
/// re-encodes to itself; nothing panics.
#[test]
fn smoke_no_panic_and_exact_reencode() {
    let seeds: Vec<Vec<u8>> = SEEDS
        .iter()
        .map(|s| hex::decode(s.replace(' ', "")).unwrap_or_default())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(seeds.len() >= 6);
    let mut rng = SmallRng::seed_from_u64(0x5054_4350);
    let (mut accepted, mut rejected) = (0u32, 0u32);
    for i in 0..100_000u32 {
        let input = if i % 4 == 0 {
            let n = rng.gen_range(0..80);
            let mut v: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.7) {
                v.splice(0..v.len().min(4), *b"PTCP");
            }
            v
        } else {
            let seed = &seeds[rng.gen_range(0..seeds.len())];
            mutate(&mut rng, seed)
        };
        match Packet::decode(&input) {
            Ok(p) => {
                accepted += 1;
                assert_eq!(
                    p.to_vec(),
                    input,
                    "re-encode differs for {}",
                    hex::encode(&input)
                );
                let _ = p.to_string();
                let _ = (p.body.realm(), p.body.command_data(), p.body.body_type());
            }
            Err(e) => {
                rejected += 1;
                let _ = e.to_string();
            }
        }
    }
    assert!(
        accepted > 10_000 && rejected > 10_000,
        "{accepted} / {rejected}"
    );
}

fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..6) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => v.truncate(rng.gen_range(0..=v.len())),
            2 => v.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>())),
            3 if v.len() > 28 => {
                // A lying length field: extreme values at the len offset.
                let len: [u8; 3] = match rng.gen_range(0..3) {
                    0 => [0xff, 0xff, 0xff],
                    1 => [0, 0, 0],
                    _ => [rng.gen(), rng.gen(), rng.gen()],
                };
                v[25..28].copy_from_slice(&len);
            }
            4 if v.len() > 24 => v[24] = rng.gen_range(0x0f..0x1d),
            _ => {
                let i = rng.gen_range(0..=v.len());
                v.insert(i, rng.gen());
            }
        }
    }
    v
}

proptest! {
    /// The field table is where the encoder writes and the decoder reads:
    /// each header value sits at its range, each sub-header value at its
    /// body range shifted into the datagram.
    #[test]
    fn field_table_matches_the_encoded_bytes(h in header(), realm in any::<u32>(), port in any::<u32>(), ip in any::<u32>()) {
        use dhp2p::codec::ptcp::field;
        let ip = Ipv4Addr::from(ip);
        let packet = Packet { header: h, body: Body::Bind { realm, port, ip, len_field: 8 } };
        let bytes = packet.to_vec();
        prop_assert_eq!(&bytes[field::MAGIC], b"PTCP");
        prop_assert_eq!(&bytes[field::SENT], &h.sent.to_be_bytes());
        prop_assert_eq!(&bytes[field::RECV], &h.recv.to_be_bytes());
        prop_assert_eq!(&bytes[field::PID], &h.pid.to_be_bytes());
        prop_assert_eq!(&bytes[field::LMID], &h.lmid.to_be_bytes());
        prop_assert_eq!(&bytes[field::RMID], &h.rmid.to_be_bytes());
        prop_assert_eq!(bytes[field::in_datagram(field::body::TYPE)][0], 0x11);
        prop_assert_eq!(&bytes[field::in_datagram(field::body::LEN)], &[0, 0, 8]);
        prop_assert_eq!(&bytes[field::in_datagram(field::body::REALM)], &realm.to_be_bytes());
        prop_assert_eq!(&bytes[field::in_datagram(field::body::PADDING)], &[0; 4]);
        prop_assert_eq!(&bytes[field::in_datagram(field::body::BIND_PORT)], &port.to_be_bytes());
        prop_assert_eq!(&bytes[field::in_datagram(field::body::BIND_IP)], &ip.octets());
        prop_assert_eq!(bytes.len(), field::in_datagram(field::body::BIND_IP).end);
    }
}

proptest! {
    /// A DATA body sent in place (sub-header, then the payload where it
    /// lies) is the same bytes as the encoded body.
    #[test]
    fn a_data_head_and_its_payload_are_the_encoded_body(realm in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let mut encoded = Vec::new();
        Body::Data { realm, payload: &payload }.encode(&mut encoded);
        let mut in_place = Body::data_head(realm, payload.len()).to_vec();
        in_place.extend_from_slice(&payload);
        prop_assert_eq!(encoded, in_place);
    }
}
