//! Crypto vectors from DH-P2P.md §11 and FIELD-NOTES.md §2.6, §3: one test per value.

use std::net::{Ipv4Addr, SocketAddrV4};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use dhp2p::codec::crypto::{
    self, AddrListError, CryptoError, DeviceInfo, DeviceKey, INFO_IV, INFO_KEY, LEGACY_RANDSALT,
};
use serde_json::Value;

fn key_11_5() -> DeviceKey {
    crypto::device_key("admin", LEGACY_RANDSALT, "password123")
}

fn key_3_4() -> DeviceKey {
    crypto::device_key("admin", LEGACY_RANDSALT, "admin123")
}

fn hex32(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

// DH-P2P.md §11.1
#[test]
fn dhp2p_11_1_wsse_digest() {
    assert_eq!(
        crypto::wsse_digest(
            "123456789",
            "2024-01-02T03:04:05Z",
            "cba1b29e32cb17aa46b8ff9e73c7f40b",
            "996103384cdf19179e19243e959bbf8b"
        ),
        "JpL3CgK92AyJzUvBm3aSlB/MmNM="
    );
}

// DH-P2P.md §11.5: KEY
#[test]
fn dhp2p_11_5_device_key() {
    assert_eq!(key_11_5().as_bytes(), b"251254A110F9521D2DDC26F7240DC9AD");
}

// DH-P2P.md §11.5: PBKDF2 key (n1)
#[test]
fn dhp2p_11_5_pbkdf2_key_n1() {
    assert_eq!(
        crypto::derive_key(&key_11_5(), "1234567"),
        hex32("815aca16b935cc65cd76576c8644dcd7e07923b4a56a2aaffd2f86ea8b38aac6")
    );
}

// DH-P2P.md §11.5: AES-256-OFB output
#[test]
fn dhp2p_11_5_aes_ofb_output() {
    let derived = hex32("815aca16b935cc65cd76576c8644dcd7e07923b4a56a2aaffd2f86ea8b38aac6");
    let mut data = b"127.0.0.1:50000".to_vec();
    crypto::aes256_ofb_apply(&derived, &crypto::DEVAUTH_IV, &mut data);
    assert_eq!(hex::encode(&data), "51c0ac956d9046bc3c4f3e727ad8b0");
}

// DH-P2P.md §11.5: LocalAddr (Base64)
#[test]
fn dhp2p_11_5_local_addr_base64() {
    let encrypted = crypto::encrypt_local_addr(&key_11_5(), "1234567", "127.0.0.1:50000");
    assert_eq!(encrypted, "UcCslW2QRrw8Tz5yetiw");
    assert_eq!(
        crypto::decrypt_local_addr(&key_11_5(), "1234567", &encrypted).unwrap(),
        "127.0.0.1:50000"
    );
}

// DH-P2P.md §11.5: DevAuth of the p2p-channel request
#[test]
fn dhp2p_11_5_dev_auth_p2p_channel() {
    assert_eq!(
        crypto::dev_auth(&key_11_5(), "1234567", "1700000000", "UcCslW2QRrw8Tz5yetiw"),
        "G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI="
    );
}

// DH-P2P.md §11.5: PBKDF2 key (n2)
#[test]
fn dhp2p_11_5_pbkdf2_key_n2() {
    assert_eq!(
        crypto::derive_key(&key_11_5(), "987654321"),
        hex32("7dec562cbdb5fd7820af0a484782fecfd3e98b349432698bfd11b65d0a79acbd")
    );
}

// DH-P2P.md §11.5: the device's encrypted LocalAddr
#[test]
fn dhp2p_11_5_decrypt_device_local_addr() {
    let plain =
        crypto::decrypt_local_addr(&key_11_5(), "987654321", "dNflxsoW5Am6wSNdp5MEBjTDAg==")
            .unwrap();
    assert_eq!(plain, "192.168.1.200:22508");
    assert_eq!(
        crypto::encrypt_local_addr(&key_11_5(), "987654321", &plain),
        "dNflxsoW5Am6wSNdp5MEBjTDAg=="
    );
    assert_eq!(
        crypto::addr_list_decode(&plain).unwrap(),
        vec![SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 200), 22508)]
    );
}

// DH-P2P.md §11.5: relay-channel DevAuth (device nonce, empty payload)
#[test]
fn dhp2p_11_5_dev_auth_relay_channel() {
    assert_eq!(
        crypto::dev_auth(&key_11_5(), "987654321", "1700000005", ""),
        "amZStEKlVFIkAcEsjpuoEB97rqQdoYXk/cyQxw2z2ws="
    );
}

// FIELD-NOTES.md §3.4: KEY admin/admin123
#[test]
fn field_notes_3_4_device_key() {
    assert_eq!(key_3_4().as_bytes(), b"64A40280005B0D8079A75CB4093A7ED8");
}

// FIELD-NOTES.md §3.4: DK for nonce 123456789
#[test]
fn field_notes_3_4_derived_key() {
    assert_eq!(
        crypto::derive_key(&key_3_4(), "123456789"),
        hex32("f609d42ec10a0883ef454675e7280a41a2a92316837bd3d1900e3c3d2479a030")
    );
}

// FIELD-NOTES.md §3.4: ENC(127.0.0.1:50000)
#[test]
fn field_notes_3_4_encrypted_local_addr() {
    assert_eq!(
        crypto::encrypt_local_addr(&key_3_4(), "123456789", "127.0.0.1:50000"),
        "54klZ5nFyKtWL8PlBJnx"
    );
}

// FIELD-NOTES.md §3.4: DevAuth with the ENC payload
#[test]
fn field_notes_3_4_dev_auth_with_payload() {
    assert_eq!(
        crypto::dev_auth(
            &key_3_4(),
            "123456789",
            "1700000000",
            "54klZ5nFyKtWL8PlBJnx"
        ),
        "5qPGMyfUWCuX8YytKsmKO1BYtAg6rpmBzyNmg9JQ9ck="
    );
}

// FIELD-NOTES.md §3.4: DevAuth with an empty payload
#[test]
fn field_notes_3_4_dev_auth_without_payload() {
    assert_eq!(
        crypto::dev_auth(&key_3_4(), "123456789", "1700000000", ""),
        "7wCLPEqsdHMi8Rt37cyST8dDzEGm6RFgNCs42ug2azk="
    );
}

// FIELD-NOTES.md §3.4: empty salt
#[test]
fn field_notes_3_4_empty_salt_key() {
    assert_eq!(
        crypto::device_key("admin", "", "admin123").as_bytes(),
        b"24EAD7E7E2A9346ADECDB6E588189749"
    );
}

// FIELD-NOTES.md §3.4: signed nonce −5
#[test]
fn field_notes_3_4_negative_nonce_derived_key() {
    assert_eq!(
        crypto::derive_key(&key_3_4(), "-5"),
        hex32("fcde1951737f4b9e7847f559f6d2d5080907febcdc897bf3bf5fb5036e0ece2b")
    );
}

// FIELD-NOTES.md §3.1 [cap]: published prefix of a real Info value
#[test]
fn field_notes_3_1_info_prefix() {
    let bytes = crypto::decrypt_info_bytes("sJRI1JVcQjAKP/skwV5WD6+E9B+t").unwrap();
    assert_eq!(
        hex::encode(B64.decode("sJRI1JVcQjAKP/skwV5WD6+E9B+t").unwrap()),
        "b09448d4955c42300a3ffb24c15e560faf84f41fad"
    );
    assert_eq!(
        hex::encode(&bytes),
        "7b0a2020202268747470706f727422203a2038302c"
    );
    assert_eq!(bytes, b"{\n   \"httpport\" : 80,");
}

// FIELD-NOTES.md §2.6 [cap] row 1 (KN #17)
#[test]
fn field_notes_2_6_wsse_easy4ip() {
    assert_eq!(
        crypto::wsse_digest(
            "403748975",
            "2025-07-14T12:10:45Z",
            "cba1b29e32cb17aa46b8ff9e73c7f40b",
            "996103384cdf19179e19243e959bbf8b"
        ),
        "CL16HGn7S4vceptOXNT+hZEmE1I="
    );
}

/// The Amcrest username holds one literal backslash.
const AMCREST_USER: &str = r"default\1ee97e027b2140a19b08606dcede9b9e";
const AMCREST_KEY: &str = "da16f30fd0af413d97921ce0d24e165c";

// FIELD-NOTES.md §2.6 [cap] row 2 (KN #13)
#[test]
fn field_notes_2_6_wsse_amcrest_kn13() {
    assert_eq!(AMCREST_USER.matches('\\').count(), 1);
    assert_eq!(
        crypto::wsse_digest(
            "209134850",
            "2025-07-22T16:04:17Z",
            AMCREST_USER,
            AMCREST_KEY
        ),
        "02dL/ejaecWxeodSS+dDkGzE/+c="
    );
}

// FIELD-NOTES.md §2.6 [cap] row 3 (KN #17)
#[test]
fn field_notes_2_6_wsse_amcrest_kn17() {
    assert_eq!(
        crypto::wsse_digest(
            "1766349743",
            "2025-07-21T16:35:59Z",
            AMCREST_USER,
            AMCREST_KEY
        ),
        "vsyIQ7i4FJITWXO877zLLMOG5hU="
    );
}

// FIELD-NOTES.md §2.6 [cap] row 4 (KN #3, retired pair, unsigned 32-bit nonce)
#[test]
fn field_notes_2_6_wsse_retired_pair() {
    assert_eq!(
        crypto::wsse_digest(
            "4256704150",
            "2023-12-18T19:19:43Z",
            "P2PClient",
            "YXQ3Mahe-5H-R1Z_"
        ),
        "HvAqydeFx9pTgUKR4cSMJaoeCiQ="
    );
}

// DH-P2P.md §2.5 / FIELD-NOTES.md C11: the early commit's IpEncrpt LocalAddr
#[test]
fn dhp2p_2_5_ip_encrpt_example() {
    let text = "63.87.143.254,63.87.254.173:50000";
    let addrs = crypto::ip_encrpt_decode(text).unwrap();
    assert_eq!(
        addrs,
        vec![
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 112, 1), 50000),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 82), 50000),
        ]
    );
    let ips: Vec<Ipv4Addr> = addrs.iter().map(|addr| *addr.ip()).collect();
    assert_eq!(crypto::ip_encrpt_encode(&ips, 50000), text);
}

// FIELD-NOTES.md C11: with IpEncrpt the advertised 127.0.0.1 decodes to 128.255.255.254.
#[test]
fn field_notes_c11_ip_encrpt_of_loopback() {
    assert_eq!(
        crypto::ip_encrpt_decode("127.0.0.1:50000").unwrap(),
        vec![SocketAddrV4::new(Ipv4Addr::new(128, 255, 255, 254), 50000)]
    );
}

// FIELD-NOTES.md C11 (DF core/localaddr_test.go): plain DMSS form
#[test]
fn field_notes_c11_plain_list() {
    let text = "10.8.0.2,192.168.1.10,192.168.1.10:50000";
    let addrs = crypto::addr_list_decode(text).unwrap();
    assert_eq!(
        addrs,
        vec![
            SocketAddrV4::new(Ipv4Addr::new(10, 8, 0, 2), 50000),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 50000),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 50000),
        ]
    );
    let ips: Vec<Ipv4Addr> = addrs.iter().map(|addr| *addr.ip()).collect();
    assert_eq!(crypto::addr_list_encode(&ips, 50000), text);
}

#[test]
fn address_lists_are_parsed_strictly() {
    assert_eq!(crypto::addr_list_decode(""), Err(AddrListError::Empty));
    assert_eq!(
        crypto::addr_list_decode("10.0.0.1"),
        Err(AddrListError::MissingPort { offset: 0 })
    );
    assert_eq!(
        crypto::addr_list_decode("10.0.0.1:1,10.0.0.2:2"),
        Err(AddrListError::UnexpectedPort { offset: 8 })
    );
    assert_eq!(
        crypto::addr_list_decode("10.0.0.1,010.0.0.2:2"),
        Err(AddrListError::BadAddress { offset: 9 })
    );
    assert_eq!(
        crypto::addr_list_decode("10.0.0.1:+80"),
        Err(AddrListError::BadPort { offset: 9 })
    );
    assert_eq!(
        crypto::addr_list_decode("10.0.0.1:65536"),
        Err(AddrListError::BadPort { offset: 9 })
    );
    assert_eq!(
        crypto::addr_list_decode("10.0.0.256:1"),
        Err(AddrListError::BadAddress { offset: 0 })
    );
    assert_eq!(
        crypto::addr_list_decode("10.0.0.1, 10.0.0.2:1"),
        Err(AddrListError::BadAddress { offset: 9 })
    );
    let many = format!("{}10.0.0.1:1", "1.2.3.4,".repeat(64));
    assert_eq!(
        crypto::addr_list_decode(&many),
        Err(AddrListError::TooManyAddresses { limit: 64 })
    );
}

fn sample_info() -> DeviceInfo {
    DeviceInfo {
        httpport: Some(80),
        privport: Some(37777),
        rtspport: Some(554),
        tlsprivport: Some(37778),
        randsalt: Some(LEGACY_RANDSALT.to_owned()),
        extra: serde_json::Map::new(),
    }
}

// FIELD-NOTES.md §3.1 item 4: the pretty-printed layout
#[test]
fn info_json_text_uses_the_device_layout() {
    assert_eq!(
        crypto::info_json_text(&sample_info()),
        "{\n   \"httpport\" : 80,\n   \"privport\" : 37777,\n   \
         \"randsalt\" : \"5daf91fc5cfc1be8e081cfb08f792726\",\n   \
         \"rtspport\" : 554,\n   \"tlsprivport\" : 37778\n}\n"
    );
}

// FIELD-NOTES.md §3.1: our encryption reproduces the captured prefix
#[test]
fn encrypt_info_starts_like_the_captured_blob() {
    let encrypted = B64.decode(crypto::encrypt_info(&sample_info())).unwrap();
    assert_eq!(
        hex::encode(&encrypted[..21]),
        "b09448d4955c42300a3ffb24c15e560faf84f41fad"
    );
}

#[test]
fn info_round_trip_keeps_ports_salt_and_unknown_keys() {
    let mut info = sample_info();
    info.extra.insert("zzz".into(), Value::from("kept"));
    info.extra.insert("httpsport".into(), Value::from(443));
    let decrypted = crypto::decrypt_info(&crypto::encrypt_info(&info)).unwrap();
    assert_eq!(decrypted, info);
    assert_eq!(decrypted.salt(), LEGACY_RANDSALT);
    assert_eq!(decrypted.rtspport, Some(554));
}

#[test]
fn info_known_key_of_the_wrong_type_stays_in_extra() {
    let info = crypto::decrypt_info(&crypto::encrypt_info_text(
        "{\"httpport\" : \"80\", \"rtspport\" : 70000, \"randsalt\" : \"abc\"}",
    ))
    .unwrap();
    assert_eq!(info.httpport, None);
    assert_eq!(info.rtspport, None);
    assert_eq!(info.extra["httpport"], Value::from("80"));
    assert_eq!(info.extra["rtspport"], Value::from(70000));
    assert_eq!(info.randsalt.as_deref(), Some("abc"));
}

// FIELD-NOTES.md §3.1 item 1 / §3.3: empty Info means no salt
#[test]
fn empty_info_means_no_salt() {
    for text in ["", "  ", "\n"] {
        let info = crypto::decrypt_info(text).unwrap();
        assert_eq!(info, DeviceInfo::default());
        assert_eq!(info.salt(), "");
    }
}

// FIELD-NOTES.md §3.1 item 5: another cloud's key gives a typed error
#[test]
fn info_under_another_key_is_a_typed_error() {
    let other_key = [0x42; 32];
    let foreign = crypto::encrypt_info_text_with(
        &other_key,
        &INFO_IV,
        &crypto::info_json_text(&sample_info()),
    );
    let error = crypto::decrypt_info(&foreign).unwrap_err();
    assert!(
        matches!(
            error,
            CryptoError::NotUtf8 { field: "Info", .. } | CryptoError::NotJson { field: "Info", .. }
        ),
        "{error:?}"
    );
    assert_eq!(
        crypto::decrypt_info_with(&other_key, &INFO_IV, &foreign).unwrap(),
        sample_info()
    );
    assert_ne!(other_key, INFO_KEY);
}

#[test]
fn info_that_is_not_an_object_is_rejected() {
    assert_eq!(
        crypto::decrypt_info(&crypto::encrypt_info_text("[1, 2]")),
        Err(CryptoError::NotJsonObject {
            field: "Info",
            found: "an array"
        })
    );
}

#[test]
fn oversized_info_is_rejected_before_decoding() {
    let huge = "A".repeat(crypto::MAX_INFO_TEXT + 4);
    assert_eq!(
        crypto::decrypt_info(&huge),
        Err(CryptoError::TooLarge {
            field: "Info",
            len: crypto::MAX_INFO_TEXT + 4,
            limit: crypto::MAX_INFO_TEXT
        })
    );
}

#[test]
fn bad_base64_is_an_error() {
    let derived = [7; 32];
    let error = crypto::decrypt_local_addr_with_key(&derived, "not base64!").unwrap_err();
    assert!(
        matches!(
            error,
            CryptoError::Base64 {
                field: "LocalAddr",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(matches!(
        crypto::decrypt_info("@@@@"),
        Err(CryptoError::Base64 { field: "Info", .. })
    ));
}

// A wrong password shows as undecodable LocalAddr text.
#[test]
fn wrong_password_shows_as_not_utf8() {
    let wrong = crypto::device_key("admin", LEGACY_RANDSALT, "wrong");
    let error = crypto::decrypt_local_addr(&wrong, "987654321", "dNflxsoW5Am6wSNdp5MEBjTDAg==")
        .unwrap_err();
    assert!(
        matches!(
            error,
            CryptoError::NotUtf8 {
                field: "LocalAddr",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn device_key_debug_is_redacted() {
    let key = key_11_5();
    let shown = format!("{key:?} {:?}", Some(key.clone()));
    assert!(!shown.contains("251254A1"), "{shown}");
    assert!(!shown.contains("50, 53, 49"), "{shown}");
    assert!(shown.contains("redacted"));
    assert_eq!(DeviceKey::from_bytes(*key.as_bytes()), key);
}
