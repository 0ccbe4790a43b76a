//! Streaming capture reader: pcap (both byte orders, µs and ns) and pcapng
//! in, one [`Record`] per UDP datagram out.
//!
//! Files come from tcpdump on routers, PCAPdroid on phones and Wireshark on
//! PCs, so the reader takes every common link type (Ethernet with VLAN tags,
//! Linux cooked SLL/SLL2, raw IP, BSD loopback), IPv4 and IPv6, and rebuilds
//! fragmented datagrams. It reads through `pcap-parser`'s circular buffer, so
//! memory stays constant whatever the file size and a pipe
//! (`tcpdump -w - | dhp2p decode -`) works as well as a file.
//!
//! A damaged file (truncated block, garbage, a lying length) is decoded up to
//! the damage, then the reader yields one [`ReadError::Damaged`] naming the
//! byte offset and frame where it stopped, and ends. Every length read from
//! the file is checked against a bound before it sizes a buffer.

use std::io::{self, Chain, Cursor, Read};
use std::net::IpAddr;
use std::time::Duration;

use etherparse::{Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

use self::link::{be16, network_layer, udp_datagram, Datagram, Skip};
use self::reassembly::{FragmentKey, Reassembler};
pub use self::writer::{udp_pcap_bytes, PcapBytes};
use crate::decode::record::Record;

mod link;
mod reassembly;
mod writer;

/// Initial size of the read buffer; holds dozens of ordinary frames.
pub const INITIAL_BUFFER: usize = 64 * 1024;
/// Largest block the reader buffers (a pcapng block or a pcap record).
/// Anything larger is treated as a lying length: the file is damaged there.
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;
/// Largest captured length of a pcap record that is believed: libpcap's and
/// Wireshark's limit for ordinary link types, or the file's snaplen if larger.
const MAX_LEGACY_CAPLEN: u32 = 262_144;
/// Most interfaces remembered per pcapng section.
const MAX_INTERFACES: usize = 4096;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;

/// Which container the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// libpcap, with the byte order and timestamp resolution of its magic.
    Pcap {
        big_endian: bool,
        nanosecond: bool,
    },
    PcapNg,
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureFormat::Pcap {
                big_endian,
                nanosecond,
            } => write!(
                f,
                "pcap ({}, {})",
                if *big_endian {
                    "big-endian"
                } else {
                    "little-endian"
                },
                if *nanosecond { "ns" } else { "µs" }
            ),
            CaptureFormat::PcapNg => f.write_str("pcapng"),
        }
    }
}

/// Why reading stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("block truncated: it needs {needed} bytes but the input ends after {available}")]
    Truncated { needed: u64, available: u64 },
    #[error("block length {length} is larger than the {max}-byte limit (a lying length field)")]
    TooLarge { length: u64, max: u64 },
    #[error("invalid block: {0}")]
    Invalid(String),
    #[error("read error: {0}")]
    Io(String),
}

/// Errors of [`PcapReader`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input could not be read at all.
    #[error("cannot read the input: {0}")]
    Io(#[from] io::Error),
    /// Nothing to read.
    #[error("the input is empty, not a pcap or pcapng capture")]
    Empty,
    /// The first bytes are no pcap or pcapng magic.
    #[error("not a pcap or pcapng capture (starts with {first})")]
    NotACapture { first: String },
    /// The capture header itself is broken.
    #[error("broken capture header: {0}")]
    BadHeader(String),
    /// The file is damaged at `offset`; frames before it were decoded.
    #[error("capture damaged at byte offset {offset} (frame {frame}): {damage}")]
    Damaged {
        /// Byte offset of the block where reading stopped.
        offset: u64,
        /// Number the frame at that offset would have had.
        frame: u64,
        damage: Damage,
    },
}

/// What the reader saw, for the end-of-run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Every frame (packet record or block) in the file, as tshark numbers them.
    pub frames: u64,
    /// UDP datagrams yielded as records (a reassembled datagram counts once).
    pub udp: u64,
    /// IP frames that are not UDP and frames that are not IP (ARP, LLDP…).
    pub skipped_non_udp: u64,
    /// Frames on a link type this reader does not know.
    pub skipped_link_type: u64,
    /// Frames cut short by the snap length before the end of their UDP datagram.
    pub truncated_frames: u64,
    /// Frames whose IP or UDP header does not parse, or that name an
    /// interface the file never described.
    pub malformed_frames: u64,
    /// IP fragments of UDP datagrams seen.
    pub fragments: u64,
    /// Datagrams rebuilt from fragments.
    pub fragments_reassembled: u64,
    /// Fragmented datagrams given up (never completed, inconsistent, or
    /// evicted by the memory and age limits).
    pub fragments_dropped: u64,
    /// Capture time of the first frame.
    pub first_time: Option<Duration>,
}

/// One interface's link type and clock.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    units_per_second: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_seconds: i64,
}

type Source<R> = Chain<Cursor<Vec<u8>>, Retry<R>>;

enum Inner<R: Read> {
    Legacy(LegacyPcapReader<Source<R>>),
    Ng(PcapNGReader<Source<R>>),
}

fn as_dyn<R: Read>(inner: &mut Inner<R>) -> &mut dyn PcapReaderIterator {
    match inner {
        Inner::Legacy(r) => r,
        Inner::Ng(r) => r,
    }
}

/// Retries reads interrupted by a signal, which pcap-parser would take for
/// a read error.
struct Retry<R>(R);

impl<R: Read> Read for Retry<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// State the block handler updates; kept apart from the pcap-parser reader
/// so a block borrowed from the reader's buffer can be handled in place.
struct State {
    format: CaptureFormat,
    interfaces: Vec<Interface>,
    /// Byte order of the current pcapng section.
    ng_big_endian: bool,
    /// Largest believable pcap record (bounded by [`MAX_BLOCK`]).
    legacy_max_caplen: u32,
    /// Bytes before a pcap record's data: 16, or 24 in the "modified" format.
    legacy_record_header: u64,
    reassembler: Reassembler,
    stats: ReaderStats,
}

/// A streaming reader of UDP datagrams from a pcap or pcapng stream.
pub struct PcapReader<R: Read> {
    inner: Inner<R>,
    state: State,
    capacity: usize,
    finished: bool,
}

impl<R: Read> PcapReader<R> {
    /// Reads the capture header and prepares to stream records.
    pub fn new(mut input: R) -> Result<Self, ReadError> {
        let mut prefix = Vec::with_capacity(INITIAL_BUFFER);
        fill_to(&mut input, &mut prefix, 24)?;
        if prefix.is_empty() {
            return Err(ReadError::Empty);
        }
        let magic_le = read_u32(&prefix, 0, false);
        let (format, capacity) = match magic_le {
            Some(PCAPNG_SHB) => {
                // The whole section header must be in pcap-parser's first read.
                fill_to(&mut input, &mut prefix, 12)?;
                let big_endian = match read_u32(&prefix, 8, false) {
                    Some(PCAPNG_BOM) => false,
                    Some(bom) if bom.swap_bytes() == PCAPNG_BOM => true,
                    _ => {
                        return Err(ReadError::BadHeader(
                            "pcapng section header without a valid byte-order magic".into(),
                        ))
                    }
                };
                let len = read_u32(&prefix, 4, big_endian).unwrap_or(0) as usize;
                if !(28..=MAX_BLOCK).contains(&len) || len % 4 != 0 {
                    return Err(ReadError::BadHeader(format!(
                        "pcapng section header length {len} is not valid"
                    )));
                }
                fill_to(&mut input, &mut prefix, len)?;
                (
                    CaptureFormat::PcapNg,
                    INITIAL_BUFFER.max(len.next_power_of_two()),
                )
            }
            Some(0xa1b2_c3d4) | Some(0xa1b2_cd34) => (legacy(false, false), INITIAL_BUFFER),
            Some(0xa1b2_3c4d) => (legacy(false, true), INITIAL_BUFFER),
            Some(0xd4c3_b2a1) => (legacy(true, false), INITIAL_BUFFER),
            Some(0x4d3c_b2a1) => (legacy(true, true), INITIAL_BUFFER),
            _ => {
                let shown = prefix.get(..prefix.len().min(4)).unwrap_or(&[]);
                return Err(ReadError::NotACapture {
                    first: if shown.is_empty() {
                        "nothing".into()
                    } else {
                        hex::encode(shown)
                    },
                });
            }
        };
        if prefix.len() < 24 && format != CaptureFormat::PcapNg {
            return Err(ReadError::BadHeader(format!(
                "pcap file header truncated: {} of 24 bytes",
                prefix.len()
            )));
        }
        // The prefix is read again, first, by pcap-parser (a Cursor fills its
        // first read whole).
        let source = Cursor::new(prefix).chain(Retry(input));
        let inner = match format {
            CaptureFormat::PcapNg => Inner::Ng(
                PcapNGReader::new(capacity, source)
                    .map_err(|e| ReadError::BadHeader(e.to_string()))?,
            ),
            CaptureFormat::Pcap { .. } => Inner::Legacy(
                LegacyPcapReader::new(capacity, source)
                    .map_err(|e| ReadError::BadHeader(e.to_string()))?,
            ),
        };
        let ng_big_endian = false;
        Ok(PcapReader {
            inner,
            state: State {
                format,
                interfaces: Vec::new(),
                ng_big_endian,
                legacy_max_caplen: MAX_LEGACY_CAPLEN,
                legacy_record_header: 16,
                reassembler: Reassembler::default(),
                stats: ReaderStats::default(),
            },
            capacity,
            finished: false,
        })
    }

    pub fn format(&self) -> CaptureFormat {
        self.state.format
    }

    /// What was seen so far (all of it once the iterator has ended).
    pub fn stats(&self) -> &ReaderStats {
        &self.state.stats
    }

    /// Bytes of the input consumed so far (for a progress bar).
    pub fn offset(&self) -> u64 {
        match &self.inner {
            Inner::Legacy(r) => r.consumed() as u64,
            Inner::Ng(r) => r.consumed() as u64,
        }
    }

    /// The next UDP datagram, `None` at the end of the input (or after the
    /// one error that reports damage).
    pub fn next_record(&mut self) -> Option<Result<Record, ReadError>> {
        if self.finished {
            return None;
        }
        let result = self.advance();
        match result {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.finish();
                None
            }
            Err(error) => {
                self.finish();
                Some(Err(error))
            }
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        let dropped = self.state.reassembler.clear();
        self.state.stats.fragments_dropped += dropped;
    }

    fn advance(&mut self) -> Result<Option<Record>, ReadError> {
        // Refills that brought nothing in a row; a stuck parser must not spin.
        let mut stalls = 0u32;
        loop {
            let reader = as_dyn(&mut self.inner);
            let offset = reader.consumed() as u64;
            // Check the head block's length before pcap-parser does its
            // arithmetic on it (a pcapng length below 12 overflows there).
            if offset > 0 {
                if let Err(damage) = self.state.declared_len(reader.data()) {
                    return Err(ReadError::Damaged {
                        offset,
                        frame: self.state.stats.frames + 1,
                        damage,
                    });
                }
            }
            let failure = match reader.next() {
                Ok((len, block)) => {
                    let outcome = self.state.handle_block(block);
                    match outcome {
                        Ok(record) => {
                            reader.consume(len);
                            if record.is_some() {
                                return Ok(record);
                            }
                            stalls = 0;
                            continue;
                        }
                        Err(damage) => Failure::Damage(damage),
                    }
                }
                Err(PcapError::Eof) => return Ok(None),
                Err(PcapError::Incomplete(_)) | Err(PcapError::BufferTooSmall) => Failure::NeedMore,
                Err(PcapError::UnexpectedEof) => Failure::Eof,
                Err(PcapError::ReadError) => {
                    Failure::Damage(Damage::Io("the input could not be read further".into()))
                }
                Err(e) => Failure::Damage(Damage::Invalid(parser_error(&e))),
            };
            let damage = match failure {
                Failure::Damage(damage) => damage,
                Failure::Eof => {
                    let data = reader.data();
                    if data.is_empty() {
                        return Ok(None);
                    }
                    let available = data.len() as u64;
                    match self.state.declared_len(data) {
                        Ok(Some(needed)) => Damage::Truncated { needed, available },
                        Ok(None) => Damage::Truncated {
                            needed: available + 1,
                            available,
                        },
                        Err(damage) => damage,
                    }
                }
                Failure::NeedMore => {
                    let data = reader.data();
                    let available = data.len();
                    match self.state.declared_len(data) {
                        Err(damage) => damage,
                        Ok(Some(declared)) if declared <= available as u64 => Damage::Invalid(
                            format!("its contents overrun its own length of {declared} bytes"),
                        ),
                        Ok(declared) => {
                            if let Some(declared) = declared {
                                // Bounded by declared_len: at most MAX_BLOCK.
                                let wanted = (declared as usize).next_power_of_two();
                                if wanted > self.capacity && reader.grow(wanted) {
                                    self.capacity = wanted;
                                }
                            }
                            let before = (reader.data().len(), reader.reader_exhausted());
                            if reader.refill().is_err() {
                                Damage::Io("the input could not be read further".into())
                            } else {
                                let after = (reader.data().len(), reader.reader_exhausted());
                                if after == before {
                                    stalls += 1;
                                } else {
                                    stalls = 0;
                                }
                                if stalls < 4 {
                                    continue;
                                }
                                Damage::Invalid("the parser cannot make progress".into())
                            }
                        }
                    }
                }
            };
            return Err(ReadError::Damaged {
                offset,
                frame: self.state.stats.frames + 1,
                damage,
            });
        }
    }
}

enum Failure {
    NeedMore,
    Eof,
    Damage(Damage),
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

fn legacy(big_endian: bool, nanosecond: bool) -> CaptureFormat {
    CaptureFormat::Pcap {
        big_endian,
        nanosecond,
    }
}

/// Reads until `buf` holds `want` bytes or the input ends.
fn fill_to(input: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    while buf.len() < want {
        let room = (want - buf.len()).min(chunk.len());
        let n = match input.read(&mut chunk[..room]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
    }
    Ok(())
}

fn read_u32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

/// pcap-parser's errors print the whole remaining input; keep the kind only.
fn parser_error(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("the block does not parse ({kind:?})")
        }
        PcapError::HeaderNotRecognized => "unrecognised block".into(),
        other => format!("{other:?}"),
    }
}

impl State {
    /// The length the block at the head of `data` declares, checked against
    /// the limits; `None` when too few bytes are there to tell.
    fn declared_len(&self, data: &[u8]) -> Result<Option<u64>, Damage> {
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
    fn handle_block(&mut self, block: PcapBlockOwned<'_>) -> Result<Option<Record>, Damage> {
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

    fn handle_ng(&mut self, block: Block<'_>) -> Result<Option<Record>, Damage> {
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
    fn frame(&mut self, interface: usize, time: Duration, data: &[u8]) -> Option<Record> {
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

    fn count(&mut self, skip: Skip) {
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
    fn udp(&mut self, number: u64, ip: &[u8]) -> Result<Option<Datagram>, Skip> {
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

    fn reassemble(
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

/// The IP packet inside a frame of `linktype`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ng_time_applies_resolution_and_offset() {
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
