//! `dhp2p decode --stats`: what happened in each UDP session of a capture,
//! told as a story: the handshake timeline, the path the data took, bytes and
//! losses inferred from the PTCP counters, realms, and a verdict naming the
//! FIELD-NOTES §7 failure a session resembles.
//!
//! Every datagram goes through [`classify`]; nothing here reads the wire
//! itself. Memory stays bounded whatever the capture size: per direction only
//! the covered byte ranges of the PTCP stream and a window of recent body
//! fingerprints are kept, never the bytes.
//!
//! Loss accounting follows FIELD-NOTES §4.2 and docs/PROTOCOL.md §6: `sent` is
//! the position of a body in its direction's body stream (wrapping u32), so a
//! body below the highest end already seen is a resend (or a duplicate when
//! the whole datagram is identical), and a jump past it is a gap.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};

use super::record::{Record, SessionKey};
use crate::codec::classify::{classify, Datagram, Kind};
use crate::codec::cloud::{
    parse_addr_list, ChannelAnswer, Endpoint, ErrorBody, HostPort, Message, TypedBody,
};
use crate::codec::ptcp::{self, Body, Packet, Status};
use crate::codec::punch::{MessageType, PunchMessage};

/// Quiet time after which a session counts as silent: BJ's
/// `deadTunnelSilence` (FIELD-NOTES §4.4), and above PR's 10 s heartbeat so
/// a healthy tunnel on that cadence is not flagged.
pub const SILENCE: Duration = Duration::from_secs(12);
/// Our data unacknowledged this long while realms keep writing: the outbound
/// stall of FIELD-NOTES §4.4 (BJ `tunnel.go`).
pub const OUTBOUND_STALL: Duration = Duration::from_secs(20);
/// A BIND not answered (CONN or DISC) within this time is unanswered
/// (one BIND attempt of BJ's budget, FIELD-NOTES §4.5).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(2);

/// Recent bodies whose fingerprints are kept per direction to tell a
/// duplicate from a resend; older positions only count as "already seen".
const RECENT_BODIES: usize = 8192;
/// Most disjoint covered ranges kept per direction (one per open hole).
const MAX_RANGES: usize = 65_536;
/// Copies of one body whose datagram fingerprints are remembered.
const MAX_COPIES: usize = 4;
/// Most timeline stages kept per session (a hostile capture can name
/// endless paths).
const MAX_STAGES: usize = 96;
/// Most DISC events kept per realm.
const MAX_DISCS: usize = 8;
/// Remembered `lmid` values per direction, to check that `rmid` echoes one.
const RECENT_LMIDS: usize = 4096;

// ---------------------------------------------------------------------------
// Direction inside a session

/// Which way a datagram went in a session: from `a` to `b` or back, with
/// `a` and `b` as in [`SessionKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Way {
    AtoB,
    BtoA,
}

impl Way {
    pub fn of(key: &SessionKey, src: SocketAddr) -> Way {
        if src == key.a {
            Way::AtoB
        } else {
            Way::BtoA
        }
    }

    pub fn reverse(self) -> Way {
        match self {
            Way::AtoB => Way::BtoA,
            Way::BtoA => Way::AtoB,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Way::AtoB => 0,
            Way::BtoA => 1,
        }
    }

    /// The sending address.
    pub fn from_addr(self, key: &SessionKey) -> SocketAddr {
        match self {
            Way::AtoB => key.a,
            Way::BtoA => key.b,
        }
    }

    /// The receiving address.
    pub fn to_addr(self, key: &SessionKey) -> SocketAddr {
        self.reverse().from_addr(key)
    }
}

// ---------------------------------------------------------------------------
// The byte-counter tracker (shared with `--follow`)

/// How a body relates to what was already seen in its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Continues the stream at its highest end (or is the first body seen).
    InOrder,
    /// Starts beyond the highest end: `missing` bytes before it are not (yet)
    /// in the capture.
    AfterGap { missing: u64 },
    /// Below the highest end, into bytes never seen: reordered, or resent
    /// after a loss upstream of the capture point.
    Late,
    /// Bytes already seen, sent again under a fresh header.
    Retransmission,
    /// A byte-identical copy of a datagram already seen.
    Duplicate,
    /// Partly seen, partly new (different body boundaries).
    Overlap,
    /// Same position and length as a body already seen, different bytes.
    Conflict,
}

impl Arrival {
    /// Whether the body brought bytes the capture had not shown yet.
    pub fn is_new(self) -> bool {
        matches!(
            self,
            Arrival::InOrder | Arrival::AfterGap { .. } | Arrival::Late | Arrival::Overlap
        )
    }
}

#[derive(Debug, Clone)]
struct SeenBody {
    len: i64,
    body_hash: u64,
    datagram_hashes: Vec<u64>,
}

/// One direction of a PTCP session: unwraps the u32 `sent` counter into a
/// monotonic position (wrapping arithmetic, signed 32-bit differences as in
/// docs/PROTOCOL.md §5.7) and remembers which byte ranges were seen.
#[derive(Debug, Clone, Default)]
pub struct SentTracker {
    high: Option<i64>,
    /// Disjoint, merged `[start, end)` ranges of body bytes seen.
    covered: BTreeMap<i64, i64>,
    recent: HashMap<i64, SeenBody>,
    recent_order: VecDeque<i64>,
}

impl SentTracker {
    pub fn new() -> SentTracker {
        SentTracker::default()
    }

    /// The highest end seen (position just past the furthest body).
    pub fn high(&self) -> Option<i64> {
        self.high
    }

    /// The unwrapped position of a `sent` (or `recv`) value of this stream:
    /// the one nearest to the highest end seen.
    pub fn position(&self, counter: u32) -> i64 {
        match self.high {
            None => i64::from(counter),
            Some(high) => {
                let reference = high.rem_euclid(1 << 32) as u32;
                let diff = i64::from(counter.wrapping_sub(reference) as i32);
                high.saturating_add(diff)
            }
        }
    }

    /// Records a non-empty body sent at `sent`. `datagram` is the whole UDP
    /// payload, which tells a duplicate from a resend.
    pub fn observe(&mut self, sent: u32, body: &[u8], datagram: &[u8]) -> (i64, Arrival) {
        let pos = self.position(sent);
        let len = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let end = pos.saturating_add(len);
        let body_hash = fingerprint(body);
        let datagram_hash = fingerprint(datagram);
        let arrival = match self.high {
            None => Arrival::InOrder,
            Some(high) if pos == high => Arrival::InOrder,
            Some(high) if pos > high => Arrival::AfterGap {
                missing: u64::try_from(pos.saturating_sub(high)).unwrap_or(0),
            },
            Some(_) => {
                let unseen = self.uncovered(pos, end);
                if unseen == u64::try_from(len).unwrap_or(0) {
                    Arrival::Late
                } else if unseen > 0 {
                    Arrival::Overlap
                } else {
                    match self.recent.get(&pos) {
                        Some(seen) if seen.len == len && seen.body_hash == body_hash => {
                            if seen.datagram_hashes.contains(&datagram_hash) {
                                Arrival::Duplicate
                            } else {
                                Arrival::Retransmission
                            }
                        }
                        Some(seen) if seen.len == len => Arrival::Conflict,
                        Some(_) => Arrival::Overlap,
                        None => Arrival::Retransmission,
                    }
                }
            }
        };
        self.cover(pos, end);
        self.high = Some(self.high.map_or(end, |h| h.max(end)));
        self.remember(pos, len, body_hash, datagram_hash);
        (pos, arrival)
    }

    /// Records a body of `len` bytes at `sent` by position only (no
    /// fingerprints): what `--follow` needs to find holes. Returns the
    /// unwrapped position.
    pub fn observe_range(&mut self, sent: u32, len: usize) -> i64 {
        let pos = self.position(sent);
        let end = pos.saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
        self.cover(pos, end);
        self.high = Some(self.high.map_or(end, |h| h.max(end)));
        pos
    }

    fn remember(&mut self, pos: i64, len: i64, body_hash: u64, datagram_hash: u64) {
        match self.recent.get_mut(&pos) {
            Some(seen) => {
                if seen.len == len
                    && seen.body_hash == body_hash
                    && !seen.datagram_hashes.contains(&datagram_hash)
                    && seen.datagram_hashes.len() < MAX_COPIES
                {
                    seen.datagram_hashes.push(datagram_hash);
                }
            }
            None => {
                self.recent.insert(
                    pos,
                    SeenBody {
                        len,
                        body_hash,
                        datagram_hashes: vec![datagram_hash],
                    },
                );
                self.recent_order.push_back(pos);
                while self.recent_order.len() > RECENT_BODIES {
                    if let Some(old) = self.recent_order.pop_front() {
                        self.recent.remove(&old);
                    }
                }
            }
        }
    }

    /// Marks `[start, end)` as seen, merging touching ranges.
    fn cover(&mut self, start: i64, end: i64) {
        if end <= start {
            return;
        }
        let mut new_start = start;
        let mut new_end = end;
        let touching: Vec<(i64, i64)> = self
            .covered
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            new_start = new_start.min(s);
            new_end = new_end.max(e);
            self.covered.remove(&s);
        }
        self.covered.insert(new_start, new_end);
        while self.covered.len() > MAX_RANGES {
            // Forget the oldest hole: treat everything below as seen.
            let mut first_two = self.covered.iter().take(2).map(|(&s, &e)| (s, e));
            let (Some((s0, _)), Some((s1, e1))) = (first_two.next(), first_two.next()) else {
                break;
            };
            self.covered.remove(&s0);
            self.covered.remove(&s1);
            self.covered.insert(s0, e1);
        }
    }

    /// Bytes in `[from, to)` never seen in this direction.
    pub fn uncovered(&self, from: i64, to: i64) -> u64 {
        if to <= from {
            return 0;
        }
        let mut seen = 0i64;
        for (&s, &e) in self.covered.range(..to).rev() {
            if e <= from {
                break;
            }
            seen = seen.saturating_add(e.min(to).saturating_sub(s.max(from)));
        }
        u64::try_from(to.saturating_sub(from).saturating_sub(seen)).unwrap_or(0)
    }

    /// The holes still open: `[start, end)` ranges between the lowest and the
    /// highest position seen that no body covered.
    pub fn holes(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut previous_end: Option<i64> = None;
        for (&s, &e) in &self.covered {
            if let Some(pe) = previous_end {
                if s > pe {
                    out.push((pe, s));
                }
            }
            previous_end = Some(e);
        }
        out
    }
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

// ---------------------------------------------------------------------------
// Per-session state

/// A frame and its capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    frame: u64,
    time: Duration,
}

impl At {
    fn of(record: &Record) -> At {
        At {
            frame: record.number,
            time: record.time,
        }
    }
}

/// One handshake stage: the first time something happened in a session.
#[derive(Debug, Clone)]
struct Stage {
    at: At,
    way: Way,
    name: String,
    count: u64,
}

#[derive(Debug, Clone)]
struct CloudRequest {
    at: At,
    way: Way,
    endpoint: Endpoint,
    cseq: Option<i64>,
    count: u64,
    answers: Vec<(At, u16)>,
    final_answer: bool,
}

#[derive(Debug, Clone, Copy)]
struct BindSeen {
    at: At,
    way: Way,
    port: u32,
    ip: Ipv4Addr,
    count: u64,
}

#[derive(Debug, Clone)]
struct RealmStats {
    realm: u32,
    first: At,
    bind: Option<BindSeen>,
    conn: Option<(At, Way)>,
    discs: Vec<(At, Way)>,
    disc_count: u64,
    /// New DATA (packets, payload bytes) per way.
    data: [(u64, u64); 2],
}

impl RealmStats {
    fn new(realm: u32, at: At) -> RealmStats {
        RealmStats {
            realm,
            first: at,
            bind: None,
            conn: None,
            discs: Vec::new(),
            disc_count: 0,
            data: [(0, 0); 2],
        }
    }

    /// CONN or DISC from the side that did not send the BIND.
    fn answered(&self) -> bool {
        let Some(bind) = self.bind else { return true };
        let peer = bind.way.reverse();
        self.conn.is_some_and(|(_, w)| w == peer) || self.discs.iter().any(|(_, w)| *w == peer)
    }
}

/// A row of the per-direction PTCP table: label and getter.
type DirectionRow = (&'static str, fn(&Direction) -> u64);

#[derive(Debug, Clone, Default)]
struct Direction {
    datagrams: u64,
    payload_bytes: u64,
    first: Option<At>,
    last: Option<At>,
    kinds: [u64; 4],
    malformed: u64,
    first_malformed: Option<u64>,
    // PTCP
    ptcp_packets: u64,
    bodies: u64,
    body_bytes: u64,
    new_body_bytes: u64,
    data_bodies: u64,
    data_bytes: u64,
    acks: u64,
    heartbeats: u64,
    last_heartbeat: Option<At>,
    last_data: Option<At>,
    gap_events: u64,
    gap_bytes: u64,
    late: u64,
    retransmissions: u64,
    duplicates: u64,
    overlaps: u64,
    conflicts: u64,
    first_retransmission: Option<u64>,
    first_duplicate: Option<u64>,
    non_syn_bodies: u64,
    tracker: SentTracker,
    /// The last `recv` this side advertised (acknowledges the other way).
    last_recv: Option<u32>,
    /// Since when this side's data has been waiting for the peer's `recv`.
    unacked_since: Option<At>,
    stall: Option<(At, At, i64)>,
    lmid_zero: u64,
    lmid_backwards: u64,
    last_lmid: Option<u32>,
    lmids: HashSet<u32>,
    lmid_order: VecDeque<u32>,
    rmid_unechoed: u64,
    first_rmid_unechoed: Option<u64>,
    /// Longest quiet time of this side while the other side spoke.
    silence: Option<(Duration, At, Option<At>)>,
    syn: Option<At>,
    play: Option<At>,
}

impl Direction {
    fn remember_lmid(&mut self, lmid: u32) {
        if self.lmids.insert(lmid) {
            self.lmid_order.push_back(lmid);
            while self.lmid_order.len() > RECENT_LMIDS {
                if let Some(old) = self.lmid_order.pop_front() {
                    self.lmids.remove(&old);
                }
            }
        }
    }

    /// `out_unacked` of FIELD-NOTES §4.2 for this side: what it sent minus
    /// what the peer's last `recv` acknowledged.
    fn out_unacked(&self, peer: &Direction) -> Option<i64> {
        let high = self.tracker.high()?;
        let recv = peer.last_recv?;
        Some(high.saturating_sub(self.tracker.position(recv)))
    }
}

#[derive(Debug, Clone)]
struct SessionStats {
    key: SessionKey,
    first: At,
    last: At,
    dirs: [Direction; 2],
    stages: Vec<Stage>,
    requests: Vec<CloudRequest>,
    unsolicited: Vec<(At, Way, u16, String)>,
    errors: Vec<(At, u16, String, Option<String>)>,
    realms: BTreeMap<u32, RealmStats>,
    realm_order: Vec<u32>,
    punch_requests: [u64; 2],
    punch_successes: [u64; 2],
    first_punch: Option<(At, Way)>,
    sign_request: Option<At>,
    sign: Option<At>,
    auth: Option<(At, Way)>,
    auth_reply: Option<At>,
    auth_confirm: Option<At>,
    bind_way: Option<Way>,
    first_request_way: Option<Way>,
    first_ptcp_way: Option<Way>,
    /// The side whose SYN opened PTCP on this socket pair.
    syn_initiator: Option<Way>,
    ptcp_restarts: Vec<At>,
}

impl SessionStats {
    fn new(key: SessionKey, at: At) -> SessionStats {
        SessionStats {
            key,
            first: at,
            last: at,
            dirs: [Direction::default(), Direction::default()],
            stages: Vec::new(),
            requests: Vec::new(),
            unsolicited: Vec::new(),
            errors: Vec::new(),
            realms: BTreeMap::new(),
            realm_order: Vec::new(),
            punch_requests: [0; 2],
            punch_successes: [0; 2],
            first_punch: None,
            sign_request: None,
            sign: None,
            auth: None,
            auth_reply: None,
            auth_confirm: None,
            bind_way: None,
            first_request_way: None,
            first_ptcp_way: None,
            syn_initiator: None,
            ptcp_restarts: Vec::new(),
        }
    }

    fn stage(&mut self, at: At, way: Way, name: impl Into<String>) {
        let name = name.into();
        if let Some(stage) = self
            .stages
            .iter_mut()
            .find(|s| s.name == name && s.way == way)
        {
            stage.count = stage.count.saturating_add(1);
            return;
        }
        if self.stages.len() < MAX_STAGES {
            self.stages.push(Stage {
                at,
                way,
                name,
                count: 1,
            });
        }
    }

    fn realm(&mut self, realm: u32, at: At) -> &mut RealmStats {
        if !self.realms.contains_key(&realm) {
            self.realm_order.push(realm);
        }
        self.realms
            .entry(realm)
            .or_insert_with(|| RealmStats::new(realm, at))
    }

    fn has_realm_traffic(&self) -> bool {
        self.realms.values().any(|r| {
            r.bind.is_some() || r.conn.is_some() || r.data.iter().any(|(packets, _)| *packets > 0)
        })
    }

    fn has_ptcp(&self) -> bool {
        self.dirs.iter().any(|d| d.ptcp_packets > 0)
    }

    fn has_kind(&self, kind: Kind) -> bool {
        self.dirs.iter().any(|d| d.kinds[kind_index(kind)] > 0)
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Cloud => 0,
        Kind::Punch => 1,
        Kind::Ptcp => 2,
        Kind::Unknown => 3,
    }
}

/// Addresses learned from cloud answers, across the whole capture.
#[derive(Debug, Clone, Default)]
struct Learned {
    /// Sources of any cloud request: client sockets.
    clients: HashSet<SocketAddr>,
    /// Sources of p2p-channel requests (socket D of docs/PROTOCOL.md §1.1).
    p2p_channel_sockets: HashSet<SocketAddr>,
    /// `PubAddr` of p2p-channel answers.
    pub_addrs: HashSet<SocketAddr>,
    /// Plain `LocalAddr` candidates of p2p-channel answers.
    local_addrs: HashSet<SocketAddr>,
    /// `Agent` of `/relay/agent` answers.
    agents: HashSet<SocketAddr>,
}

fn host_port_addr(text: &str) -> Option<SocketAddr> {
    HostPort::from_str(text.trim())
        .ok()
        .and_then(|hp| hp.to_socket_addr_v4())
        .map(SocketAddr::V4)
}

/// A short stage name for the endpoint of a request path.
fn endpoint_name(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::ProbeP2pSrv => "probe".into(),
        Endpoint::OnlineP2pSrv { .. } => "p2psrv".into(),
        Endpoint::ProbeDevice { .. } => "probe-device".into(),
        Endpoint::InfoDevice { .. } => "info".into(),
        Endpoint::OnlineRelay => "relay".into(),
        Endpoint::OnlineStun => "stun".into(),
        Endpoint::P2pStunProbe => "stun-probe".into(),
        Endpoint::P2pChannel { .. } => "p2p-channel".into(),
        Endpoint::RelayChannel { .. } => "relay-channel".into(),
        Endpoint::LocalChannel { .. } => "local-channel".into(),
        Endpoint::TcpRelayChannel { .. } => "tcprelay-channel".into(),
        Endpoint::TcpRelayClientBind => "tcprelay-client-bind".into(),
        Endpoint::RelayAgent => "relay/agent".into(),
        Endpoint::RelayStart { .. } => "relay/start".into(),
        Endpoint::RelayUnbind { .. } => "unbind".into(),
        Endpoint::Other(path) => path.chars().take(64).collect(),
    }
}

// ---------------------------------------------------------------------------
// Findings

/// Whether a finding makes a session unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Failure,
    Note,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Failure => "failure",
            Severity::Note => "note",
        }
    }
}

/// One observation behind a verdict, with the frames that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable identifier (JSON `code`), e.g. `auth-required`.
    pub code: &'static str,
    pub severity: Severity,
    /// The FIELD-NOTES §7 wording plus the specifics.
    pub text: String,
    pub frames: Vec<u64>,
}

impl Finding {
    fn failure(code: &'static str, text: impl Into<String>, frames: Vec<u64>) -> Finding {
        Finding {
            code,
            severity: Severity::Failure,
            text: text.into(),
            frames,
        }
    }

    fn note(code: &'static str, text: impl Into<String>, frames: Vec<u64>) -> Finding {
        Finding {
            code,
            severity: Severity::Note,
            text: text.into(),
            frames,
        }
    }
}

// ---------------------------------------------------------------------------
// The collector

/// Collects `--stats` over the datagrams of a capture, in capture order.
#[derive(Debug, Clone, Default)]
pub struct StatsCollector {
    sessions: Vec<SessionStats>,
    index: HashMap<SessionKey, usize>,
    learned: Learned,
    datagrams: u64,
    /// Datagrams of no protocol here, outside any session.
    unrecognised: u64,
    start: Option<Duration>,
    end: Option<Duration>,
}

/// The verdict on one session, as computed for the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionVerdict {
    pub session: SessionKey,
    pub healthy: bool,
    pub findings: Vec<Finding>,
}

impl StatsCollector {
    pub fn new() -> Self {
        StatsCollector::default()
    }

    /// Accounts for one datagram.
    pub fn add(&mut self, record: &Record) {
        self.datagrams = self.datagrams.saturating_add(1);
        self.start = Some(self.start.map_or(record.time, |s| s.min(record.time)));
        self.end = Some(self.end.map_or(record.time, |e| e.max(record.time)));
        let key = record.session();
        let at = At::of(record);
        let datagram = classify(&record.payload);
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None if datagram.kind() == Kind::Unknown => {
                // Other UDP traffic (DNS, mDNS…) makes no session of its own.
                self.unrecognised = self.unrecognised.saturating_add(1);
                return;
            }
            None => {
                self.sessions.push(SessionStats::new(key, at));
                self.index.insert(key, self.sessions.len() - 1);
                self.sessions.len() - 1
            }
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let way = Way::of(&key, record.src);
        touch(session, way, record, at);
        let kind = datagram.kind();
        let dir = &mut session.dirs[way.index()];
        dir.kinds[kind_index(kind)] = dir.kinds[kind_index(kind)].saturating_add(1);
        if datagram.is_malformed() {
            dir.malformed = dir.malformed.saturating_add(1);
            dir.first_malformed.get_or_insert(record.number);
        }
        match datagram {
            Datagram::Cloud(Ok(message)) => {
                on_cloud(session, &mut self.learned, way, record, at, &message)
            }
            Datagram::Punch(Ok(message)) => on_punch(session, way, at, &message),
            Datagram::Ptcp(Ok(packet)) => on_ptcp(session, way, record, at, &packet),
            _ => {}
        }
    }

    /// Sessions in order of their first datagram.
    pub fn sessions(&self) -> Vec<SessionKey> {
        self.sessions.iter().map(|s| s.key).collect()
    }

    /// The verdict on every session, in order of first datagram.
    pub fn verdicts(&self) -> Vec<SessionVerdict> {
        self.sessions
            .iter()
            .map(|s| {
                let findings = self.findings(s);
                SessionVerdict {
                    session: s.key,
                    healthy: findings.iter().all(|f| f.severity != Severity::Failure),
                    findings,
                }
            })
            .collect()
    }

    fn rel(&self, time: Duration) -> f64 {
        time.saturating_sub(self.start.unwrap_or_default())
            .as_secs_f64()
    }

    /// Which way of a session goes from the client to its peer, if known:
    /// the socket that sent cloud requests, the BIND sender, the first
    /// request or SYN sender.
    fn client_way(&self, s: &SessionStats) -> Option<Way> {
        let a_client = self.learned.clients.contains(&s.key.a);
        let b_client = self.learned.clients.contains(&s.key.b);
        match (a_client, b_client) {
            (true, false) => return Some(Way::AtoB),
            (false, true) => return Some(Way::BtoA),
            _ => {}
        }
        s.bind_way
            .or(s.first_request_way)
            .or(s.dirs[0].syn.zip(s.dirs[1].syn).map(|(a, b)| {
                if a.frame <= b.frame {
                    Way::AtoB
                } else {
                    Way::BtoA
                }
            }))
            .or(s.dirs[0].syn.map(|_| Way::AtoB))
            .or(s.dirs[1].syn.map(|_| Way::BtoA))
            .or(s.first_punch.map(|(_, w)| w))
            .or(s.first_ptcp_way)
    }

    /// What the session is: `cloud`, `punch`, `ptcp` (and combinations).
    fn role(s: &SessionStats) -> String {
        let names: Vec<&str> = [Kind::Cloud, Kind::Punch, Kind::Ptcp]
            .into_iter()
            .filter(|k| s.has_kind(*k))
            .map(Kind::as_str)
            .collect();
        if names.is_empty() {
            "other".into()
        } else {
            names.join("+")
        }
    }

    /// Direct or relay, with the evidence (docs/PROTOCOL.md §1.2–1.3).
    fn path(&self, s: &SessionStats) -> Option<(&'static str, String)> {
        if !s.has_ptcp() {
            return None;
        }
        let client = self.client_way(s).unwrap_or(Way::AtoB);
        let us = client.from_addr(&s.key);
        let peer = client.to_addr(&s.key);
        let agent = self.learned.agents.contains(&peer)
            || s.sign_request.is_some()
            || s.sign.is_some()
            || s.requests
                .iter()
                .any(|r| matches!(r.endpoint, Endpoint::RelayStart { .. }));
        let device = self.learned.pub_addrs.contains(&peer)
            || self.learned.local_addrs.contains(&peer)
            || s.first_punch.is_some()
            || s.auth.is_some();
        if !s.has_realm_traffic() {
            let what = if agent {
                "agent session (sign exchange only)"
            } else if device {
                "device session without realms"
            } else {
                "PTCP without realms"
            };
            return Some(("none", what.into()));
        }
        if agent {
            return Some((
                "relay",
                format!("relay: PTCP with the agent {peer} carrying BIND/DATA"),
            ));
        }
        if device {
            let from_d = self.learned.p2p_channel_sockets.contains(&us);
            let to_pub = self.learned.pub_addrs.contains(&peer);
            let detail = match (from_d, to_pub) {
                (true, true) => format!(
                    "direct: PTCP between the p2p-channel socket {us} and the device's PubAddr {peer}"
                ),
                (true, false) => format!(
                    "direct: PTCP between the p2p-channel socket {us} and the device at {peer} (LocalAddr or punched address)"
                ),
                (false, true) => format!(
                    "direct: PTCP with the device's PubAddr {peer} (the p2p-channel request is not in view)"
                ),
                (false, false) => format!("direct: PTCP with the device at {peer} after hole punching"),
            };
            return Some(("direct", detail));
        }
        Some((
            "unknown",
            format!(
                "PTCP carrying realms with {peer}; no handshake in view to tell direct from relay"
            ),
        ))
    }

    /// Whether another session from the same client socket got punch or
    /// PTCP traffic back from its peer (the client punches several
    /// candidates and keeps the first that answers, FIELD-NOTES C14).
    fn other_candidate_answered(&self, s: &SessionStats, us: SocketAddr) -> bool {
        self.sessions.iter().any(|o| {
            if o.key == s.key || (o.key.a != us && o.key.b != us) {
                return false;
            }
            let peer = if o.key.a == us { Way::BtoA } else { Way::AtoB };
            let d = &o.dirs[peer.index()];
            d.kinds[kind_index(Kind::Punch)] > 0 || d.kinds[kind_index(Kind::Ptcp)] > 0
        })
    }

    fn findings(&self, s: &SessionStats) -> Vec<Finding> {
        let mut out = Vec::new();
        let client = self.client_way(s);
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        let cd = &s.dirs[c.index()];
        let pd = &s.dirs[p.index()];

        // Cloud answers.
        for (at, code, error, policy) in &s.errors {
            let frames = vec![at.frame];
            let policy = policy
                .as_deref()
                .map(|p| format!(", Policy {p}"))
                .unwrap_or_default();
            let finding = match (*code, error.as_str()) {
                (403, "DevPwd_InvalidSalt") => Finding::failure(
                    "auth-required",
                    format!("403 DevPwd_InvalidSalt: device needs auth (send DevAuth with the salt from /info/device{policy})"),
                    frames,
                ),
                (403, "DevPwd_InvalidDigest") => Finding::failure(
                    "invalid-digest",
                    format!("403 DevPwd_InvalidDigest: wrong credentials, or the legacy header layout on the DMSS cloud{policy}"),
                    frames,
                ),
                (404, _) => Finding::failure(
                    "not-found",
                    format!("404 on {error}: wrong cloud or offline"),
                    frames,
                ),
                (401 | 403, _) => Finding::failure(
                    "forbidden",
                    format!("{code} on {error}: retired app WSSE pair or clock skew"),
                    frames,
                ),
                _ => Finding::failure("cloud-error", format!("{code} on {error}"), frames),
            };
            out.push(finding);
        }
        for request in &s.requests {
            let frames = vec![request.at.frame];
            let name = endpoint_name(&request.endpoint);
            if request.answers.is_empty() {
                // Main never answers relay-channel (the agent notifies) and
                // unbind answers are only logged (FIELD-NOTES C12).
                match request.endpoint {
                    Endpoint::RelayChannel { .. } | Endpoint::RelayUnbind { .. } => {}
                    Endpoint::RelayAgent => out.push(Finding::failure(
                        "no-answer",
                        format!(
                            "/relay/agent never answers: dead relay candidate ({} tries)",
                            request.count
                        ),
                        frames,
                    )),
                    _ => out.push(Finding::failure(
                        "no-answer",
                        format!("{name} never answered ({} tries)", request.count),
                        frames,
                    )),
                }
            } else if !request.final_answer {
                let last = request.answers.last().map(|(at, _)| at.frame);
                out.push(Finding::failure(
                    "no-final-answer",
                    format!(
                        "{name}: {} but no final answer (device not reachable by the cloud)",
                        request
                            .answers
                            .iter()
                            .map(|(_, c)| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    frames.into_iter().chain(last).collect(),
                ));
            }
        }

        // Hole punching.
        let punches_sent = s.punch_requests[c.index()];
        let punches_got = s.punch_requests[p.index()].saturating_add(s.punch_successes[p.index()]);
        if punches_sent > 0 && punches_got == 0 {
            let frames: Vec<u64> = s.first_punch.map(|(at, _)| at.frame).into_iter().collect();
            let other_answered = self.other_candidate_answered(s, c.from_addr(&s.key));
            if other_answered {
                out.push(Finding::note(
                    "punch-not-taken",
                    format!("punch to {} never answered ({punches_sent} requests); another candidate answered", p.from_addr(&s.key)),
                    frames,
                ));
            } else {
                out.push(Finding::failure(
                    "punch-unanswered",
                    format!("punch never answered: {punches_sent} Binding Requests to {}, nothing back (NAT, or LAN-only path not offered)", p.from_addr(&s.key)),
                    frames,
                ));
            }
        }

        if !s.has_ptcp() {
            return out;
        }

        // PTCP handshake.
        if let Some(syn) = cd.syn {
            if pd.syn.is_none() && pd.ptcp_packets == 0 {
                out.push(Finding::failure(
                    "syn-unanswered",
                    "PTCP SYN never answered",
                    vec![syn.frame],
                ));
            }
        }
        if let Some(at) = s.sign_request {
            if s.sign.is_none() {
                out.push(Finding::failure(
                    "sign-missing",
                    "0x17 sent, the agent never gave a sign",
                    vec![at.frame],
                ));
            }
        }
        let mut sign_refused = false;
        if let Some((at, _)) = s.auth {
            if s.auth_reply.is_none() {
                sign_refused = true;
                let mut frames = vec![at.frame];
                frames.extend(
                    s.realm_order
                        .iter()
                        .filter_map(|r| s.realms.get(r))
                        .filter(|r| !r.answered())
                        .filter_map(|r| r.bind.map(|b| b.at.frame))
                        .take(8),
                );
                out.push(Finding::failure(
                    "auth-reply-missing",
                    "0x1A never arrived (sign refused): the session is unauthenticated and BINDs time out in silence",
                    frames,
                ));
            }
        }

        // Realms.
        let end = s.last.time;
        let unanswered: Vec<&RealmStats> = s
            .realm_order
            .iter()
            .filter_map(|r| s.realms.get(r))
            .filter(|r| !r.answered())
            .filter(|r| {
                r.bind
                    .is_some_and(|b| end.saturating_sub(b.at.time) >= BIND_TIMEOUT)
            })
            .collect();
        if !unanswered.is_empty() && !sign_refused {
            let frames: Vec<u64> = unanswered
                .iter()
                .filter_map(|r| r.bind.map(|b| b.at.frame))
                .take(16)
                .collect();
            let first_bind = unanswered
                .iter()
                .filter_map(|r| r.bind)
                .map(|b| b.at.time)
                .min()
                .unwrap_or_default();
            let alive_after = pd
                .last
                .filter(|l| l.time.saturating_sub(first_bind) >= BIND_TIMEOUT);
            let granted = s
                .realms
                .values()
                .filter(|r| r.bind.is_some() && r.answered())
                .count();
            match alive_after {
                Some(l) => out.push(Finding::failure(
                    "binds-refused",
                    format!(
                        "device refuses BINDs (out of realm slots): {} BIND(s) never answered while the peer kept sending ({} granted)",
                        unanswered.len(),
                        granted
                    ),
                    frames.into_iter().chain([l.frame]).collect(),
                )),
                None => out.push(Finding::failure(
                    "binds-unanswered",
                    format!("{} BIND(s) never answered and the peer went quiet", unanswered.len()),
                    frames,
                )),
            }
        }
        let orphans: Vec<u64> = s
            .realms
            .values()
            .filter(|r| r.bind.is_none() && r.conn.is_some())
            .filter_map(|r| r.conn.map(|(at, _)| at.frame))
            .collect();
        if !orphans.is_empty() {
            out.push(Finding::note(
                "orphan-conn",
                format!("{} CONN(s) for realms without a BIND in view (orphans, or the capture started late)", orphans.len()),
                orphans.into_iter().take(16).collect(),
            ));
        }

        // Stalls.
        for way in [c, p] {
            if let Some((since, seen, unacked)) = s.dirs[way.index()].stall {
                let who = if Some(way) == client {
                    "our"
                } else {
                    "the peer's"
                };
                out.push(Finding::failure(
                    "outbound-stall",
                    format!(
                        "outbound stall: {who} data unacknowledged for {:.0} s ({unacked} bytes) while realms kept writing",
                        seen.time.saturating_sub(since.time).as_secs_f64()
                    ),
                    vec![since.frame, seen.frame],
                ));
            }
        }
        if let Some(play) = cd.play {
            let last_data = pd
                .last_data
                .filter(|d| d.frame > play.frame)
                .unwrap_or(play);
            let after = cd
                .last_heartbeat
                .filter(|h| h.time.saturating_sub(last_data.time) >= SILENCE);
            let closed = s.realms.values().any(|r| {
                r.discs.iter().any(|(at, _)| {
                    at.frame > play.frame && at.time <= last_data.time.saturating_add(SILENCE)
                })
            });
            if let (Some(heartbeat), false) = (after, closed) {
                let relay = self.path(s).is_some_and(|(kind, _)| kind == "relay");
                let label = if relay { "relay stall" } else { "stream stall" };
                let answered = pd
                    .last
                    .is_some_and(|l| l.time > last_data.time.saturating_add(SILENCE));
                out.push(Finding::failure(
                    if relay { "relay-stall" } else { "stream-stall" },
                    format!(
                        "{label}: data stopped after PLAY while heartbeats continue ({:.1} s without peer DATA; heartbeats {})",
                        heartbeat.time.saturating_sub(last_data.time).as_secs_f64(),
                        if answered { "answered" } else { "unanswered" }
                    ),
                    vec![play.frame, last_data.frame, heartbeat.frame],
                ));
            }
        }
        for way in [p, c] {
            if let Some((quiet, from, to)) = s.dirs[way.index()].silence {
                if quiet >= SILENCE {
                    let who = if way == p { "peer" } else { "client" };
                    out.push(Finding::failure(
                        "silent",
                        format!(
                            "session silent for {:.0} s: the {who} sent nothing{}",
                            quiet.as_secs_f64(),
                            if to.is_none() {
                                " until the end of the capture"
                            } else {
                                ""
                            }
                        ),
                        [Some(from.frame), to.map(|t| t.frame)]
                            .into_iter()
                            .flatten()
                            .collect(),
                    ));
                }
            }
        }

        // Losses seen in the counters (notes: the capture point matters).
        for way in [c, p] {
            let d = &s.dirs[way.index()];
            let holes = d.tracker.holes();
            if !holes.is_empty() {
                let bytes: i64 = holes.iter().map(|(a, b)| b.saturating_sub(*a)).sum();
                out.push(Finding::note(
                    "gaps",
                    format!(
                        "{} {bytes} body bytes in {} range(s) never seen (lost, or captured elsewhere)",
                        if Some(way) == client { "client→peer:" } else { "peer→client:" },
                        holes.len()
                    ),
                    Vec::new(),
                ));
            }
            if d.rmid_unechoed > 0 {
                out.push(Finding::note(
                    "rmid-unechoed",
                    format!(
                        "{} packet(s) carry an rmid that is no lmid the other side sent",
                        d.rmid_unechoed
                    ),
                    d.first_rmid_unechoed.into_iter().collect(),
                ));
            }
        }
        for at in &s.ptcp_restarts {
            out.push(Finding::note(
                "ptcp-restart",
                "a new PTCP SYN restarted the counters on this socket pair",
                vec![at.frame],
            ));
        }
        out
    }

    // -----------------------------------------------------------------------
    // Reports

    /// Readable report: the handshake story across sessions, then one
    /// section per session.
    pub fn report_text(&self) -> String {
        let mut out = String::new();
        let duration = match (self.start, self.end) {
            (Some(s), Some(e)) => e.saturating_sub(s).as_secs_f64(),
            _ => 0.0,
        };
        let realm_count: usize = self.sessions.iter().map(|s| s.realms.len()).sum();
        let _ = writeln!(
            out,
            "== dhp2p decode --stats: {} datagrams ({} other UDP), {} sessions, {} realms, {:.6} s ==",
            self.datagrams,
            self.unrecognised,
            self.sessions.len(),
            realm_count,
            duration
        );
        let verdicts = self.verdicts();
        let unhealthy = verdicts.iter().filter(|v| !v.healthy).count();
        let _ = writeln!(
            out,
            "verdict: {}",
            if unhealthy == 0 {
                "all sessions healthy".to_string()
            } else {
                format!("{unhealthy} of {} sessions unhealthy", verdicts.len())
            }
        );

        let timeline = self.timeline();
        if !timeline.is_empty() {
            let _ = writeln!(out, "\nHandshake timeline (all sessions)");
            let mut previous: Option<Duration> = None;
            for (session_no, s, stage) in &timeline {
                let delay = previous.map_or(0.0, |p| stage.at.time.saturating_sub(p).as_secs_f64());
                previous = Some(stage.at.time);
                let _ = writeln!(
                    out,
                    "  t={:>11.6}  #{:<7} S{:<3} {:<21} -> {:<21} {}{}  (+{:.3} s)",
                    self.rel(stage.at.time),
                    stage.at.frame,
                    session_no,
                    stage.way.from_addr(&s.key).to_string(),
                    stage.way.to_addr(&s.key).to_string(),
                    stage.name,
                    if stage.count > 1 {
                        format!(" ×{}", stage.count)
                    } else {
                        String::new()
                    },
                    delay
                );
            }
        }

        for (number, (s, verdict)) in self.sessions.iter().zip(&verdicts).enumerate() {
            self.session_text(&mut out, number + 1, s, verdict);
        }
        out
    }

    fn session_text(
        &self,
        out: &mut String,
        number: usize,
        s: &SessionStats,
        verdict: &SessionVerdict,
    ) {
        let client = self.client_way(s);
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        let (cname, pname) = if client.is_some() {
            ("client", "peer")
        } else {
            ("a", "b")
        };
        let _ = writeln!(
            out,
            "\nSession S{number}: {} <-> {}  [{}]  frames {}-{}, t={:.6}-{:.6} s",
            c.from_addr(&s.key),
            p.from_addr(&s.key),
            Self::role(s),
            s.first.frame,
            s.last.frame,
            self.rel(s.first.time),
            self.rel(s.last.time)
        );
        if client.is_some() {
            let _ = writeln!(
                out,
                "  client {}, peer {}",
                c.from_addr(&s.key),
                p.from_addr(&s.key)
            );
        }
        let cd = &s.dirs[c.index()];
        let pd = &s.dirs[p.index()];
        let _ = writeln!(
            out,
            "  datagrams: {cname}->{pname} {} ({} B), {pname}->{cname} {} ({} B)",
            cd.datagrams, cd.payload_bytes, pd.datagrams, pd.payload_bytes
        );
        let malformed = cd.malformed.saturating_add(pd.malformed);
        let unknown = cd.kinds[3].saturating_add(pd.kinds[3]);
        if malformed > 0 || unknown > 0 {
            let _ = writeln!(out, "  malformed: {malformed}, unrecognised: {unknown}");
        }
        if let Some((_, detail)) = self.path(s) {
            let _ = writeln!(out, "  path: {detail}");
        }
        if !s.stages.is_empty() {
            let _ = writeln!(out, "  timeline:");
            let mut previous: Option<Duration> = None;
            for stage in &s.stages {
                let delay =
                    previous.map_or(0.0, |pt| stage.at.time.saturating_sub(pt).as_secs_f64());
                previous = Some(stage.at.time);
                let arrow = if stage.way == c { "->" } else { "<-" };
                let _ = writeln!(
                    out,
                    "    #{:<7} t={:>11.6}  {arrow} {}{}  (+{:.3} s)",
                    stage.at.frame,
                    self.rel(stage.at.time),
                    stage.name,
                    if stage.count > 1 {
                        format!(" ×{}", stage.count)
                    } else {
                        String::new()
                    },
                    delay
                );
            }
        }
        if s.has_ptcp() {
            let rows: [DirectionRow; 16] = [
                ("PTCP datagrams", |d| d.ptcp_packets),
                ("bodies", |d| d.bodies),
                ("body bytes", |d| d.body_bytes),
                ("new body bytes", |d| d.new_body_bytes),
                ("DATA bodies (new)", |d| d.data_bodies),
                ("DATA payload bytes (new)", |d| d.data_bytes),
                ("ACKs (empty)", |d| d.acks),
                ("heartbeats", |d| d.heartbeats),
                ("retransmissions", |d| d.retransmissions),
                ("duplicates", |d| d.duplicates),
                ("late (reordered/resent)", |d| d.late),
                ("gaps seen (jumps)", |d| d.gap_events),
                ("gaps still open (bytes)", |d| {
                    d.tracker
                        .holes()
                        .iter()
                        .map(|(a, b)| u64::try_from(b.saturating_sub(*a)).unwrap_or(0))
                        .sum()
                }),
                ("overlaps/conflicts", |d| {
                    d.overlaps.saturating_add(d.conflicts)
                }),
                ("lmid zero/backwards", |d| {
                    d.lmid_zero.saturating_add(d.lmid_backwards)
                }),
                ("rmid not echoing", |d| d.rmid_unechoed),
            ];
            let _ = writeln!(
                out,
                "  {:<26} {:>16} {:>16}",
                "PTCP",
                format!("{cname}->{pname}"),
                format!("{pname}->{cname}")
            );
            for (label, get) in rows {
                let _ = writeln!(out, "    {:<24} {:>16} {:>16}", label, get(cd), get(pd));
            }
            let ou_c = cd.out_unacked(pd).map_or("-".into(), |v| v.to_string());
            let ou_p = pd.out_unacked(cd).map_or("-".into(), |v| v.to_string());
            let _ = writeln!(
                out,
                "  loss accounting at the end: out_unacked {cname}={ou_c} {pname}={ou_p} (in_skew {cname}={})",
                cd.last_recv
                    .zip(pd.tracker.high())
                    .map_or("-".into(), |(recv, high)| high.saturating_sub(pd.tracker.position(recv)).to_string())
            );
        }
        if !s.realm_order.is_empty() {
            let _ = writeln!(out, "  realms:");
            for realm in s.realm_order.iter().filter_map(|r| s.realms.get(r)) {
                let _ = writeln!(out, "    {}", self.realm_line(s, realm, c));
            }
        }
        let _ = writeln!(
            out,
            "  verdict: {}",
            if verdict.healthy {
                "healthy"
            } else {
                "UNHEALTHY"
            }
        );
        for finding in &verdict.findings {
            let frames = if finding.frames.is_empty() {
                String::new()
            } else {
                format!(
                    "  [frames {}]",
                    finding
                        .frames
                        .iter()
                        .map(|f| format!("#{f}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            };
            let _ = writeln!(
                out,
                "    {} {}{frames}",
                if finding.severity == Severity::Failure {
                    "!"
                } else {
                    "-"
                },
                finding.text
            );
        }
    }

    fn realm_line(&self, s: &SessionStats, r: &RealmStats, c: Way) -> String {
        let mut line = format!("0x{:08x}", r.realm);
        match r.bind {
            Some(b) => {
                let _ = write!(
                    line,
                    "  BIND {}:{} #{} t={:.6}",
                    b.ip,
                    b.port,
                    b.at.frame,
                    self.rel(b.at.time)
                );
                if b.count > 1 {
                    let _ = write!(line, " ×{}", b.count);
                }
            }
            None => line.push_str("  no BIND in view"),
        }
        match r.conn {
            Some((at, _)) => {
                let delay = r
                    .bind
                    .map(|b| {
                        format!(
                            " (+{:.3} s)",
                            at.time.saturating_sub(b.at.time).as_secs_f64()
                        )
                    })
                    .unwrap_or_default();
                let _ = write!(line, ", CONN #{}{delay}", at.frame);
            }
            None if r.bind.is_some() && !r.answered() => line.push_str(", never answered"),
            None => {}
        }
        for (at, way) in r.discs.iter().take(2) {
            let who = if *way == c { "client" } else { "peer" };
            let _ = write!(
                line,
                ", DISC by {who} #{} t={:.6}",
                at.frame,
                self.rel(at.time)
            );
        }
        let to = r.data[c.index()];
        let from = r.data[c.reverse().index()];
        let _ = write!(
            line,
            "; to peer {} B in {} DATA, from peer {} B in {} DATA",
            to.1, to.0, from.1, from.0
        );
        let _ = s;
        line
    }

    /// Stages of every session, in capture order, with the session number.
    fn timeline(&self) -> Vec<(usize, &SessionStats, &Stage)> {
        let mut all: Vec<(usize, &SessionStats, &Stage)> = self
            .sessions
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.stages.iter().map(move |st| (i + 1, s, st)))
            .collect();
        all.sort_by_key(|(_, _, st)| st.at.frame);
        all
    }

    /// One JSON object: `sessions[]`, `realms[]` and the merged `timeline[]`
    /// (schema in docs/DECODE.md, `--stats`).
    pub fn report_json(&self) -> Value {
        let verdicts = self.verdicts();
        let mut sessions = Vec::new();
        let mut realms = Vec::new();
        for (i, (s, verdict)) in self.sessions.iter().zip(&verdicts).enumerate() {
            let id = i + 1;
            let client = self.client_way(s);
            let c = client.unwrap_or(Way::AtoB);
            let p = c.reverse();
            let mut previous: Option<Duration> = None;
            let stages: Vec<Value> = s
                .stages
                .iter()
                .map(|st| {
                    let delay =
                        previous.map_or(0.0, |pt| st.at.time.saturating_sub(pt).as_secs_f64());
                    previous = Some(st.at.time);
                    json!({
                        "frame": st.at.frame,
                        "time": self.rel(st.at.time),
                        "stage": st.name,
                        "from": st.way.from_addr(&s.key).to_string(),
                        "to": st.way.to_addr(&s.key).to_string(),
                        "count": st.count,
                        "delay": delay,
                    })
                })
                .collect();
            let directions: Vec<Value> = [c, p]
                .into_iter()
                .map(|w| self.direction_json(s, w))
                .collect();
            let path = self.path(s);
            let realm_ids: Vec<u32> = s.realm_order.clone();
            for realm in s.realm_order.iter().filter_map(|r| s.realms.get(r)) {
                realms.push(self.realm_json(id, s, realm, c));
            }
            sessions.push(json!({
                "id": id,
                "a": s.key.a.to_string(),
                "b": s.key.b.to_string(),
                "client": client.map(|w| w.from_addr(&s.key).to_string()),
                "peer": client.map(|w| w.to_addr(&s.key).to_string()),
                "role": Self::role(s),
                "first_frame": s.first.frame,
                "last_frame": s.last.frame,
                "start": self.rel(s.first.time),
                "end": self.rel(s.last.time),
                "path": path.as_ref().map(|(k, _)| *k),
                "path_detail": path.map(|(_, d)| d),
                "directions": directions,
                "timeline": stages,
                "realms": realm_ids,
                "verdict": if verdict.healthy { "healthy" } else { "unhealthy" },
                "findings": verdict.findings.iter().map(|f| json!({
                    "code": f.code,
                    "severity": f.severity.as_str(),
                    "text": f.text,
                    "frames": f.frames,
                })).collect::<Vec<_>>(),
            }));
        }
        let mut previous: Option<Duration> = None;
        let timeline: Vec<Value> = self
            .timeline()
            .into_iter()
            .map(|(id, s, st)| {
                let delay = previous.map_or(0.0, |pt| st.at.time.saturating_sub(pt).as_secs_f64());
                previous = Some(st.at.time);
                json!({
                    "frame": st.at.frame,
                    "time": self.rel(st.at.time),
                    "session": id,
                    "stage": st.name,
                    "from": st.way.from_addr(&s.key).to_string(),
                    "to": st.way.to_addr(&s.key).to_string(),
                    "delay": delay,
                })
            })
            .collect();
        json!({
            "datagrams": self.datagrams,
            "unrecognised": self.unrecognised,
            "start_epoch": self.start.map(|s| s.as_secs_f64()),
            "duration": match (self.start, self.end) {
                (Some(s), Some(e)) => e.saturating_sub(s).as_secs_f64(),
                _ => 0.0,
            },
            "healthy": verdicts.iter().all(|v| v.healthy),
            "timeline": timeline,
            "sessions": sessions,
            "realms": realms,
        })
    }

    fn direction_json(&self, s: &SessionStats, w: Way) -> Value {
        let d = &s.dirs[w.index()];
        let other = &s.dirs[w.reverse().index()];
        let holes = d.tracker.holes();
        let mut object = json!({
            "from": w.from_addr(&s.key).to_string(),
            "to": w.to_addr(&s.key).to_string(),
            "datagrams": d.datagrams,
            "payload_bytes": d.payload_bytes,
            "kinds": {
                "cloud": d.kinds[0],
                "punch": d.kinds[1],
                "ptcp": d.kinds[2],
                "unknown": d.kinds[3],
            },
            "malformed": d.malformed,
        });
        if d.ptcp_packets > 0 || other.ptcp_packets > 0 {
            object["ptcp"] = json!({
                "packets": d.ptcp_packets,
                "bodies": d.bodies,
                "body_bytes": d.body_bytes,
                "new_body_bytes": d.new_body_bytes,
                "data_bodies": d.data_bodies,
                "data_bytes": d.data_bytes,
                "acks": d.acks,
                "heartbeats": d.heartbeats,
                "retransmissions": d.retransmissions,
                "duplicates": d.duplicates,
                "late": d.late,
                "overlaps": d.overlaps,
                "conflicts": d.conflicts,
                "gap_events": d.gap_events,
                "gap_bytes_seen": d.gap_bytes,
                "open_gaps": holes.iter().map(|(a, b)| json!({"start": a, "end": b})).collect::<Vec<_>>(),
                "out_unacked": d.out_unacked(other),
                "lmid_zero": d.lmid_zero,
                "lmid_backwards": d.lmid_backwards,
                "rmid_unechoed": d.rmid_unechoed,
                "first_retransmission": d.first_retransmission,
                "first_duplicate": d.first_duplicate,
            });
        }
        object
    }

    fn realm_json(&self, session: usize, s: &SessionStats, r: &RealmStats, c: Way) -> Value {
        let role = |w: Way| if w == c { "client" } else { "peer" };
        json!({
            "session": session,
            "realm": r.realm,
            "realm_hex": format!("0x{:08x}", r.realm),
            "first_frame": r.first.frame,
            "bind": r.bind.map(|b| json!({
                "frame": b.at.frame,
                "time": self.rel(b.at.time),
                "port": b.port,
                "ip": b.ip.to_string(),
                "by": role(b.way),
                "count": b.count,
            })),
            "conn": r.conn.map(|(at, w)| json!({
                "frame": at.frame,
                "time": self.rel(at.time),
                "by": role(w),
                "delay": r.bind.map(|b| at.time.saturating_sub(b.at.time).as_secs_f64()),
            })),
            "disc": r.discs.iter().map(|(at, w)| json!({
                "frame": at.frame,
                "time": self.rel(at.time),
                "by": role(*w),
            })).collect::<Vec<_>>(),
            "disc_count": r.disc_count,
            "to_peer": {"packets": r.data[c.index()].0, "bytes": r.data[c.index()].1},
            "from_peer": {"packets": r.data[c.reverse().index()].0, "bytes": r.data[c.reverse().index()].1},
            "orphan_conn": r.bind.is_none() && r.conn.is_some(),
            "bind_unanswered": r.bind.is_some() && !r.answered(),
            "peer": s.key.to_string(),
        })
    }
}

// ---------------------------------------------------------------------------
// Per-datagram handlers

/// Datagram counts, times and silences, for every kind.
fn touch(session: &mut SessionStats, way: Way, record: &Record, at: At) {
    let other_last = session.dirs[way.reverse().index()].last;
    let dir = &mut session.dirs[way.index()];
    dir.datagrams = dir.datagrams.saturating_add(1);
    dir.payload_bytes = dir
        .payload_bytes
        .saturating_add(u64::try_from(record.payload.len()).unwrap_or(u64::MAX));
    // A quiet time counts only when the other side spoke during it.
    if let (Some(last), Some(other)) = (dir.last, other_last) {
        if other.time > last.time {
            let quiet = at.time.saturating_sub(last.time);
            if dir.silence.is_none_or(|(q, _, _)| quiet > q) {
                dir.silence = Some((quiet, last, Some(at)));
            }
        }
    }
    dir.first.get_or_insert(at);
    dir.last = Some(at);
    // The other side's quiet time up to now, if it lasts to the end.
    let other = &mut session.dirs[way.reverse().index()];
    if let Some(last) = other.last {
        let quiet = at.time.saturating_sub(last.time);
        let ends_open = other
            .silence
            .is_some_and(|(_, from, to)| to.is_none() && from == last);
        if ends_open || other.silence.is_none_or(|(q, _, _)| quiet > q) {
            other.silence = Some((quiet, last, None));
        }
    }
    if at.frame >= session.last.frame {
        session.last = at;
    }
}

fn on_cloud(
    session: &mut SessionStats,
    learned: &mut Learned,
    way: Way,
    record: &Record,
    at: At,
    message: &Message,
) {
    match message {
        Message::Request(request) => {
            learned.clients.insert(record.src);
            session.first_request_way.get_or_insert(way);
            let endpoint = request.endpoint();
            if matches!(endpoint, Endpoint::P2pChannel { .. }) {
                learned.p2p_channel_sockets.insert(record.src);
            }
            let name = endpoint_name(&endpoint);
            session.stage(at, way, format!("{} {name}", request.method.as_str()));
            let cseq = request.cseq();
            let retransmission = session.requests.iter_mut().rev().find(|r| {
                r.way == way && r.endpoint == endpoint && r.cseq == cseq && !r.final_answer
            });
            match retransmission {
                Some(r) => r.count = r.count.saturating_add(1),
                None => {
                    if session.requests.len() < MAX_STAGES {
                        session.requests.push(CloudRequest {
                            at,
                            way,
                            endpoint,
                            cseq,
                            count: 1,
                            answers: Vec::new(),
                            final_answer: false,
                        });
                    }
                }
            }
        }
        Message::Response(response) => {
            let cseq = response.cseq();
            let back = way.reverse();
            let matched = {
                let candidates = session.requests.iter_mut().filter(|r| r.way == back);
                let by_cseq: Vec<&mut CloudRequest> = candidates
                    .filter(|r| match (r.cseq, cseq) {
                        (Some(a), Some(b)) => a == b,
                        _ => !r.final_answer,
                    })
                    .collect();
                // The newest request with that CSeq, else the oldest open one.
                if cseq.is_some() {
                    by_cseq.into_iter().next_back()
                } else {
                    by_cseq.into_iter().next()
                }
            };
            let xml = response.xml_body().ok().flatten();
            let error = xml.as_ref().map(ErrorBody::from_xml);
            match matched {
                Some(request) => {
                    request.answers.push((at, response.code));
                    if response.code >= 200 {
                        request.final_answer = true;
                    }
                    let endpoint = request.endpoint.clone();
                    let name = endpoint_name(&endpoint);
                    let detail = error
                        .as_ref()
                        .and_then(|e| e.error.clone())
                        .map(|e| format!(" {e}"))
                        .unwrap_or_default();
                    session.stage(at, way, format!("{name} {}{detail}", response.code));
                    if response.code >= 400 {
                        let err = error.as_ref();
                        let what = match (response.code, err.and_then(|e| e.error.clone())) {
                            (403 | 401, Some(e)) if e.starts_with("DevPwd_") => e,
                            _ => name.clone(),
                        };
                        session.errors.push((
                            at,
                            response.code,
                            what,
                            err.and_then(|e| e.policy.clone()),
                        ));
                    }
                    if let Some(xml) = &xml {
                        learn_answer(learned, &endpoint, xml, response.code);
                    }
                }
                None => {
                    // The agent's own notification after relay-channel
                    // (docs/PROTOCOL.md §1.2), or a stray answer.
                    session.stage(at, way, format!("agent notification {}", response.code));
                    if session.unsolicited.len() < MAX_STAGES {
                        session
                            .unsolicited
                            .push((at, way, response.code, response.reason.clone()));
                    }
                    learned.agents.insert(record.src);
                }
            }
        }
    }
}

fn learn_answer(
    learned: &mut Learned,
    endpoint: &Endpoint,
    xml: &crate::codec::cloud::XmlBody,
    code: u16,
) {
    if !(200..300).contains(&code) {
        return;
    }
    match TypedBody::of_response(endpoint, xml) {
        TypedBody::ChannelAnswer(ChannelAnswer {
            pub_addr,
            local_addr,
            ..
        }) => {
            if let Some(addr) = pub_addr.as_deref().and_then(host_port_addr) {
                learned.pub_addrs.insert(addr);
            }
            if let Some(list) = local_addr.as_deref().and_then(|t| parse_addr_list(t).ok()) {
                learned
                    .local_addrs
                    .extend(list.into_iter().take(16).map(SocketAddr::V4));
            }
        }
        TypedBody::Agent(agent) => {
            if let Some(addr) = agent.agent.as_deref().and_then(host_port_addr) {
                learned.agents.insert(addr);
            }
        }
        _ => {}
    }
}

fn on_punch(session: &mut SessionStats, way: Way, at: At, message: &PunchMessage) {
    session.first_punch.get_or_insert((at, way));
    let name = match message.message_type {
        MessageType::BindingRequest => {
            session.punch_requests[way.index()] =
                session.punch_requests[way.index()].saturating_add(1);
            "punch Binding Request"
        }
        MessageType::BindingSuccess => {
            session.punch_successes[way.index()] =
                session.punch_successes[way.index()].saturating_add(1);
            if message.address().is_some() {
                "punch Binding Success"
            } else {
                "punch confirm"
            }
        }
        MessageType::BindingError => "punch Binding Error",
        MessageType::Other(_) => "punch other",
    };
    session.stage(at, way, name);
}

fn on_ptcp(session: &mut SessionStats, way: Way, record: &Record, at: At, packet: &Packet<'_>) {
    session.first_ptcp_way.get_or_insert(way);
    let header = packet.header;
    let body = packet.body;

    // A SYN from the initiator after it sent other bodies: a new PTCP
    // session on the same sockets. (The peer's SYN reply resent late is not:
    // only the initiator opens sessions.)
    let initiator = session.syn_initiator.unwrap_or(way);
    if body == Body::Syn && way == initiator && session.dirs[way.index()].non_syn_bodies > 0 {
        session.ptcp_restarts.push(at);
        for dir in &mut session.dirs {
            dir.tracker = SentTracker::new();
            dir.non_syn_bodies = 0;
            dir.last_recv = None;
            dir.unacked_since = None;
            dir.syn = None;
        }
    }

    // Header: lmid clock and rmid echo (FIELD-NOTES C2).
    {
        let other_has_lmids = !session.dirs[way.reverse().index()].lmids.is_empty();
        let echoed = header.rmid == 0
            || !other_has_lmids
            || session.dirs[way.reverse().index()]
                .lmids
                .contains(&header.rmid);
        let dir = &mut session.dirs[way.index()];
        dir.ptcp_packets = dir.ptcp_packets.saturating_add(1);
        if header.lmid == 0 {
            dir.lmid_zero = dir.lmid_zero.saturating_add(1);
        }
        if let Some(previous) = dir.last_lmid {
            if (header.lmid.wrapping_sub(previous) as i32) < 0 {
                dir.lmid_backwards = dir.lmid_backwards.saturating_add(1);
            }
        }
        dir.last_lmid = Some(header.lmid);
        dir.remember_lmid(header.lmid);
        if !echoed {
            dir.rmid_unechoed = dir.rmid_unechoed.saturating_add(1);
            dir.first_rmid_unechoed.get_or_insert(record.number);
        }
    }

    // recv acknowledges the other direction; progress restarts its stall clock.
    {
        let changed = session.dirs[way.index()].last_recv != Some(header.recv);
        session.dirs[way.index()].last_recv = Some(header.recv);
        if changed {
            let acked = &mut session.dirs[way.reverse().index()];
            if let Some(high) = acked.tracker.high() {
                let position = acked.tracker.position(header.recv);
                acked.unacked_since = if position >= high { None } else { Some(at) };
            }
        }
    }

    if body.is_empty() {
        let dir = &mut session.dirs[way.index()];
        dir.acks = dir.acks.saturating_add(1);
        return;
    }

    let body_bytes = record.payload.get(ptcp::HEADER_LEN..).unwrap_or_default();
    let body_len = u64::try_from(body_bytes.len()).unwrap_or(u64::MAX);
    let arrival = {
        let dir = &mut session.dirs[way.index()];
        let (_, arrival) = dir
            .tracker
            .observe(header.sent, body_bytes, &record.payload);
        dir.bodies = dir.bodies.saturating_add(1);
        dir.body_bytes = dir.body_bytes.saturating_add(body_len);
        if body != Body::Syn {
            dir.non_syn_bodies = dir.non_syn_bodies.saturating_add(1);
        }
        match arrival {
            Arrival::InOrder => {}
            Arrival::AfterGap { missing } => {
                dir.gap_events = dir.gap_events.saturating_add(1);
                dir.gap_bytes = dir.gap_bytes.saturating_add(missing);
            }
            Arrival::Late => dir.late = dir.late.saturating_add(1),
            Arrival::Retransmission => {
                dir.retransmissions = dir.retransmissions.saturating_add(1);
                dir.first_retransmission.get_or_insert(record.number);
            }
            Arrival::Duplicate => {
                dir.duplicates = dir.duplicates.saturating_add(1);
                dir.first_duplicate.get_or_insert(record.number);
            }
            Arrival::Overlap => dir.overlaps = dir.overlaps.saturating_add(1),
            Arrival::Conflict => dir.conflicts = dir.conflicts.saturating_add(1),
        }
        if arrival.is_new() {
            dir.new_body_bytes = dir.new_body_bytes.saturating_add(body_len);
        }
        arrival
    };
    let new = arrival.is_new();

    match body {
        Body::Syn => {
            session.syn_initiator.get_or_insert(way);
            session.dirs[way.index()].syn.get_or_insert(at);
            session.stage(at, way, "PTCP SYN");
        }
        Body::Heartbeat => {
            let dir = &mut session.dirs[way.index()];
            dir.heartbeats = dir.heartbeats.saturating_add(1);
            dir.last_heartbeat = Some(at);
        }
        Body::SignRequest => {
            session.sign_request.get_or_insert(at);
            session.stage(at, way, "0x17 sign request");
        }
        Body::Sign { .. } => {
            session.sign.get_or_insert(at);
            session.stage(at, way, "0x18 sign");
        }
        Body::Auth { .. } => {
            session.auth.get_or_insert((at, way));
            session.stage(at, way, "0x19 auth");
        }
        Body::AuthReply { .. } => {
            session.auth_reply.get_or_insert(at);
            session.stage(at, way, "0x1A auth reply");
        }
        Body::AuthConfirm => {
            session.auth_confirm.get_or_insert(at);
            session.stage(at, way, "0x1B auth confirm");
        }
        Body::Bind {
            realm, port, ip, ..
        } => {
            session.bind_way.get_or_insert(way);
            session.stage(at, way, "first BIND");
            let r = session.realm(realm, at);
            match &mut r.bind {
                Some(b) => b.count = b.count.saturating_add(1),
                None => {
                    r.bind = Some(BindSeen {
                        at,
                        way,
                        port,
                        ip,
                        count: 1,
                    })
                }
            }
        }
        Body::Status {
            realm,
            status: Status::Conn,
            ..
        } => {
            session.stage(at, way, "first CONN");
            let r = session.realm(realm, at);
            r.conn.get_or_insert((at, way));
        }
        Body::Status {
            realm,
            status: Status::Disc,
            ..
        } => {
            session.stage(at, way, "first DISC");
            let r = session.realm(realm, at);
            r.disc_count = r.disc_count.saturating_add(1);
            if r.discs.len() < MAX_DISCS && (new || r.discs.is_empty()) {
                r.discs.push((at, way));
            }
        }
        Body::Data { realm, payload } if new => {
            let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
            let r = session.realm(realm, at);
            let slot = &mut r.data[way.index()];
            slot.0 = slot.0.saturating_add(1);
            slot.1 = slot.1.saturating_add(len);
            let dir = &mut session.dirs[way.index()];
            dir.data_bodies = dir.data_bodies.saturating_add(1);
            dir.data_bytes = dir.data_bytes.saturating_add(len);
            dir.last_data = Some(at);
            if payload.starts_with(b"PLAY ") {
                dir.play.get_or_insert(at);
            }
            // Outbound stall (FIELD-NOTES §4.4): new data while earlier
            // data has waited for the peer's recv for 20 s.
            let (this, other) = split_dirs(&mut session.dirs, way);
            if let Some(unacked) = this.out_unacked(other) {
                if unacked > len.try_into().unwrap_or(i64::MAX) {
                    match this.unacked_since {
                        Some(since) if at.time.saturating_sub(since.time) >= OUTBOUND_STALL => {
                            if this.stall.is_none() {
                                this.stall = Some((since, at, unacked));
                            }
                        }
                        Some(_) => {}
                        None => this.unacked_since = Some(at),
                    }
                } else if this.unacked_since.is_none() {
                    this.unacked_since = Some(at);
                }
            }
        }
        _ => {}
    }
}

fn split_dirs(dirs: &mut [Direction; 2], way: Way) -> (&mut Direction, &Direction) {
    let [a, b] = dirs;
    match way {
        Way::AtoB => (a, b),
        Way::BtoA => (b, a),
    }
}
