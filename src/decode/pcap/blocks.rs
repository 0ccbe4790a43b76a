//! The block handler: what each pcap record or pcapng block means, one
//! interface's clock, and the frames' IP and UDP layers down to a
//! [`Record`].

use std::net::IpAddr;
use std::time::Duration;

use etherparse::{Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice};
use pcap_parser::{Block, PcapBlockOwned};

use super::link::{be16, network_layer, udp_datagram, Datagram, Skip};
use super::reassembly::{FragmentKey, Reassembler};
use super::{
    read_u32, CaptureFormat, Damage, ReaderStats, MAX_BLOCK, MAX_INTERFACES, MAX_LEGACY_CAPLEN,
    PCAPNG_BOM, PCAPNG_SHB,
};
use crate::decode::record::Record;

/// One interface's link type and clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Interface {
    pub(super) linktype: i32,
    /// Timestamp units per second.
    pub(super) units_per_second: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    pub(super) offset_seconds: i64,
}

/// State the block handler updates; kept apart from the pcap-parser reader
/// so a block borrowed from the reader's buffer can be handled in place.
pub(super) struct State {
    pub(super) format: CaptureFormat,
    pub(super) interfaces: Vec<Interface>,
    /// Byte order of the current pcapng section.
    pub(super) ng_big_endian: bool,
    /// Largest believable pcap record (bounded by [`MAX_BLOCK`]).
    pub(super) legacy_max_caplen: u32,
    /// Bytes before a pcap record's data: 16, or 24 in the "modified" format.
    pub(super) legacy_record_header: u64,
    pub(super) reassembler: Reassembler,
    pub(super) stats: ReaderStats,
}

impl State {
    /// The length the block at the head of `data` declares, checked against
    /// the limits; `None` when too few bytes are there to tell.
    pub(super) fn declared_len(&self, data: &[u8]) -> Result<Option<u64>, Damage> {
        match self.format {
            CaptureFormat::Pcap { big_endian, .. } => {
                let Some(caplen) = read_u32(data, 8, big_endian) else {
                    return Ok(None);
                };
                if caplen > self.legacy_max_caplen {
                    return Err(Damage::TooLarge {
                        length: u64::from(caplen),
                        max: u64::from(self.legacy_max_caplen),
                    });
                }
                Ok(Some(self.legacy_record_header + u64::from(caplen)))
            }
            CaptureFormat::PcapNg => {
                let Some(block_type) = read_u32(data, 0, false) else {
                    return Ok(None);
                };
                let big_endian = if block_type == PCAPNG_SHB {
                    match read_u32(data, 8, false) {
                        None => return Ok(None),
                        Some(PCAPNG_BOM) => false,
                        Some(bom) if bom.swap_bytes() == PCAPNG_BOM => true,
                        Some(_) => {
                            return Err(Damage::Invalid(
                                "section header without a valid byte-order magic".into(),
                            ))
                        }
                    }
                } else {
                    self.ng_big_endian
                };
                let Some(len) = read_u32(data, 4, big_endian) else {
                    return Ok(None);
                };
                if len < 12 || len % 4 != 0 {
                    return Err(Damage::Invalid(format!(
                        "block length {len} is not a multiple of 4 of at least 12"
                    )));
                }
                if len as usize > MAX_BLOCK {
                    return Err(Damage::TooLarge {
                        length: u64::from(len),
                        max: MAX_BLOCK as u64,
                    });
                }
                Ok(Some(u64::from(len)))
            }
        }
    }

    /// Handles one block: a record when it carried a (complete) UDP datagram.
    pub(super) fn handle_block(
        &mut self,
        block: PcapBlockOwned<'_>,
    ) -> Result<Option<Record>, Damage> {
        match block {
            PcapBlockOwned::LegacyHeader(header) => {
                let nanosecond = header.is_nanosecond_precision();
                if header.is_modified_format() {
                    self.legacy_record_header = 24;
                }
                self.legacy_max_caplen = header
                    .snaplen
                    .clamp(MAX_LEGACY_CAPLEN, (MAX_BLOCK - 16) as u32);
                self.interfaces = vec![Interface {
                    linktype: header.network.0,
                    units_per_second: if nanosecond { 1_000_000_000 } else { 1_000_000 },
                    offset_seconds: 0,
                }];
                Ok(None)
            }
            PcapBlockOwned::Legacy(frame) => {
                let units = self
                    .interfaces
                    .first()
                    .map_or(1_000_000, |i| i.units_per_second);
                // A record header whose fields cannot be true is garbage:
                // stop rather than decode noise.
                if frame.caplen > frame.origlen {
                    return Err(Damage::Invalid(format!(
                        "record captured length {} exceeds its original length {}",
                        frame.caplen, frame.origlen
                    )));
                }
                if u64::from(frame.ts_usec) >= units {
                    return Err(Damage::Invalid(format!(
                        "record timestamp fraction {} is not below {units}",
                        frame.ts_usec
                    )));
                }
                let seconds = u64::from(frame.ts_sec);
                // Below `units` (checked above), so below 10^9 either way.
                let nanos = if units == 1_000_000 {
                    frame.ts_usec.saturating_mul(1000)
                } else {
                    frame.ts_usec
                };
                let time = Duration::new(seconds, nanos);
                Ok(self.frame(0, time, frame.data))
            }
            PcapBlockOwned::NG(block) => self.handle_ng(block),
        }
    }

    pub(super) fn handle_ng(&mut self, block: Block<'_>) -> Result<Option<Record>, Damage> {
        match block {
            Block::SectionHeader(shb) => {
                self.ng_big_endian = shb.big_endian();
                // Interface ids are per section.
                self.interfaces.clear();
                Ok(None)
            }
            Block::InterfaceDescription(idb) => {
                if self.interfaces.len() < MAX_INTERFACES {
                    let units_per_second = ts_units(idb.if_tsresol).unwrap_or(1_000_000);
                    self.interfaces.push(Interface {
                        linktype: idb.linktype.0,
                        units_per_second,
                        offset_seconds: idb.if_tsoffset,
                    });
                }
                Ok(None)
            }
            Block::EnhancedPacket(epb) => {
                let Some(&interface) = self.interfaces.get(epb.if_id as usize) else {
                    self.stats.frames += 1;
                    self.stats.malformed_frames += 1;
                    return Ok(None);
                };
                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let time = ng_time(ticks, interface);
                let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                Ok(self.frame(epb.if_id as usize, time, data))
            }
            Block::SimplePacket(spb) => {
                // No timestamp and always interface 0.
                let data = spb.data.get(..spb.origlen as usize).unwrap_or(spb.data);
                Ok(self.frame(0, Duration::ZERO, data))
            }
            Block::Unknown(unknown) if unknown.block_len1 != unknown.block_len2 => {
                Err(Damage::Invalid(format!(
                    "block type 0x{:08x}: trailing length {} differs from leading length {}",
                    unknown.block_type, unknown.block_len2, unknown.block_len1
                )))
            }
            _ => Ok(None),
        }
    }

    /// One frame on `interface`: counts it and extracts its UDP datagram.
    pub(super) fn frame(
        &mut self,
        interface: usize,
        time: Duration,
        data: &[u8],
    ) -> Option<Record> {
        self.stats.frames += 1;
        let number = self.stats.frames;
        if self.stats.first_time.is_none() {
            self.stats.first_time = Some(time);
        }
        let Some(linktype) = self.interfaces.get(interface).map(|i| i.linktype) else {
            self.stats.malformed_frames += 1;
            return None;
        };
        let ip = match network_layer(linktype, data) {
            Ok(ip) => ip,
            Err(skip) => {
                self.count(skip);
                return None;
            }
        };
        match self.udp(number, ip) {
            Ok(Some((src, dst, payload))) => {
                self.stats.udp += 1;
                Some(Record {
                    number,
                    time,
                    src,
                    dst,
                    payload,
                })
            }
            Ok(None) => None,
            Err(skip) => {
                self.count(skip);
                None
            }
        }
    }

    pub(super) fn count(&mut self, skip: Skip) {
        let counter = match skip {
            Skip::NotUdp => &mut self.stats.skipped_non_udp,
            Skip::LinkType => &mut self.stats.skipped_link_type,
            Skip::Truncated => &mut self.stats.truncated_frames,
            Skip::Malformed => &mut self.stats.malformed_frames,
        };
        *counter += 1;
    }

    /// The UDP datagram in an IP packet: `Ok(None)` for a fragment that did
    /// not complete one.
    pub(super) fn udp(&mut self, number: u64, ip: &[u8]) -> Result<Option<Datagram>, Skip> {
        match ip.first().map(|b| b >> 4) {
            Some(4) => {
                let packet = Ipv4Slice::from_slice(ip).map_err(|e| match e {
                    etherparse::err::ipv4::SliceError::Len(_) => Skip::Truncated,
                    _ => Skip::Malformed,
                })?;
                let header = packet.header();
                let src = IpAddr::V4(header.source_addr());
                let dst = IpAddr::V4(header.destination_addr());
                let payload = packet.payload();
                if payload.ip_number != etherparse::IpNumber::UDP {
                    return Err(Skip::NotUdp);
                }
                if header.is_fragmenting_payload() {
                    self.stats.fragments += 1;
                    let key = FragmentKey {
                        src,
                        dst,
                        id: u32::from(header.identification()),
                        proto: payload.ip_number.0,
                    };
                    let offset = u32::from(header.fragments_offset().byte_offset());
                    return self.reassemble(
                        number,
                        key,
                        offset,
                        header.more_fragments(),
                        payload.payload,
                    );
                }
                udp_datagram(src, dst, payload.payload).map(Some)
            }
            Some(6) => {
                let packet = Ipv6Slice::from_slice(ip).map_err(|e| match e {
                    etherparse::err::ipv6::SliceError::Len(_) => Skip::Truncated,
                    _ => Skip::Malformed,
                })?;
                let header = packet.header();
                let src = IpAddr::V6(header.source_addr());
                let dst = IpAddr::V6(header.destination_addr());
                let payload = packet.payload();
                let fragment = packet
                    .extensions()
                    .clone()
                    .into_iter()
                    .find_map(|ext| match ext {
                        Ipv6ExtensionSlice::Fragment(f) => Some(f.slice()),
                        _ => None,
                    });
                // Read the fragment header ourselves (RFC 8200 §4.5): etherparse
                // 0.16 takes the offset and M flag from the wrong bits.
                if let Some(raw) = fragment {
                    let field = be16(raw, 2).ok_or(Skip::Malformed)?;
                    let offset = u32::from(field & 0xfff8);
                    let more = field & 1 == 1;
                    if offset != 0 || more {
                        if raw.first() != Some(&etherparse::IpNumber::UDP.0) {
                            return Err(Skip::NotUdp);
                        }
                        self.stats.fragments += 1;
                        let key = FragmentKey {
                            src,
                            dst,
                            id: read_u32(raw, 4, true).ok_or(Skip::Malformed)?,
                            proto: etherparse::IpNumber::UDP.0,
                        };
                        return self.reassemble(number, key, offset, more, payload.payload);
                    }
                }
                if payload.ip_number != etherparse::IpNumber::UDP {
                    return Err(Skip::NotUdp);
                }
                udp_datagram(src, dst, payload.payload).map(Some)
            }
            _ => Err(Skip::Malformed),
        }
    }

    pub(super) fn reassemble(
        &mut self,
        number: u64,
        key: FragmentKey,
        offset: u32,
        more: bool,
        data: &[u8],
    ) -> Result<Option<Datagram>, Skip> {
        let (src, dst) = (key.src, key.dst);
        let outcome = self.reassembler.add(number, key, offset, more, data);
        self.stats.fragments_dropped += outcome.dropped;
        match outcome.complete {
            Some(datagram) => {
                self.stats.fragments_reassembled += 1;
                let result = udp_datagram(src, dst, &datagram).map(Some);
                self.reassembler.recycle(datagram);
                result
            }
            None => Ok(None),
        }
    }
}

fn ts_units(tsresol: u8) -> Option<u64> {
    let exponent = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(exponent)
    } else {
        1u64.checked_shl(exponent).filter(|_| exponent < 64)
    }
}

/// Capture time of a pcapng timestamp; times before the epoch read as 0.
fn ng_time(ticks: u64, interface: Interface) -> Duration {
    let units = interface.units_per_second.max(1);
    let seconds = i128::from(ticks / units) + i128::from(interface.offset_seconds);
    let fraction = u128::from(ticks % units);
    let nanos = u32::try_from(fraction * 1_000_000_000 / u128::from(units)).unwrap_or(0);
    match u64::try_from(seconds) {
        Ok(seconds) => Duration::new(seconds, nanos.min(999_999_999)),
        Err(_) if seconds < 0 => Duration::ZERO,
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn ng_time_applies_resolution_and_offset() {
        let micro = Interface {
            linktype: 1,
            units_per_second: 1_000_000,
            offset_seconds: 10,
        };
        assert_eq!(ng_time(1_500_000, micro), Duration::new(11, 500_000_000));
        let before_epoch = Interface {
            offset_seconds: -100,
            ..micro
        };
        assert_eq!(ng_time(1_000_000, before_epoch), Duration::ZERO);
    }
}
