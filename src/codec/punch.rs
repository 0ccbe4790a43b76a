//! Hole-punch messages: RFC 5389 STUN with every byte inverted (XOR 0xFF).
//!
//! The client and the device exchange Binding Requests and Binding Success
//! Responses whose bytes are all bit-inverted (DH-P2P.md §5, FIELD-NOTES.md §5).
//! [`decode`] undoes the inversion and parses the STUN header and attributes;
//! [`PunchMessage::encode`] is its exact inverse. All fields of
//! [`PunchMessage`] are in *STUN space*, i.e. after the inversion: the magic
//! cookie reads `21 12 a4 42` and an ICE attribute holds the `Identify` bytes
//! as they appear in the cloud's `<Identify>` element.
//!
//! Odd forms seen in the reference code are kept byte for byte:
//! - the [py] success response whose address bytes were not inverted on the
//!   wire ([`AddressValue`] keeps the raw bytes and offers both readings);
//! - the [py] 12-byte "confirm" that declares a length of 12 but carries more
//!   attribute bytes after it ([`PunchMessage::trailing`]);
//! - random (non-magic) cookies.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The RFC 5389 magic cookie, as it reads after undoing the inversion.
pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Size of the STUN header: type, length, cookie, transaction id.
pub const HEADER_LEN: usize = field::TRANSACTION_ID.end;

/// Where each field sits: the one layout the decoder reads, the encoder
/// writes and `describe` highlights (smoltcp's `mod field`).
pub mod field {
    use std::ops::Range;

    /// A field's byte range.
    pub type Field = Range<usize>;

    /// Header fields, offsets in the datagram.
    pub const TYPE: Field = 0..2;
    pub const LENGTH: Field = 2..4;
    pub const COOKIE: Field = 4..8;
    pub const TRANSACTION_ID: Field = 8..20;

    /// Attribute fields, offsets from the attribute's start.
    pub mod attribute {
        use super::Field;

        pub const TYPE: Field = 0..2;
        pub const LENGTH: Field = 2..4;
        /// Where the value starts.
        pub const VALUE: usize = LENGTH.end;
    }

    /// ICE-CONTROLLING/ICE-CONTROLLED value: the sender's 8-byte Identify,
    /// offsets from the value's start.
    pub const IDENTIFY: Field = 0..8;

    /// SOURCE-ADDRESS value fields, offsets from the value's start.
    pub mod address {
        use super::Field;

        pub const RESERVED: Field = 0..1;
        pub const FAMILY: Field = 1..2;
        pub const PORT: Field = 2..4;
        pub const IP: Field = 4..8;
        /// Port and IPv4 together: the bytes the [py] client wrote plain.
        pub const PORT_IP: Field = PORT.start..IP.end;
    }

    /// `range` moved to start at offset `base`.
    pub const fn at(base: usize, range: Field) -> Field {
        base + range.start..base + range.end
    }
}
/// Upper bound on attributes per message; a datagram bounds them anyway, this
/// keeps a hostile 64 KiB datagram of empty attributes from costing much.
pub const MAX_ATTRIBUTES: usize = 64;

/// Attribute type 0x0004, classic SOURCE-ADDRESS (RFC 3489), used for the
/// target/local address.
pub const ATTR_SOURCE_ADDRESS: u16 = 0x0004;
/// Attribute type 0x8029 ICE-CONTROLLED: carries the sender's `Identify`.
pub const ATTR_ICE_CONTROLLED: u16 = 0x8029;
/// Attribute type 0x802A ICE-CONTROLLING: carries the sender's `Identify`.
pub const ATTR_ICE_CONTROLLING: u16 = 0x802A;

/// The 8 random bytes a client picks per run, sent as `<Identify>` to the
/// cloud and inside the ICE attributes here.
pub type Identify = [u8; 8];
/// STUN cookie field (4 bytes, STUN space). Devices accept random ones.
pub type Cookie = [u8; 4];
/// STUN transaction id (12 bytes, STUN space).
pub type TransactionId = [u8; 12];

/// Why a datagram is not a punch message. Offsets count from the start of the
/// datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PunchError {
    #[error("punch header truncated: {len} bytes, the STUN header needs 20")]
    HeaderTruncated { len: usize },
    #[error(
        "message length (offset 2) declares {declared} bytes of attributes, \
         but only {available} bytes follow the header at offset 20"
    )]
    LengthTruncated { declared: u16, available: usize },
    #[error(
        "attribute header at offset {offset} truncated: {remaining} bytes left \
         inside the declared message length, 4 needed"
    )]
    AttributeHeaderTruncated { offset: usize, remaining: usize },
    #[error(
        "attribute 0x{attr_type:04x} at offset {offset}: value length {length} \
         exceeds the {remaining} bytes left inside the declared message length"
    )]
    AttributeValueTruncated {
        offset: usize,
        attr_type: u16,
        length: u16,
        remaining: usize,
    },
    #[error("more than {limit} attributes (attribute at offset {offset})")]
    TooManyAttributes { offset: usize, limit: usize },
}

/// STUN message type (the u16 at offset 0, STUN space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 0x0001, sent by the client to the device and by the device itself.
    BindingRequest,
    /// 0x0101, the answer to a Binding Request and the "confirm".
    BindingSuccess,
    /// 0x0111, never seen from Dahua devices, named for the decoder.
    BindingError,
    /// Anything else, kept as its number. Never holds one of the values above
    /// when produced by [`MessageType::from_u16`].
    Other(u16),
}

impl MessageType {
    pub fn from_u16(value: u16) -> Self {
        match value {
            0x0001 => Self::BindingRequest,
            0x0101 => Self::BindingSuccess,
            0x0111 => Self::BindingError,
            other => Self::Other(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        match self {
            Self::BindingRequest => 0x0001,
            Self::BindingSuccess => 0x0101,
            Self::BindingError => 0x0111,
            Self::Other(value) => value,
        }
    }

    /// RFC 5389/5766 name of the type, for decoders; "unknown" otherwise.
    pub fn name(self) -> &'static str {
        match self.to_u16() {
            0x0001 => "Binding Request",
            0x0101 => "Binding Success Response",
            0x0111 => "Binding Error Response",
            0x0011 => "Binding Indication",
            0x0003 => "Allocate Request",
            0x0103 => "Allocate Success Response",
            0x0113 => "Allocate Error Response",
            0x0004 => "Refresh Request",
            0x0104 => "Refresh Success Response",
            0x0016 => "Send Indication",
            0x0017 => "Data Indication",
            _ => "unknown",
        }
    }
}

/// RFC 5389/8445 name of an attribute type, for decoders; "unknown" otherwise.
pub fn attribute_name(attr_type: u16) -> &'static str {
    match attr_type {
        0x0001 => "MAPPED-ADDRESS",
        0x0004 => "SOURCE-ADDRESS",
        0x0005 => "CHANGED-ADDRESS",
        0x0006 => "USERNAME",
        0x0008 => "MESSAGE-INTEGRITY",
        0x0009 => "ERROR-CODE",
        0x000A => "UNKNOWN-ATTRIBUTES",
        0x0014 => "REALM",
        0x0015 => "NONCE",
        0x0020 => "XOR-MAPPED-ADDRESS",
        0x0024 => "PRIORITY",
        0x0025 => "USE-CANDIDATE",
        0x8022 => "SOFTWARE",
        0x8023 => "ALTERNATE-SERVER",
        0x8028 => "FINGERPRINT",
        ATTR_ICE_CONTROLLED => "ICE-CONTROLLED",
        ATTR_ICE_CONTROLLING => "ICE-CONTROLLING",
        _ => "unknown",
    }
}

/// How the port and IPv4 bytes of a SOURCE-ADDRESS value go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrForm {
    /// Inverted like the rest of the message: the official client's capture
    /// and the [rs] reference. The default.
    Inverted,
    /// Written plain while the rest is inverted: the [py] reference's bug,
    /// which devices tolerate (DH-P2P §5.1, §11.6).
    Plain,
}

/// The 8-byte SOURCE-ADDRESS value, kept raw (STUN space) so both wire forms
/// round-trip: `reserved, family, port (2), IPv4 (4)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressValue {
    pub raw: [u8; 8],
}

impl AddressValue {
    /// Family 0x01 (IPv4) with `addr` written in `form`.
    pub fn new(addr: SocketAddrV4, form: AddrForm) -> Self {
        let mut raw = [0u8; 8];
        raw[field::address::FAMILY.start] = 0x01;
        raw[field::address::PORT].copy_from_slice(&addr.port().to_be_bytes());
        raw[field::address::IP].copy_from_slice(&addr.ip().octets());
        if form == AddrForm::Plain {
            // Plain on the wire means inverted once more in STUN space.
            for byte in &mut raw[field::address::PORT_IP] {
                *byte = !*byte;
            }
        }
        Self { raw }
    }

    pub fn reserved(&self) -> u8 {
        self.raw[field::address::RESERVED.start]
    }

    /// Address family: 0x01 means IPv4. Other values are kept, not checked.
    pub fn family(&self) -> u8 {
        self.raw[field::address::FAMILY.start]
    }

    /// The normal reading: port and IPv4 were inverted on the wire like every
    /// other byte (capture, [rs]).
    pub fn addr_inverted(&self) -> SocketAddrV4 {
        let [_, _, p0, p1, a, b, c, d] = self.raw;
        SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p0, p1]))
    }

    /// The [py] reading: port and IPv4 were written plain on the wire.
    pub fn addr_plain(&self) -> SocketAddrV4 {
        let [_, _, p0, p1, a, b, c, d] = self.raw.map(|byte| !byte);
        SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p0, p1]))
    }

    /// The address read in `form`.
    pub fn addr(&self, form: AddrForm) -> SocketAddrV4 {
        match form {
            AddrForm::Inverted => self.addr_inverted(),
            AddrForm::Plain => self.addr_plain(),
        }
    }
}

/// One STUN attribute. Typed variants are used only for the exact shapes the
/// protocol uses (type and length 8); anything else stays [`Attribute::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// 0x0004 with length 8: the target (request) or local (response) address.
    SourceAddress(AddressValue),
    /// 0x802A with length 8: the sender's `Identify` (the client's request).
    IceControlling(Identify),
    /// 0x8029 with length 8: the sender's `Identify` (success and confirm).
    IceControlled(Identify),
    /// Any other attribute, raw. `padding` holds the bytes after the value up
    /// to the next 4-byte boundary (0 to 3 of them; fewer only when the
    /// declared message length ends inside the padding).
    Other {
        attr_type: u16,
        value: Vec<u8>,
        padding: Vec<u8>,
    },
}

impl Attribute {
    pub fn attr_type(&self) -> u16 {
        match self {
            Self::SourceAddress(_) => ATTR_SOURCE_ADDRESS,
            Self::IceControlling(_) => ATTR_ICE_CONTROLLING,
            Self::IceControlled(_) => ATTR_ICE_CONTROLLED,
            Self::Other { attr_type, .. } => *attr_type,
        }
    }

    /// Builds an unknown attribute with zero padding (0xFF on the wire).
    pub fn other(attr_type: u16, value: Vec<u8>) -> Self {
        let padding = vec![0; padding_len(value.len())];
        Self::Other {
            attr_type,
            value,
            padding,
        }
    }

    /// Bytes this attribute takes in STUN space: header, value, padding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::SourceAddress(_) | Self::IceControlling(_) | Self::IceControlled(_) => 12,
            Self::Other { value, padding, .. } => 4 + value.len() + padding.len(),
        }
    }

    /// Appends the STUN-space bytes (not yet inverted) to `out`.
    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.attr_type().to_be_bytes());
        match self {
            Self::SourceAddress(address) => {
                out.extend_from_slice(&8u16.to_be_bytes());
                out.extend_from_slice(&address.raw);
            }
            Self::IceControlling(identify) | Self::IceControlled(identify) => {
                out.extend_from_slice(&8u16.to_be_bytes());
                out.extend_from_slice(identify);
            }
            Self::Other { value, padding, .. } => {
                // A value longer than u16::MAX cannot come from `decode`; the
                // length saturates rather than panicking.
                let length = u16::try_from(value.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(value);
                out.extend_from_slice(padding);
            }
        }
    }
}

/// Bytes of padding STUN puts after a value of `len` bytes.
fn padding_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// One decoded hole-punch datagram (STUN space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchMessage {
    pub message_type: MessageType,
    pub cookie: Cookie,
    pub transaction_id: TransactionId,
    /// Attributes inside the declared message length, in wire order.
    pub attributes: Vec<Attribute>,
    /// STUN-space bytes after the declared message length. Empty for well
    /// formed messages; the [py] confirm carries an address attribute here.
    pub trailing: Vec<u8>,
}

/// Whether a UDP payload is worth decoding as a punch message: first byte
/// 0xFF or 0xFE (an inverted type < 0x0200) and at least a STUN header
/// (DH-P2P §8 item 3). False positives are possible; [`decode`] decides.
pub fn looks_like_punch(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && matches!(bytes.first(), Some(0xFF | 0xFE))
}

/// Decodes an inverted-STUN datagram.
///
/// Attributes are parsed inside the declared length; bytes after it are kept
/// in [`PunchMessage::trailing`]. A declared length larger than the bytes
/// present is an error.
pub fn decode(bytes: &[u8]) -> Result<PunchMessage, PunchError> {
    let plain: Vec<u8> = bytes.iter().map(|byte| !byte).collect();
    let (header, rest) = match plain.split_first_chunk::<HEADER_LEN>() {
        Some(split) => split,
        None => return Err(PunchError::HeaderTruncated { len: plain.len() }),
    };
    let [t0, t1, l0, l1, c0, c1, c2, c3, id @ ..] = *header;
    let declared = u16::from_be_bytes([l0, l1]);
    let body_len = usize::from(declared);
    if body_len > rest.len() {
        return Err(PunchError::LengthTruncated {
            declared,
            available: rest.len(),
        });
    }
    let (body, trailing) = rest.split_at(body_len);
    Ok(PunchMessage {
        message_type: MessageType::from_u16(u16::from_be_bytes([t0, t1])),
        cookie: [c0, c1, c2, c3],
        transaction_id: id,
        attributes: parse_attributes(body, HEADER_LEN)?,
        trailing: trailing.to_vec(),
    })
}

/// Parses STUN-space attributes filling `body`, which starts at datagram
/// offset `base` (used only for error offsets).
pub fn parse_attributes(body: &[u8], base: usize) -> Result<Vec<Attribute>, PunchError> {
    let mut attributes = Vec::new();
    let mut rest = body;
    let mut offset = base;
    while !rest.is_empty() {
        if attributes.len() >= MAX_ATTRIBUTES {
            return Err(PunchError::TooManyAttributes {
                offset,
                limit: MAX_ATTRIBUTES,
            });
        }
        let Some((&[a0, a1, l0, l1], after_header)) = rest.split_first_chunk::<4>() else {
            return Err(PunchError::AttributeHeaderTruncated {
                offset,
                remaining: rest.len(),
            });
        };
        let attr_type = u16::from_be_bytes([a0, a1]);
        let length = u16::from_be_bytes([l0, l1]);
        let value_len = usize::from(length);
        if value_len > after_header.len() {
            return Err(PunchError::AttributeValueTruncated {
                offset,
                attr_type,
                length,
                remaining: after_header.len(),
            });
        }
        let (value, after_value) = after_header.split_at(value_len);
        // Padding that the declared length cuts short is kept as far as it goes.
        let pad = padding_len(value_len).min(after_value.len());
        let (padding, after_padding) = after_value.split_at(pad);
        attributes.push(typed_attribute(attr_type, value, padding));
        offset = offset.saturating_add(4 + value_len + pad);
        rest = after_padding;
    }
    Ok(attributes)
}

fn typed_attribute(attr_type: u16, value: &[u8], padding: &[u8]) -> Attribute {
    match (attr_type, <[u8; 8]>::try_from(value)) {
        (ATTR_SOURCE_ADDRESS, Ok(raw)) => Attribute::SourceAddress(AddressValue { raw }),
        (ATTR_ICE_CONTROLLING, Ok(identify)) => Attribute::IceControlling(identify),
        (ATTR_ICE_CONTROLLED, Ok(identify)) => Attribute::IceControlled(identify),
        _ => Attribute::Other {
            attr_type,
            value: value.to_vec(),
            padding: padding.to_vec(),
        },
    }
}

impl PunchMessage {
    /// A message with no attributes and no trailing bytes.
    pub fn new(message_type: MessageType, cookie: Cookie, transaction_id: TransactionId) -> Self {
        Self {
            message_type,
            cookie,
            transaction_id,
            attributes: Vec::new(),
            trailing: Vec::new(),
        }
    }

    /// The message length field this message encodes with: the attribute
    /// bytes, not counting `trailing`. Saturates for oversized hand-built
    /// messages (never for decoded ones).
    pub fn declared_length(&self) -> u16 {
        let total: usize = self.attributes.iter().map(Attribute::encoded_len).sum();
        u16::try_from(total).unwrap_or(u16::MAX)
    }

    pub fn has_magic_cookie(&self) -> bool {
        self.cookie == MAGIC_COOKIE
    }

    /// The first ICE-CONTROLLING or ICE-CONTROLLED value: the sender's Identify.
    pub fn identify(&self) -> Option<Identify> {
        self.attributes
            .iter()
            .find_map(|attribute| match attribute {
                Attribute::IceControlling(identify) | Attribute::IceControlled(identify) => {
                    Some(*identify)
                }
                _ => None,
            })
    }

    /// The first SOURCE-ADDRESS value inside the declared length.
    pub fn address(&self) -> Option<AddressValue> {
        self.attributes
            .iter()
            .find_map(|attribute| match attribute {
                Attribute::SourceAddress(address) => Some(*address),
                _ => None,
            })
    }

    /// The trailing bytes read as attributes (how the [py] confirm's stray
    /// address shows up in a decoder). Offsets in errors are datagram offsets.
    pub fn trailing_attributes(&self) -> Result<Vec<Attribute>, PunchError> {
        parse_attributes(
            &self.trailing,
            HEADER_LEN + usize::from(self.declared_length()),
        )
    }

    /// The wire bytes: STUN serialisation, then every byte inverted. Exact
    /// inverse of [`decode`].
    pub fn encode(&self) -> Vec<u8> {
        let attributes_len: usize = self.attributes.iter().map(Attribute::encoded_len).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + attributes_len + self.trailing.len());
        out.extend_from_slice(&self.message_type.to_u16().to_be_bytes());
        out.extend_from_slice(&self.declared_length().to_be_bytes());
        out.extend_from_slice(&self.cookie);
        out.extend_from_slice(&self.transaction_id);
        for attribute in &self.attributes {
            attribute.emit(&mut out);
        }
        out.extend_from_slice(&self.trailing);
        for byte in &mut out {
            *byte = !*byte;
        }
        out
    }
}

/// The client's Binding Request to a device candidate: ICE-CONTROLLING with
/// our Identify, then SOURCE-ADDRESS = the address the packet is aimed at.
pub fn binding_request(
    cookie: Cookie,
    transaction_id: TransactionId,
    identify: Identify,
    target: SocketAddrV4,
) -> PunchMessage {
    let mut message = PunchMessage::new(MessageType::BindingRequest, cookie, transaction_id);
    message.attributes = vec![
        Attribute::IceControlling(identify),
        Attribute::SourceAddress(AddressValue::new(target, AddrForm::Inverted)),
    ];
    message
}

/// A Binding Success Response: ICE-CONTROLLED with our Identify, then
/// SOURCE-ADDRESS `addr` in the given wire form.
pub fn binding_success(
    cookie: Cookie,
    transaction_id: TransactionId,
    identify: Identify,
    addr: SocketAddrV4,
    form: AddrForm,
) -> PunchMessage {
    let mut message = PunchMessage::new(MessageType::BindingSuccess, cookie, transaction_id);
    message.attributes = vec![
        Attribute::IceControlled(identify),
        Attribute::SourceAddress(AddressValue::new(addr, form)),
    ];
    message
}

/// The 12-byte confirm (`fe fe ff f3`): a Binding Success with ICE-CONTROLLED
/// only (BJ and MF form, FIELD-NOTES §5.2). The [py] form appends an address
/// after the declared length; set [`PunchMessage::trailing`] for that.
pub fn confirm(cookie: Cookie, transaction_id: TransactionId, identify: Identify) -> PunchMessage {
    let mut message = PunchMessage::new(MessageType::BindingSuccess, cookie, transaction_id);
    message.attributes = vec![Attribute::IceControlled(identify)];
    message
}

/// Our Binding Success answer to a device's own Binding Request: its cookie
/// and transaction id, our Identify, `addr` inverted (FIELD-NOTES §5.2).
pub fn reply_to(
    request: &PunchMessage,
    our_identify: Identify,
    addr: SocketAddrV4,
) -> PunchMessage {
    binding_success(
        request.cookie,
        request.transaction_id,
        our_identify,
        addr,
        AddrForm::Inverted,
    )
}
