//! Inverted-STUN hole-punch vectors from DH-P2P.md and FIELD-NOTES.md.
//!
//! Every vector is decoded field by field, re-encoded byte for byte, and
//! rebuilt from its fields with the builders.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhp2p::codec::punch::{
    self, AddrForm, AddressValue, Attribute, MessageType, PunchError, PunchMessage, MAGIC_COOKIE,
};

/// The Identify of every vector: `d4 9e 67 a8 2b d4 7e 1e`.
const IDENTIFY: [u8; 8] = [0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e];

fn wire(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text.replace(' ', "")).unwrap()
}

/// STUN-space value of bytes given as they appear on the wire.
fn inverted<const N: usize>(wire_bytes: [u8; N]) -> [u8; N] {
    wire_bytes.map(|byte| !byte)
}

fn txid_from_wire(hex_text: &str) -> [u8; 12] {
    inverted(<[u8; 12]>::try_from(wire(hex_text)).unwrap())
}

fn decode_and_check_round_trip(bytes: &[u8]) -> PunchMessage {
    assert!(punch::looks_like_punch(bytes));
    let message = punch::decode(bytes).unwrap();
    assert_eq!(message.encode(), bytes, "re-encoding must be byte exact");
    message
}

// DH-P2P.md §11.6: client → device Binding Request.
const DHP2P_REQUEST: &str = "ff fe ff e7 de ed 5b bd 00 01 02 03 04 05 06 07 \
                             08 09 0a 0b 7f d5 ff f7 2b 61 98 57 d4 2b 81 e1 \
                             ff fb ff f7 ff fe 63 bf 34 ff 8e f5";
// DH-P2P.md §11.6: Binding Success Response, [rs] form (address inverted).
const DHP2P_SUCCESS_RS: &str = "fe fe ff e7 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8 \
                                a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1 \
                                ff fb ff f7 ff fe a8 13 3f 57 fe 37";
// DH-P2P.md §11.6: the same, [py] form (bytes 38..43 plain).
const DHP2P_SUCCESS_PY: &str = "fe fe ff e7 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8 \
                                a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1 \
                                ff fb ff f7 ff fe 57 ec c0 a8 01 c8";
// FIELD-NOTES.md §5.1 [cap]: the official client's Binding Request.
const CAPTURED_REQUEST: &str = "fffeffe7 deed5bbd b303ef13412b12aef9bab266 7fd5fff7 \
                                2b619857d42b81e1 fffbfff7fffe a8132102d265";
// FIELD-NOTES.md §5.1 [cap]: the official client's Binding Success.
const CAPTURED_SUCCESS: &str = "fefeffe7 deed5bbd d3fa95ab9298c8e06b6e844e 7fd6fff7 \
                                2b619857d42b81e1 fffbfff7fffe a8133f57fe37";
// DH-P2P.md §5.1 [py] type ≥ 1 confirm, with the cookie and rtid of §11.6:
// declares length 12 but carries a hard-coded address attribute after it.
const PY_CONFIRM: &str = "fe fe ff f3 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8 \
                          a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1 \
                          ff fb ff f7 ff fe a8 13 3f 57 fe 37";

fn device_pub_addr() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000)
}

fn device_lan_addr() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508)
}

// DH-P2P.md §11.6
#[test]
fn dhp2p_11_6_binding_request_decodes_every_field() {
    let bytes = wire(DHP2P_REQUEST);
    assert_eq!(bytes.len(), 44);
    let message = decode_and_check_round_trip(&bytes);
    assert_eq!(message.message_type, MessageType::BindingRequest);
    assert_eq!(message.message_type.to_u16(), 0x0001);
    assert_eq!(message.declared_length(), 24);
    assert_eq!(message.cookie, MAGIC_COOKIE);
    assert!(message.has_magic_cookie());
    assert_eq!(
        message.transaction_id,
        txid_from_wire("000102030405060708090a0b")
    );
    assert_eq!(message.transaction_id[0], 0xff);
    assert_eq!(message.attributes.len(), 2);
    assert_eq!(message.attributes[0], Attribute::IceControlling(IDENTIFY));
    let Attribute::SourceAddress(address) = message.attributes[1] else {
        panic!("second attribute is {:?}", message.attributes[1]);
    };
    assert_eq!(address.reserved(), 0);
    assert_eq!(address.family(), 1);
    assert_eq!(address.addr_inverted(), device_pub_addr());
    assert_eq!(message.identify(), Some(IDENTIFY));
    assert!(message.trailing.is_empty());
}

// DH-P2P.md §11.6
#[test]
fn dhp2p_11_6_binding_request_built_from_fields() {
    let txid = txid_from_wire("000102030405060708090a0b");
    let built = punch::binding_request(MAGIC_COOKIE, txid, IDENTIFY, device_pub_addr());
    assert_eq!(built.encode(), wire(DHP2P_REQUEST));
}

// DH-P2P.md §11.6
#[test]
fn dhp2p_11_6_success_rs_form_decodes_every_field() {
    let message = decode_and_check_round_trip(&wire(DHP2P_SUCCESS_RS));
    assert_eq!(message.message_type, MessageType::BindingSuccess);
    assert_eq!(message.message_type.to_u16(), 0x0101);
    assert_eq!(message.declared_length(), 24);
    assert!(message.has_magic_cookie());
    assert_eq!(
        message.transaction_id,
        txid_from_wire("a1a2a3a4a5a6a7a8a9aaabac")
    );
    assert_eq!(message.attributes[0], Attribute::IceControlled(IDENTIFY));
    let address = message.address().unwrap();
    assert_eq!(address.family(), 1);
    assert_eq!(address.addr_inverted(), device_lan_addr());
    assert_eq!(
        address,
        AddressValue::new(device_lan_addr(), AddrForm::Inverted)
    );
}

// DH-P2P.md §11.6
#[test]
fn dhp2p_11_6_success_rs_form_built_from_fields() {
    let txid = txid_from_wire("a1a2a3a4a5a6a7a8a9aaabac");
    let built = punch::binding_success(
        MAGIC_COOKIE,
        txid,
        IDENTIFY,
        device_lan_addr(),
        AddrForm::Inverted,
    );
    assert_eq!(built.encode(), wire(DHP2P_SUCCESS_RS));
}

// DH-P2P.md §11.6 ([py] form)
#[test]
fn dhp2p_11_6_success_py_form_decodes_with_both_readings() {
    let message = decode_and_check_round_trip(&wire(DHP2P_SUCCESS_PY));
    assert_eq!(message.message_type, MessageType::BindingSuccess);
    assert_eq!(message.declared_length(), 24);
    assert_eq!(message.identify(), Some(IDENTIFY));
    let address = message.address().unwrap();
    // The family bytes were inverted like the rest; only port and IP were not.
    assert_eq!(address.family(), 1);
    assert_eq!(address.addr_plain(), device_lan_addr());
    assert_eq!(address.addr(AddrForm::Plain), device_lan_addr());
    assert_eq!(
        address.addr_inverted(),
        SocketAddrV4::new(Ipv4Addr::new(63, 87, 254, 55), 0xa813)
    );
}

// DH-P2P.md §11.6 ([py] form)
#[test]
fn dhp2p_11_6_success_py_form_built_from_fields() {
    let txid = txid_from_wire("a1a2a3a4a5a6a7a8a9aaabac");
    let built = punch::binding_success(
        MAGIC_COOKIE,
        txid,
        IDENTIFY,
        device_lan_addr(),
        AddrForm::Plain,
    );
    assert_eq!(built.encode(), wire(DHP2P_SUCCESS_PY));
}

// FIELD-NOTES.md §5.1 [cap]
#[test]
fn field_notes_5_1_captured_request_decodes_every_field() {
    let bytes = wire(CAPTURED_REQUEST);
    assert_eq!(bytes.len(), 44);
    let message = decode_and_check_round_trip(&bytes);
    assert_eq!(message.message_type, MessageType::BindingRequest);
    assert_eq!(message.declared_length(), 24);
    assert_eq!(message.cookie, [0x21, 0x12, 0xa4, 0x42]);
    assert!(message.has_magic_cookie());
    assert_eq!(
        message.transaction_id,
        [0x4c, 0xfc, 0x10, 0xec, 0xbe, 0xd4, 0xed, 0x51, 0x06, 0x45, 0x4d, 0x99]
    );
    assert_eq!(message.attributes[0], Attribute::IceControlling(IDENTIFY));
    let address = message.address().unwrap();
    assert_eq!(address.family(), 1);
    assert_eq!(
        address.addr_inverted(),
        SocketAddrV4::new(Ipv4Addr::new(222, 253, 45, 154), 22508)
    );
    assert!(message.trailing.is_empty());
}

// FIELD-NOTES.md §5.1 [cap]
#[test]
fn field_notes_5_1_captured_request_rebuilt_from_fields() {
    let built = punch::binding_request(
        MAGIC_COOKIE,
        txid_from_wire("b303ef13412b12aef9bab266"),
        IDENTIFY,
        SocketAddrV4::new(Ipv4Addr::new(222, 253, 45, 154), 22508),
    );
    assert_eq!(built.encode(), wire(CAPTURED_REQUEST));
}

// FIELD-NOTES.md §5.1 [cap]
#[test]
fn field_notes_5_1_captured_success_decodes_every_field() {
    let message = decode_and_check_round_trip(&wire(CAPTURED_SUCCESS));
    assert_eq!(message.message_type, MessageType::BindingSuccess);
    assert_eq!(message.declared_length(), 24);
    assert!(message.has_magic_cookie());
    assert_eq!(
        message.transaction_id,
        txid_from_wire("d3fa95ab9298c8e06b6e844e")
    );
    assert_eq!(message.attributes[0], Attribute::IceControlled(IDENTIFY));
    assert_eq!(
        message.address().unwrap().addr_inverted(),
        device_lan_addr()
    );
}

// FIELD-NOTES.md §5.1 [cap]
#[test]
fn field_notes_5_1_captured_success_rebuilt_from_fields() {
    let built = punch::binding_success(
        MAGIC_COOKIE,
        txid_from_wire("d3fa95ab9298c8e06b6e844e"),
        IDENTIFY,
        device_lan_addr(),
        AddrForm::Inverted,
    );
    assert_eq!(built.encode(), wire(CAPTURED_SUCCESS));
}

// DH-P2P.md §5.1 ([py] type ≥ 1 confirm)
#[test]
fn dhp2p_5_1_py_confirm_decodes_with_trailing_bytes() {
    let bytes = wire(PY_CONFIRM);
    assert_eq!(bytes.len(), 44);
    let message = decode_and_check_round_trip(&bytes);
    assert_eq!(message.message_type, MessageType::BindingSuccess);
    assert_eq!(message.declared_length(), 12);
    assert_eq!(message.attributes, vec![Attribute::IceControlled(IDENTIFY)]);
    // The 12 bytes after the declared length: the hard-coded address attribute.
    assert_eq!(
        message.trailing,
        vec![0x00, 0x04, 0x00, 0x08, 0x00, 0x01, 0x57, 0xec, 0xc0, 0xa8, 0x01, 0xc8]
    );
    let trailing = message.trailing_attributes().unwrap();
    assert_eq!(
        trailing,
        vec![Attribute::SourceAddress(AddressValue::new(
            device_lan_addr(),
            AddrForm::Inverted
        ))]
    );
}

// DH-P2P.md §5.1 ([py] type ≥ 1 confirm)
#[test]
fn dhp2p_5_1_py_confirm_rebuilt_from_fields() {
    let mut built = punch::confirm(
        MAGIC_COOKIE,
        txid_from_wire("a1a2a3a4a5a6a7a8a9aaabac"),
        IDENTIFY,
    );
    let mut stray = Vec::new();
    stray.extend_from_slice(&[0x00, 0x04, 0x00, 0x08]);
    stray.extend_from_slice(&AddressValue::new(device_lan_addr(), AddrForm::Inverted).raw);
    built.trailing = stray;
    assert_eq!(built.encode(), wire(PY_CONFIRM));
}

// FIELD-NOTES.md §5.2 (BJ/MF confirm: ICE-CONTROLLED only, no address)
#[test]
fn confirm_builder_gives_the_32_byte_form() {
    let txid = txid_from_wire("a1a2a3a4a5a6a7a8a9aaabac");
    let bytes = punch::confirm(MAGIC_COOKIE, txid, IDENTIFY).encode();
    assert_eq!(
        bytes,
        wire(
            "fe fe ff f3 de ed 5b bd a1 a2 a3 a4 a5 a6 a7 a8 \
             a9 aa ab ac 7f d6 ff f7 2b 61 98 57 d4 2b 81 e1"
        )
    );
    let message = punch::decode(&bytes).unwrap();
    assert_eq!(message.declared_length(), 12);
    assert!(message.trailing.is_empty());
}

// FIELD-NOTES.md §5.2: answer a device's own Binding Request with its cookie
// and txid, our Identify.
#[test]
fn reply_to_device_request_reuses_its_cookie_and_txid() {
    let device_identify = [1, 2, 3, 4, 5, 6, 7, 8];
    let device_cookie = [0x5a, 0x5b, 0x5c, 0x5d];
    let device_txid = [9; 12];
    let request_bytes = punch::binding_request(
        device_cookie,
        device_txid,
        device_identify,
        device_pub_addr(),
    )
    .encode();
    assert_eq!(&request_bytes[..4], &[0xff, 0xfe, 0xff, 0xe7]);
    let request = punch::decode(&request_bytes).unwrap();

    let observed = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 50000);
    let reply = punch::reply_to(&request, IDENTIFY, observed);
    let reply_bytes = reply.encode();
    assert_eq!(&reply_bytes[..4], &[0xfe, 0xfe, 0xff, 0xe7]);
    assert_eq!(&reply_bytes[4..8], &request_bytes[4..8]);
    assert_eq!(&reply_bytes[8..20], &request_bytes[8..20]);
    let decoded = punch::decode(&reply_bytes).unwrap();
    assert_eq!(decoded.message_type, MessageType::BindingSuccess);
    assert_eq!(decoded.cookie, device_cookie);
    assert!(!decoded.has_magic_cookie());
    assert_eq!(decoded.transaction_id, device_txid);
    assert_eq!(decoded.attributes[0], Attribute::IceControlled(IDENTIFY));
    assert_eq!(decoded.address().unwrap().addr_inverted(), observed);
}

#[test]
fn random_cookie_is_kept_raw() {
    let mut bytes = wire(DHP2P_REQUEST);
    bytes[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    let message = decode_and_check_round_trip(&bytes);
    assert_eq!(message.cookie, [0xed, 0xcb, 0xa9, 0x87]);
    assert!(!message.has_magic_cookie());
}

// DH-P2P.md §8 item 3
#[test]
fn looks_like_punch_needs_ff_or_fe_and_a_header() {
    assert!(punch::looks_like_punch(&[0xff; 20]));
    assert!(punch::looks_like_punch(&[0xfe; 20]));
    assert!(!punch::looks_like_punch(&[0xff; 19]));
    assert!(!punch::looks_like_punch(
        b"PTCP\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
    ));
    assert!(!punch::looks_like_punch(b"HTTP/1.1 200 OK\r\n\r\n\r\n"));
    assert!(!punch::looks_like_punch(&[]));
}

#[test]
fn short_header_is_rejected() {
    let bytes = wire(DHP2P_REQUEST);
    assert_eq!(
        punch::decode(&bytes[..19]),
        Err(PunchError::HeaderTruncated { len: 19 })
    );
}

#[test]
fn declared_length_beyond_the_datagram_is_an_error() {
    let bytes = wire(DHP2P_REQUEST);
    let error = punch::decode(&bytes[..43]).unwrap_err();
    assert_eq!(
        error,
        PunchError::LengthTruncated {
            declared: 24,
            available: 23
        }
    );
    assert!(error.to_string().contains("offset 2"));
}

#[test]
fn attribute_longer_than_the_message_names_its_offset() {
    let mut bytes = wire(DHP2P_REQUEST);
    // Second attribute (offset 32) claims 9 bytes of value where 8 remain.
    bytes[34..36].copy_from_slice(&[!0x00, !0x09]);
    assert_eq!(
        punch::decode(&bytes),
        Err(PunchError::AttributeValueTruncated {
            offset: 32,
            attr_type: 0x0004,
            length: 9,
            remaining: 8
        })
    );
}

#[test]
fn partial_attribute_header_is_an_error() {
    let mut bytes = wire(DHP2P_REQUEST);
    // Declared length 14: one full attribute, then 2 bytes of a header.
    bytes[2..4].copy_from_slice(&[!0x00, !14]);
    assert_eq!(
        punch::decode(&bytes),
        Err(PunchError::AttributeHeaderTruncated {
            offset: 32,
            remaining: 2
        })
    );
}

#[test]
fn attribute_count_is_capped() {
    let mut message = PunchMessage::new(MessageType::BindingRequest, MAGIC_COOKIE, [0; 12]);
    message.attributes = vec![Attribute::other(0x0025, Vec::new()); punch::MAX_ATTRIBUTES + 1];
    let error = punch::decode(&message.encode()).unwrap_err();
    assert_eq!(
        error,
        PunchError::TooManyAttributes {
            offset: 20 + 4 * punch::MAX_ATTRIBUTES,
            limit: punch::MAX_ATTRIBUTES
        }
    );
    message.attributes.pop();
    assert_eq!(punch::decode(&message.encode()).unwrap(), message);
}

#[test]
fn unknown_attributes_and_odd_lengths_are_kept_raw() {
    let mut message = punch::binding_request(MAGIC_COOKIE, [7; 12], IDENTIFY, device_pub_addr());
    message
        .attributes
        .push(Attribute::other(0x8022, b"dhp2p".to_vec()));
    // ICE-CONTROLLING with a non-8 length is not the typed shape.
    message
        .attributes
        .push(Attribute::other(0x802a, vec![1, 2, 3, 4]));
    let bytes = message.encode();
    assert_eq!(bytes.len(), 44 + 4 + 8 + 4 + 4);
    let decoded = punch::decode(&bytes).unwrap();
    assert_eq!(decoded, message);
    assert_eq!(
        decoded.attributes[2],
        Attribute::Other {
            attr_type: 0x8022,
            value: b"dhp2p".to_vec(),
            padding: vec![0, 0, 0]
        }
    );
    assert_eq!(punch::attribute_name(0x8022), "SOFTWARE");
    assert_eq!(decoded.encode(), bytes);
}

#[test]
fn padding_cut_short_by_the_declared_length_is_kept() {
    let mut message = PunchMessage::new(MessageType::BindingSuccess, MAGIC_COOKIE, [1; 12]);
    message.attributes.push(Attribute::Other {
        attr_type: 0x8022,
        value: vec![b'x'],
        padding: vec![0xaa],
    });
    let bytes = message.encode();
    assert_eq!(bytes.len(), 20 + 4 + 1 + 1);
    assert_eq!(&bytes[2..4], &[!0x00, !6]);
    let decoded = punch::decode(&bytes).unwrap();
    assert_eq!(decoded, message);
}

#[test]
fn message_types_are_named_and_unknown_ones_kept() {
    assert_eq!(MessageType::from_u16(0x0001).name(), "Binding Request");
    assert_eq!(
        MessageType::from_u16(0x0101).name(),
        "Binding Success Response"
    );
    assert_eq!(MessageType::from_u16(0x0111), MessageType::BindingError);
    assert_eq!(MessageType::from_u16(0x0011).name(), "Binding Indication");
    assert_eq!(MessageType::from_u16(0x0abc), MessageType::Other(0x0abc));
    assert_eq!(MessageType::from_u16(0x0abc).name(), "unknown");

    let mut bytes = wire(DHP2P_REQUEST);
    bytes[0..2].copy_from_slice(&[!0x00, !0x11]);
    let message = decode_and_check_round_trip(&bytes);
    assert_eq!(message.message_type, MessageType::Other(0x0011));
}
