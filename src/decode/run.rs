//! The engine of `dhp2p decode`: read a capture and print one record per Dahua P2P
//! datagram (summary lines, field trees, hex or NDJSON), or hand the
//! datagrams to `--stats` and `--follow`.
//!
//! Records go to stdout and nothing else does; counts, warnings, damage and
//! the progress bar go to stderr. [`decode`] takes its streams as parameters
//! so tests drive it without a process.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::describe::{describe_with, Options};
use super::dissect::write_details;
use super::filter::SessionFilter;
use super::follow::{FollowResult, Follower};
use super::pcap::{PcapReader, ReadError, ReaderStats};
use super::record::Record;
use super::stats::StatsCollector;
use crate::codec::classify::{kind_of, Kind};
use crate::codec::ptcp;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The file was damaged (decoded up to the damage), or held no Dahua P2P
/// datagram at all.
pub const EXIT_DAMAGED_OR_EMPTY: u8 = 1;
/// Bad command line (the argument parser's own code).
pub const EXIT_USAGE: u8 = 2;
/// The input could not be opened or is not a capture.
pub const EXIT_NOT_A_CAPTURE: u8 = 4;

/// Records between progress bar updates.
const PROGRESS_EVERY: u64 = 2048;

/// Which of a realm's two byte streams `--follow` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowDirection {
    /// What the device (the tunnelled service) sent: the RTSP answers and media.
    FromDevice,
    /// What the client sent through the tunnel.
    ToDevice,
}

/// What `decode` prints and how (the flags of `dhp2p decode`).
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Capture to read (pcap or pcapng); `-` reads a stream from stdin.
    pub file: PathBuf,
    /// Print the field tree under each summary line (like tshark -V).
    pub tree: bool,
    /// Print a hex dump of each datagram (secret bytes masked).
    pub hex_dump: bool,
    /// One JSON object per datagram and line (NDJSON) instead of text; with
    /// --stats, the report as one JSON object.
    pub json: bool,
    /// Only datagrams of this kind: cloud, punch, ptcp or unknown (repeatable).
    pub kinds: Vec<Kind>,
    /// Only PTCP datagrams whose body names this realm (0x1234abcd or decimal).
    pub realm: Option<u32>,
    /// Only datagrams to or from ADDR:PORT, or between A and B (`A-B`).
    pub session: Option<SessionFilter>,
    /// Print a report per session and realm (handshake timeline, path,
    /// bytes, losses, verdict) instead of one record per datagram.
    pub stats: bool,
    /// Write one realm's reassembled byte stream instead of records.
    pub follow: Option<u32>,
    /// With --follow: which direction of the realm to write.
    pub direction: FollowDirection,
    /// With --follow: print the realm's RTSP dialogue (requests, responses,
    /// RTP packet counts) instead of its bytes.
    pub rtsp: bool,
    /// With --follow: write to FILE instead of stdout.
    pub output: Option<PathBuf>,
    /// Show secrets (DevAuth, Authorization credentials) instead of
    /// <redacted>. Do not paste the output anywhere public.
    pub no_redact: bool,
}

impl DecodeOptions {
    /// Arguments for `file` with every option off (for tests and callers).
    pub fn for_file(file: impl Into<PathBuf>) -> DecodeOptions {
        DecodeOptions {
            file: file.into(),
            tree: false,
            hex_dump: false,
            json: false,
            kinds: Vec::new(),
            realm: None,
            session: None,
            stats: false,
            follow: None,
            direction: FollowDirection::FromDevice,
            rtsp: false,
            output: None,
            no_redact: false,
        }
    }

    pub fn is_stdin(&self) -> bool {
        self.file.as_os_str() == "-"
    }

    pub fn name(&self) -> String {
        if self.is_stdin() {
            "stdin".into()
        } else {
            self.file.display().to_string()
        }
    }
}

/// Counts for the end-of-run line.
#[derive(Debug, Default)]
struct Counts {
    per_kind: [u64; 4],
    malformed: u64,
    shown: u64,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Ptcp => 0,
            Kind::Cloud => 1,
            Kind::Punch => 2,
            Kind::Unknown => 3,
        };
        if let Some(n) = self.per_kind.get_mut(slot) {
            *n += 1;
        }
    }

    fn protocol_datagrams(&self) -> u64 {
        self.per_kind.iter().take(3).sum()
    }
}

/// What the records feed.
enum Sink {
    Records,
    Stats(Box<StatsCollector>),
    Follow(Box<Follower>),
}

/// Decodes `input` (a pcap or pcapng stream) according to `args`: records
/// to `out`, diagnostics to `err`. `progress` is the input size when a
/// progress bar should be drawn. Returns the exit code; `Err` only for
/// write errors.
pub fn decode(
    args: &DecodeOptions,
    quiet: bool,
    input: impl Read,
    progress: Option<u64>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<u8> {
    let name = args.name();
    let mut reader = match PcapReader::new(input) {
        Ok(reader) => reader,
        Err(error) => {
            writeln!(err, "dhp2p decode: {name}: {error}")?;
            return Ok(EXIT_NOT_A_CAPTURE);
        }
    };
    let bar = progress.map(progress_bar);
    let options = Options {
        redact: !args.no_redact,
    };
    let mut sink = if args.stats {
        Sink::Stats(Box::new(StatsCollector::new()))
    } else if let Some(realm) = args.follow {
        Sink::Follow(Box::new(Follower::new(realm)))
    } else {
        Sink::Records
    };
    let records_mode = matches!(sink, Sink::Records);
    let mut counts = Counts::default();
    let mut damage = None;
    let mut first_time = None;
    while let Some(next) = reader.next_record() {
        let record = match next {
            Ok(record) => record,
            Err(error) => {
                damage = Some(error);
                break;
            }
        };
        if first_time.is_none() {
            first_time = reader.stats().first_time;
        }
        if let Some(bar) = &bar {
            if reader.stats().udp % PROGRESS_EVERY == 0 {
                bar.set_position(reader.offset());
            }
        }
        let kind = kind_of(&record.payload);
        counts.add(kind);
        if !wanted(args, kind, &record) {
            continue;
        }
        match &mut sink {
            Sink::Stats(collector) => collector.add(&record),
            Sink::Follow(follower) => follower.add(&record),
            Sink::Records => {
                counts.shown += 1;
                let relative = relative_nanos(record.time, first_time.unwrap_or_default());
                // The bulk of a capture is PTCP, and a PTCP summary is the
                // codec's Display of the packet (what `describe` puts in
                // `summary`): skip building the field tree for it.
                let summary_only = !args.json && !args.tree && !args.hex_dump;
                if summary_only && kind == Kind::Ptcp {
                    if let Ok(packet) = ptcp::Packet::decode(&record.payload) {
                        writeln!(
                            out,
                            "{:>5} {} {} → {} PTCP {packet}",
                            record.number,
                            format_relative(relative),
                            record.src,
                            record.dst,
                        )?;
                        continue;
                    }
                }
                let desc = describe_with(&record.payload, options);
                if desc.error.is_some() {
                    counts.malformed += 1;
                }
                if args.json {
                    write_json(&record, relative, desc.to_json(), out)?;
                } else {
                    writeln!(
                        out,
                        "{:>5} {} {} → {} {} {}",
                        record.number,
                        format_relative(relative),
                        record.src,
                        record.dst,
                        desc.kind.label(),
                        desc.summary
                    )?;
                    write_details(&desc, &record.payload, args.tree, args.hex_dump, out)?;
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match sink {
        Sink::Records => {}
        Sink::Stats(collector) => write_stats(&collector, args.json, out)?,
        Sink::Follow(follower) => {
            let result = follower.finish();
            if !result.found() {
                write!(err, "dhp2p decode: {name}: {}", result.summary())?;
                return Ok(EXIT_DAMAGED_OR_EMPTY);
            }
            if !quiet {
                // Where the realm was, its BIND target and any gaps.
                write!(err, "dhp2p decode: {}", result.summary())?;
            }
            if let Err(error) = write_follow(args, result, out) {
                writeln!(err, "dhp2p decode: {error}")?;
                return Ok(EXIT_DAMAGED_OR_EMPTY);
            }
        }
    }
    out.flush()?;
    if !quiet {
        let line = summary_line(&name, reader.stats(), &counts, records_mode);
        writeln!(err, "{line}")?;
    }
    if let Some(error) = damage {
        let stopped = match &error {
            ReadError::Damaged { .. } => "decoded what came before it",
            _ => "stopped there",
        };
        writeln!(err, "dhp2p decode: {name}: {error}; {stopped}")?;
        return Ok(EXIT_DAMAGED_OR_EMPTY);
    }
    if counts.protocol_datagrams() == 0 {
        writeln!(
            err,
            "dhp2p decode: {name}: no Dahua P2P datagram (cloud, punch or PTCP) in the capture"
        )?;
        return Ok(EXIT_DAMAGED_OR_EMPTY);
    }
    Ok(EXIT_OK)
}

/// Whether the filters keep a datagram; cheap checks first, and the realm
/// filter decodes only the PTCP header and sub-header.
fn wanted(args: &DecodeOptions, kind: Kind, record: &Record) -> bool {
    if !args.kinds.is_empty() && !args.kinds.contains(&kind) {
        return false;
    }
    if let Some(session) = &args.session {
        if !session.matches(record) {
            return false;
        }
    }
    if let Some(realm) = args.realm {
        if kind != Kind::Ptcp {
            return false;
        }
        let named = ptcp::Packet::decode(&record.payload)
            .ok()
            .and_then(|packet| packet.body.realm());
        if named != Some(realm) {
            return false;
        }
    }
    true
}

/// Nanoseconds from `first` to `time`, negative when the capture's clock
/// went backwards.
fn relative_nanos(time: Duration, first: Duration) -> i128 {
    time.as_nanos() as i128 - first.as_nanos() as i128
}

/// A relative time as tshark prints it: seconds with 6 decimals.
fn format_relative(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let micros = nanos.unsigned_abs() / 1000;
    format!("{sign}{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn write_json(
    record: &Record,
    relative_nanos: i128,
    description: Value,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut object = match description {
        Value::Object(object) => object,
        _ => serde_json::Map::new(),
    };
    object.insert("number".into(), record.number.into());
    object.insert("time".into(), record.time.as_secs_f64().into());
    let relative = relative_nanos as f64 / 1e9;
    object.insert("time_relative".into(), relative.into());
    object.insert("src".into(), record.src.to_string().into());
    object.insert("dst".into(), record.dst.to_string().into());
    object.insert("session".into(), record.session().to_string().into());
    serde_json::to_writer(&mut *out, &Value::Object(object)).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// `--stats`: the collector's report, as text or one JSON object.
fn write_stats(collector: &StatsCollector, json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &collector.report_json()).map_err(io::Error::from)?;
        out.write_all(b"\n")
    } else {
        out.write_all(collector.report_text().as_bytes())
    }
}

/// `--follow`: the realm's bytes in one direction, or its RTSP dialogue,
/// to stdout or `-o FILE`.
fn write_follow(
    args: &DecodeOptions,
    result: FollowResult,
    out: &mut impl Write,
) -> io::Result<()> {
    let report;
    let bytes: &[u8] = if args.rtsp {
        report = result.rtsp_report();
        report.as_bytes()
    } else {
        match args.direction {
            FollowDirection::FromDevice => result.from_device(),
            FollowDirection::ToDevice => result.to_device(),
        }
    };
    match &args.output {
        Some(path) => {
            let mut file = File::create(path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
            })?;
            file.write_all(bytes)?;
            file.flush()
        }
        None => out.write_all(bytes),
    }
}

/// The end-of-run line on stderr.
fn summary_line(name: &str, stats: &ReaderStats, counts: &Counts, records_mode: bool) -> String {
    let [ptcp, cloud, punch, unknown] = counts.per_kind;
    let mut line = format!(
        "dhp2p decode: {name}: {} frames, {} UDP datagrams (PTCP {ptcp}, CLOUD {cloud}, PUNCH {punch}, other UDP {unknown})",
        stats.frames, stats.udp
    );
    if counts.shown != stats.udp && records_mode {
        line.push_str(&format!(", {} shown", counts.shown));
    }
    if records_mode {
        line.push_str(&format!(", {} malformed", counts.malformed));
    }
    let skipped = [
        (stats.skipped_non_udp, "not UDP"),
        (stats.skipped_link_type, "unknown link type"),
        (stats.truncated_frames, "truncated"),
        (stats.malformed_frames, "bad IP/UDP header"),
    ];
    let skipped: Vec<String> = skipped
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    if skipped.is_empty() {
        line.push_str(", 0 frames skipped");
    } else {
        line.push_str(&format!(", frames skipped: {}", skipped.join(", ")));
    }
    if stats.fragments > 0 {
        line.push_str(&format!(
            ", {} datagrams reassembled from {} fragments ({} given up)",
            stats.fragments_reassembled, stats.fragments, stats.fragments_dropped
        ));
    }
    line
}

fn progress_bar(size: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(size),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptcp_fast_path_prints_what_describe_summarises() {
        // DH-P2P.md §11.7 A1 (SYN) and §11.8 D8 (BIND), D10 (CONN).
        for hex_text in [
            "505443500000000000000000 0002ffff0000000000000000 00030100",
            "505443500000002c00000010 0000fffd0000000300001003 110000000a0b0c0d000000000000022a7f000001",
            "505443500000001000000040 0000fffe0000100500000003 120000000a0b0c0d00000000434f4e4e",
        ] {
            let digits: String = hex_text.split_whitespace().collect();
            let bytes = hex::decode(digits).unwrap();
            let packet = ptcp::Packet::decode(&bytes).unwrap();
            assert_eq!(packet.to_string(), describe_with(&bytes, Options::default()).summary);
        }
    }

    #[test]
    fn relative_time_has_six_decimals_and_a_sign() {
        let first = Duration::new(100, 0);
        let later = relative_nanos(Duration::new(100, 3_120_000), first);
        assert_eq!(format_relative(later), "0.003120");
        let earlier = relative_nanos(Duration::new(99, 500_000_000), first);
        assert_eq!(format_relative(earlier), "-0.500000");
    }
}
