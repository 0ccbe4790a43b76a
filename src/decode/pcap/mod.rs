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
use std::time::Duration;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapError, PcapNGReader};

use self::blocks::State;
use self::reassembly::Reassembler;
pub use self::writer::{udp_pcap_bytes, PcapBytes};
use crate::decode::record::Record;

mod blocks;
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
