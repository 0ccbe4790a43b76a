//! Wire formats of the Dahua P2P protocol.
//!
//! Everything here is a pure function of its inputs: no sockets, no clock, no
//! global state and no randomness of its own. Time, nonces and random bytes are
//! parameters. Every decoder checks lengths against the bytes actually present
//! before slicing or allocating, never panics, and reports a typed error naming
//! the field and byte offset. Every decoder has an encoder that is its exact
//! inverse for every input the decoder accepts.
//!
//! - [`ptcp`]: PTCP ("PhonyTCP") packets: the 24-byte header and the bodies.
//! - [`cloud`]: the HTTP-like cloud messages over UDP and their XML bodies.
//! - [`punch`]: the inverted-STUN hole-punch messages.
//! - [`rtsp`]: RTSP framing and `Authorization` credentials, as carried in a realm.
//! - [`crypto`]: WSSE, device key, DevAuth, LocalAddr and Info encryption.
//! - [`identity`]: the public client identities (cloud profiles).
//! - [`classify`]: which of the above a UDP payload is, by content.

pub mod classify;
pub mod cloud;
pub mod crypto;
pub mod identity;
pub mod ptcp;
pub mod punch;
pub mod rtsp;

/// First position of `needle` in `haystack` (`None` for an empty needle):
/// the one byte search the codecs share.
pub fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
