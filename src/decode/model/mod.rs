//! The conversation model: what a decoded stream of datagrams means.
//!
//! One plain type, [`Conversation`]: [`Conversation::observe`] takes records
//! in capture order, queries read the result. It owns no I/O and no clock
//! (times come from the records). Every reader of a capture's meaning reads
//! this model and never re-derives it: `decode --stats` (the findings and the
//! text and JSON renderers in [`crate::decode::stats`]), `decode --follow`
//! (the `sent` tracker and session directions) and the inspector's realms
//! view and handshake timeline.
//!
//! Every datagram goes through [`classify`]; nothing here reads the wire
//! itself. Memory stays bounded per direction: only the covered byte ranges
//! of the PTCP stream and a window of recent body fingerprints are kept,
//! never the bytes.

mod cloud;
mod ptcp;
mod realms;
pub mod sent;
pub(crate) mod session;
pub mod timeline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use self::cloud::{on_cloud, on_punch, touch};
use self::ptcp::on_ptcp;
pub use self::ptcp::{opens_new_session, OUTBOUND_STALL};
pub use self::realms::Realm;
pub use self::sent::{Arrival, SentTracker, Way};
pub use self::session::RealmState;
use self::session::{kind_index, At, Learned, SessionStats};
pub use self::timeline::Stage;
use self::timeline::Timeline;
use crate::codec::classify::{classify, Datagram, Kind};
use crate::codec::cloud::Endpoint;
use crate::decode::record::{Record, SessionKey};

/// What a capture's datagrams mean, computed once for every reader.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub(crate) sessions: Vec<SessionStats>,
    pub(crate) index: HashMap<SessionKey, usize>,
    pub(crate) learned: Learned,
    pub(crate) datagrams: u64,
    /// Datagrams of no protocol here, outside any session.
    pub(crate) unrecognised: u64,
    pub(crate) start: Option<Duration>,
    pub(crate) end: Option<Duration>,
    /// The inspector's handshake timeline, across sessions.
    pub(crate) timeline: Timeline,
}

impl Conversation {
    pub fn new() -> Self {
        Conversation::default()
    }

    /// Takes one datagram into account (records in capture order).
    pub fn observe(&mut self, record: &Record) {
        self.observe_classified(record, &classify(&record.payload));
    }

    /// [`Conversation::observe`] for a caller that already classified the
    /// payload (`datagram` is `classify(&record.payload)`).
    pub fn observe_classified(&mut self, record: &Record, datagram: &Datagram<'_>) {
        self.datagrams = self.datagrams.saturating_add(1);
        self.start = Some(self.start.map_or(record.time, |s| s.min(record.time)));
        self.end = Some(self.end.map_or(record.time, |e| e.max(record.time)));
        let key = record.session();
        let at = At::of(record);
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
            Datagram::Cloud(Ok(message)) => on_cloud(
                session,
                &mut self.learned,
                &mut self.timeline,
                way,
                record,
                at,
                message,
            ),
            Datagram::Punch(Ok(message)) => on_punch(session, &mut self.timeline, way, at, message),
            Datagram::Ptcp(Ok(packet)) => {
                on_ptcp(session, &mut self.timeline, way, record, at, packet)
            }
            // Malformed datagrams were counted above; unknown ones only
            // count as datagrams of the session.
            Datagram::Cloud(Err(_))
            | Datagram::Punch(Err(_))
            | Datagram::Ptcp(Err(_))
            | Datagram::Unknown => {}
        }
    }

    /// Same as [`Conversation::observe`] (the `--stats` sink's name for it).
    pub fn add(&mut self, record: &Record) {
        self.observe(record);
    }

    /// Sessions in order of their first datagram.
    pub fn sessions(&self) -> Vec<SessionKey> {
        self.sessions.iter().map(|s| s.key).collect()
    }

    pub(crate) fn rel(&self, time: Duration) -> f64 {
        time.saturating_sub(self.start.unwrap_or_default())
            .as_secs_f64()
    }

    /// Which way of a session goes from the client to its peer, if known:
    /// the socket that sent cloud requests, the BIND sender, the first
    /// request or SYN sender.
    pub(crate) fn client_way(&self, s: &SessionStats) -> Option<Way> {
        let a_client = self.learned.clients.contains(&s.key.a);
        let b_client = self.learned.clients.contains(&s.key.b);
        match (a_client, b_client) {
            (true, false) => return Some(Way::AtoB),
            (false, true) => return Some(Way::BtoA),
            (true, true) | (false, false) => {}
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
    pub(crate) fn role(s: &SessionStats) -> String {
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
    pub(crate) fn path(&self, s: &SessionStats) -> Option<(&'static str, String)> {
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
    pub(crate) fn other_candidate_answered(&self, s: &SessionStats, us: SocketAddr) -> bool {
        self.sessions.iter().any(|o| {
            if o.key == s.key || (o.key.a != us && o.key.b != us) {
                return false;
            }
            let peer = if o.key.a == us { Way::BtoA } else { Way::AtoB };
            let d = &o.dirs[peer.index()];
            d.kinds[kind_index(Kind::Punch)] > 0 || d.kinds[kind_index(Kind::Ptcp)] > 0
        })
    }
}
