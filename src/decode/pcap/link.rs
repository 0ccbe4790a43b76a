//! Link and network layers of a captured frame: from the link type's header
//! down to the UDP datagram (Ethernet with VLAN tags, Linux cooked SLL/SLL2,
//! raw IP, BSD loopback; IPv4 and IPv6).

use std::net::{IpAddr, SocketAddr};

use etherparse::UdpSlice;

/// Most VLAN tags unwrapped from one Ethernet frame (QinQ uses two).
const MAX_VLAN_TAGS: usize = 8;

pub(super) type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// Why a frame yields no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Skip {
    NotUdp,
    LinkType,
    Truncated,
    Malformed,
}

pub(super) fn udp_datagram(src: IpAddr, dst: IpAddr, udp: &[u8]) -> Result<Datagram, Skip> {
    let slice = UdpSlice::from_slice(udp).map_err(|e| {
        if e.len_source == etherparse::LenSource::Slice {
            Skip::Truncated
        } else {
            Skip::Malformed
        }
    })?;
    Ok((
        SocketAddr::new(src, slice.source_port()),
        SocketAddr::new(dst, slice.destination_port()),
        slice.payload().to_vec(),
    ))
}

/// Timestamp units per second for a pcapng `if_tsresol`: 10^n, or 2^n
/// when the top bit is set. (pcap-parser's `build_ts_resolution` rejects
/// every 2^n value.) `None` when it does not fit a u64.
pub(super) fn network_layer(linktype: i32, frame: &[u8]) -> Result<&[u8], Skip> {
    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_IPV6: u16 = 0x86dd;
    let (ethertype, at) = match linktype {
        // Ethernet, with any number of 802.1Q / 802.1ad tags.
        1 => {
            let mut ethertype = be16(frame, 12).ok_or(Skip::Truncated)?;
            let mut at = 14usize;
            let mut tags = 0;
            while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100 | 0x9200) {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(Skip::Malformed);
                }
                ethertype = be16(frame, at + 2).ok_or(Skip::Truncated)?;
                at += 4;
            }
            (ethertype, at)
        }
        // Linux cooked capture v1: protocol at 14, header 16 bytes.
        113 => (be16(frame, 14).ok_or(Skip::Truncated)?, 16),
        // Linux cooked capture v2: protocol at 0, header 20 bytes.
        276 => (be16(frame, 0).ok_or(Skip::Truncated)?, 20),
        // Raw IP: LINKTYPE_RAW and the DLT_RAW values some systems write,
        // LINKTYPE_IPV4, LINKTYPE_IPV6.
        101 | 12 | 14 | 228 | 229 => {
            return match frame.first().map(|b| b >> 4) {
                Some(4 | 6) => Ok(frame),
                Some(_) => Err(Skip::NotUdp),
                None => Err(Skip::Truncated),
            }
        }
        // BSD loopback: a 4-byte address family, host order (NULL) or
        // network order (LOOP). AF_INET is 2 everywhere; AF_INET6 is 10
        // (Linux), 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS).
        0 | 108 => {
            let family = frame.get(..4).ok_or(Skip::Truncated)?;
            let family = u32::from_le_bytes(family.try_into().map_err(|_| Skip::Truncated)?);
            let family = if linktype == 108 || family > 0xffff {
                family.swap_bytes()
            } else {
                family
            };
            let ethertype = match family {
                2 => ETHERTYPE_IPV4,
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                _ => return Err(Skip::NotUdp),
            };
            (ethertype, 4)
        }
        _ => return Err(Skip::LinkType),
    };
    if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
        return Err(Skip::NotUdp);
    }
    frame.get(at..).ok_or(Skip::Truncated)
}

pub(super) fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = data.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}
