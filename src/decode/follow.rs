//! `dhp2p decode --follow REALM`: one realm's two byte streams, rebuilt from
//! DATA bodies in order of their PTCP `sent` position, each byte once.
//!
//! `sent` numbers the bytes of every body a side sent in one PTCP session
//! (all realms and commands share it, wrapping u32), so a realm's stream is
//! its DATA payloads sorted by position. A body seen twice (a resend, a
//! duplicate) sits at the same position and is taken once. Bytes missing from
//! the capture are found from the byte ranges of *all* bodies of the
//! direction: a range no body covered, between two pieces of the realm, is
//! reported as a gap at the realm offset where it falls, never papered over.
//! The missing range may have held a heartbeat or another realm's data; the
//! gap says how many session bytes are missing, not how many realm bytes.
//!
//! The realm is identified by its ID in any PTCP session of the capture; if
//! the same ID shows up in several sessions, the first one is followed and
//! the others are listed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::describe::redact_auth_text;
use super::model::{opens_new_session, SentTracker, Way};
use super::record::{Record, SessionKey};
use crate::codec::classify::{classify, Datagram};
use crate::codec::ptcp::{self, Body, Status};
use crate::codec::rtsp::{self, StreamItem};

/// Most DISCs remembered for the followed realm.
const MAX_DISCS: usize = 16;

/// One of the realm's two directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flow {
    /// Client → device: what the TCP client wrote (the BIND side).
    ToDevice,
    /// Device → client: what the device's service sent.
    FromDevice,
}

impl Flow {
    pub fn label(self) -> &'static str {
        match self {
            Flow::ToDevice => "client->device",
            Flow::FromDevice => "device->client",
        }
    }
}

/// Bytes missing from a reassembled stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Realm stream offset where the bytes are missing (bytes before it are
    /// in the output).
    pub offset: u64,
    /// Body bytes of the PTCP direction that no datagram in the capture
    /// covered there (sub-headers included; may hold other bodies).
    pub session_bytes: u64,
    /// The frame of the realm piece before the gap, if any.
    pub after_frame: Option<u64>,
    /// The frame of the realm piece after the gap, if any.
    pub before_frame: Option<u64>,
}

/// Where a piece of the stream came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Realm stream offset of the piece's first byte.
    pub offset: u64,
    pub len: usize,
    pub frame: u64,
    pub time: Duration,
}

/// One direction of the realm, reassembled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealmStream {
    pub bytes: Vec<u8>,
    pub gaps: Vec<Gap>,
    pub pieces: Vec<Piece>,
    /// DATA bodies seen again at a position already taken (resends and
    /// duplicates), with identical bytes.
    pub repeats: u64,
    /// Bodies at a position already taken with different bytes (the first
    /// copy was kept).
    pub conflicts: u64,
}

impl RealmStream {
    /// The frame holding stream offset `offset`.
    pub fn frame_at(&self, offset: u64) -> Option<&Piece> {
        let index = self.pieces.partition_point(|p| p.offset <= offset);
        index.checked_sub(1).and_then(|i| self.pieces.get(i))
    }

    /// Notes `missing` session bytes at the current end of the output
    /// (nothing when none are missing).
    fn gap_here(&mut self, missing: u64, after_frame: Option<u64>, before_frame: Option<u64>) {
        if missing > 0 {
            self.gaps.push(Gap {
                offset: self.bytes.len() as u64,
                session_bytes: missing,
                after_frame,
                before_frame,
            });
        }
    }
}

/// The BIND that opened the realm: what the device was asked to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindTarget {
    pub ip: Ipv4Addr,
    /// The u32 port field as sent (a TCP port in practice).
    pub port: u32,
    pub frame: u64,
}

/// A DISC of the followed realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscSeen {
    pub frame: u64,
    pub flow: Flow,
}

#[derive(Debug, Clone)]
struct StoredPiece {
    bytes: Vec<u8>,
    frame: u64,
    time: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    frame: u64,
    way: Way,
    /// Position just past the body in its direction.
    end: i64,
}

#[derive(Debug, Clone)]
struct FollowSession {
    key: SessionKey,
    trackers: [SentTracker; 2],
    /// Realm payloads by stream position of their first byte.
    pieces: [BTreeMap<i64, StoredPiece>; 2],
    repeats: [u64; 2],
    conflicts: [u64; 2],
    first_realm_frame: Option<u64>,
    bind: Option<(Mark, u32, Ipv4Addr)>,
    conn: Option<Mark>,
    discs: Vec<Mark>,
    first_syn: Option<Way>,
    first_data: Option<Way>,
    non_syn_bodies: [u64; 2],
}

impl FollowSession {
    fn new(key: SessionKey) -> FollowSession {
        FollowSession {
            key,
            trackers: [SentTracker::new(), SentTracker::new()],
            pieces: [BTreeMap::new(), BTreeMap::new()],
            repeats: [0; 2],
            conflicts: [0; 2],
            first_realm_frame: None,
            bind: None,
            conn: None,
            discs: Vec::new(),
            first_syn: None,
            first_data: None,
            non_syn_bodies: [0; 2],
        }
    }
}

/// Follows one realm through a capture, datagram by datagram.
#[derive(Debug, Clone)]
pub struct Follower {
    realm: u32,
    start: Option<Duration>,
    /// PTCP sessions by socket pair and epoch (a SYN after other bodies
    /// starts a new epoch: new counters on the same sockets).
    sessions: Vec<FollowSession>,
    current: HashMap<SessionKey, usize>,
}

impl Follower {
    pub fn new(realm: u32) -> Self {
        Follower {
            realm,
            start: None,
            sessions: Vec::new(),
            current: HashMap::new(),
        }
    }

    /// Takes one datagram; anything but PTCP is ignored.
    pub fn add(&mut self, record: &Record) {
        self.start = Some(self.start.map_or(record.time, |s| s.min(record.time)));
        let Datagram::Ptcp(Ok(packet)) = classify(&record.payload) else {
            return;
        };
        if packet.body.is_empty() {
            return;
        }
        let key = record.session();
        let way = Way::of(&key, record.src);
        // The model's restart rule, so --follow and --stats split a socket
        // pair's PTCP sessions at the same SYN.
        let restart = self
            .current
            .get(&key)
            .and_then(|&i| self.sessions.get(i))
            .is_some_and(|s| {
                opens_new_session(
                    &packet.body,
                    way,
                    s.first_syn,
                    s.non_syn_bodies[way.index()],
                )
            });
        let slot = match self.current.get(&key) {
            Some(&slot) if !restart => slot,
            _ => {
                self.sessions.push(FollowSession::new(key));
                let slot = self.sessions.len() - 1;
                self.current.insert(key, slot);
                slot
            }
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let body_len = record
            .payload
            .len()
            .saturating_sub(ptcp::HEADER_LEN)
            .max(packet.body.encoded_len());
        let pos = session.trackers[way.index()].observe_range(packet.header.sent, body_len);
        let end = pos.saturating_add(i64::try_from(body_len).unwrap_or(i64::MAX));
        let mark = Mark {
            frame: record.number,
            way,
            end,
        };
        if packet.body != Body::Syn {
            session.non_syn_bodies[way.index()] =
                session.non_syn_bodies[way.index()].saturating_add(1);
        }
        let realm = self.realm;
        match packet.body {
            Body::Syn => {
                session.first_syn.get_or_insert(way);
            }
            Body::Data { realm: r, payload } if r == realm => {
                session.first_realm_frame.get_or_insert(record.number);
                session.first_data.get_or_insert(way);
                let at = pos.saturating_add(ptcp::SUBHEADER_LEN as i64);
                let pieces = &mut session.pieces[way.index()];
                match pieces.get(&at) {
                    Some(existing) if existing.bytes == payload => {
                        session.repeats[way.index()] =
                            session.repeats[way.index()].saturating_add(1);
                    }
                    Some(_) => {
                        session.conflicts[way.index()] =
                            session.conflicts[way.index()].saturating_add(1);
                    }
                    None => {
                        pieces.insert(
                            at,
                            StoredPiece {
                                bytes: payload.to_vec(),
                                frame: record.number,
                                time: record.time,
                            },
                        );
                    }
                }
            }
            Body::Bind {
                realm: r, port, ip, ..
            } if r == realm => {
                session.first_realm_frame.get_or_insert(record.number);
                session.bind.get_or_insert((mark, port, ip));
            }
            Body::Status {
                realm: r, status, ..
            } if r == realm => {
                session.first_realm_frame.get_or_insert(record.number);
                match status {
                    Status::Conn => {
                        session.conn.get_or_insert(mark);
                    }
                    Status::Disc => {
                        if session.discs.len() < MAX_DISCS {
                            session.discs.push(mark);
                        }
                    }
                }
            }
            // Other realms' bodies and the bodies of no realm carry nothing
            // of the followed stream (their bytes were placed above).
            Body::Data { .. }
            | Body::Bind { .. }
            | Body::Status { .. }
            | Body::Empty
            | Body::Heartbeat
            | Body::SignRequest
            | Body::Sign { .. }
            | Body::Auth { .. }
            | Body::AuthReply { .. }
            | Body::AuthConfirm
            | Body::Unknown { .. } => {}
        }
    }

    /// Reassembles both directions of the realm.
    pub fn finish(self) -> FollowResult {
        let mut with_realm: Vec<FollowSession> = self
            .sessions
            .into_iter()
            .filter(|s| s.first_realm_frame.is_some())
            .collect();
        with_realm.sort_by_key(|s| s.first_realm_frame);
        let mut rest = with_realm.into_iter();
        let Some(chosen) = rest.next() else {
            return FollowResult::empty(self.realm, self.start);
        };
        let other_sessions = rest.map(|s| s.key).collect();
        // The client is the BIND sender, else the first SYN or DATA sender.
        let client = chosen
            .bind
            .map(|(m, _, _)| m.way)
            .or(chosen.first_syn)
            .or(chosen.first_data)
            .unwrap_or(Way::AtoB);
        let device = client.reverse();
        let to_device = reassemble(&chosen, client, chosen.bind.map(|(m, _, _)| m.end));
        let from_device = reassemble(
            &chosen,
            device,
            chosen.conn.filter(|m| m.way == device).map(|m| m.end),
        );
        FollowResult {
            realm: self.realm,
            start: self.start,
            session: Some(chosen.key),
            client: Some(client.from_addr(&chosen.key)),
            device: Some(device.from_addr(&chosen.key)),
            bind: chosen.bind.map(|(m, port, ip)| BindTarget {
                ip,
                port,
                frame: m.frame,
            }),
            conn_frame: chosen.conn.map(|m| m.frame),
            discs: chosen
                .discs
                .iter()
                .map(|m| DiscSeen {
                    frame: m.frame,
                    flow: if m.way == client {
                        Flow::ToDevice
                    } else {
                        Flow::FromDevice
                    },
                })
                .collect(),
            other_sessions,
            to_device,
            from_device,
        }
    }
}

/// Puts one direction's pieces end to end and finds the holes between them
/// (and between the opening BIND/CONN or the closing DISC and them).
fn reassemble(session: &FollowSession, way: Way, opened_at: Option<i64>) -> RealmStream {
    let tracker = &session.trackers[way.index()];
    let mut stream = RealmStream {
        repeats: session.repeats[way.index()],
        conflicts: session.conflicts[way.index()],
        ..RealmStream::default()
    };
    let mut previous_end = opened_at;
    let mut previous_frame: Option<u64> = None;
    for (&pos, piece) in &session.pieces[way.index()] {
        let len = i64::try_from(piece.bytes.len()).unwrap_or(i64::MAX);
        let end = pos.saturating_add(len);
        let mut skip = 0usize;
        if let Some(prev) = previous_end {
            if pos > prev {
                // The piece's own sub-header is covered; anything else not.
                let missing = tracker.uncovered(prev, pos);
                stream.gap_here(missing, previous_frame, Some(piece.frame));
            } else if end <= prev {
                // Entirely inside what is already out (cannot happen with
                // whole bodies; kept once).
                continue;
            } else {
                skip = usize::try_from(prev.saturating_sub(pos)).unwrap_or(0);
            }
        }
        let bytes = piece.bytes.get(skip..).unwrap_or_default();
        stream.pieces.push(Piece {
            offset: stream.bytes.len() as u64,
            len: bytes.len(),
            frame: piece.frame,
            time: piece.time,
        });
        stream.bytes.extend_from_slice(bytes);
        previous_end = Some(end);
        previous_frame = Some(piece.frame);
    }
    // After the last piece: up to this side's DISC, else to the end of what
    // the direction carried.
    if let Some(prev) = previous_end {
        let closed = session
            .discs
            .iter()
            .filter(|m| m.way == way && m.end > prev)
            .map(|m| m.end - ptcp::SUBHEADER_LEN as i64 - 4)
            .min();
        let until = closed.or(if previous_frame.is_some() {
            tracker.high()
        } else {
            None
        });
        if let Some(until) = until {
            let missing = tracker.uncovered(prev, until);
            stream.gap_here(missing, previous_frame, None);
        }
    }
    stream
}

/// One realm reassembled, ready for `--follow` output or `--rtsp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowResult {
    pub realm: u32,
    start: Option<Duration>,
    /// The PTCP session (socket pair) the realm was followed in.
    pub session: Option<SessionKey>,
    /// The BIND sender (else the SYN or first DATA sender).
    pub client: Option<SocketAddr>,
    pub device: Option<SocketAddr>,
    pub bind: Option<BindTarget>,
    pub conn_frame: Option<u64>,
    pub discs: Vec<DiscSeen>,
    /// Other sessions in which the same realm ID appeared (not followed).
    pub other_sessions: Vec<SessionKey>,
    to_device: RealmStream,
    from_device: RealmStream,
}

impl FollowResult {
    fn empty(realm: u32, start: Option<Duration>) -> FollowResult {
        FollowResult {
            realm,
            start,
            session: None,
            client: None,
            device: None,
            bind: None,
            conn_frame: None,
            discs: Vec::new(),
            other_sessions: Vec::new(),
            to_device: RealmStream::default(),
            from_device: RealmStream::default(),
        }
    }

    /// Whether the realm appeared in the capture at all.
    pub fn found(&self) -> bool {
        self.session.is_some()
    }

    /// Client → device bytes, in order, each once (gaps skipped: see
    /// [`FollowResult::gaps`]).
    pub fn to_device(&self) -> &[u8] {
        &self.to_device.bytes
    }

    /// Device → client bytes, in order, each once.
    pub fn from_device(&self) -> &[u8] {
        &self.from_device.bytes
    }

    pub fn stream(&self, flow: Flow) -> &RealmStream {
        match flow {
            Flow::ToDevice => &self.to_device,
            Flow::FromDevice => &self.from_device,
        }
    }

    /// Every gap, client → device first.
    pub fn gaps(&self) -> Vec<(Flow, Gap)> {
        [Flow::ToDevice, Flow::FromDevice]
            .into_iter()
            .flat_map(|f| self.stream(f).gaps.iter().map(move |g| (f, *g)))
            .collect()
    }

    /// The BIND's `ip:port`.
    pub fn bind_target(&self) -> Option<(Ipv4Addr, u32)> {
        self.bind.map(|b| (b.ip, b.port))
    }

    fn rel(&self, time: Duration) -> f64 {
        time.saturating_sub(self.start.unwrap_or_default())
            .as_secs_f64()
    }

    /// A few lines for stderr: where the realm was, sizes, gaps.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let Some(session) = self.session else {
            let _ = writeln!(out, "realm 0x{:08x}: not in the capture", self.realm);
            return out;
        };
        let _ = write!(out, "realm 0x{:08x} in {session}", self.realm);
        match self.bind {
            Some(b) => {
                let _ = writeln!(out, ", BIND {}:{} (frame {})", b.ip, b.port, b.frame);
            }
            None => {
                let _ = writeln!(out, ", no BIND in view");
            }
        }
        for flow in [Flow::ToDevice, Flow::FromDevice] {
            let s = self.stream(flow);
            let _ = writeln!(
                out,
                "  {}: {} bytes in {} pieces, {} repeats dropped{}",
                flow.label(),
                s.bytes.len(),
                s.pieces.len(),
                s.repeats,
                if s.conflicts > 0 {
                    format!(", {} conflicting copies (first kept)", s.conflicts)
                } else {
                    String::new()
                }
            );
            for gap in &s.gaps {
                let _ = writeln!(
                    out,
                    "  {}: GAP at offset {}: {} session bytes missing{}{}",
                    flow.label(),
                    gap.offset,
                    gap.session_bytes,
                    gap.after_frame
                        .map(|f| format!(", after frame {f}"))
                        .unwrap_or_default(),
                    gap.before_frame
                        .map(|f| format!(", before frame {f}"))
                        .unwrap_or_default()
                );
            }
        }
        for other in &self.other_sessions {
            let _ = writeln!(
                out,
                "  the same realm ID also appears in {other} (not followed)"
            );
        }
        out
    }

    /// The RTSP dialogue carried by the realm: requests and responses in
    /// capture order with their first line and headers (Authorization
    /// credentials redacted), and the interleaved `$` frames counted per
    /// direction and channel.
    pub fn rtsp_report(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "RTSP on realm 0x{:08x}", self.realm);
        if let Some(session) = self.session {
            let _ = write!(out, " ({session})");
        }
        if let Some(b) = self.bind {
            let _ = write!(out, ", BIND {}:{}", b.ip, b.port);
        }
        out.push('\n');
        if !self.found() {
            out.push_str("realm not found in the capture\n");
            return out;
        }
        let mut items = Vec::new();
        let mut channels: BTreeMap<(Flow, u8), (u64, u64)> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut rtsp_seen = false;
        for flow in [Flow::ToDevice, Flow::FromDevice] {
            let stream = self.stream(flow);
            let parsed = parse_rtsp_stream(&stream.bytes, &stream.gaps);
            rtsp_seen |= !parsed.messages.is_empty() || !parsed.interleaved.is_empty();
            for m in parsed.messages {
                items.push((flow, m));
            }
            for (channel, len) in parsed.interleaved {
                let entry = channels.entry((flow, channel)).or_default();
                entry.0 = entry.0.saturating_add(1);
                entry.1 = entry.1.saturating_add(len as u64);
            }
            for note in parsed.notes {
                notes.push(format!("{}: {note}", flow.label()));
            }
        }
        let _ = writeln!(
            out,
            "client->device {} bytes, device->client {} bytes, {} gap(s)",
            self.to_device.bytes.len(),
            self.from_device.bytes.len(),
            self.gaps().len()
        );
        if !rtsp_seen {
            let first = |flow: Flow| {
                let bytes = &self.stream(flow).bytes;
                hex::encode(bytes.get(..bytes.len().min(16)).unwrap_or_default())
            };
            let _ = writeln!(
                out,
                "non-RTSP content: neither direction starts an RTSP message or an interleaved frame (first bytes client->device {}, device->client {})",
                first(Flow::ToDevice),
                first(Flow::FromDevice)
            );
            return out;
        }
        items.sort_by_key(|(flow, m)| {
            let piece = self.stream(*flow).frame_at(m.offset);
            (piece.map_or(u64::MAX, |p| p.frame), *flow, m.offset)
        });
        for (number, (flow, message)) in items.iter().enumerate() {
            let piece = self.stream(*flow).frame_at(message.offset);
            let _ = writeln!(
                out,
                "\n#{} frame {} t={:.6} {} offset {}: {}",
                number + 1,
                piece.map_or("?".into(), |p| p.frame.to_string()),
                piece.map_or(0.0, |p| self.rel(p.time)),
                flow.label(),
                message.offset,
                message.start_line
            );
            for header in &message.headers {
                let _ = writeln!(out, "    {header}");
            }
            if message.body_len > 0 {
                let _ = writeln!(out, "    ({} body bytes)", message.body_len);
            }
            if message.truncated {
                let _ = writeln!(
                    out,
                    "    (message cut short by a gap or the end of the capture)"
                );
            }
        }
        let _ = writeln!(out, "\nInterleaved frames ($):");
        if channels.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for ((flow, channel), (packets, bytes)) in &channels {
            let _ = writeln!(
                out,
                "  {} channel {channel} ({}): {packets} packets, {bytes} bytes",
                flow.label(),
                if channel % 2 == 0 { "RTP" } else { "RTCP" }
            );
        }
        for note in notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

// ---------------------------------------------------------------------------
// RTSP over the realm stream

/// One RTSP message found in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspMessage {
    /// Stream offset of the first byte.
    pub offset: u64,
    pub start_line: String,
    /// Header lines as written, credentials redacted.
    pub headers: Vec<String>,
    pub body_len: usize,
    pub truncated: bool,
}

/// What a stream holds, read as RTSP with interleaved binary data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtspStream {
    pub messages: Vec<RtspMessage>,
    /// `(channel, payload length)` of each `$` frame, in order.
    pub interleaved: Vec<(u8, usize)>,
    pub notes: Vec<String>,
}

/// Splits a stream into RTSP messages and `$` frames with the codec's
/// stream reader, which restarts at the next recognisable start after a
/// gap or unrecognised bytes; what it could not read becomes a note.
pub fn parse_rtsp_stream(bytes: &[u8], gaps: &[Gap]) -> RtspStream {
    let holes: Vec<usize> = gaps
        .iter()
        .filter_map(|g| usize::try_from(g.offset).ok())
        .collect();
    let mut out = RtspStream::default();
    for item in rtsp::read_stream(bytes, &holes) {
        match item {
            StreamItem::Message {
                head,
                body_len,
                truncated,
            } => {
                let text = bytes.get(head.clone()).unwrap_or_default();
                out.messages
                    .push(message_from_head(head.start, text, body_len, truncated));
            }
            StreamItem::Interleaved { frame, .. } => {
                out.interleaved.push((frame.channel, frame.len))
            }
            StreamItem::InterleavedCut {
                offset,
                frame: None,
                ..
            } => out.notes.push(format!(
                "interleaved frame header cut short at offset {offset}"
            )),
            StreamItem::InterleavedCut {
                offset,
                frame: Some(frame),
                by_end,
            } => out.notes.push(format!(
                "interleaved frame at offset {offset} (channel {}, {} bytes) cut short by {}",
                frame.channel,
                frame.len,
                if by_end {
                    "the end of the stream"
                } else {
                    "a gap"
                }
            )),
            StreamItem::Unrecognised(range) => out.notes.push(format!(
                "{} unrecognised bytes at offset {}",
                range.len(),
                range.start
            )),
            StreamItem::NotRtsp => out.notes.push(format!(
                "does not start with an RTSP message or an interleaved frame (first bytes {})",
                hex::encode(bytes.get(..bytes.len().min(16)).unwrap_or_default())
            )),
        }
    }
    out
}

fn message_from_head(offset: usize, head: &[u8], body_len: usize, truncated: bool) -> RtspMessage {
    let mut lines = rtsp::line_ranges(head)
        .map(|line| redact_authorization(head.get(line).unwrap_or_default()))
        .filter(|l| !l.is_empty());
    let start_line = lines.next().unwrap_or_default();
    RtspMessage {
        offset: offset as u64,
        start_line,
        headers: lines.collect(),
        body_len,
        truncated,
    }
}

/// `text` with the credentials of `Authorization:` lines replaced by
/// `<redacted>`: the describe layer's rule, the one `dissect` and
/// `decode -V` apply.
pub fn redact_authorization(text: &[u8]) -> String {
    redact_auth_text(text)
}
