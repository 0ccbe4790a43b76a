//! Queries for the inspector's realms view and timeline: each realm's
//! target, state, bytes each way, retransmissions and last activity, read
//! from the model's realm records (never recomputed from datagrams).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::session::{RealmState, RealmStats, SessionStats};
use super::timeline::Stage;
use super::Conversation;
use crate::decode::record::SessionKey;

/// One realm (a tunnelled TCP connection) of one UDP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    pub session: SessionKey,
    pub realm: u32,
    /// The side that sent BIND (the client); else the first sender seen.
    pub client: SocketAddr,
    /// The BIND target as seen from the device.
    pub target: Option<SocketAddrV4>,
    pub state: RealmState,
    /// DATA payload bytes from the client towards the device, first copies only.
    pub to_device: u64,
    /// DATA payload bytes from the device towards the client, first copies only.
    pub from_device: u64,
    /// DATA that brought no new bytes: resent (`sent` going back over bytes
    /// already seen) or duplicated on the way.
    pub retransmissions: u64,
    pub packets: u64,
    pub first_seen: Duration,
    pub last_activity: Duration,
}

impl Realm {
    fn of(session: &SessionStats, r: &RealmStats) -> Realm {
        let client = r.bind.map_or(r.first_way, |b| b.way);
        Realm {
            session: session.key,
            realm: r.realm,
            client: client.from_addr(&session.key),
            target: r.bind.and_then(|b| {
                u16::try_from(b.port)
                    .ok()
                    .map(|p| SocketAddrV4::new(b.ip, p))
            }),
            state: r.state,
            to_device: r.data[client.index()].1,
            from_device: r.data[client.reverse().index()].1,
            retransmissions: r.repeats,
            packets: r.packets,
            first_seen: r.first.time,
            last_activity: r.last.time,
        }
    }
}

impl Conversation {
    /// Every realm of every session, in the order they were first seen.
    pub fn realms(&self) -> Vec<Realm> {
        let mut all: Vec<(u64, Realm)> = self
            .sessions
            .iter()
            .flat_map(|s| {
                s.realms
                    .values()
                    .map(move |r| (r.first.frame, Realm::of(s, r)))
            })
            .collect();
        all.sort_by_key(|(frame, _)| *frame);
        all.into_iter().map(|(_, realm)| realm).collect()
    }

    /// How many realms [`Conversation::realms`] returns, without building them.
    pub fn realm_count(&self) -> usize {
        self.sessions.iter().map(|s| s.realms.len()).sum()
    }

    /// The handshake timeline (the inspector's), in the order steps started.
    pub fn timeline_stages(&self) -> impl ExactSizeIterator<Item = &Stage> + '_ {
        self.timeline.stages()
    }

    /// How many timeline entries are kept.
    pub fn timeline_len(&self) -> usize {
        self.timeline.len()
    }
}
