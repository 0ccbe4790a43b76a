//! Records back into a pcap file, in memory: what the inspector's `w` saves.
//! The caller writes the bytes wherever it wants.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use crate::capture::UdpPcapWriter;
use crate::decode::record::Record;

/// A pcap file built in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapBytes {
    pub bytes: Vec<u8>,
    /// Records written as frames.
    pub written: u64,
    /// IPv6 records, which the writer's IPv4 frames cannot carry.
    pub skipped: u64,
}

/// Writes `records` as Ethernet/IPv4/UDP frames of a pcap file.
pub fn udp_pcap_bytes<'a>(records: impl IntoIterator<Item = &'a Record>) -> io::Result<PcapBytes> {
    let mut writer = UdpPcapWriter::new(Vec::new())?;
    let mut skipped = 0;
    for r in records {
        match (as_v4(r.src), as_v4(r.dst)) {
            (Some(src), Some(dst)) => writer.write_udp(r.time, src, dst, &r.payload)?,
            _ => skipped += 1,
        }
    }
    let written = writer.frames();
    Ok(PcapBytes {
        bytes: writer.into_inner(),
        written,
        skipped,
    })
}

fn as_v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, addr.port())),
        IpAddr::V6(_) => None,
    }
}
