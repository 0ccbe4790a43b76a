//! Cryptography of the cloud and device protocols, on RustCrypto primitives.
//!
//! Nonces, times and random bytes are always parameters, so every result is
//! reproducible from its inputs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// WSSE `PasswordDigest` of a cloud request:
/// `Base64(SHA1(nonce ‖ created ‖ "DHP2P:" ‖ username ‖ ":" ‖ key))`.
///
/// `nonce` and `created` are the exact texts that go on the wire (decimal
/// nonce, possibly signed; ISO time, possibly with an offset).
pub fn wsse_digest(nonce: &str, created: &str, username: &str, key: &str) -> String {
    let mut h = Sha1::new();
    h.update(nonce.as_bytes());
    h.update(created.as_bytes());
    h.update(b"DHP2P:");
    h.update(username.as_bytes());
    h.update(b":");
    h.update(key.as_bytes());
    B64.encode(h.finalize())
}
