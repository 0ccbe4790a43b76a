//! What the realms view shows, computed as packets arrive: each realm's
//! target, state, bytes each way, retransmissions and last activity, and the
//! handshake timeline (each stage of each session with how long it took).
//!
//! Everything is read from the codec's decoded values ([`Datagram`]); no
//! bytes are parsed here. Bounded: at most [`MAX_REALMS`] realms (the least
//! recently active one makes room) and [`MAX_STAGES`] timeline entries.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::codec::classify::Datagram;
use crate::codec::cloud::Message;
use crate::codec::ptcp::{self, Body, Status};
use crate::codec::punch::MessageType;
use crate::decode::record::{Record, SessionKey};
use crate::decode::stats::SentTracker;

/// Realms kept before the least recently active is forgotten.
pub const MAX_REALMS: usize = 4096;
/// Timeline entries kept before the oldest is forgotten.
pub const MAX_STAGES: usize = 1000;
/// Session directions whose byte ranges are tracked before all are forgotten.
const MAX_DIRECTIONS: usize = 4096;
/// Unanswered cloud requests remembered for pairing with their response.
const MAX_PENDING: usize = 4096;

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

/// One step of a handshake and how long its answer took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub session: SessionKey,
    /// `DHPOST /device/SN/p2p-channel`, `punch`, `PTCP SYN`, `AUTH`, …
    pub name: String,
    pub started: Duration,
    /// When the answer arrived (`None` while unanswered).
    pub answered: Option<Duration>,
    /// The answer (`200 OK`, `SYN`, `CONN`…), empty while unanswered.
    pub result: String,
}

impl Stage {
    pub fn took(&self) -> Option<Duration> {
        self.answered
            .map(|at| at.checked_sub(self.started).unwrap_or_default())
    }
}

/// What an open stage waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Awaiting {
    /// A cloud response with this CSeq.
    Cloud(i64),
    /// A Binding Success Response.
    Punch,
    /// A SYN from the other side.
    Syn,
    /// AUTH-REPLY (0x1A) to AUTH (0x19).
    Auth,
    /// SIGN (0x18) to SIGN-REQUEST (0x17).
    Sign,
    /// STATUS for this realm after its BIND.
    Bind(u32),
}

/// Realms and timeline, fed one record at a time.
#[derive(Debug, Default)]
pub struct Tracker {
    realms: Vec<Realm>,
    index: HashMap<(SessionKey, u32), usize>,
    /// Per session and sender: which body bytes were seen, to tell new data
    /// from retransmissions and duplicates (`decode --stats`' tracker).
    directions: HashMap<(SessionKey, SocketAddr), SentTracker>,
    stages: Vec<Stage>,
    /// Open stages: (session, what answers it, who asked) → stage name.
    open: HashMap<(SessionKey, Awaiting), (SocketAddr, String)>,
    /// Stages already started per session, so each shows once per session
    /// (a retransmitted request does not restart its stage).
    started: HashSet<(SessionKey, String)>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Realms in the order they were first seen.
    pub fn realms(&self) -> &[Realm] {
        &self.realms
    }

    /// Timeline entries in the order they started.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Takes one datagram into account (`datagram` is `classify(&record.payload)`).
    pub fn observe(&mut self, record: &Record, datagram: &Datagram<'_>) {
        let session = record.session();
        let now = record.time;
        match datagram {
            Datagram::Cloud(Ok(Message::Request(request))) => {
                if let Some(cseq) = datagram_cseq(datagram) {
                    let name = format!("{} {}", request.method.as_str(), request.path);
                    self.start(session, Awaiting::Cloud(cseq), record.src, name, now);
                }
            }
            Datagram::Cloud(Ok(Message::Response(response))) => {
                if let Some(cseq) = datagram_cseq(datagram) {
                    let result = format!("{} {}", response.code, response.reason);
                    self.answer(session, Awaiting::Cloud(cseq), record.src, result, now);
                }
            }
            Datagram::Punch(Ok(message)) => match message.message_type {
                MessageType::BindingRequest => {
                    self.start(session, Awaiting::Punch, record.src, "punch".into(), now)
                }
                MessageType::BindingSuccess => {
                    self.answer(session, Awaiting::Punch, record.src, "success".into(), now)
                }
                _ => {}
            },
            Datagram::Ptcp(Ok(packet)) => {
                let body = &packet.body;
                // Every body advances `sent`, so every body is tracked.
                let arrival = record
                    .payload
                    .get(ptcp::HEADER_LEN..)
                    .filter(|b| !b.is_empty())
                    .map(|bytes| {
                        if self.directions.len() >= MAX_DIRECTIONS {
                            self.directions.clear();
                        }
                        self.directions
                            .entry((session, record.src))
                            .or_default()
                            .observe(packet.header.sent, bytes, &record.payload)
                            .1
                    });
                match *body {
                    Body::Syn => {
                        self.answer(session, Awaiting::Syn, record.src, "SYN".into(), now);
                        self.start(session, Awaiting::Syn, record.src, "PTCP SYN".into(), now);
                    }
                    Body::SignRequest => {
                        self.start(session, Awaiting::Sign, record.src, "SIGN".into(), now)
                    }
                    Body::Sign { sign } => {
                        let result = format!("{} bytes", sign.len());
                        self.answer(session, Awaiting::Sign, record.src, result, now);
                    }
                    Body::Auth { .. } => {
                        self.start(session, Awaiting::Auth, record.src, "AUTH".into(), now)
                    }
                    Body::AuthReply { .. } => self.answer(
                        session,
                        Awaiting::Auth,
                        record.src,
                        "AUTH-REPLY".into(),
                        now,
                    ),
                    Body::Bind {
                        realm, port, ip, ..
                    } => {
                        let name = format!("BIND 0x{realm:08x}");
                        self.start(session, Awaiting::Bind(realm), record.src, name, now);
                        let entry = self.realm(session, realm, record.src, now);
                        entry.client = record.src;
                        entry.target = u16::try_from(port).ok().map(|p| SocketAddrV4::new(ip, p));
                        if entry.state == RealmState::Seen {
                            entry.state = RealmState::Bind;
                        }
                    }
                    Body::Status { realm, status, .. } => {
                        self.answer(
                            session,
                            Awaiting::Bind(realm),
                            record.src,
                            status.name().into(),
                            now,
                        );
                        let entry = self.realm(session, realm, record.src, now);
                        entry.state = match status {
                            Status::Conn => RealmState::Conn,
                            Status::Disc => RealmState::Disc,
                        };
                    }
                    Body::Data { realm, payload } => {
                        let len = payload.len() as u64;
                        let entry = self.realm(session, realm, record.src, now);
                        if arrival.is_none_or(|a| a.is_new()) {
                            if record.src == entry.client {
                                entry.to_device += len;
                            } else {
                                entry.from_device += len;
                            }
                        } else {
                            entry.retransmissions += 1;
                        }
                    }
                    _ => {}
                }
                if let Some(realm) = body.realm() {
                    if matches!(
                        body,
                        Body::Data { .. } | Body::Bind { .. } | Body::Status { .. }
                    ) {
                        let entry = self.realm(session, realm, record.src, now);
                        entry.packets += 1;
                        entry.last_activity = now;
                    }
                }
            }
            _ => {}
        }
    }

    /// The realm's entry, created (and the table trimmed) when new.
    fn realm(
        &mut self,
        session: SessionKey,
        realm: u32,
        sender: SocketAddr,
        now: Duration,
    ) -> &mut Realm {
        let key = (session, realm);
        if !self.index.contains_key(&key) {
            if self.realms.len() >= MAX_REALMS {
                self.forget_least_recent();
            }
            self.index.insert(key, self.realms.len());
            self.realms.push(Realm {
                session,
                realm,
                client: sender,
                target: None,
                state: RealmState::Seen,
                to_device: 0,
                from_device: 0,
                retransmissions: 0,
                packets: 0,
                first_seen: now,
                last_activity: now,
            });
        }
        let at = self.index[&key];
        &mut self.realms[at]
    }

    fn forget_least_recent(&mut self) {
        let Some(oldest) = self
            .realms
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| r.last_activity)
            .map(|(i, _)| i)
        else {
            return;
        };
        self.realms.remove(oldest);
        self.index = self
            .realms
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.session, r.realm), i))
            .collect();
    }

    fn start(
        &mut self,
        session: SessionKey,
        awaiting: Awaiting,
        from: SocketAddr,
        name: String,
        now: Duration,
    ) {
        let once = (session, name.clone());
        if self.started.contains(&once) {
            return;
        }
        if self.open.len() >= MAX_PENDING || self.started.len() >= MAX_PENDING * 4 {
            self.open.clear();
            self.started.clear();
        }
        self.started.insert(once);
        if self.stages.len() >= MAX_STAGES {
            self.stages.remove(0);
        }
        self.stages.push(Stage {
            session,
            name: name.clone(),
            started: now,
            answered: None,
            result: String::new(),
        });
        self.open.insert((session, awaiting), (from, name));
    }

    fn answer(
        &mut self,
        session: SessionKey,
        awaiting: Awaiting,
        from: SocketAddr,
        result: String,
        now: Duration,
    ) {
        let key = (session, awaiting);
        // Only the other side answers a stage.
        let Some((asker, name)) = self.open.get(&key) else {
            return;
        };
        if *asker == from {
            return;
        }
        let name = name.clone();
        self.open.remove(&key);
        if let Some(stage) = self
            .stages
            .iter_mut()
            .rev()
            .find(|s| s.session == session && s.name == name && s.answered.is_none())
        {
            stage.answered = Some(now);
            stage.result = result;
        }
    }
}

fn datagram_cseq(datagram: &Datagram<'_>) -> Option<i64> {
    match datagram {
        Datagram::Cloud(Ok(Message::Request(r))) => r.cseq(),
        Datagram::Cloud(Ok(Message::Response(r))) => r.cseq(),
        _ => None,
    }
}
