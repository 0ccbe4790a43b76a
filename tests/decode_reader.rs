//! The streaming capture reader: formats, link types, reassembly, damage.
//!
//! Captures are built in the test: with `capture::UdpPcapWriter` (Ethernet)
//! and by hand for the other link types and for pcapng, so every byte the
//! reader sees is known and every Record field can be checked exactly.

mod common;

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use dhp2p::capture::UdpPcapWriter;
use dhp2p::decode::pcap::{CaptureFormat, Damage, PcapReader, ReadError, ReaderStats};
use dhp2p::decode::record::Record;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn h(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(digits).expect("test vector is hex")
}

/// DH-P2P.md §11.8 D8: BIND realm 0x0a0b0c0d → 127.0.0.1:554.
fn bind_d8() -> Vec<u8> {
    h("50544350 0000002c 00000010 0000fffd 00000003 00001003
       11000000 0a0b0c0d 00000000 0000022a 7f000001")
}

/// DH-P2P.md §11.6: client → device Binding Request.
fn punch_request() -> Vec<u8> {
    h("ff fe ff e7 de ed 5b bd 00 01 02 03 04 05 06 07
       08 09 0a 0b 7f d5 ff f7 2b 61 98 57 d4 2b 81 e1
       ff fb ff f7 ff fe 63 bf 34 ff 8e f5")
}

/// DH-P2P.md §11.10: the online/p2psrv answer.
const US_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>";

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 50000);
const DEVICE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const DEVICE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20);

fn t(seconds: u64, micros: u32) -> Duration {
    Duration::new(seconds, micros * 1000)
}

// ---------------------------------------------------------------------------
// Frame builders

/// IPv4 + UDP packet, checksums filled by etherparse.
fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

fn ipv6_udp(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(sport, dport);
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

/// An IPv4 packet that is not UDP (protocol 6, a few TCP-ish bytes).
fn ipv4_tcp_like() -> Vec<u8> {
    let mut ip = h("45000028 00010000 4006 0000 c0000201 cb00710a");
    ip.extend_from_slice(&[0u8; 20]);
    ip
}

fn ethernet(ethertype: u16, tags: &[u16], inner: &[u8]) -> Vec<u8> {
    let mut frame = h("020000cb0071 0a 020000c00002 0a");
    frame.truncate(12);
    for &tpid in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&[0x00, 0x64]); // VLAN 100
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(inner);
    frame
}

fn sll(ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let mut frame = h("0000 0001 0006 020000c00002 0000");
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(inner);
    frame
}

fn sll2(ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let mut frame = ethertype.to_be_bytes().to_vec();
    frame.extend_from_slice(&h("0000 00000002 0001 00 06 020000c00002 0000"));
    frame.extend_from_slice(inner);
    frame
}

fn loopback(family: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let mut frame = family.to_vec();
    frame.extend_from_slice(inner);
    frame
}

// ---------------------------------------------------------------------------
// File builders

struct Pcap {
    big_endian: bool,
    nanosecond: bool,
    linktype: u32,
    snaplen: u32,
}

impl Pcap {
    fn new(linktype: u32) -> Pcap {
        Pcap {
            big_endian: false,
            nanosecond: false,
            linktype,
            snaplen: 65535,
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn header(&self) -> Vec<u8> {
        let magic = if self.nanosecond {
            0xa1b2_3c4d
        } else {
            0xa1b2_c3d4
        };
        let mut out = self.u32(magic).to_vec();
        let (major, minor) = if self.big_endian {
            (2u16.to_be_bytes(), 4u16.to_be_bytes())
        } else {
            (2u16.to_le_bytes(), 4u16.to_le_bytes())
        };
        out.extend_from_slice(&major);
        out.extend_from_slice(&minor);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.u32(self.snaplen));
        out.extend_from_slice(&self.u32(self.linktype));
        out
    }

    fn record(&self, time: Duration, frame: &[u8]) -> Vec<u8> {
        self.record_cut(time, frame, frame.len())
    }

    /// A record holding only the first `caplen` bytes of `frame`.
    fn record_cut(&self, time: Duration, frame: &[u8], caplen: usize) -> Vec<u8> {
        let fraction = if self.nanosecond {
            time.subsec_nanos()
        } else {
            time.subsec_micros()
        };
        let mut out = self.u32(time.as_secs() as u32).to_vec();
        out.extend_from_slice(&self.u32(fraction));
        out.extend_from_slice(&self.u32(caplen as u32));
        out.extend_from_slice(&self.u32(frame.len() as u32));
        out.extend_from_slice(&frame[..caplen]);
        out
    }

    fn file(&self, frames: &[(Duration, Vec<u8>)]) -> Vec<u8> {
        let mut out = self.header();
        for (time, frame) in frames {
            out.extend(self.record(*time, frame));
        }
        out
    }
}

/// pcapng blocks in either byte order.
struct Ng {
    big_endian: bool,
}

impl Ng {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&self, block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let mut out = self.u32(block_type).to_vec();
        out.extend_from_slice(&self.u32(len));
        out.extend(body);
        out.extend_from_slice(&self.u32(len));
        out
    }

    fn shb(&self) -> Vec<u8> {
        let mut body = self.u32(0x1A2B_3C4D).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]); // section length unknown
        self.block(0x0A0D_0D0A, &body)
    }

    /// An interface; `tsresol` adds the if_tsresol option.
    fn idb(&self, linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = self.u16(linktype).to_vec();
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32(0));
        if let Some(resol) = tsresol {
            body.extend_from_slice(&self.u16(9));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&[resol, 0, 0, 0]);
            body.extend_from_slice(&[0; 4]); // opt_endofopt
        }
        self.block(1, &body)
    }

    fn epb(&self, interface: u32, ticks: u64, frame: &[u8]) -> Vec<u8> {
        let mut body = self.u32(interface).to_vec();
        body.extend_from_slice(&self.u32((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32(ticks as u32));
        body.extend_from_slice(&self.u32(frame.len() as u32));
        body.extend_from_slice(&self.u32(frame.len() as u32));
        body.extend_from_slice(frame);
        self.block(6, &body)
    }
}

// ---------------------------------------------------------------------------
// Reading helpers

fn read_all(bytes: &[u8]) -> (Vec<Record>, Option<ReadError>, ReaderStats) {
    read_from(bytes)
}

fn read_from(input: impl Read) -> (Vec<Record>, Option<ReadError>, ReaderStats) {
    let mut reader = PcapReader::new(input).expect("a capture");
    let mut records = Vec::new();
    let mut error = None;
    for item in reader.by_ref() {
        match item {
            Ok(record) => records.push(record),
            Err(e) => {
                assert!(error.is_none(), "only one error is reported");
                error = Some(e);
            }
        }
    }
    (records, error, reader.stats().clone())
}

fn read_ok(bytes: &[u8]) -> (Vec<Record>, ReaderStats) {
    let (records, error, stats) = read_all(bytes);
    assert!(error.is_none(), "unexpected error: {error:?}");
    (records, stats)
}

fn v4(addr: SocketAddrV4) -> SocketAddr {
    SocketAddr::V4(addr)
}

/// A stream that hands out 1 to 7 bytes per read, like a slow pipe.
struct Trickle<'a> {
    data: &'a [u8],
    rng: SmallRng,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.rng.gen_range(1..8).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Three datagrams of the three kinds, written by the capture writer.
fn three_kinds_capture() -> Vec<u8> {
    let mut writer = UdpPcapWriter::new(Vec::new()).unwrap();
    writer
        .write_udp(t(1_700_000_000, 0), CLIENT, DEVICE, &punch_request())
        .unwrap();
    writer
        .write_udp(t(1_700_000_000, 3120), DEVICE, CLIENT, US_REPLY)
        .unwrap();
    writer
        .write_udp(t(1_700_000_001, 999_999), CLIENT, DEVICE, &bind_d8())
        .unwrap();
    writer.into_inner()
}

// ---------------------------------------------------------------------------
// Formats and link types

#[test]
fn ethernet_pcap_from_the_capture_writer() {
    let bytes = three_kinds_capture();
    let reader = PcapReader::new(&bytes[..]).unwrap();
    assert_eq!(
        reader.format(),
        CaptureFormat::Pcap {
            big_endian: cfg!(target_endian = "big"),
            nanosecond: false
        }
    );
    let (records, stats) = read_ok(&bytes);
    assert_eq!(
        records,
        vec![
            Record {
                number: 1,
                time: t(1_700_000_000, 0),
                src: v4(CLIENT),
                dst: v4(DEVICE),
                payload: punch_request(),
            },
            Record {
                number: 2,
                time: t(1_700_000_000, 3120),
                src: v4(DEVICE),
                dst: v4(CLIENT),
                payload: US_REPLY.to_vec(),
            },
            Record {
                number: 3,
                time: t(1_700_000_001, 999_999),
                src: v4(CLIENT),
                dst: v4(DEVICE),
                payload: bind_d8(),
            },
        ]
    );
    assert_eq!(stats.frames, 3);
    assert_eq!(stats.udp, 3);
    assert_eq!(stats.first_time, Some(t(1_700_000_000, 0)));
}

#[test]
fn frame_numbers_count_frames_that_are_not_udp() {
    let udp = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    let arp = ethernet(0x0806, &[], &[0u8; 28]);
    let frames = vec![
        (t(10, 0), arp.clone()),
        (t(10, 1), ethernet(0x0800, &[], &udp)),
        (t(10, 2), ethernet(0x0800, &[], &ipv4_tcp_like())),
        (t(10, 3), arp),
        (t(10, 4), ethernet(0x0800, &[], &udp)),
    ];
    let (records, stats) = read_ok(&Pcap::new(1).file(&frames));
    let numbers: Vec<u64> = records.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [2, 5]);
    assert_eq!(records[1].time, t(10, 4));
    assert_eq!(stats.frames, 5);
    assert_eq!(stats.udp, 2);
    assert_eq!(stats.skipped_non_udp, 3);
    assert_eq!(stats.first_time, Some(t(10, 0)));
}

/// One datagram over `linktype` in `frame`, read back exactly.
fn assert_one_record(
    linktype: u32,
    frame: Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) {
    let (records, stats) = read_ok(&Pcap::new(linktype).file(&[(t(5, 250), frame)]));
    assert_eq!(
        records,
        vec![Record {
            number: 1,
            time: t(5, 250),
            src,
            dst,
            payload: payload.to_vec()
        }],
        "link type {linktype}"
    );
    assert_eq!(stats.udp, 1);
}

#[test]
fn linux_cooked_sll() {
    let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    assert_one_record(113, sll(0x0800, &ip), v4(CLIENT), v4(DEVICE), &bind_d8());
}

#[test]
fn linux_cooked_sll2() {
    let ip = ipv4_udp(DEVICE, CLIENT, US_REPLY);
    assert_one_record(276, sll2(0x0800, &ip), v4(DEVICE), v4(CLIENT), US_REPLY);
}

#[test]
fn linux_cooked_sll2_ipv6() {
    let ip = ipv6_udp(CLIENT6, 50000, DEVICE6, 40000, &punch_request());
    let src = SocketAddr::new(CLIENT6.into(), 50000);
    let dst = SocketAddr::new(DEVICE6.into(), 40000);
    assert_one_record(276, sll2(0x86dd, &ip), src, dst, &punch_request());
}

#[test]
fn raw_ipv4_under_every_raw_link_type() {
    for linktype in [101, 12, 14, 228] {
        let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
        assert_one_record(linktype, ip, v4(CLIENT), v4(DEVICE), &bind_d8());
    }
}

#[test]
fn raw_ipv6() {
    let src = SocketAddr::new(CLIENT6.into(), 50000);
    let dst = SocketAddr::new(DEVICE6.into(), 40000);
    for linktype in [101, 229] {
        let ip = ipv6_udp(CLIENT6, 50000, DEVICE6, 40000, &bind_d8());
        assert_one_record(linktype, ip, src, dst, &bind_d8());
    }
}

#[test]
fn bsd_loopback_null_in_either_host_order() {
    let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    assert_one_record(
        0,
        loopback([2, 0, 0, 0], &ip),
        v4(CLIENT),
        v4(DEVICE),
        &bind_d8(),
    );
    assert_one_record(
        0,
        loopback([0, 0, 0, 2], &ip),
        v4(CLIENT),
        v4(DEVICE),
        &bind_d8(),
    );
}

#[test]
fn bsd_loopback_null_ipv6_families() {
    let src = SocketAddr::new(CLIENT6.into(), 50000);
    let dst = SocketAddr::new(DEVICE6.into(), 40000);
    let ip = ipv6_udp(CLIENT6, 50000, DEVICE6, 40000, &bind_d8());
    for family in [24u32, 28, 30] {
        assert_one_record(0, loopback(family.to_le_bytes(), &ip), src, dst, &bind_d8());
    }
}

#[test]
fn openbsd_loop_is_network_order() {
    let ip = ipv4_udp(CLIENT, DEVICE, US_REPLY);
    assert_one_record(
        108,
        loopback([0, 0, 0, 2], &ip),
        v4(CLIENT),
        v4(DEVICE),
        US_REPLY,
    );
    let ip6 = ipv6_udp(CLIENT6, 1, DEVICE6, 2, US_REPLY);
    let (src, dst) = (
        SocketAddr::new(CLIENT6.into(), 1),
        SocketAddr::new(DEVICE6.into(), 2),
    );
    assert_one_record(108, loopback([0, 0, 0, 24], &ip6), src, dst, US_REPLY);
}

#[test]
fn ethernet_vlan_and_qinq() {
    let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    assert_one_record(
        1,
        ethernet(0x0800, &[0x8100], &ip),
        v4(CLIENT),
        v4(DEVICE),
        &bind_d8(),
    );
    assert_one_record(
        1,
        ethernet(0x0800, &[0x88a8, 0x8100], &ip),
        v4(CLIENT),
        v4(DEVICE),
        &bind_d8(),
    );
}

#[test]
fn ethernet_ipv6() {
    let ip = ipv6_udp(DEVICE6, 40000, CLIENT6, 50000, &bind_d8());
    let src = SocketAddr::new(DEVICE6.into(), 40000);
    let dst = SocketAddr::new(CLIENT6.into(), 50000);
    assert_one_record(1, ethernet(0x86dd, &[], &ip), src, dst, &bind_d8());
}

#[test]
fn ethernet_padding_after_a_short_datagram_is_not_payload() {
    let mut frame = ethernet(0x0800, &[], &ipv4_udp(CLIENT, DEVICE, b"hi"));
    frame.resize(60, 0); // minimum Ethernet frame, zero padded
    assert_one_record(1, frame, v4(CLIENT), v4(DEVICE), b"hi");
}

#[test]
fn unknown_link_type_is_counted_and_skipped() {
    let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    let (records, stats) = read_ok(&Pcap::new(147).file(&[(t(1, 0), ip.clone()), (t(1, 1), ip)]));
    assert!(records.is_empty());
    assert_eq!(stats.frames, 2);
    assert_eq!(stats.skipped_link_type, 2);
}

#[test]
fn frame_cut_by_the_snap_length_is_counted_as_truncated() {
    let pcap = Pcap::new(1);
    let full = ethernet(0x0800, &[], &ipv4_udp(CLIENT, DEVICE, &bind_d8()));
    let mut bytes = pcap.header();
    bytes.extend(pcap.record_cut(t(1, 0), &full, 50));
    bytes.extend(pcap.record(t(1, 1), &full));
    let (records, stats) = read_ok(&bytes);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].number, 2);
    assert_eq!(stats.truncated_frames, 1);
}

#[test]
fn big_endian_microsecond_pcap() {
    let pcap = Pcap {
        big_endian: true,
        ..Pcap::new(1)
    };
    let frame = ethernet(0x0800, &[], &ipv4_udp(CLIENT, DEVICE, &bind_d8()));
    let bytes = pcap.file(&[(t(1_700_000_000, 123_456), frame)]);
    let reader = PcapReader::new(&bytes[..]).unwrap();
    assert_eq!(
        reader.format(),
        CaptureFormat::Pcap {
            big_endian: true,
            nanosecond: false
        }
    );
    let (records, _) = read_ok(&bytes);
    assert_eq!(records[0].time, t(1_700_000_000, 123_456));
    assert_eq!(records[0].payload, bind_d8());
}

#[test]
fn nanosecond_pcap_in_both_byte_orders() {
    for big_endian in [false, true] {
        let pcap = Pcap {
            big_endian,
            nanosecond: true,
            ..Pcap::new(101)
        };
        let time = Duration::new(1_700_000_000, 123_456_789);
        let bytes = pcap.file(&[(time, ipv4_udp(CLIENT, DEVICE, US_REPLY))]);
        let reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(
            reader.format(),
            CaptureFormat::Pcap {
                big_endian,
                nanosecond: true
            }
        );
        let (records, _) = read_ok(&bytes);
        assert_eq!(records[0].time, time);
        assert_eq!(records[0].payload, US_REPLY);
    }
}

/// Two interfaces: Ethernet at the default µs resolution and raw IP at ns;
/// then a second section with its own interface list.
fn two_interface_pcapng(big_endian: bool) -> Vec<u8> {
    let ng = Ng { big_endian };
    let mut bytes = ng.shb();
    bytes.extend(ng.idb(1, None));
    bytes.extend(ng.idb(101, Some(9)));
    let eth = ethernet(0x0800, &[], &ipv4_udp(CLIENT, DEVICE, &punch_request()));
    bytes.extend(ng.epb(0, 1_700_000_000_250_000, &eth));
    // A name resolution block between packets is skipped.
    bytes.extend(ng.block(4, &[0, 0, 0, 0]));
    bytes.extend(ng.epb(
        1,
        1_700_000_000_500_000_001,
        &ipv4_udp(DEVICE, CLIENT, US_REPLY),
    ));
    // New section: interface 0 is now raw IP with 2^-10 s resolution.
    bytes.extend(ng.shb());
    bytes.extend(ng.idb(101, Some(0x80 | 10)));
    bytes.extend(ng.epb(
        0,
        1024 * 1_700_000_002 + 512,
        &ipv4_udp(CLIENT, DEVICE, &bind_d8()),
    ));
    bytes
}

#[test]
fn pcapng_interfaces_with_their_own_link_types_and_resolutions() {
    for big_endian in [false, true] {
        let bytes = two_interface_pcapng(big_endian);
        let reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.format(), CaptureFormat::PcapNg);
        let (records, stats) = read_ok(&bytes);
        assert_eq!(
            records,
            vec![
                Record {
                    number: 1,
                    time: t(1_700_000_000, 250_000),
                    src: v4(CLIENT),
                    dst: v4(DEVICE),
                    payload: punch_request(),
                },
                Record {
                    number: 2,
                    time: Duration::new(1_700_000_000, 500_000_001),
                    src: v4(DEVICE),
                    dst: v4(CLIENT),
                    payload: US_REPLY.to_vec(),
                },
                Record {
                    number: 3,
                    time: Duration::new(1_700_000_002, 500_000_000),
                    src: v4(CLIENT),
                    dst: v4(DEVICE),
                    payload: bind_d8(),
                },
            ],
            "big endian: {big_endian}"
        );
        assert_eq!(stats.frames, 3);
    }
}

#[test]
fn pcapng_packet_on_an_undescribed_interface_is_malformed() {
    let ng = Ng { big_endian: false };
    let mut bytes = ng.shb();
    bytes.extend(ng.idb(101, None));
    bytes.extend(ng.epb(3, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    bytes.extend(ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    let (records, stats) = read_ok(&bytes);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].number, 2);
    assert_eq!(stats.malformed_frames, 1);
}

#[test]
fn blocks_larger_than_the_initial_buffer_grow_it() {
    // A 300 kB unknown block, then a packet: the buffer grows past 64 KiB.
    let ng = Ng { big_endian: false };
    let mut bytes = ng.shb();
    bytes.extend(ng.idb(101, None));
    bytes.extend(ng.block(0x0BAD, &vec![0x5a; 300_000]));
    bytes.extend(ng.epb(0, 7_000_000, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    let (records, _) = read_ok(&bytes);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].time, t(7, 0));
    // And a 65 kB datagram in a pcap record.
    let big = vec![0x42; 65_000];
    let pcap = Pcap::new(101);
    let (records, _) = read_ok(&pcap.file(&[(t(1, 0), ipv4_udp(CLIENT, DEVICE, &big))]));
    assert_eq!(records[0].payload, big);
}

#[test]
fn a_stream_read_a_few_bytes_at_a_time_gives_the_same_records() {
    for bytes in [three_kinds_capture(), two_interface_pcapng(false)] {
        let (expected, _) = read_ok(&bytes);
        let trickle = Trickle {
            data: &bytes,
            rng: SmallRng::seed_from_u64(7),
        };
        let (records, error, _) = read_from(trickle);
        assert!(error.is_none());
        assert_eq!(records, expected);
    }
}

// ---------------------------------------------------------------------------
// Reassembly

/// A UDP datagram (header + payload) split into IPv4 fragments of at most
/// `chunk` bytes (a multiple of 8).
fn ipv4_fragments(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    id: u16,
    payload: &[u8],
    chunk: usize,
) -> Vec<Vec<u8>> {
    let whole = ipv4_udp(src, dst, payload);
    let udp = &whole[20..];
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < udp.len() {
        let end = (offset + chunk).min(udp.len());
        let more = end < udp.len();
        let total = (20 + end - offset) as u16;
        let flags_offset = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&id.to_be_bytes());
        ip.extend_from_slice(&flags_offset.to_be_bytes());
        ip.extend_from_slice(&[64, 17, 0, 0]);
        ip.extend_from_slice(&src.ip().octets());
        ip.extend_from_slice(&dst.ip().octets());
        ip.extend_from_slice(&udp[offset..end]);
        out.push(ip);
        offset = end;
    }
    out
}

/// A 3000-byte DATA-like payload with a recognisable pattern.
fn big_payload() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn ipv4_fragments_in_order_make_one_record() {
    let fragments = ipv4_fragments(CLIENT, DEVICE, 0x1234, &big_payload(), 1480);
    assert_eq!(fragments.len(), 3);
    let frames: Vec<_> = fragments
        .iter()
        .enumerate()
        .map(|(i, f)| (t(20, i as u32), ethernet(0x0800, &[], f)))
        .collect();
    let (records, stats) = read_ok(&Pcap::new(1).file(&frames));
    assert_eq!(
        records,
        vec![Record {
            number: 3,
            time: t(20, 2),
            src: v4(CLIENT),
            dst: v4(DEVICE),
            payload: big_payload(),
        }]
    );
    assert_eq!(stats.frames, 3);
    assert_eq!(stats.fragments, 3);
    assert_eq!(stats.fragments_reassembled, 1);
    assert_eq!(stats.udp, 1);
}

#[test]
fn ipv4_fragments_out_of_order_and_interleaved() {
    let a = ipv4_fragments(CLIENT, DEVICE, 7, &big_payload(), 1480);
    let b_payload: Vec<u8> = big_payload().iter().rev().copied().collect();
    let b = ipv4_fragments(DEVICE, CLIENT, 7, &b_payload, 1200);
    let order = [
        a[2].clone(),
        b[1].clone(),
        ipv4_udp(CLIENT, DEVICE, &bind_d8()),
        a[0].clone(),
        b[0].clone(),
        b[2].clone(),
        a[1].clone(),
    ];
    let frames: Vec<_> = order.iter().map(|f| (t(30, 0), f.clone())).collect();
    let (records, stats) = read_ok(&Pcap::new(101).file(&frames));
    let summary: Vec<(u64, SocketAddr, usize)> = records
        .iter()
        .map(|r| (r.number, r.src, r.payload.len()))
        .collect();
    assert_eq!(
        summary,
        [
            (3, v4(CLIENT), bind_d8().len()),
            (6, v4(DEVICE), 3000),
            (7, v4(CLIENT), 3000)
        ]
    );
    assert_eq!(records[1].payload, b_payload);
    assert_eq!(records[2].payload, big_payload());
    assert_eq!(stats.fragments_reassembled, 2);
    assert_eq!(stats.fragments_dropped, 0);
}

/// A UDP datagram in IPv6 fragments of at most `chunk` bytes (multiple of 8).
fn ipv6_fragments(payload: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let whole = ipv6_udp(CLIENT6, 50000, DEVICE6, 40000, payload);
    let udp = &whole[40..];
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < udp.len() {
        let end = (offset + chunk).min(udp.len());
        let more = end < udp.len();
        let mut ip = whole[..40].to_vec();
        ip[4..6].copy_from_slice(&((8 + end - offset) as u16).to_be_bytes());
        ip[6] = 44; // next header: fragment
        ip.extend_from_slice(&[17, 0]);
        ip.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
        ip.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        ip.extend_from_slice(&udp[offset..end]);
        out.push(ip);
        offset = end;
    }
    out
}

#[test]
fn ipv6_fragments_make_one_record() {
    let fragments = ipv6_fragments(&big_payload(), 1232);
    assert_eq!(fragments.len(), 3);
    let order = [
        fragments[1].clone(),
        fragments[2].clone(),
        fragments[0].clone(),
    ];
    let frames: Vec<_> = order.iter().map(|f| (t(3, 0), f.clone())).collect();
    let (records, stats) = read_ok(&Pcap::new(229).file(&frames));
    assert_eq!(
        records,
        vec![Record {
            number: 3,
            time: t(3, 0),
            src: SocketAddr::new(CLIENT6.into(), 50000),
            dst: SocketAddr::new(DEVICE6.into(), 40000),
            payload: big_payload(),
        }]
    );
    assert_eq!(stats.fragments_reassembled, 1);
}

#[test]
fn duplicate_fragments_do_not_change_the_datagram() {
    let a = ipv4_fragments(CLIENT, DEVICE, 9, &big_payload(), 1480);
    let order = [a[0].clone(), a[0].clone(), a[1].clone(), a[2].clone()];
    let frames: Vec<_> = order.iter().map(|f| (t(1, 0), f.clone())).collect();
    let (records, _) = read_ok(&Pcap::new(101).file(&frames));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload, big_payload());
    assert_eq!(records[0].number, 4);
}

#[test]
fn incomplete_fragments_are_given_up_and_counted() {
    let a = ipv4_fragments(CLIENT, DEVICE, 11, &big_payload(), 1480);
    let frames = vec![(t(1, 0), a[0].clone()), (t(1, 1), a[2].clone())];
    let (records, stats) = read_ok(&Pcap::new(101).file(&frames));
    assert!(records.is_empty());
    assert_eq!(stats.fragments, 2);
    assert_eq!(stats.fragments_dropped, 1);
}

#[test]
fn fragments_with_a_conflicting_end_are_dropped() {
    let a = ipv4_fragments(CLIENT, DEVICE, 12, &big_payload(), 1480);
    let short = ipv4_fragments(CLIENT, DEVICE, 12, &big_payload()[..2000], 1480);
    // Two different "last" fragments for the same id.
    let frames = vec![(t(1, 0), a[2].clone()), (t(1, 1), short[1].clone())];
    let (records, stats) = read_ok(&Pcap::new(101).file(&frames));
    assert!(records.is_empty());
    assert!(stats.fragments_dropped >= 1);
}

// ---------------------------------------------------------------------------
// Damage

fn damaged(error: Option<ReadError>) -> (u64, u64, Damage) {
    match error {
        Some(ReadError::Damaged {
            offset,
            frame,
            damage,
        }) => (offset, frame, damage),
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn truncated_in_the_middle_of_a_record() {
    let bytes = three_kinds_capture();
    let third_record_at = {
        let (records, _) = read_ok(&bytes);
        // Records 1 and 2: 16-byte header + 42 bytes of headers + payload.
        24 + 16 + 42 + records[0].payload.len() + 16 + 42 + records[1].payload.len()
    };
    let cut = &bytes[..third_record_at + 30];
    let (records, error, _) = read_all(cut);
    assert_eq!(records.len(), 2);
    let (offset, frame, damage) = damaged(error);
    assert_eq!(offset, third_record_at as u64);
    assert_eq!(frame, 3);
    assert_eq!(
        damage,
        Damage::Truncated {
            needed: (16 + 42 + bind_d8().len()) as u64,
            available: 30
        }
    );
}

#[test]
fn a_lying_record_length_stops_with_the_offset() {
    let pcap = Pcap::new(101);
    let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    let mut bytes = pcap.file(&[(t(1, 0), ip.clone())]);
    let second_at = bytes.len();
    let mut liar = pcap.record(t(1, 1), &ip);
    liar[8..12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    bytes.extend(liar);
    bytes.extend(pcap.record(t(1, 2), &ip));
    let started = Instant::now();
    let (records, error, _) = read_all(&bytes);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(records.len(), 1);
    let (offset, frame, damage) = damaged(error);
    assert_eq!((offset, frame), (second_at as u64, 2));
    assert!(
        matches!(
            damage,
            Damage::TooLarge {
                length: 0xffff_fff0,
                ..
            }
        ),
        "{damage:?}"
    );
}

#[test]
fn garbage_in_the_middle_of_a_pcap() {
    let pcap = Pcap::new(101);
    let ip = ipv4_udp(CLIENT, DEVICE, &bind_d8());
    let mut bytes = pcap.file(&[(t(1, 0), ip.clone()), (t(1, 1), ip.clone())]);
    let garbage_at = bytes.len();
    bytes.extend_from_slice(b"GARBAGE GARBAGE GARBAGE GARBAGE!");
    bytes.extend(pcap.record(t(1, 2), &ip));
    let (records, error, _) = read_all(&bytes);
    assert_eq!(records.len(), 2);
    let (offset, frame, _) = damaged(error);
    assert_eq!((offset, frame), (garbage_at as u64, 3));
}

#[test]
fn pcapng_truncated_block() {
    let bytes = two_interface_pcapng(false);
    let cut = &bytes[..bytes.len() - 10];
    let (records, error, _) = read_all(cut);
    assert_eq!(records.len(), 2);
    let (offset, frame, damage) = damaged(error);
    assert_eq!(frame, 3);
    let last_block_len = Ng { big_endian: false }
        .epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8()))
        .len();
    assert_eq!(offset, (bytes.len() - last_block_len) as u64);
    assert!(matches!(damage, Damage::Truncated { .. }), "{damage:?}");
}

#[test]
fn pcapng_lying_block_length() {
    let ng = Ng { big_endian: false };
    let mut bytes = ng.shb();
    bytes.extend(ng.idb(101, None));
    bytes.extend(ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    let liar_at = bytes.len();
    let mut liar = ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8()));
    liar[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    bytes.extend(liar);
    let (records, error, _) = read_all(&bytes);
    assert_eq!(records.len(), 1);
    let (offset, frame, damage) = damaged(error);
    assert_eq!((offset, frame), (liar_at as u64, 2));
    assert!(matches!(damage, Damage::TooLarge { .. }), "{damage:?}");
}

#[test]
fn pcapng_packet_length_overrunning_its_block() {
    let ng = Ng { big_endian: false };
    let mut bytes = ng.shb();
    bytes.extend(ng.idb(101, None));
    let bad_at = bytes.len();
    let mut bad = ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8()));
    // Captured length far beyond the block's own length.
    bad[20..24].copy_from_slice(&5000u32.to_le_bytes());
    bytes.extend(bad);
    bytes.extend(ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    let (records, error, _) = read_all(&bytes);
    assert!(records.is_empty());
    let (offset, frame, _) = damaged(error);
    assert_eq!((offset, frame), (bad_at as u64, 1));
}

#[test]
fn pcapng_garbage_between_blocks() {
    let ng = Ng { big_endian: false };
    let mut bytes = ng.shb();
    bytes.extend(ng.idb(101, None));
    bytes.extend(ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    let garbage_at = bytes.len();
    bytes.extend_from_slice(&[0x13; 40]);
    bytes.extend(ng.epb(0, 0, &ipv4_udp(CLIENT, DEVICE, &bind_d8())));
    let (records, error, _) = read_all(&bytes);
    assert_eq!(records.len(), 1);
    let (offset, frame, _) = damaged(error);
    assert_eq!((offset, frame), (garbage_at as u64, 2));
}

#[test]
fn not_a_capture_and_empty_input() {
    assert!(matches!(
        PcapReader::new(&b"Hello, world! This is text, not a capture."[..]),
        Err(ReadError::NotACapture { first }) if first == "48656c6c"
    ));
    assert!(matches!(PcapReader::new(&b""[..]), Err(ReadError::Empty)));
    // A pcap header cut short.
    let header = Pcap::new(1).header();
    assert!(matches!(
        PcapReader::new(&header[..10]),
        Err(ReadError::BadHeader(_))
    ));
}

#[test]
fn header_only_capture_has_no_records_and_no_error() {
    let (records, stats) = read_ok(&Pcap::new(1).header());
    assert!(records.is_empty());
    assert_eq!(stats.frames, 0);
}

// ---------------------------------------------------------------------------
// Smoke loop

/// Overwrites a u32 at a random 4-aligned offset with an extreme value:
/// where a length field sits, that is a lying length.
fn lie(bytes: &mut [u8], rng: &mut SmallRng) {
    if bytes.len() < 8 {
        return;
    }
    let at = rng.gen_range(0..bytes.len() / 4 - 1) * 4;
    let value: u32 = match rng.gen_range(0..6) {
        0 => 0,
        1 => u32::MAX,
        2 => 0x8000_0000,
        3 => 0x00ff_ffff,
        4 => rng.gen_range(0..70_000),
        _ => rng.gen(),
    };
    let le = rng.gen_bool(0.5);
    bytes[at..at + 4].copy_from_slice(&if le {
        value.to_le_bytes()
    } else {
        value.to_be_bytes()
    });
}

fn mutate(base: &[u8], rng: &mut SmallRng) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..7) {
            0 => {
                let keep = rng.gen_range(0..=bytes.len());
                bytes.truncate(keep);
            }
            1 => {
                for _ in 0..rng.gen_range(1..8) {
                    if !bytes.is_empty() {
                        let i = rng.gen_range(0..bytes.len());
                        bytes[i] ^= 1 << rng.gen_range(0..8);
                    }
                }
            }
            2 => lie(&mut bytes, rng),
            3 => {
                let at = rng.gen_range(0..=bytes.len());
                let junk: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
                bytes.splice(at..at, junk);
            }
            4 => {
                // Keep the header (so the reader starts), damage the rest.
                let from = 24.min(bytes.len());
                let at = rng.gen_range(from..=bytes.len());
                let len = rng.gen_range(0..=(bytes.len() - at).min(64));
                bytes.drain(at..at + len);
            }
            5 => {
                // Every pcapng block type pcap-parser knows, at a random
                // 4-aligned offset: each has its own parser.
                const TYPES: [u32; 12] = [
                    0x0A0D_0D0A,
                    1,
                    2,
                    3,
                    4,
                    5,
                    6,
                    9,
                    0x0A,
                    0xBAD,
                    0x4000_0BAD,
                    0x8000_0001,
                ];
                if bytes.len() >= 8 {
                    let at = rng.gen_range(0..bytes.len() / 4 - 1) * 4;
                    let block_type = TYPES[rng.gen_range(0..TYPES.len())];
                    bytes[at..at + 4].copy_from_slice(&block_type.to_le_bytes());
                }
            }
            _ => {
                let extra: Vec<u8> = (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect();
                bytes.extend(extra);
            }
        }
    }
    bytes
}

#[test]
fn mutated_captures_never_panic_hang_or_overrun() {
    let fragments = ipv4_fragments(CLIENT, DEVICE, 1, &big_payload(), 1480);
    let frag_frames: Vec<_> = fragments.iter().map(|f| (t(1, 0), f.clone())).collect();
    let sll_frames = vec![(t(2, 0), sll(0x0800, &ipv4_udp(CLIENT, DEVICE, US_REPLY)))];
    let bases = [
        three_kinds_capture(),
        two_interface_pcapng(false),
        two_interface_pcapng(true),
        Pcap {
            big_endian: true,
            nanosecond: true,
            ..Pcap::new(101)
        }
        .file(&frag_frames),
        Pcap::new(113).file(&sll_frames),
    ];
    let mut rng = SmallRng::seed_from_u64(0x5eed_dec0de);
    let started = Instant::now();
    let mut accepted = 0;
    // DECODE_SMOKE_ROUNDS raises the count for a longer hunt.
    let rounds = std::env::var("DECODE_SMOKE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000usize);
    for round in 0..rounds {
        let base = &bases[round % bases.len()];
        let bytes = mutate(base, &mut rng);
        let Ok(reader) = PcapReader::new(&bytes[..]) else {
            continue;
        };
        accepted += 1;
        let mut items = 0usize;
        let mut errors = 0;
        for item in reader {
            items += 1;
            if let Ok(record) = &item {
                assert!(record.payload.len() <= bytes.len());
            } else {
                errors += 1;
            }
            // Every record comes from at least 16 bytes of input.
            assert!(
                items <= bytes.len() / 16 + 1,
                "round {round}: too many records"
            );
        }
        assert!(errors <= 1, "round {round}: more than one error");
    }
    assert!(
        accepted > rounds / 4,
        "most mutations keep a readable header"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "smoke loop took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Cross-check with Wireshark's editcap

#[test]
fn editcap_conversions_read_the_same_records() {
    let editcap = common::require_program("editcap", "tshark");
    let dir = common::scratch_dir("decode_reader_editcap");
    let original = dir.join("original.pcap");
    let fragments = ipv4_fragments(DEVICE, CLIENT, 77, &big_payload(), 1480);
    let mut bytes = three_kinds_capture();
    let pcap = Pcap::new(1);
    for (i, fragment) in fragments.iter().enumerate() {
        bytes.extend(pcap.record(t(1_700_000_002, i as u32), &ethernet(0x0800, &[], fragment)));
    }
    std::fs::write(&original, &bytes).unwrap();
    let (expected, _) = read_ok(&bytes);
    assert_eq!(expected.len(), 4);
    for (format, name) in [
        ("pcapng", "converted.pcapng"),
        ("nsecpcap", "converted-ns.pcap"),
    ] {
        let converted = dir.join(name);
        let status = Command::new(&editcap)
            .args(["-F", format])
            .arg(&original)
            .arg(&converted)
            .status()
            .unwrap();
        assert!(status.success(), "editcap -F {format}");
        let converted = std::fs::read(&converted).unwrap();
        let reader = PcapReader::new(&converted[..]).unwrap();
        if format == "pcapng" {
            assert_eq!(reader.format(), CaptureFormat::PcapNg);
        } else {
            assert!(matches!(
                reader.format(),
                CaptureFormat::Pcap {
                    nanosecond: true,
                    ..
                }
            ));
        }
        let (records, _) = read_ok(&converted);
        assert_eq!(records, expected, "editcap -F {format}");
    }
}
