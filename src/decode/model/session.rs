//! Per-session state of the conversation model: directions, cloud requests,
//! realms and the first-seen milestones of each session.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use super::sent::{SentTracker, Way};
use crate::codec::classify::Kind;
use crate::codec::cloud::{Endpoint, HostPort};
use crate::decode::record::{Record, SessionKey};

/// Most milestones kept per session (a hostile capture can name endless
/// paths); also bounds cloud requests and unsolicited answers.
pub(crate) const MAX_STAGES: usize = 96;
/// Most realms tracked per session (a hostile capture can name endless
/// realm IDs); later ones are counted, not tracked.
pub(crate) const MAX_REALMS: usize = 65_536;
/// Remembered `lmid` values per direction, to check that `rmid` echoes one.
const RECENT_LMIDS: usize = 4096;

// ---------------------------------------------------------------------------
// Per-session state

/// A frame and its capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) frame: u64,
    pub(crate) time: Duration,
}

impl At {
    pub(crate) fn of(record: &Record) -> At {
        At {
            frame: record.number,
            time: record.time,
        }
    }
}

/// One handshake stage: the first time something happened in a session.
#[derive(Debug, Clone)]
pub(crate) struct Milestone {
    pub(crate) at: At,
    pub(crate) way: Way,
    pub(crate) name: String,
    pub(crate) count: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct CloudRequest {
    pub(crate) at: At,
    pub(crate) way: Way,
    pub(crate) endpoint: Endpoint,
    pub(crate) cseq: Option<i64>,
    pub(crate) count: u64,
    pub(crate) answers: Vec<(At, u16)>,
    pub(crate) final_answer: bool,
    /// Its entry in the inspector's timeline, if it started one.
    pub(crate) stage_id: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BindSeen {
    pub(crate) at: At,
    pub(crate) way: Way,
    pub(crate) port: u32,
    pub(crate) ip: Ipv4Addr,
    pub(crate) count: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RealmStats {
    pub(crate) realm: u32,
    pub(crate) first: At,
    pub(crate) bind: Option<BindSeen>,
    pub(crate) conn: Option<(At, Way)>,
    pub(crate) discs: Vec<(At, Way)>,
    pub(crate) disc_count: u64,
    /// New DATA (packets, payload bytes) per way.
    pub(crate) data: [(u64, u64); 2],
    /// The side that sent the first datagram of the realm.
    pub(crate) first_way: Way,
    /// The realm's life as the packets tell it (latest BIND or STATUS).
    pub(crate) state: RealmState,
    /// DATA that brought no new bytes: resent or duplicated on the way.
    pub(crate) repeats: u64,
    /// DATA, BIND and STATUS bodies of the realm, copies included.
    pub(crate) packets: u64,
    /// The last DATA, BIND or STATUS of the realm.
    pub(crate) last: At,
}

/// A realm's life as the packets tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmState {
    /// Seen in DATA before any BIND (the capture started late).
    Seen,
    /// BIND sent, no STATUS yet.
    Bind,
    /// STATUS CONN: the device connected the target.
    Conn,
    /// STATUS DISC: closed.
    Disc,
}

impl RealmState {
    pub fn as_str(self) -> &'static str {
        match self {
            RealmState::Seen => "DATA",
            RealmState::Bind => "BIND",
            RealmState::Conn => "CONN",
            RealmState::Disc => "DISC",
        }
    }
}

impl RealmStats {
    pub(crate) fn new(realm: u32, at: At, way: Way) -> RealmStats {
        RealmStats {
            realm,
            first: at,
            bind: None,
            conn: None,
            discs: Vec::new(),
            disc_count: 0,
            data: [(0, 0); 2],
            first_way: way,
            state: RealmState::Seen,
            repeats: 0,
            packets: 0,
            last: at,
        }
    }

    /// CONN or DISC from the side that did not send the BIND.
    pub(crate) fn answered(&self) -> bool {
        let Some(bind) = self.bind else { return true };
        let peer = bind.way.reverse();
        self.conn.is_some_and(|(_, w)| w == peer) || self.discs.iter().any(|(_, w)| *w == peer)
    }
}

/// A row of the per-direction PTCP table: label and getter.
pub(crate) type DirectionRow = (&'static str, fn(&Direction) -> u64);

#[derive(Debug, Clone, Default)]
pub(crate) struct Direction {
    pub(crate) datagrams: u64,
    pub(crate) payload_bytes: u64,
    pub(crate) first: Option<At>,
    pub(crate) last: Option<At>,
    pub(crate) kinds: [u64; 4],
    pub(crate) malformed: u64,
    pub(crate) first_malformed: Option<u64>,
    // PTCP
    pub(crate) ptcp_packets: u64,
    pub(crate) bodies: u64,
    pub(crate) body_bytes: u64,
    pub(crate) new_body_bytes: u64,
    pub(crate) data_bodies: u64,
    pub(crate) data_bytes: u64,
    pub(crate) acks: u64,
    pub(crate) heartbeats: u64,
    pub(crate) last_heartbeat: Option<At>,
    pub(crate) last_data: Option<At>,
    pub(crate) gap_events: u64,
    pub(crate) gap_bytes: u64,
    pub(crate) late: u64,
    pub(crate) retransmissions: u64,
    pub(crate) duplicates: u64,
    pub(crate) overlaps: u64,
    pub(crate) conflicts: u64,
    pub(crate) first_retransmission: Option<u64>,
    pub(crate) first_duplicate: Option<u64>,
    pub(crate) non_syn_bodies: u64,
    pub(crate) tracker: SentTracker,
    /// The last `recv` this side advertised (acknowledges the other way).
    pub(crate) last_recv: Option<u32>,
    /// Since when this side's data has been waiting for the peer's `recv`.
    pub(crate) unacked_since: Option<At>,
    pub(crate) stall: Option<(At, At, i64)>,
    pub(crate) lmid_zero: u64,
    pub(crate) lmid_backwards: u64,
    pub(crate) last_lmid: Option<u32>,
    pub(crate) lmids: HashSet<u32>,
    pub(crate) lmid_order: VecDeque<u32>,
    pub(crate) rmid_unechoed: u64,
    pub(crate) first_rmid_unechoed: Option<u64>,
    /// Longest quiet time of this side while the other side spoke.
    pub(crate) silence: Option<(Duration, At, Option<At>)>,
    pub(crate) syn: Option<At>,
    pub(crate) play: Option<At>,
}

impl Direction {
    pub(crate) fn remember_lmid(&mut self, lmid: u32) {
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
    pub(crate) fn out_unacked(&self, peer: &Direction) -> Option<i64> {
        let high = self.tracker.high()?;
        let recv = peer.last_recv?;
        Some(high.saturating_sub(self.tracker.position(recv)))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SessionStats {
    pub(crate) key: SessionKey,
    pub(crate) first: At,
    pub(crate) last: At,
    pub(crate) dirs: [Direction; 2],
    pub(crate) stages: Vec<Milestone>,
    pub(crate) requests: Vec<CloudRequest>,
    pub(crate) unsolicited: Vec<(At, Way, u16, String)>,
    pub(crate) errors: Vec<(At, u16, String, Option<String>)>,
    pub(crate) realms: BTreeMap<u32, RealmStats>,
    pub(crate) realm_order: Vec<u32>,
    pub(crate) punch_requests: [u64; 2],
    pub(crate) punch_successes: [u64; 2],
    pub(crate) first_punch: Option<(At, Way)>,
    pub(crate) sign_request: Option<At>,
    pub(crate) sign: Option<At>,
    pub(crate) auth: Option<(At, Way)>,
    pub(crate) auth_reply: Option<At>,
    pub(crate) auth_confirm: Option<At>,
    pub(crate) bind_way: Option<Way>,
    pub(crate) first_request_way: Option<Way>,
    pub(crate) first_ptcp_way: Option<Way>,
    /// The side whose SYN opened PTCP on this socket pair.
    pub(crate) syn_initiator: Option<Way>,
    pub(crate) ptcp_restarts: Vec<At>,
    /// Bodies of realms past [`MAX_REALMS`], not tracked.
    pub(crate) realms_dropped: u64,
}

impl SessionStats {
    pub(crate) fn new(key: SessionKey, at: At) -> SessionStats {
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
            realms_dropped: 0,
        }
    }

    pub(crate) fn stage(&mut self, at: At, way: Way, name: impl Into<String>) {
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
            self.stages.push(Milestone {
                at,
                way,
                name,
                count: 1,
            });
        }
    }

    /// The realm's entry, created when new; `None` (and counted) once the
    /// session holds [`MAX_REALMS`] realms.
    pub(crate) fn realm(&mut self, realm: u32, at: At, way: Way) -> Option<&mut RealmStats> {
        if !self.realms.contains_key(&realm) {
            if self.realms.len() >= MAX_REALMS {
                self.realms_dropped = self.realms_dropped.saturating_add(1);
                return None;
            }
            self.realm_order.push(realm);
        }
        Some(
            self.realms
                .entry(realm)
                .or_insert_with(|| RealmStats::new(realm, at, way)),
        )
    }

    pub(crate) fn has_realm_traffic(&self) -> bool {
        self.realms.values().any(|r| {
            r.bind.is_some() || r.conn.is_some() || r.data.iter().any(|(packets, _)| *packets > 0)
        })
    }

    pub(crate) fn has_ptcp(&self) -> bool {
        self.dirs.iter().any(|d| d.ptcp_packets > 0)
    }

    pub(crate) fn has_kind(&self, kind: Kind) -> bool {
        self.dirs.iter().any(|d| d.kinds[kind_index(kind)] > 0)
    }
}

pub(crate) fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Cloud => 0,
        Kind::Punch => 1,
        Kind::Ptcp => 2,
        Kind::Unknown => 3,
    }
}

/// Addresses learned from cloud answers, across the whole capture.
#[derive(Debug, Clone, Default)]
pub(crate) struct Learned {
    /// Sources of any cloud request: client sockets.
    pub(crate) clients: HashSet<SocketAddr>,
    /// Sources of p2p-channel requests (socket D of docs/PROTOCOL.md §1.1).
    pub(crate) p2p_channel_sockets: HashSet<SocketAddr>,
    /// `PubAddr` of p2p-channel answers.
    pub(crate) pub_addrs: HashSet<SocketAddr>,
    /// Plain `LocalAddr` candidates of p2p-channel answers.
    pub(crate) local_addrs: HashSet<SocketAddr>,
    /// `Agent` of `/relay/agent` answers.
    pub(crate) agents: HashSet<SocketAddr>,
}

pub(crate) fn host_port_addr(text: &str) -> Option<SocketAddr> {
    HostPort::from_str(text.trim())
        .ok()
        .and_then(|hp| hp.to_socket_addr_v4())
        .map(SocketAddr::V4)
}

/// A short stage name for the endpoint of a request path.
pub(crate) fn endpoint_name(endpoint: &Endpoint) -> String {
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
