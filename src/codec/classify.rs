//! Which protocol a UDP payload belongs to, decided by content alone.
//!
//! Ports say nothing in this protocol (only the main cloud's 8800 is fixed;
//! every other port comes from a cloud answer), so the decoder, inspector,
//! emulator and tunnel all call [`classify`] on the payload bytes. The order
//! follows DH-P2P §8: PTCP magic first, then cloud text, then inverted STUN.

use std::fmt;

use super::cloud::{self, CloudError};
use super::ptcp::{self, PtcpError};
use super::punch::{self, PunchError};

/// The protocol family of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Easy4IPCloud signalling (DH-HTTP text over UDP).
    Cloud,
    /// Inverted-STUN hole punching.
    Punch,
    /// PTCP session traffic.
    Ptcp,
    /// None of the above.
    Unknown,
}

impl Kind {
    /// Lower-case name, as used in `--kind` filters and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cloud => "cloud",
            Kind::Punch => "punch",
            Kind::Ptcp => "ptcp",
            Kind::Unknown => "unknown",
        }
    }

    /// Upper-case label, as a Protocol column shows it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Cloud => "CLOUD",
            Kind::Punch => "PUNCH",
            Kind::Ptcp => "PTCP",
            Kind::Unknown => "UDP",
        }
    }

    pub fn all() -> [Kind; 4] {
        [Kind::Cloud, Kind::Punch, Kind::Ptcp, Kind::Unknown]
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::all()
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown kind {s:?}: expected cloud, punch, ptcp or unknown"))
    }
}

/// A classified and decoded datagram. A payload that looks like a protocol
/// but fails to decode keeps its kind and carries the decoder's error, so a
/// malformed PTCP packet is still shown as PTCP, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram<'a> {
    Ptcp(Result<ptcp::Packet<'a>, PtcpError>),
    Cloud(Result<cloud::Message, CloudError>),
    Punch(Result<punch::PunchMessage, PunchError>),
    Unknown,
}

impl Datagram<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Datagram::Ptcp(_) => Kind::Ptcp,
            Datagram::Cloud(_) => Kind::Cloud,
            Datagram::Punch(_) => Kind::Punch,
            Datagram::Unknown => Kind::Unknown,
        }
    }

    /// The decoder's error, when the payload looked like `kind` but is malformed.
    pub fn error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Datagram::Ptcp(Err(e)) => Some(e),
            Datagram::Cloud(Err(e)) => Some(e),
            Datagram::Punch(Err(e)) => Some(e),
            _ => None,
        }
    }

    pub fn is_malformed(&self) -> bool {
        self.error().is_some()
    }
}

/// The kind a payload belongs to, without decoding it.
pub fn kind_of(payload: &[u8]) -> Kind {
    if ptcp::looks_like_ptcp(payload) {
        Kind::Ptcp
    } else if cloud::looks_like_cloud(payload) {
        Kind::Cloud
    } else if punch::looks_like_punch(payload) {
        Kind::Punch
    } else {
        Kind::Unknown
    }
}

/// Classifies a UDP payload by content and decodes it with its codec.
pub fn classify(payload: &[u8]) -> Datagram<'_> {
    match kind_of(payload) {
        Kind::Ptcp => Datagram::Ptcp(ptcp::Packet::decode(payload)),
        Kind::Cloud => Datagram::Cloud(cloud::decode(payload)),
        Kind::Punch => Datagram::Punch(punch::decode(payload)),
        Kind::Unknown => Datagram::Unknown,
    }
}
