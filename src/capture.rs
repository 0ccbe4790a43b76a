//! Writing datagrams as a pcap capture (Ethernet/IPv4/UDP, correct checksums).
//!
//! Used by `--record FILE.pcap` and `--tap ADDR` of the emulator and tunnel,
//! and by tests that build captures from protocol vectors. It writes to any
//! `io::Write` and takes timestamps as parameters: no files, sockets or clock
//! of its own.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

/// Locally administered MAC addresses derived from the IPv4 address, so each
/// endpoint keeps one MAC across the capture.
fn mac_of(addr: &SocketAddrV4) -> [u8; 6] {
    let [a, b, c, d] = addr.ip().octets();
    [0x02, 0x00, a, b, c, d]
}

/// The Ethernet/IPv4/UDP frame carrying `payload` from `src` to `dst`.
pub fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> io::Result<Vec<u8>> {
    let builder = PacketBuilder::ethernet2(mac_of(&src), mac_of(&dst))
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut frame, payload)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(frame)
}

/// The Ethernet/IPv4-or-IPv6/UDP frame carrying `payload` from `src` to
/// `dst` (both of one family). MACs derive from the addresses' last bytes.
pub fn udp_frame_any(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<Vec<u8>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mac = |ip: IpAddr| -> [u8; 6] {
        let bytes = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets()[12..].to_vec(),
        };
        [0x02, 0x00, bytes[0], bytes[1], bytes[2], bytes[3]]
    };
    let ethernet = PacketBuilder::ethernet2(mac(src.ip()), mac(dst.ip()));
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ethernet.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => ethernet.ipv6(s.octets(), d.octets(), 64),
        _ => return Err(invalid(format!("{src} and {dst} are not of one family"))),
    }
    .udp(src.port(), dst.port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut frame, payload)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(frame)
}

/// A pcap (libpcap, microsecond, Ethernet) writer that flushes each frame.
pub struct UdpPcapWriter<W: Write> {
    inner: PcapWriter<W>,
    frames: u64,
}

impl<W: Write> UdpPcapWriter<W> {
    /// Writes the pcap file header (microsecond timestamps).
    pub fn new(writer: W) -> io::Result<Self> {
        Self::with_resolution(writer, TsResolution::MicroSecond)
    }

    /// Writes the pcap file header with the given timestamp resolution.
    pub fn with_resolution(writer: W, ts_resolution: TsResolution) -> io::Result<Self> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 65535,
            datalink: DataLink::ETHERNET,
            ts_resolution,
            endianness: Endianness::native(),
        };
        let inner = PcapWriter::with_header(writer, header).map_err(pcap_err)?;
        Ok(UdpPcapWriter { inner, frames: 0 })
    }

    /// Appends one UDP datagram. `since_epoch` is its capture time.
    pub fn write_udp(
        &mut self,
        since_epoch: Duration,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> io::Result<()> {
        self.write_frame(since_epoch, &udp_frame(src, dst, payload)?)
    }

    /// Appends one UDP datagram between addresses of either family.
    pub fn write_udp_any(
        &mut self,
        since_epoch: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        self.write_frame(since_epoch, &udp_frame_any(src, dst, payload)?)
    }

    fn write_frame(&mut self, since_epoch: Duration, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let packet = PcapPacket::new(since_epoch, len, frame);
        self.inner.write_packet(&packet).map_err(pcap_err)?;
        self.frames += 1;
        Ok(())
    }

    /// Number of frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn into_inner(self) -> W {
        self.inner.into_writer()
    }
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
