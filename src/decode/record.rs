//! One UDP datagram read from a capture: what every consumer of the pcap
//! reader (`decode` output, `--stats`, `--follow`, the inspector) works on.

use std::net::SocketAddr;
use std::time::Duration;

/// A UDP datagram as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Frame number in the capture, from 1 (as tshark counts).
    pub number: u64,
    /// Capture time since the Unix epoch.
    pub time: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP payload (after IPv4 reassembly when the datagram was fragmented).
    pub payload: Vec<u8>,
}

/// A UDP session as `--stats` and `--session` name it: the two endpoints,
/// in a canonical order (lower address first) so both directions match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    pub a: SocketAddr,
    pub b: SocketAddr,
}

impl SessionKey {
    pub fn of(src: SocketAddr, dst: SocketAddr) -> SessionKey {
        if src <= dst {
            SessionKey { a: src, b: dst }
        } else {
            SessionKey { a: dst, b: src }
        }
    }
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <-> {}", self.a, self.b)
    }
}

impl Record {
    pub fn session(&self) -> SessionKey {
        SessionKey::of(self.src, self.dst)
    }
}
