//! Cryptography of the cloud and device protocols, on RustCrypto primitives.
//!
//! Nonces, times and random bytes are always parameters, so every result is
//! reproducible from its inputs. Nonces and times are taken as the exact text
//! that goes on the wire (decimal, possibly negative), because the digests are
//! computed over that text.
//!
//! - WSSE digest of every cloud request (DH-P2P §2.3).
//! - Device auth, "type 1" (DH-P2P §4, FIELD-NOTES §3.2): [`device_key`],
//!   [`derive_key`], [`encrypt_local_addr`] / [`decrypt_local_addr`], [`dev_auth`].
//! - The `/info/device` `Info` blob holding the per-device salt
//!   (FIELD-NOTES §3.1): [`decrypt_info`] / [`encrypt_info`].
//! - The `IpEncrpt` address list (255 − octet, FIELD-NOTES C11, DH-P2P §2.5):
//!   [`ip_encrpt_decode`] / [`ip_encrpt_encode`], and its plain variant.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use aes::Aes256;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use ofb::cipher::{KeyIvInit, StreamCipher};
use serde_json::ser::{Formatter, PrettyFormatter};
use serde_json::{Map, Value};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

type Aes256Ofb = ofb::Ofb<Aes256>;

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

/// IV of the device-auth AES-256-OFB (`PROXY_AES_DEVAUTH_IV`).
pub const DEVAUTH_IV: [u8; 16] = *b"2z52*lk9o6HRyJrf";
/// PBKDF2 iteration count of [`derive_key`].
pub const PBKDF2_ROUNDS: u32 = 20_000;
/// The salt the original hard-codes; one device's salt, a fallback only (FIELD-NOTES C6).
pub const LEGACY_RANDSALT: &str = "5daf91fc5cfc1be8e081cfb08f792726";
/// Fixed key of the `Info` blob (`PROXY_AES_DEVINFO_KEY`), the same for every device.
pub const INFO_KEY: [u8; 32] = *b"kRjmsUB&ezmdGLL67H#$ojw@XflcaIaf";
/// Fixed IV of the `Info` blob (`PROXY_AES_DEVINFO_IV`).
pub const INFO_IV: [u8; 16] = *b"MydvJw*Iw1w&i^kk";
/// Longest `Info` text accepted; real ones are a few hundred bytes.
pub const MAX_INFO_TEXT: usize = 64 * 1024;
/// Longest encrypted `LocalAddr` text accepted.
pub const MAX_LOCAL_ADDR_TEXT: usize = 4096;
/// Longest address-list text accepted.
pub const MAX_ADDR_LIST_TEXT: usize = 4096;
/// Most addresses accepted in one address list.
pub const MAX_ADDR_LIST_ENTRIES: usize = 64;

/// Why an encrypted field could not be read. A wrong password or salt usually
/// shows as [`CryptoError::NotUtf8`] or [`CryptoError::NotJson`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("{field}: {len} bytes of text exceed the {limit}-byte limit")]
    TooLarge {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{field}: invalid Base64: {source}")]
    Base64 {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error(
        "{field}: decrypted bytes are not UTF-8 at offset {offset} \
         (wrong key, salt or password?)"
    )]
    NotUtf8 { field: &'static str, offset: usize },
    #[error("{field}: decrypted text is not JSON (line {line}, column {column}): {message}")]
    NotJson {
        field: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{field}: decrypted JSON is {found}, not an object")]
    NotJsonObject {
        field: &'static str,
        found: &'static str,
    },
}

/// Why an address list (`LocalAddr`, plain or `IpEncrpt`) could not be read.
/// Offsets are byte offsets into the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrListError {
    #[error("address list is empty")]
    Empty,
    #[error("address list of {len} bytes exceeds the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error("address list has more than {limit} entries")]
    TooManyAddresses { limit: usize },
    #[error("invalid IPv4 address at offset {offset}")]
    BadAddress { offset: usize },
    #[error("port at offset {offset} on an entry other than the last")]
    UnexpectedPort { offset: usize },
    #[error("last entry (offset {offset}) has no `:port`")]
    MissingPort { offset: usize },
    #[error("invalid port at offset {offset}")]
    BadPort { offset: usize },
}

/// The device-auth key: 32 ASCII bytes, the upper-case hex MD5 of
/// `user:Login to salt:password`. A password equivalent, so `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    /// Wraps an already computed key (for example a configured one).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 key bytes, as used by PBKDF2 and HMAC.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(<redacted>)")
    }
}

/// `ASCII(UPPER(hex(MD5(user ":Login to " salt ":" password))))`: the HTTP
/// digest HA1 with realm `Login to <salt>` (FIELD-NOTES §3.2). An empty salt
/// (device without `Info`) is allowed and gives realm `Login to `.
pub fn device_key(user: &str, salt: &str, password: &str) -> DeviceKey {
    let mut md5 = Md5::new();
    md5.update(user.as_bytes());
    md5.update(b":Login to ");
    md5.update(salt.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    let mut key = [0u8; 32];
    for (pair, byte) in key.chunks_exact_mut(2).zip(md5.finalize()) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    DeviceKey(key)
}

/// `PBKDF2-HMAC-SHA256(KEY, ASCII(nonce_text), 20000, 32)`. `nonce_text` is the
/// nonce exactly as written on the wire (DMSS sends negative ones).
pub fn derive_key(key: &DeviceKey, nonce_text: &str) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(&key.0, nonce_text.as_bytes(), PBKDF2_ROUNDS)
}

/// XORs the AES-256-OFB keystream of (`key`, `iv`) over `data`; OFB is a
/// stream mode, so this both encrypts and decrypts, and any prefix works alone.
pub fn aes256_ofb_apply(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let mut cipher = Aes256Ofb::new(key.into(), iv.into());
    cipher.apply_keystream(data);
}

/// `Base64(AES-256-OFB(derive_key(key, nonce), DEVAUTH_IV, plaintext))`: the
/// encrypted `LocalAddr` of a type-1 p2p-channel request.
pub fn encrypt_local_addr(key: &DeviceKey, nonce_text: &str, plaintext: &str) -> String {
    encrypt_local_addr_with_key(&derive_key(key, nonce_text), plaintext)
}

/// [`encrypt_local_addr`] with an already derived key (PBKDF2 is slow).
pub fn encrypt_local_addr_with_key(derived: &[u8; 32], plaintext: &str) -> String {
    let mut data = plaintext.as_bytes().to_vec();
    aes256_ofb_apply(derived, &DEVAUTH_IV, &mut data);
    B64.encode(data)
}

/// Reads the device's encrypted `LocalAddr` with the nonce of its answer.
/// Surrounding ASCII whitespace is ignored. A wrong password usually shows as
/// [`CryptoError::NotUtf8`]; the text is not checked to be an address list.
pub fn decrypt_local_addr(
    key: &DeviceKey,
    nonce_text: &str,
    b64: &str,
) -> Result<String, CryptoError> {
    check_len("LocalAddr", b64, MAX_LOCAL_ADDR_TEXT)?;
    decrypt_local_addr_with_key(&derive_key(key, nonce_text), b64)
}

/// [`decrypt_local_addr`] with an already derived key.
pub fn decrypt_local_addr_with_key(derived: &[u8; 32], b64: &str) -> Result<String, CryptoError> {
    const FIELD: &str = "LocalAddr";
    check_len(FIELD, b64, MAX_LOCAL_ADDR_TEXT)?;
    let mut data = decode_b64(FIELD, b64)?;
    aes256_ofb_apply(derived, &DEVAUTH_IV, &mut data);
    into_utf8(FIELD, data)
}

/// `Base64(HMAC-SHA256(KEY, nonce ‖ create_date ‖ payload))`. For p2p-channel
/// the payload is the encrypted LocalAddr text; for relay-channel it is empty.
pub fn dev_auth(
    key: &DeviceKey,
    nonce_text: &str,
    create_date_text: &str,
    payload: &str,
) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC-SHA256 accepts a 32-byte key");
    mac.update(nonce_text.as_bytes());
    mac.update(create_date_text.as_bytes());
    mac.update(payload.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

fn check_len(field: &'static str, text: &str, limit: usize) -> Result<(), CryptoError> {
    if text.len() > limit {
        return Err(CryptoError::TooLarge {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

fn decode_b64(field: &'static str, text: &str) -> Result<Vec<u8>, CryptoError> {
    B64.decode(text.trim_ascii())
        .map_err(|source| CryptoError::Base64 { field, source })
}

fn into_utf8(field: &'static str, data: Vec<u8>) -> Result<String, CryptoError> {
    String::from_utf8(data).map_err(|error| CryptoError::NotUtf8 {
        field,
        offset: error.utf8_error().valid_up_to(),
    })
}

// ---------------------------------------------------------------------------
// `/info/device` Info blob

/// The decrypted `Info` JSON. Known keys are typed; every other key, and a
/// known key whose value has an unexpected type, stays in `extra`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub httpport: Option<u16>,
    /// DVRIP port (37777), the port DMSS tunnels.
    pub privport: Option<u16>,
    pub rtspport: Option<u16>,
    pub tlsprivport: Option<u16>,
    /// The per-device salt for [`device_key`] (32 hex characters).
    pub randsalt: Option<String>,
    pub extra: Map<String, Value>,
}

impl DeviceInfo {
    /// The salt to use: `randsalt`, or the empty string when there is none
    /// (FIELD-NOTES §3.3: a device without salt uses realm `Login to `).
    pub fn salt(&self) -> &str {
        self.randsalt.as_deref().unwrap_or("")
    }

    /// Splits a JSON object into the typed fields and `extra`.
    pub fn from_json_map(mut map: Map<String, Value>) -> Self {
        Self {
            httpport: take_port(&mut map, "httpport"),
            privport: take_port(&mut map, "privport"),
            rtspport: take_port(&mut map, "rtspport"),
            tlsprivport: take_port(&mut map, "tlsprivport"),
            randsalt: take_string(&mut map, "randsalt"),
            extra: map,
        }
    }

    /// The JSON object: `extra` plus the typed fields that are set.
    pub fn to_json_map(&self) -> Map<String, Value> {
        let mut map = self.extra.clone();
        let ports = [
            ("httpport", self.httpport),
            ("privport", self.privport),
            ("rtspport", self.rtspport),
            ("tlsprivport", self.tlsprivport),
        ];
        for (name, port) in ports {
            if let Some(port) = port {
                map.insert(name.to_owned(), Value::from(port));
            }
        }
        if let Some(salt) = &self.randsalt {
            map.insert("randsalt".to_owned(), Value::from(salt.as_str()));
        }
        map
    }
}

fn take_port(map: &mut Map<String, Value>, key: &str) -> Option<u16> {
    let port = u16::try_from(map.get(key)?.as_u64()?).ok()?;
    map.remove(key);
    Some(port)
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    let text = map.get(key)?.as_str()?.to_owned();
    map.remove(key);
    Some(text)
}

/// Decrypts `<Info>` with the fixed key and IV.
///
/// Empty (or whitespace-only) text means the device has no salt and gives
/// `Ok(DeviceInfo::default())`: every field `None`, so [`DeviceInfo::salt`] is
/// `""`. Garbage after decryption (another cloud's key) gives an error; the
/// caller then continues without a salt (FIELD-NOTES §3.1 item 5).
pub fn decrypt_info(b64: &str) -> Result<DeviceInfo, CryptoError> {
    decrypt_info_with(&INFO_KEY, &INFO_IV, b64)
}

/// [`decrypt_info`] for a rebranded cloud with its own key and IV.
pub fn decrypt_info_with(
    key: &[u8; 32],
    iv: &[u8; 16],
    b64: &str,
) -> Result<DeviceInfo, CryptoError> {
    const FIELD: &str = "Info";
    let text = decrypt_info_text_with(key, iv, b64)?;
    // Tolerate NUL padding after the JSON, which some encoders add.
    let json = text.trim_end_matches('\0').trim_ascii();
    if json.is_empty() {
        return Ok(DeviceInfo::default());
    }
    let value: Value = serde_json::from_str(json).map_err(|error| CryptoError::NotJson {
        field: FIELD,
        line: error.line(),
        column: error.column(),
        message: error.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(DeviceInfo::from_json_map(map)),
        other => Err(CryptoError::NotJsonObject {
            field: FIELD,
            found: json_kind(&other),
        }),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Base64-decodes and decrypts `<Info>` to raw bytes (no UTF-8 or JSON check),
/// e.g. to read a published prefix of a real blob.
pub fn decrypt_info_bytes(b64: &str) -> Result<Vec<u8>, CryptoError> {
    decrypt_info_bytes_with(&INFO_KEY, &INFO_IV, b64)
}

/// [`decrypt_info_bytes`] with another key and IV.
pub fn decrypt_info_bytes_with(
    key: &[u8; 32],
    iv: &[u8; 16],
    b64: &str,
) -> Result<Vec<u8>, CryptoError> {
    const FIELD: &str = "Info";
    check_len(FIELD, b64, MAX_INFO_TEXT)?;
    let mut data = decode_b64(FIELD, b64)?;
    aes256_ofb_apply(key, iv, &mut data);
    Ok(data)
}

/// Decrypts `<Info>` to its JSON text, unparsed. Exact inverse of
/// [`encrypt_info_text`] (up to surrounding whitespace of the Base64 text).
pub fn decrypt_info_text(b64: &str) -> Result<String, CryptoError> {
    decrypt_info_text_with(&INFO_KEY, &INFO_IV, b64)
}

/// [`decrypt_info_text`] with another key and IV.
pub fn decrypt_info_text_with(
    key: &[u8; 32],
    iv: &[u8; 16],
    b64: &str,
) -> Result<String, CryptoError> {
    into_utf8("Info", decrypt_info_bytes_with(key, iv, b64)?)
}

/// Encrypts `info` as a device does: JSON pretty-printed the way Dahua
/// firmware writes it, then AES-256-OFB with the fixed key, then Base64.
pub fn encrypt_info(info: &DeviceInfo) -> String {
    encrypt_info_text(&info_json_text(info))
}

/// Encrypts an already formatted JSON text with the fixed key and IV.
pub fn encrypt_info_text(json_text: &str) -> String {
    encrypt_info_text_with(&INFO_KEY, &INFO_IV, json_text)
}

/// [`encrypt_info_text`] with another key and IV.
pub fn encrypt_info_text_with(key: &[u8; 32], iv: &[u8; 16], json_text: &str) -> String {
    let mut data = json_text.as_bytes().to_vec();
    aes256_ofb_apply(key, iv, &mut data);
    B64.encode(data)
}

/// The JSON text a device puts in `Info`: keys in byte order, newline,
/// 3-space indent and `" : "` (FIELD-NOTES §3.1 item 4), ending in a newline.
/// That is JsonCpp's `StyledWriter` layout; the final newline is inferred
/// from it, not seen in a capture.
pub fn info_json_text(info: &DeviceInfo) -> String {
    let sorted: BTreeMap<String, Value> = info.to_json_map().into_iter().collect();
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, DahuaFormatter::new());
    serde::Serialize::serialize(&sorted, &mut serializer)
        .expect("serializing JSON values into a Vec cannot fail");
    out.push(b'\n');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// serde_json's pretty printer with a 3-space indent and `" : "` after keys.
struct DahuaFormatter(PrettyFormatter<'static>);

impl DahuaFormatter {
    fn new() -> Self {
        Self(PrettyFormatter::with_indent(b"   "))
    }
}

impl Formatter for DahuaFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b" : ")
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

// ---------------------------------------------------------------------------
// Address lists: `LocalAddr` as bare IPv4 prefixes then one final `ip:port`

/// Reads an `IpEncrpt=true` address list: every octet written as `255 − x`,
/// the port not transformed, e.g. `63.87.143.254,63.87.254.173:50000` →
/// 192.168.112.1:50000 and 192.168.1.82:50000. Every address gets the final port.
///
/// Parsing is strict (no spaces, no leading zeros, no `+`) so that
/// [`ip_encrpt_encode`] reproduces every accepted text exactly.
pub fn ip_encrpt_decode(text: &str) -> Result<Vec<SocketAddrV4>, AddrListError> {
    parse_addr_list(text, true)
}

/// Writes an `IpEncrpt=true` address list: `ips` with inverted octets joined
/// by commas, then `:port`. An empty `ips` gives `:port`, which no decoder accepts.
pub fn ip_encrpt_encode(ips: &[Ipv4Addr], port: u16) -> String {
    format_addr_list(ips, port, true)
}

/// Reads a plain address list (DMSS wire form, FIELD-NOTES C11), e.g.
/// `10.8.0.2,192.168.1.10,192.168.1.10:50000`. A single `ip:port` is the
/// one-entry case. Strict like [`ip_encrpt_decode`].
pub fn addr_list_decode(text: &str) -> Result<Vec<SocketAddrV4>, AddrListError> {
    parse_addr_list(text, false)
}

/// Writes a plain address list; exact inverse of [`addr_list_decode`].
pub fn addr_list_encode(ips: &[Ipv4Addr], port: u16) -> String {
    format_addr_list(ips, port, false)
}

fn format_addr_list(ips: &[Ipv4Addr], port: u16, invert: bool) -> String {
    let entries: Vec<String> = ips
        .iter()
        .map(|ip| {
            let octets = if invert {
                ip.octets().map(|octet| 255 - octet)
            } else {
                ip.octets()
            };
            Ipv4Addr::from(octets).to_string()
        })
        .collect();
    format!("{}:{port}", entries.join(","))
}

fn parse_addr_list(text: &str, invert: bool) -> Result<Vec<SocketAddrV4>, AddrListError> {
    if text.is_empty() {
        return Err(AddrListError::Empty);
    }
    if text.len() > MAX_ADDR_LIST_TEXT {
        return Err(AddrListError::TooLong {
            len: text.len(),
            limit: MAX_ADDR_LIST_TEXT,
        });
    }
    let entry_count = text.split(',').count();
    if entry_count > MAX_ADDR_LIST_ENTRIES {
        return Err(AddrListError::TooManyAddresses {
            limit: MAX_ADDR_LIST_ENTRIES,
        });
    }
    let mut ips = Vec::with_capacity(entry_count);
    let mut port = None;
    let mut offset = 0usize;
    for (index, entry) in text.split(',').enumerate() {
        let is_last = index + 1 == entry_count;
        let ip_text = match (entry.rfind(':'), is_last) {
            (Some(colon), true) => {
                let port_offset = offset + colon + 1;
                port = Some(
                    parse_decimal(&entry[colon + 1..], u16::MAX.into())
                        .and_then(|value| u16::try_from(value).ok())
                        .ok_or(AddrListError::BadPort {
                            offset: port_offset,
                        })?,
                );
                &entry[..colon]
            }
            (None, true) => {
                return Err(AddrListError::MissingPort { offset });
            }
            (Some(colon), false) => {
                return Err(AddrListError::UnexpectedPort {
                    offset: offset + colon,
                });
            }
            (None, false) => entry,
        };
        let ip = parse_ipv4(ip_text).ok_or(AddrListError::BadAddress { offset })?;
        ips.push(if invert {
            Ipv4Addr::from(ip.octets().map(|octet| 255 - octet))
        } else {
            ip
        });
        offset += entry.len() + 1;
    }
    let port = port.ok_or(AddrListError::MissingPort { offset: 0 })?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddrV4::new(ip, port))
        .collect())
}

/// Canonical dotted quad only: four decimal octets without leading zeros.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        *octet = u8::try_from(parse_decimal(parts.next()?, 255)?).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Canonical unsigned decimal up to `max`: digits only, no leading zero
/// unless the number is 0.
fn parse_decimal(text: &str, max: u32) -> Option<u32> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 5 || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut value: u32 = 0;
    for &byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    (value <= max).then_some(value)
}
