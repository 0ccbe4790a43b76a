//! PTCP ("PhonyTCP"): TCP-like byte streams ("realms") and control messages
//! carried one packet per UDP datagram.
//!
//! ```text
//! 0       4       8       12      16      20      24
//! +-------+-------+-------+-------+-------+-------+----------------
//! | PTCP  | sent  | recv  |  pid  | lmid  | rmid  | body (0..n bytes)
//! +-------+-------+-------+-------+-------+-------+----------------
//! ```
//!
//! A body is empty (a pure ACK), the 4-byte SYN `00 03 01 00`, or a 12-byte
//! sub-header `type:u8 len:u24 realm:u32 pad:u32` followed by type-specific
//! data. Only DATA fills `len` with the data length; BIND carries 8 in captures
//! and 0 in the original client (both kept); every other type carries 0
//! (DH-P2P §6.3–6.4, FIELD-NOTES C3–C4).
//!
//! Decoding never loses bytes: a body of a known type whose fixed fields do not
//! have their canonical values (a heartbeat with a realm, a STATUS that is not
//! CONN/DISC, DATA with non-zero padding…) decodes as [`Body::Unknown`] with
//! its raw bytes, so `encode(decode(b)) == b` for every accepted datagram.

use std::fmt;
use std::net::Ipv4Addr;

use thiserror::Error;

/// The 4 magic bytes that start every PTCP datagram.
pub const MAGIC: [u8; 4] = *b"PTCP";
/// Length of the fixed PTCP header.
pub const HEADER_LEN: usize = field::RMID.end;
/// Length of the sub-header that starts every body except SYN.
pub const SUBHEADER_LEN: usize = field::body::PADDING.end;

/// Where each field sits: the one wire layout the decoder reads, the
/// encoder writes and `describe` highlights (smoltcp's `mod field`).
pub mod field {
    use std::ops::Range;

    /// A field's byte range.
    pub type Field = Range<usize>;

    /// Header fields, offsets in the datagram.
    pub const MAGIC: Field = 0..4;
    pub const SENT: Field = 4..8;
    pub const RECV: Field = 8..12;
    pub const PID: Field = 12..16;
    pub const LMID: Field = 16..20;
    pub const RMID: Field = 20..24;

    /// Body fields, offsets in the body (the datagram after the header).
    pub mod body {
        use super::Field;

        /// The type code (the top byte of the first sub-header word).
        pub const TYPE: Field = 0..1;
        /// The 24-bit length (the rest of the first word).
        pub const LEN: Field = 1..4;
        /// The first word: type and length together.
        pub const TYPE_LEN: Field = 0..4;
        pub const REALM: Field = 4..8;
        pub const PADDING: Field = 8..12;
        /// Where the data after the sub-header starts.
        pub const DATA: usize = PADDING.end;
        /// BIND: target port and IPv4 address.
        pub const BIND_PORT: Field = DATA..DATA + 4;
        pub const BIND_IP: Field = BIND_PORT.end..BIND_PORT.end + 4;
        /// STATUS: the `CONN`/`DISC` word, then the trailer.
        pub const STATUS_WORD: Field = DATA..DATA + 4;
        pub const STATUS_TRAILER: usize = STATUS_WORD.end;
    }

    /// `range` of a body, as a range of the datagram.
    pub const fn in_datagram(range: Field) -> Field {
        super::HEADER_LEN + range.start..super::HEADER_LEN + range.end
    }

    /// Offset `at` of a body, as an offset in the datagram.
    pub const fn at_in_datagram(at: usize) -> usize {
        super::HEADER_LEN + at
    }
}
/// The whole SYN body.
pub const SYN_BODY: [u8; 4] = [0x00, 0x03, 0x01, 0x00];
/// `pid` of a SYN packet.
pub const PID_SYN: u32 = 0x0002_FFFF;
/// `pid` of any other packet when nothing is left unconsumed (FIELD-NOTES C1).
pub const PID_IDLE: u32 = 0x0000_FFFF;
/// The largest value the 24-bit `len` field can hold.
pub const MAX_LEN_FIELD: u32 = 0x00FF_FFFF;
/// Largest DATA payload the official app puts in one packet (FIELD-NOTES C5).
pub const FRAGMENT_SIZE: usize = 1280;
/// BIND `len` as captured from the DMSS app (FIELD-NOTES C4).
pub const BIND_LEN_CAPTURED: u32 = 8;
/// BIND `len` as sent by the original client (DH-P2P §6.4).
pub const BIND_LEN_ORIGINAL: u32 = 0;

/// Sub-header type codes (DH-P2P §6.4).
pub mod body_type {
    pub const DATA: u8 = 0x10;
    pub const BIND: u8 = 0x11;
    pub const STATUS: u8 = 0x12;
    pub const HEARTBEAT: u8 = 0x13;
    pub const SIGN_REQUEST: u8 = 0x17;
    pub const SIGN: u8 = 0x18;
    pub const AUTH: u8 = 0x19;
    pub const AUTH_REPLY: u8 = 0x1A;
    pub const AUTH_CONFIRM: u8 = 0x1B;
}

/// Why a datagram is not a PTCP packet this codec can represent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PtcpError {
    #[error("PTCP header truncated: {have} bytes, need 24 (offset 0)")]
    HeaderTruncated { have: usize },
    #[error("bad PTCP magic at offset 0: {found:02x?}, expected \"PTCP\"")]
    BadMagic { found: [u8; 4] },
    #[error(
        "PTCP body at offset 24 is {have} bytes: neither the 4-byte SYN nor a 12-byte sub-header"
    )]
    SubHeaderTruncated { have: usize },
    #[error("DATA len field at offset 25 says {declared} bytes but {have} bytes follow the sub-header (offset 36)")]
    DataLengthMismatch { declared: u32, have: usize },
}

/// The 24-byte header. All fields are big-endian u32 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Header {
    /// Body bytes this sender sent before this packet (wrapping).
    pub sent: u32,
    /// Body bytes this sender has received in order (cumulative ACK, wrapping).
    pub recv: u32,
    /// `0x0002FFFF` on SYN; otherwise a receive window (FIELD-NOTES C1).
    pub pid: u32,
    /// The sender's millisecond clock (FIELD-NOTES C2).
    pub lmid: u32,
    /// The last `lmid` the sender received from its peer; 0 = none yet.
    pub rmid: u32,
}

impl Header {
    /// Reads the header of a PTCP datagram (checks length and magic only).
    pub fn decode(bytes: &[u8]) -> Result<Header, PtcpError> {
        let head: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(PtcpError::HeaderTruncated { have: bytes.len() })?;
        if head[field::MAGIC] != MAGIC {
            return Err(PtcpError::BadMagic {
                found: [head[0], head[1], head[2], head[3]],
            });
        }
        Ok(Header {
            sent: be32(head, field::SENT.start),
            recv: be32(head, field::RECV.start),
            pid: be32(head, field::PID.start),
            lmid: be32(head, field::LMID.start),
            rmid: be32(head, field::RMID.start),
        })
    }

    /// Appends the 24 header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut head = [0u8; HEADER_LEN];
        head[field::MAGIC].copy_from_slice(&MAGIC);
        for (range, v) in [
            (field::SENT, self.sent),
            (field::RECV, self.recv),
            (field::PID, self.pid),
            (field::LMID, self.lmid),
            (field::RMID, self.rmid),
        ] {
            head[range].copy_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&head);
    }
}

/// The 12-byte sub-header: type and `len` in one word, the realm, then
/// the padding word (zero).
fn subheader(t: u8, len: u32, realm: u32) -> [u8; SUBHEADER_LEN] {
    debug_assert!(len <= MAX_LEN_FIELD, "PTCP len field overflow");
    let mut sub = [0u8; SUBHEADER_LEN];
    sub[field::body::TYPE_LEN]
        .copy_from_slice(&((u32::from(t) << 24) | (len & MAX_LEN_FIELD)).to_be_bytes());
    sub[field::body::REALM].copy_from_slice(&realm.to_be_bytes());
    sub
}

/// A realm's STATUS word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `CONN`: the device connected the realm's TCP target.
    Conn,
    /// `DISC`: the realm is closed (either side may send it).
    Disc,
}

impl Status {
    pub fn as_bytes(self) -> &'static [u8; 4] {
        match self {
            Status::Conn => b"CONN",
            Status::Disc => b"DISC",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Status::Conn => "CONN",
            Status::Disc => "DISC",
        }
    }
}

/// A PTCP body, borrowing its variable parts from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body<'a> {
    /// No body: a pure acknowledgement.
    Empty,
    /// `00 03 01 00`: opens a session; the peer answers with the same.
    Syn,
    /// 0x10: realm stream bytes. `len` is the payload length.
    Data { realm: u32, payload: &'a [u8] },
    /// 0x11: open `realm` to `ip:port` as seen from the device.
    /// `len_field` is 8 in captures and 0 in the original client.
    Bind {
        realm: u32,
        port: u32,
        ip: Ipv4Addr,
        len_field: u32,
    },
    /// 0x12: CONN/DISC for a realm. `trailer` holds any bytes after the
    /// 4-byte word (some firmware appends a NUL, FIELD-NOTES §4.1).
    Status {
        realm: u32,
        status: Status,
        trailer: &'a [u8],
    },
    /// 0x13: keep-alive; the peer ACKs it.
    Heartbeat,
    /// 0x17: client asks the agent for a sign.
    SignRequest,
    /// 0x18 (assumed): the agent's sign (opaque bytes).
    Sign { sign: &'a [u8] },
    /// 0x19: client presents the sign to the device.
    Auth { sign: &'a [u8] },
    /// 0x1A: the device's answer to 0x19 (content unknown, kept).
    AuthReply { data: &'a [u8] },
    /// 0x1B: client confirms; the device answers with an empty ACK.
    AuthConfirm,
    /// Any other body, or a known type with non-canonical fixed fields.
    /// `body_type` is the first byte; `bytes` is the whole body.
    Unknown { body_type: u8, bytes: &'a [u8] },
}

impl<'a> Body<'a> {
    /// Decodes a body (everything after the 24-byte header).
    pub fn decode(body: &'a [u8]) -> Result<Body<'a>, PtcpError> {
        if body.is_empty() {
            return Ok(Body::Empty);
        }
        if body == SYN_BODY {
            return Ok(Body::Syn);
        }
        let sub: &[u8; SUBHEADER_LEN] =
            body.get(..SUBHEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(PtcpError::SubHeaderTruncated { have: body.len() })?;
        let body_type = sub[field::body::TYPE.start];
        let len = be32(sub, field::body::TYPE_LEN.start) & MAX_LEN_FIELD;
        let realm = be32(sub, field::body::REALM.start);
        let pad = be32(sub, field::body::PADDING.start);
        let data = &body[field::body::DATA..];
        let unknown = Body::Unknown {
            body_type,
            bytes: body,
        };
        // Session-level messages: everything but the type is zero.
        let bare = len == 0 && realm == 0 && pad == 0;
        let parsed = match body_type {
            body_type::DATA => {
                if pad != 0 {
                    // Both reference parsers reject this; keep it verbatim.
                    return Ok(unknown);
                }
                if len as usize != data.len() {
                    return Err(PtcpError::DataLengthMismatch {
                        declared: len,
                        have: data.len(),
                    });
                }
                Body::Data {
                    realm,
                    payload: data,
                }
            }
            body_type::BIND
                if data.len() == 8
                    && pad == 0
                    && (len == BIND_LEN_CAPTURED || len == BIND_LEN_ORIGINAL) =>
            {
                Body::Bind {
                    realm,
                    port: be32(body, field::body::BIND_PORT.start),
                    ip: ipv4_at(body, field::body::BIND_IP.start),
                    len_field: len,
                }
            }
            body_type::STATUS if len == 0 && pad == 0 && data.len() >= 4 => {
                let status = match &body[field::body::STATUS_WORD] {
                    b"CONN" => Status::Conn,
                    b"DISC" => Status::Disc,
                    _ => return Ok(unknown),
                };
                Body::Status {
                    realm,
                    status,
                    trailer: &body[field::body::STATUS_TRAILER..],
                }
            }
            body_type::HEARTBEAT if bare && data.is_empty() => Body::Heartbeat,
            body_type::SIGN_REQUEST if bare && data.is_empty() => Body::SignRequest,
            body_type::SIGN if bare => Body::Sign { sign: data },
            body_type::AUTH if bare => Body::Auth { sign: data },
            body_type::AUTH_REPLY if bare => Body::AuthReply { data },
            body_type::AUTH_CONFIRM if bare && data.is_empty() => Body::AuthConfirm,
            _ => unknown,
        };
        Ok(parsed)
    }

    /// Number of bytes [`Body::encode`] writes; this is what the `sent` and
    /// `recv` counters advance by.
    pub fn encoded_len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Syn => SYN_BODY.len(),
            Body::Data { payload, .. } => SUBHEADER_LEN + payload.len(),
            Body::Bind { .. } => SUBHEADER_LEN + 8,
            Body::Status { trailer, .. } => SUBHEADER_LEN + 4 + trailer.len(),
            Body::Heartbeat | Body::SignRequest | Body::AuthConfirm => SUBHEADER_LEN,
            Body::Sign { sign } | Body::Auth { sign } => SUBHEADER_LEN + sign.len(),
            Body::AuthReply { data } => SUBHEADER_LEN + data.len(),
            Body::Unknown { bytes, .. } => bytes.len(),
        }
    }

    /// Appends the body bytes to `out`.
    ///
    /// A DATA payload must be shorter than 2^24 bytes, which every UDP
    /// datagram is.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let sub = |out: &mut Vec<u8>, t: u8, len: u32, realm: u32| {
            out.extend_from_slice(&subheader(t, len, realm));
        };
        match *self {
            Body::Empty => {}
            Body::Syn => out.extend_from_slice(&SYN_BODY),
            Body::Data { realm, payload } => {
                let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                sub(out, body_type::DATA, len, realm);
                out.extend_from_slice(payload);
            }
            Body::Bind {
                realm,
                port,
                ip,
                len_field,
            } => {
                sub(out, body_type::BIND, len_field, realm);
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
            Body::Status {
                realm,
                status,
                trailer,
            } => {
                sub(out, body_type::STATUS, 0, realm);
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(trailer);
            }
            Body::Heartbeat => sub(out, body_type::HEARTBEAT, 0, 0),
            Body::SignRequest => sub(out, body_type::SIGN_REQUEST, 0, 0),
            Body::Sign { sign } => {
                sub(out, body_type::SIGN, 0, 0);
                out.extend_from_slice(sign);
            }
            Body::Auth { sign } => {
                sub(out, body_type::AUTH, 0, 0);
                out.extend_from_slice(sign);
            }
            Body::AuthReply { data } => {
                sub(out, body_type::AUTH_REPLY, 0, 0);
                out.extend_from_slice(data);
            }
            Body::AuthConfirm => sub(out, body_type::AUTH_CONFIRM, 0, 0),
            Body::Unknown { bytes, .. } => out.extend_from_slice(bytes),
        }
    }

    /// The sub-header of a DATA body of `len` payload bytes: with the
    /// payload after it, the same bytes [`Body::encode`] writes for
    /// [`Body::Data`] (for senders that keep the payload where it is).
    pub fn data_head(realm: u32, len: usize) -> [u8; SUBHEADER_LEN] {
        subheader(
            body_type::DATA,
            u32::try_from(len).unwrap_or(u32::MAX),
            realm,
        )
    }

    /// A BIND to `ip:port` in the captured form (`len` = 8).
    pub fn bind(realm: u32, port: u16, ip: Ipv4Addr) -> Body<'static> {
        Body::Bind {
            realm,
            port: u32::from(port),
            ip,
            len_field: BIND_LEN_CAPTURED,
        }
    }

    /// A CONN or DISC for `realm` with nothing after the word.
    pub fn status(realm: u32, status: Status) -> Body<'static> {
        Body::Status {
            realm,
            status,
            trailer: &[],
        }
    }

    /// The sub-header type byte; `None` for empty and SYN bodies.
    pub fn body_type(&self) -> Option<u8> {
        Some(match self {
            Body::Empty | Body::Syn => return None,
            Body::Data { .. } => body_type::DATA,
            Body::Bind { .. } => body_type::BIND,
            Body::Status { .. } => body_type::STATUS,
            Body::Heartbeat => body_type::HEARTBEAT,
            Body::SignRequest => body_type::SIGN_REQUEST,
            Body::Sign { .. } => body_type::SIGN,
            Body::Auth { .. } => body_type::AUTH,
            Body::AuthReply { .. } => body_type::AUTH_REPLY,
            Body::AuthConfirm => body_type::AUTH_CONFIRM,
            Body::Unknown { body_type, .. } => *body_type,
        })
    }

    /// The realm a body belongs to, for the types that name one.
    pub fn realm(&self) -> Option<u32> {
        match self {
            Body::Data { realm, .. } | Body::Bind { realm, .. } | Body::Status { realm, .. } => {
                Some(*realm)
            }
            Body::Unknown { bytes, .. } => bytes.get(field::body::REALM).map(|r| be32(r, 0)),
            _ => None,
        }
    }

    /// Bytes after the 12-byte sub-header (the sign, a payload…), the way
    /// the reference clients read a command's data.
    pub fn command_data(&self) -> &'a [u8] {
        match *self {
            Body::Data { payload, .. } => payload,
            Body::Sign { sign } | Body::Auth { sign } => sign,
            Body::AuthReply { data } => data,
            Body::Unknown { bytes, .. } => bytes.get(SUBHEADER_LEN..).unwrap_or(&[]),
            _ => &[],
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Body::Empty)
    }

    /// A short name for summaries: `ACK`, `SYN`, `DATA`, `BIND`…
    pub fn name(&self) -> &'static str {
        match self {
            Body::Empty => "ACK",
            Body::Syn => "SYN",
            Body::Data { .. } => "DATA",
            Body::Bind { .. } => "BIND",
            Body::Status { .. } => "STATUS",
            Body::Heartbeat => "HEARTBEAT",
            Body::SignRequest => "SIGN-REQUEST",
            Body::Sign { .. } => "SIGN",
            Body::Auth { .. } => "AUTH",
            Body::AuthReply { .. } => "AUTH-REPLY",
            Body::AuthConfirm => "AUTH-CONFIRM",
            Body::Unknown { .. } => "UNKNOWN",
        }
    }
}

/// One PTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet<'a> {
    pub header: Header,
    pub body: Body<'a>,
}

impl<'a> Packet<'a> {
    /// Decodes a whole datagram.
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, PtcpError> {
        let header = Header::decode(datagram)?;
        let body = Body::decode(&datagram[HEADER_LEN..])?;
        Ok(Packet { header, body })
    }

    /// Appends the datagram to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + self.body.encoded_len());
        self.header.encode(out);
        self.body.encode(out);
    }

    /// The datagram as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Length of the whole datagram.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.encoded_len()
    }
}

/// True when `bytes` starts with the PTCP magic (the classifier's test).
pub fn looks_like_ptcp(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

impl fmt::Display for Packet<'_> {
    /// A one-line summary in the style of a tshark Info column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        write!(
            f,
            "sent={} recv={} pid=0x{:08x} lmid={} rmid={} {}",
            h.sent,
            h.recv,
            h.pid,
            h.lmid,
            h.rmid,
            self.body.name()
        )?;
        match self.body {
            Body::Data { realm, payload } => {
                write!(f, " realm=0x{realm:08x} len={}", payload.len())
            }
            Body::Bind {
                realm, port, ip, ..
            } => write!(f, " realm=0x{realm:08x} {ip}:{port}"),
            Body::Status { realm, status, .. } => {
                write!(f, " realm=0x{realm:08x} {}", status.name())
            }
            Body::Sign { sign } | Body::Auth { sign } => write!(f, " sign_len={}", sign.len()),
            Body::Unknown { body_type, bytes } => {
                write!(f, " type=0x{body_type:02x} body_len={}", bytes.len())
            }
            _ => Ok(()),
        }
    }
}

/// The IPv4 address at `at` (0.0.0.0 if cut short; callers have checked).
fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(be32(bytes, at))
}

/// Big-endian u32 at `at`; callers have checked `at + 4 <= bytes.len()`.
fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}
