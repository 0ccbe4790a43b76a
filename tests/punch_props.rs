//! Property tests and smoke loops for the punch codec and the crypto parsers.
//!
//! Proptest checks that every generated value survives encode → decode.
//! The smoke loops feed each decoder 100k random and mutated inputs (seeded,
//! so failures reproduce) and check that nothing panics and that every
//! accepted input re-encodes to exactly itself.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhp2p::codec::crypto::{self, DeviceInfo};
use dhp2p::codec::punch::{
    self, AddrForm, AddressValue, Attribute, MessageType, PunchMessage, ATTR_ICE_CONTROLLED,
    ATTR_ICE_CONTROLLING, ATTR_SOURCE_ADDRESS,
};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

const SMOKE_ITERATIONS: usize = 100_000;

// ---------------------------------------------------------------------------
// Strategies

fn arb_socket_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(octets, port)| SocketAddrV4::new(Ipv4Addr::from(octets), port))
}

fn arb_form() -> impl Strategy<Value = AddrForm> {
    prop_oneof![Just(AddrForm::Inverted), Just(AddrForm::Plain)]
}

/// An `Other` attribute in the shape `decode` produces: full padding, and
/// never one of the typed shapes (type 0x0004/0x8029/0x802A with length 8).
fn arb_other_attribute() -> impl Strategy<Value = Attribute> {
    (any::<u16>(), prop::collection::vec(any::<u8>(), 0..40))
        .prop_filter("typed shape", |(attr_type, value)| {
            !(value.len() == 8
                && [
                    ATTR_SOURCE_ADDRESS,
                    ATTR_ICE_CONTROLLED,
                    ATTR_ICE_CONTROLLING,
                ]
                .contains(attr_type))
        })
        .prop_flat_map(|(attr_type, value)| {
            let padding_len = (4 - value.len() % 4) % 4;
            prop::collection::vec(any::<u8>(), padding_len).prop_map(move |padding| {
                Attribute::Other {
                    attr_type,
                    value: value.clone(),
                    padding,
                }
            })
        })
}

fn arb_attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        any::<[u8; 8]>().prop_map(|raw| Attribute::SourceAddress(AddressValue { raw })),
        (arb_socket_addr(), arb_form())
            .prop_map(|(addr, form)| Attribute::SourceAddress(AddressValue::new(addr, form))),
        any::<[u8; 8]>().prop_map(Attribute::IceControlling),
        any::<[u8; 8]>().prop_map(Attribute::IceControlled),
        arb_other_attribute(),
    ]
}

fn arb_message() -> impl Strategy<Value = PunchMessage> {
    (
        any::<u16>().prop_map(MessageType::from_u16),
        any::<[u8; 4]>(),
        any::<[u8; 12]>(),
        prop::collection::vec(arb_attribute(), 0..8),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(
            |(message_type, cookie, transaction_id, attributes, trailing)| PunchMessage {
                message_type,
                cookie,
                transaction_id,
                attributes,
                trailing,
            },
        )
}

const KNOWN_INFO_KEYS: [&str; 5] = [
    "httpport",
    "privport",
    "rtspport",
    "tlsprivport",
    "randsalt",
];

fn arb_json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn arb_device_info() -> impl Strategy<Value = DeviceInfo> {
    (
        prop::option::of(any::<u16>()),
        prop::option::of(any::<u16>()),
        prop::option::of(any::<u16>()),
        prop::option::of(any::<u16>()),
        prop::option::of("[0-9a-f]{0,32}"),
        prop::collection::btree_map("[a-zA-Z_]{1,10}", arb_json_leaf(), 0..4),
    )
        .prop_map(
            |(httpport, privport, rtspport, tlsprivport, randsalt, extra)| {
                let extra: Map<String, Value> = extra
                    .into_iter()
                    .filter(|(key, _)| !KNOWN_INFO_KEYS.contains(&key.as_str()))
                    .collect();
                DeviceInfo {
                    httpport,
                    privport,
                    rtspport,
                    tlsprivport,
                    randsalt,
                    extra,
                }
            },
        )
}

// ---------------------------------------------------------------------------
// Round trips

proptest! {
    #[test]
    fn punch_message_round_trips(message in arb_message()) {
        let bytes = message.encode();
        let decoded = punch::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &message);
        prop_assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn punch_builders_round_trip_in_both_address_forms(
        cookie in any::<[u8; 4]>(),
        txid in any::<[u8; 12]>(),
        identify in any::<[u8; 8]>(),
        addr in arb_socket_addr(),
        form in arb_form(),
    ) {
        let success = punch::binding_success(cookie, txid, identify, addr, form);
        let decoded = punch::decode(&success.encode()).unwrap();
        prop_assert_eq!(decoded.address().unwrap().addr(form), addr);
        prop_assert_eq!(decoded.identify(), Some(identify));
        prop_assert_eq!(&decoded, &success);

        let request = punch::binding_request(cookie, txid, identify, addr);
        let decoded = punch::decode(&request.encode()).unwrap();
        prop_assert_eq!(decoded.address().unwrap().addr_inverted(), addr);
        prop_assert_eq!(&decoded, &request);

        let reply = punch::reply_to(&decoded, identify, addr);
        prop_assert_eq!(reply.cookie, cookie);
        prop_assert_eq!(reply.transaction_id, txid);

        let confirm = punch::confirm(cookie, txid, identify);
        let bytes = confirm.encode();
        prop_assert_eq!(bytes.len(), 32);
        prop_assert_eq!(punch::decode(&bytes).unwrap(), confirm);
    }

    #[test]
    fn address_value_reads_back_in_its_own_form(addr in arb_socket_addr(), form in arb_form()) {
        let value = AddressValue::new(addr, form);
        prop_assert_eq!(value.addr(form), addr);
        prop_assert_eq!(value.family(), 1);
        prop_assert_eq!(value.reserved(), 0);
    }

    #[test]
    fn address_lists_round_trip(
        ips in prop::collection::vec(any::<[u8; 4]>().prop_map(Ipv4Addr::from), 1..10),
        port in any::<u16>(),
    ) {
        let expected: Vec<SocketAddrV4> =
            ips.iter().map(|ip| SocketAddrV4::new(*ip, port)).collect();
        let encrypted = crypto::ip_encrpt_encode(&ips, port);
        prop_assert_eq!(crypto::ip_encrpt_decode(&encrypted).unwrap(), expected.clone());
        let plain = crypto::addr_list_encode(&ips, port);
        prop_assert_eq!(crypto::addr_list_decode(&plain).unwrap(), expected);
    }

    #[test]
    fn local_addr_encryption_round_trips(derived in any::<[u8; 32]>(), text in ".{0,40}") {
        let encrypted = crypto::encrypt_local_addr_with_key(&derived, &text);
        prop_assert_eq!(crypto::decrypt_local_addr_with_key(&derived, &encrypted).unwrap(), text);
    }

    #[test]
    fn info_round_trips(info in arb_device_info()) {
        let encrypted = crypto::encrypt_info(&info);
        prop_assert_eq!(crypto::decrypt_info(&encrypted).unwrap(), info);
    }

    #[test]
    fn info_text_round_trips(text in ".{0,80}") {
        prop_assert_eq!(
            crypto::decrypt_info_text(&crypto::encrypt_info_text(&text)).unwrap(),
            text
        );
    }
}

// ---------------------------------------------------------------------------
// Smoke loops

/// Applies 1 to 4 random edits: bit flips, truncation, extension, insertion,
/// removal, overwrite. `alphabet` biases new bytes towards meaningful ones.
fn mutate(rng: &mut SmallRng, seed: &[u8], alphabet: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    let new_byte = |rng: &mut SmallRng| {
        if !alphabet.is_empty() && rng.gen_bool(0.8) {
            alphabet[rng.gen_range(0..alphabet.len())]
        } else {
            rng.gen()
        }
    };
    for _ in 0..rng.gen_range(1..=4) {
        let len = bytes.len();
        match rng.gen_range(0..6) {
            0 if len > 0 => {
                let at = rng.gen_range(0..len);
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
            1 => bytes.truncate(rng.gen_range(0..=len)),
            2 => {
                for _ in 0..rng.gen_range(1..16) {
                    let byte = new_byte(rng);
                    bytes.push(byte);
                }
            }
            3 => {
                let byte = new_byte(rng);
                bytes.insert(rng.gen_range(0..=len), byte);
            }
            4 if len > 0 => {
                bytes.remove(rng.gen_range(0..len));
            }
            _ if len > 0 => {
                let at = rng.gen_range(0..len);
                bytes[at] = new_byte(rng);
            }
            _ => {}
        }
    }
    bytes
}

fn random_bytes(rng: &mut SmallRng, max_len: usize, alphabet: &[u8]) -> Vec<u8> {
    let len = rng.gen_range(0..=max_len);
    (0..len)
        .map(|_| {
            if alphabet.is_empty() {
                rng.gen()
            } else {
                alphabet[rng.gen_range(0..alphabet.len())]
            }
        })
        .collect()
}

fn punch_seeds() -> Vec<Vec<u8>> {
    let identify = [0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e];
    let lan = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508);
    let cookie = punch::MAGIC_COOKIE;
    let mut py_confirm = punch::confirm(cookie, [3; 12], identify);
    py_confirm.trailing = vec![0, 4, 0, 8, 0, 1, 0xa8, 0x13, 0x3f, 0x57, 0xfe, 0x37];
    let mut with_other = punch::binding_request(cookie, [4; 12], identify, lan);
    with_other
        .attributes
        .push(Attribute::other(0x8022, b"odd".to_vec()));
    vec![
        punch::binding_request(cookie, [1; 12], identify, lan).encode(),
        punch::binding_success(cookie, [2; 12], identify, lan, AddrForm::Inverted).encode(),
        punch::binding_success(cookie, [2; 12], identify, lan, AddrForm::Plain).encode(),
        punch::confirm(cookie, [3; 12], identify).encode(),
        py_confirm.encode(),
        with_other.encode(),
    ]
}

/// Writes a u16 at `at` as it appears on the wire (inverted).
fn put_wire_u16(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(slot) = bytes.get_mut(at..at + 2) {
        slot.copy_from_slice(&(!value).to_be_bytes());
    }
}

#[test]
fn smoke_punch_decode() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0001);
    let seeds = punch_seeds();
    let mut accepted = 0usize;
    for iteration in 0..SMOKE_ITERATIONS {
        let input = match iteration % 4 {
            0 => {
                let mut bytes = random_bytes(&mut rng, 80, &[]);
                if let Some(first) = bytes.first_mut() {
                    *first = if rng.gen() { 0xff } else { 0xfe };
                }
                bytes
            }
            1 => {
                // Extreme message or attribute length fields.
                let mut bytes = seeds[rng.gen_range(0..seeds.len())].clone();
                let field = [2, 22, 34][rng.gen_range(0..3)];
                let actual = bytes.len() as u16;
                let value = [0, 1, 3, 12, 24, actual, actual.wrapping_sub(20), u16::MAX]
                    [rng.gen_range(0..8)];
                put_wire_u16(&mut bytes, field, value);
                bytes
            }
            _ => {
                let seed = &seeds[rng.gen_range(0..seeds.len())];
                mutate(&mut rng, seed, &[0xff, 0xfe, 0x00])
            }
        };
        if let Ok(message) = punch::decode(&input) {
            accepted += 1;
            assert_eq!(
                message.encode(),
                input,
                "round trip failed for {input:02x?}"
            );
            let _ = message.trailing_attributes();
        }
    }
    assert!(accepted > SMOKE_ITERATIONS / 10, "only {accepted} accepted");
}

const BASE64_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
const JSON_ALPHABET: &[u8] = b"{}[]\":,. \n0123456789-+eEtrufalsn\\\0";

fn sample_info() -> DeviceInfo {
    let mut extra = Map::new();
    extra.insert("model".into(), Value::from("IPC-HDW"));
    extra.insert("list".into(), serde_json::json!([1, {"a": null}]));
    DeviceInfo {
        httpport: Some(80),
        privport: Some(37777),
        rtspport: Some(554),
        tlsprivport: Some(37778),
        randsalt: Some(crypto::LEGACY_RANDSALT.into()),
        extra,
    }
}

#[test]
fn smoke_decrypt_info() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0002);
    let json_seed = crypto::info_json_text(&sample_info()).into_bytes();
    let b64_seeds = [
        crypto::encrypt_info(&sample_info()),
        "sJRI1JVcQjAKP/skwV5WD6+E9B+t".to_owned(),
        String::new(),
    ];
    let mut accepted = 0usize;
    for iteration in 0..SMOKE_ITERATIONS {
        let input = match iteration % 3 {
            // Mutate the plaintext so the JSON parser sees near-valid input.
            0 => {
                let plain = mutate(&mut rng, &json_seed, JSON_ALPHABET);
                crypto::encrypt_info_text(&String::from_utf8_lossy(&plain))
            }
            1 => {
                let seed = b64_seeds[rng.gen_range(0..b64_seeds.len())].as_bytes();
                String::from_utf8_lossy(&mutate(&mut rng, seed, BASE64_ALPHABET)).into_owned()
            }
            _ => String::from_utf8_lossy(&random_bytes(&mut rng, 64, BASE64_ALPHABET)).into_owned(),
        };
        if let Ok(text) = crypto::decrypt_info_text(&input) {
            assert_eq!(crypto::encrypt_info_text(&text), input.trim_ascii());
        }
        if let Ok(info) = crypto::decrypt_info(&input) {
            accepted += 1;
            assert_eq!(crypto::decrypt_info(&crypto::encrypt_info(&info)), Ok(info));
        }
    }
    assert!(accepted > SMOKE_ITERATIONS / 20, "only {accepted} accepted");
}

#[test]
fn smoke_ip_encrpt_decode() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0003);
    let seeds: [&[u8]; 4] = [
        b"63.87.143.254,63.87.254.173:50000",
        b"10.8.0.2,192.168.1.10,192.168.1.10:50000",
        b"192.168.1.200:22508",
        b"0.0.0.0:0",
    ];
    let alphabet = b"0123456789.,:";
    let mut accepted = 0usize;
    for iteration in 0..SMOKE_ITERATIONS {
        let bytes = if iteration % 4 == 0 {
            random_bytes(&mut rng, 40, alphabet)
        } else {
            let seed = seeds[rng.gen_range(0..seeds.len())];
            mutate(&mut rng, seed, alphabet)
        };
        let input = String::from_utf8_lossy(&bytes);
        for (decode, encode) in [
            (
                crypto::ip_encrpt_decode as fn(&str) -> _,
                crypto::ip_encrpt_encode as fn(&[Ipv4Addr], u16) -> String,
            ),
            (crypto::addr_list_decode, crypto::addr_list_encode),
        ] {
            if let Ok(addrs) = decode(&input) {
                accepted += 1;
                let port = addrs[0].port();
                assert!(addrs.iter().all(|addr| addr.port() == port));
                let ips: Vec<Ipv4Addr> = addrs.iter().map(|addr| *addr.ip()).collect();
                assert_eq!(encode(&ips, port), input);
            }
        }
    }
    assert!(accepted > SMOKE_ITERATIONS / 20, "only {accepted} accepted");
}

#[test]
fn smoke_decrypt_local_addr() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0004);
    let key = crypto::device_key("admin", crypto::LEGACY_RANDSALT, "password123");
    // PBKDF2 costs 20000 rounds: derive once for the loop, and run the full
    // nonce path on a few inputs only.
    let derived = crypto::derive_key(&key, "987654321");
    let plain_seed = b"192.168.57.20,192.168.0.108:51980";
    let b64_seed = b"dNflxsoW5Am6wSNdp5MEBjTDAg==";
    let mut accepted = 0usize;
    for iteration in 0..SMOKE_ITERATIONS {
        let input = match iteration % 3 {
            0 => {
                let plain = mutate(&mut rng, plain_seed, b"0123456789.,:");
                crypto::encrypt_local_addr_with_key(&derived, &String::from_utf8_lossy(&plain))
            }
            1 => String::from_utf8_lossy(&mutate(&mut rng, b64_seed, BASE64_ALPHABET)).into_owned(),
            _ => String::from_utf8_lossy(&random_bytes(&mut rng, 48, BASE64_ALPHABET)).into_owned(),
        };
        if let Ok(text) = crypto::decrypt_local_addr_with_key(&derived, &input) {
            accepted += 1;
            assert_eq!(
                crypto::encrypt_local_addr_with_key(&derived, &text),
                input.trim_ascii()
            );
        }
        if iteration % 5_000 == 0 {
            let nonce = String::from_utf8_lossy(&mutate(&mut rng, b"987654321", b"-0123456789"))
                .into_owned();
            if let Ok(text) = crypto::decrypt_local_addr(&key, &nonce, &input) {
                assert_eq!(
                    crypto::encrypt_local_addr(&key, &nonce, &text),
                    input.trim_ascii()
                );
            }
        }
    }
    assert!(accepted > SMOKE_ITERATIONS / 20, "only {accepted} accepted");
}

proptest! {
    /// `punch::field` is where the encoder writes: on the wire (inverted)
    /// each header field and SOURCE-ADDRESS part sits at its range.
    #[test]
    fn field_table_matches_the_encoded_bytes(
        txid in any::<[u8; 12]>(),
        ip in any::<u32>(),
        port in any::<u16>(),
    ) {
        use dhp2p::codec::punch::field;
        let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
        let mut message = PunchMessage::new(MessageType::BindingRequest, punch::MAGIC_COOKIE, txid);
        message.attributes.push(Attribute::SourceAddress(AddressValue::new(addr, AddrForm::Inverted)));
        let wire = message.encode();
        let plain: Vec<u8> = wire.iter().map(|b| !b).collect();
        prop_assert_eq!(&plain[field::TYPE], &[0x00, 0x01]);
        prop_assert_eq!(&plain[field::LENGTH], &[0, 12]);
        prop_assert_eq!(&plain[field::COOKIE], &punch::MAGIC_COOKIE);
        prop_assert_eq!(&plain[field::TRANSACTION_ID], &txid);
        let attr = punch::HEADER_LEN;
        let value = attr + field::attribute::VALUE;
        prop_assert_eq!(&plain[field::at(attr, field::attribute::TYPE)], &ATTR_SOURCE_ADDRESS.to_be_bytes());
        prop_assert_eq!(&plain[field::at(attr, field::attribute::LENGTH)], &[0, 8]);
        prop_assert_eq!(plain[field::at(value, field::address::FAMILY)][0], 1);
        prop_assert_eq!(&plain[field::at(value, field::address::PORT)], &port.to_be_bytes());
        prop_assert_eq!(&plain[field::at(value, field::address::IP)], &addr.ip().octets());
    }
}
