//! `dhp2p redact`: a capture that can be posted publicly and still shows
//! the problem.
//!
//! This is the library half: UDP records in, redacted UDP records out, no
//! files, no clock, no randomness (the key is a parameter). It runs in two
//! passes over the same records, because a realm stream must be seen whole
//! before its fragments can be edited and every address must be known
//! before stand-ins are handed out:
//!
//! 1. [`Redactor::observe`] each record, then [`Redactor::finish_observing`];
//! 2. [`Redactor::rewrite`] each record again, in the same order.
//!
//! Every payload length stays the same except where a dotted address in a
//! cloud message gets a stand-in of another length (its Content-Length is
//! fixed then). What is replaced, and how, is in docs/DECODE.md ("redact").

mod cloud;
pub mod names;
pub mod rtsp;
mod stream;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use crate::codec::classify::{classify, Datagram};
use crate::codec::ptcp::{field as ptcp_field, Body, Packet};
use crate::codec::punch::{field as punch_field, AddrForm, AddressValue, Attribute, PunchMessage};
use crate::decode::record::Record;

use names::Names;
use stream::Streams;

/// Where a DATA, SIGN or AUTH payload starts: PTCP header and sub-header.
const PTCP_PAYLOAD_AT: usize = ptcp_field::at_in_datagram(ptcp_field::body::DATA);

/// Why a capture cannot be redacted.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// Something in a datagram cannot be redacted without risk of leaking.
    #[error("{0}")]
    Unsafe(String),
    /// The same, with the frame it is in.
    #[error("frame {frame}: {reason}; refusing to write a capture that may leak it")]
    Frame { frame: u64, reason: String },
    #[error("more distinct addresses than the documentation ranges hold (3 × 254 IPv4 addresses)")]
    TooManyAddresses,
}

/// How many of each kind of value were replaced, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl Counts {
    pub fn add(&mut self, kind: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(kind).or_default() += n;
        }
    }
}

/// The two-pass redactor.
pub struct Redactor {
    names: Names,
    streams: Streams,
    drop_media: bool,
    observing: bool,
    counts: Counts,
    /// Counted while observing and thrown away (the real counts come from
    /// the rewrite pass).
    scratch: Counts,
}

impl Redactor {
    /// `key` decides every pseudonym; the same key gives the same ones.
    pub fn new(key: [u8; 32], drop_media: bool) -> Redactor {
        Redactor {
            names: Names::new(key),
            streams: Streams::default(),
            drop_media,
            observing: true,
            counts: Counts::default(),
            scratch: Counts::default(),
        }
    }

    /// Pass 1: learns addresses, secrets and realm streams.
    pub fn observe(&mut self, record: &Record) -> Result<(), RedactError> {
        self.process(record).map(|_| ())
    }

    /// Ends pass 1: scans realm streams and hands out address stand-ins.
    pub fn finish_observing(&mut self) -> Result<(), RedactError> {
        self.observing = false;
        self.streams
            .finish(&mut self.names, self.drop_media, &mut self.counts)
    }

    /// Pass 2: the redacted record.
    pub fn rewrite(&mut self, record: &Record) -> Result<Record, RedactError> {
        debug_assert!(!self.observing, "rewrite before finish_observing");
        self.process(record)
    }

    /// What was replaced, by kind (complete after the rewrite pass).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    fn process(&mut self, record: &Record) -> Result<Record, RedactError> {
        let frame = record.number;
        let at_frame = |e: RedactError| match e {
            RedactError::Unsafe(reason) => RedactError::Frame { frame, reason },
            other => other,
        };
        let src = self.socket(record.src).map_err(at_frame)?;
        let dst = self.socket(record.dst).map_err(at_frame)?;
        let mut payload = self.payload(record).map_err(at_frame)?;
        let swept = self.names.sweep(&mut payload);
        let counts = if self.observing {
            &mut self.scratch
        } else {
            &mut self.counts
        };
        counts.add("literal swept", swept);
        counts.add("datagram", 1);
        if !self.observing {
            if let Some(leak) = self.names.leak_in(&payload) {
                return Err(RedactError::Frame {
                    frame,
                    reason: format!(
                        "a known secret ({} bytes) is still in the payload",
                        leak.len()
                    ),
                });
            }
        }
        Ok(Record {
            number: record.number,
            time: record.time,
            src,
            dst,
            payload,
        })
    }

    fn socket(&mut self, addr: SocketAddr) -> Result<SocketAddr, RedactError> {
        let ip = self.names.ip(addr.ip())?;
        if ip != addr.ip() && !self.observing {
            self.counts.add("address in IP header", 1);
        }
        Ok(SocketAddr::new(ip, addr.port()))
    }

    fn payload(&mut self, record: &Record) -> Result<Vec<u8>, RedactError> {
        let counts = if self.observing {
            &mut self.scratch
        } else {
            &mut self.counts
        };
        let bytes = &record.payload;
        match classify(bytes) {
            Datagram::Cloud(Ok(message)) => cloud::rewrite(&message, &mut self.names, counts),
            Datagram::Cloud(Err(_)) => cloud::rewrite_malformed(bytes, &mut self.names, counts),
            Datagram::Punch(Ok(message)) => punch(&message, bytes, &mut self.names, counts),
            Datagram::Ptcp(Ok(packet)) => {
                let key = self.streams.note(
                    record.src,
                    record.dst,
                    &packet.header,
                    &packet.body,
                    self.observing,
                );
                let edits = self.streams.edits(&key);
                ptcp(&packet, bytes, edits, &mut self.names, counts)
            }
            // Not understood: kept, then swept for known literals.
            Datagram::Punch(Err(_)) | Datagram::Ptcp(Err(_)) | Datagram::Unknown => {
                counts.add("datagram not understood (kept)", 1);
                Ok(bytes.clone())
            }
        }
    }
}

/// The punch message with every SOURCE-ADDRESS (attributes and the [py]
/// confirm's trailing bytes) pointing at the stand-in address.
fn punch(
    message: &PunchMessage,
    raw: &[u8],
    names: &mut Names,
    counts: &mut Counts,
) -> Result<Vec<u8>, RedactError> {
    let mut message = message.clone();
    for attribute in &mut message.attributes {
        if let Attribute::SourceAddress(value) = attribute {
            *value = punch_address(value, names, counts)?;
        }
    }
    if let Ok(trailing) = message.trailing_attributes() {
        let mut at = 0;
        for attribute in trailing {
            if let Attribute::SourceAddress(value) = &attribute {
                let new = punch_address(value, names, counts)?;
                let value = at + punch_field::attribute::VALUE;
                if let Some(slot) = message.trailing.get_mut(value..value + new.raw.len()) {
                    slot.copy_from_slice(&new.raw);
                }
            }
            at += attribute.encoded_len();
        }
    }
    let out = message.encode();
    if out.len() != raw.len() {
        return Err(RedactError::Unsafe(
            "a punch message does not re-encode to its own length".into(),
        ));
    }
    Ok(out)
}

/// One SOURCE-ADDRESS with the address mapped, in the form it was written:
/// the plain ([py]) reading is taken when only it names a replaced address.
fn punch_address(
    value: &AddressValue,
    names: &mut Names,
    counts: &mut Counts,
) -> Result<AddressValue, RedactError> {
    // The [py] bug writes the address plain; take that reading only when
    // it, and not the normal one, names an address seen elsewhere.
    let inverted = IpAddr::V4(*value.addr_inverted().ip());
    let plain = IpAddr::V4(*value.addr_plain().ip());
    let form = if !names.knows(inverted) && names.knows(plain) {
        AddrForm::Plain
    } else {
        AddrForm::Inverted
    };
    let addr = value.addr(form);
    let IpAddr::V4(mapped) = names.ip(IpAddr::V4(*addr.ip()))? else {
        return Ok(*value);
    };
    if mapped == *addr.ip() {
        return Ok(*value);
    }
    counts.add("address in punch", 1);
    let mut new = AddressValue::new(SocketAddrV4::new(mapped, addr.port()), form);
    new.raw[0] = value.raw[0];
    new.raw[1] = value.raw[1];
    Ok(new)
}

/// The PTCP datagram with BIND addresses mapped, the sign and the device's
/// auth reply replaced by keyed bytes, and DATA edited as its realm stream
/// decided. Lengths and counters are untouched.
fn ptcp(
    packet: &Packet,
    raw: &[u8],
    edits: &[(usize, Vec<u8>)],
    names: &mut Names,
    counts: &mut Counts,
) -> Result<Vec<u8>, RedactError> {
    let mut out = raw.to_vec();
    match &packet.body {
        Body::Bind { ip, .. } => {
            let IpAddr::V4(mapped) = names.ip(IpAddr::V4(*ip))? else {
                return Ok(out);
            };
            if mapped != *ip {
                counts.add("address in BIND", 1);
                let at = ptcp_field::in_datagram(ptcp_field::body::BIND_IP).start;
                patch(&mut out, at, &mapped.octets())?;
            }
        }
        Body::Sign { sign } | Body::Auth { sign } => {
            let keyed = names.bytes("sign", sign);
            patch(&mut out, PTCP_PAYLOAD_AT, &keyed)?;
            counts.add("sign", 1);
        }
        Body::AuthReply { data } => {
            let keyed = names.bytes("auth reply", data);
            patch(&mut out, PTCP_PAYLOAD_AT, &keyed)?;
            counts.add("auth reply", 1);
        }
        Body::Data { .. } => {
            for (offset, bytes) in edits {
                patch(&mut out, PTCP_PAYLOAD_AT + offset, bytes)?;
            }
        }
        _ => {}
    }
    Ok(out)
}

fn patch(out: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), RedactError> {
    out.get_mut(at..at + bytes.len())
        .ok_or_else(|| RedactError::Unsafe("an edit falls outside its datagram".into()))?
        .copy_from_slice(bytes);
    Ok(())
}
