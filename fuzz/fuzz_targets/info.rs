//! Any text: `/info/device` Info decryption never panics, read either as the
//! Base64 text itself or as the Base64 of the input bytes; a decrypted text
//! encrypts back to the same Base64.
#![no_main]
use dhp2p::codec::crypto;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crypto::decrypt_info(text);
        let _ = crypto::decrypt_info_bytes(text);
    }
    let b64 = base64_encode(data);
    let _ = crypto::decrypt_info(&b64);
    if let Ok(plain) = crypto::decrypt_info_text(&b64) {
        assert_eq!(crypto::encrypt_info_text(&plain), b64);
    }
    if let Ok(info) = crypto::decrypt_info(&b64) {
        // What a fake device would send back decrypts to the same values.
        let again = crypto::decrypt_info(&crypto::encrypt_info(&info));
        assert_eq!(
            again.as_ref().map(|i| i.to_json_map()),
            Ok(info.to_json_map())
        );
    }
});

/// Standard Base64 with padding (fuzz/Cargo.toml has no base64 dependency).
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
