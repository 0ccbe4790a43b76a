//! The client side of a device session: realms (one per tunnelled TCP
//! connection) on top of a [`PtcpSession`].
//!
//! Realm life follows FIELD-NOTES §4.5: BIND with a fresh random realm ID per
//! attempt (2 attempts × 2 s by default); a CONN for an attempt that already
//! timed out is an orphan and gets DISC at once, because devices have few
//! realm slots and leak them; a session whose BINDs keep failing is retired
//! (no new realms, existing ones keep going). Per-realm queues keep one slow
//! client from stalling the others: client data waits in its realm's queue
//! and is sent round-robin as the send window allows.
//!
//! Sans-IO like `PtcpSession`: the driver feeds datagrams, client bytes and
//! `now`, and carries out what `poll_transmit`/`poll_event` return.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use bytes_utils::SegmentedBuf;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::ptcp::{DeadReason, Event, PtcpSession, Stats};
use crate::codec::ptcp::{Body, Status, FRAGMENT_SIZE};

/// Identifies a tunnelled TCP client (the driver's numbering).
pub type ClientId = u64;

/// Tunables of the realm layer.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// Realms one session grants at once (a guess, FIELD-NOTES §4.5).
    pub max_realms: usize,
    /// How long one BIND attempt waits for CONN.
    pub bind_timeout: Duration,
    /// BIND attempts per client, each with a fresh realm ID.
    pub bind_attempts: u32,
    /// Clients in a row whose BINDs all timed out before the session retires
    /// (refused BINDs do not count: the device answered).
    pub retire_after: u32,
    /// Client bytes a realm may hold waiting for the send window.
    pub realm_queue: usize,
    /// IPv4 the device connects to (as seen from the device).
    pub target_ip: Ipv4Addr,
    /// A closing realm is forgotten after this long without the device's DISC.
    pub close_timeout: Duration,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            max_realms: 8,
            bind_timeout: Duration::from_secs(2),
            bind_attempts: 2,
            retire_after: 2,
            realm_queue: 256 * 1024,
            target_ip: Ipv4Addr::LOCALHOST,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a client got no realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    /// The device answered DISC (nothing listens on that port, or it refused).
    Refused,
    /// No CONN after every attempt.
    TimedOut,
    /// The session ended first.
    SessionEnded,
}

/// What the realm layer tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEvent {
    /// The device connected the client's realm: data may flow.
    Opened { client: ClientId, realm: u32 },
    BindFailed {
        client: ClientId,
        reason: BindFailure,
    },
    /// Bytes from the device for the client: a view into the received
    /// body, not a copy.
    Data { client: ClientId, bytes: Bytes },
    /// The device closed the realm: close the client after writing what it has.
    Closed {
        client: ClientId,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// This session stops taking new realms (BINDs keep failing).
    Retired,
    /// The session is over; every client still attached must be closed.
    Dead(DeadReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Binding {
        attempt: u32,
        deadline: Instant,
    },
    Open,
    /// We sent DISC; waiting for the device's.
    Closing {
        since: Instant,
    },
}

#[derive(Debug)]
struct Realm {
    client: Option<ClientId>,
    port: u16,
    state: State,
    /// Client bytes not yet handed to the session, as they were read: a
    /// body is a slice of one read (or, across two, a copy of 1280 bytes).
    queue: SegmentedBuf<Bytes>,
    /// The client closed its side: DISC once the queue is sent.
    client_done: bool,
    /// Bytes from the client to the device, and back.
    bytes_in: u64,
    bytes_out: u64,
}

/// A device session's realms.
#[derive(Debug)]
pub struct TunnelSession {
    config: TunnelConfig,
    ptcp: PtcpSession,
    realms: BTreeMap<u32, Realm>,
    clients: BTreeMap<ClientId, u32>,
    /// Realm IDs of timed-out attempts: a late CONN for one is an orphan.
    abandoned: BTreeSet<u32>,
    rng: SmallRng,
    events: VecDeque<TunnelEvent>,
    /// Round-robin position among realms with queued data.
    cursor: u32,
    failed_in_row: u32,
    retired: bool,
    dead: bool,
    /// Bytes delivered to clients but not yet written by them (`pid`).
    backlog: usize,
    orphans_closed: u64,
}

impl TunnelSession {
    /// Takes over an established PTCP session (after the handshake).
    pub fn new(config: TunnelConfig, ptcp: PtcpSession, seed: u64) -> Self {
        TunnelSession {
            config,
            ptcp,
            realms: BTreeMap::new(),
            clients: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            rng: SmallRng::seed_from_u64(seed),
            events: VecDeque::new(),
            cursor: 0,
            failed_in_row: 0,
            retired: false,
            dead: false,
            backlog: 0,
            orphans_closed: 0,
        }
    }

    pub fn ptcp_stats(&self) -> Stats {
        self.ptcp.stats()
    }

    pub fn ptcp(&self) -> &PtcpSession {
        &self.ptcp
    }

    /// Realms in use (binding, open or closing).
    pub fn realms(&self) -> usize {
        self.realms.len()
    }

    pub fn orphans_closed(&self) -> u64 {
        self.orphans_closed
    }

    pub fn is_retired(&self) -> bool {
        self.retired
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Whether a new client can get a realm here now.
    pub fn can_open(&self) -> bool {
        !self.dead && !self.retired && self.realms.len() < self.config.max_realms
    }

    fn fresh_realm_id(&mut self) -> u32 {
        loop {
            // Large, non-sequential, never 0 (session messages use 0).
            let id: u32 = self.rng.gen();
            if id != 0 && !self.realms.contains_key(&id) && !self.abandoned.contains(&id) {
                return id;
            }
        }
    }

    /// Opens a realm for `client` to the device's TCP `port`.
    pub fn open(&mut self, now: Instant, client: ClientId, port: u16) -> u32 {
        let realm = self.fresh_realm_id();
        self.realms.insert(
            realm,
            Realm {
                client: Some(client),
                port,
                state: State::Binding {
                    attempt: 1,
                    deadline: now + self.config.bind_timeout,
                },
                queue: SegmentedBuf::new(),
                client_done: false,
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        self.clients.insert(client, realm);
        self.ptcp
            .send(&Body::bind(realm, port, self.config.target_ip));
        realm
    }

    /// The clients with a realm (or a BIND) on this session.
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clients.keys().copied()
    }

    /// How many more bytes the client may hand over now.
    pub fn client_capacity(&self, client: ClientId) -> usize {
        self.clients
            .get(&client)
            .and_then(|r| self.realms.get(r))
            .map_or(0, |r| {
                self.config.realm_queue.saturating_sub(r.queue.remaining())
            })
    }

    /// Bytes the client sent (they wait in the realm's queue until sent,
    /// and go out as slices of this buffer).
    pub fn client_data(&mut self, client: ClientId, bytes: impl Into<Bytes>) {
        if let Some(realm) = self
            .clients
            .get(&client)
            .and_then(|r| self.realms.get_mut(r))
        {
            let bytes = bytes.into();
            if !bytes.is_empty() {
                realm.queue.push(bytes);
            }
        }
    }

    /// The client closed (or was closed): DISC after its queued bytes.
    pub fn client_closed(&mut self, now: Instant, client: ClientId) {
        let Some(id) = self.clients.remove(&client) else {
            return;
        };
        let Some(realm) = self.realms.get_mut(&id) else {
            return;
        };
        realm.client = None;
        realm.client_done = true;
        if let State::Binding { .. } = realm.state {
            // Nothing flowed yet: the CONN, when it comes, is answered DISC.
            self.realms.remove(&id);
            self.abandoned.insert(id);
        } else if realm.state == State::Open && !realm.queue.has_remaining() {
            realm.state = State::Closing { since: now };
            self.ptcp.send(&Body::status(id, Status::Disc));
        }
    }

    /// The driver wrote `bytes` of delivered data to a client.
    pub fn client_consumed(&mut self, bytes: usize) {
        self.backlog = self.backlog.saturating_sub(bytes);
        self.ptcp.set_backlog(self.backlog);
    }

    /// DISC every realm (shutdown); clients are not told.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<u32> = self.realms.keys().copied().collect();
        for id in ids {
            if let Some(r) = self.realms.get_mut(&id) {
                if matches!(r.state, State::Open | State::Binding { .. }) {
                    r.state = State::Closing { since: now };
                    self.ptcp.send(&Body::status(id, Status::Disc));
                }
            }
        }
        self.clients.clear();
    }

    /// Whether every realm finished closing and every DISC was acknowledged.
    pub fn is_quiet(&self) -> bool {
        self.ptcp.unacked() == 0 && self.ptcp.queued() == 0
    }

    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.ptcp.handle_datagram(now, datagram);
        self.pump();
    }

    /// [`TunnelSession::handle_datagram`] for a datagram the driver owns:
    /// decoded once, its payload handed on without a copy.
    pub fn handle_owned(&mut self, now: Instant, datagram: Bytes) {
        self.ptcp.handle_owned(now, datagram);
        self.pump();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ptcp.handle_timeout(now);
        let ids: Vec<u32> = self.realms.keys().copied().collect();
        for id in ids {
            let Some((state, client, port)) =
                self.realms.get(&id).map(|r| (r.state, r.client, r.port))
            else {
                continue;
            };
            match state {
                State::Binding { attempt, deadline } if now >= deadline => {
                    self.realms.remove(&id);
                    self.abandoned.insert(id);
                    let Some(client) = client else { continue };
                    self.clients.remove(&client);
                    if attempt < self.config.bind_attempts {
                        // A fresh realm ID for the next attempt (FIELD-NOTES §4.5).
                        let fresh = self.open(now, client, port);
                        if let Some(n) = self.realms.get_mut(&fresh) {
                            n.state = State::Binding {
                                attempt: attempt + 1,
                                deadline: now + self.config.bind_timeout,
                            };
                        }
                    } else {
                        self.bind_failed(client, BindFailure::TimedOut);
                    }
                }
                State::Closing { since } if now >= since + self.config.close_timeout => {
                    self.realms.remove(&id);
                }
                _ => {}
            }
        }
        self.pump();
    }

    fn bind_failed(&mut self, client: ClientId, reason: BindFailure) {
        self.events
            .push_back(TunnelEvent::BindFailed { client, reason });
        // A DISC answer to a BIND is the device saying "that port is closed":
        // the session itself is healthy, so only silence counts toward
        // retirement.
        if reason != BindFailure::TimedOut {
            return;
        }
        self.failed_in_row += 1;
        if self.failed_in_row >= self.config.retire_after && !self.retired {
            self.retired = true;
            self.events.push_back(TunnelEvent::Retired);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let realm_deadlines = self.realms.values().filter_map(|r| match r.state {
            State::Binding { deadline, .. } => Some(deadline),
            State::Closing { since } => Some(since + self.config.close_timeout),
            State::Open => None,
        });
        self.ptcp
            .next_timeout()
            .into_iter()
            .chain(realm_deadlines)
            .min()
    }

    /// The next datagram for the device (or agent).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.feed_window(now);
        self.ptcp.poll_transmit(now)
    }

    /// [`TunnelSession::poll_transmit`] appending the datagram to `out`;
    /// returns whether there was one.
    pub fn poll_transmit_into(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        self.feed_window(now);
        self.ptcp.poll_transmit_into(now, out)
    }

    pub fn poll_event(&mut self) -> Option<TunnelEvent> {
        self.events.pop_front()
    }

    /// Moves client bytes into the session, round-robin, as the window allows.
    fn feed_window(&mut self, now: Instant) {
        loop {
            if self.ptcp.send_capacity() < FRAGMENT_SIZE + 12 {
                return;
            }
            let next = self
                .realms
                .range(self.cursor.wrapping_add(1)..)
                .chain(self.realms.range(..=self.cursor))
                .find(|(_, r)| r.state == State::Open && r.queue.has_remaining())
                .map(|(id, _)| *id);
            let Some(id) = next else { return };
            self.cursor = id;
            let Some(r) = self.realms.get_mut(&id) else {
                return;
            };
            let n = r.queue.remaining().min(FRAGMENT_SIZE);
            self.ptcp.send_data(id, r.queue.copy_to_bytes(n));
            r.bytes_in += n as u64;
            let done = r.client_done && !r.queue.has_remaining();
            if done {
                if let Some(r) = self.realms.get_mut(&id) {
                    r.state = State::Closing { since: now };
                }
                self.ptcp.send(&Body::status(id, Status::Disc));
            }
        }
    }

    fn pump(&mut self) {
        while let Some(event) = self.ptcp.poll_event() {
            match event {
                Event::Body(bytes) => self.on_body(bytes),
                Event::Dead(reason) => {
                    self.dead = true;
                    for (client, _) in std::mem::take(&mut self.clients) {
                        self.events.push_back(TunnelEvent::BindFailed {
                            client,
                            reason: BindFailure::SessionEnded,
                        });
                    }
                    self.realms.clear();
                    self.events.push_back(TunnelEvent::Dead(reason));
                }
                Event::Acked { .. } | Event::Malformed(_) => {}
            }
        }
    }

    fn on_body(&mut self, bytes: Bytes) {
        let Ok(body) = Body::decode(&bytes) else {
            return;
        };
        match body {
            Body::Status {
                realm,
                status: Status::Conn,
                ..
            } => match self.realms.get_mut(&realm) {
                Some(r) if matches!(r.state, State::Binding { .. }) => {
                    r.state = State::Open;
                    self.failed_in_row = 0;
                    if let Some(client) = r.client {
                        self.events.push_back(TunnelEvent::Opened { client, realm });
                    }
                }
                Some(_) => {}
                None => {
                    // An orphan: its BIND timed out, or its client left.
                    self.abandoned.remove(&realm);
                    self.orphans_closed += 1;
                    self.ptcp.send(&Body::status(realm, Status::Disc));
                }
            },
            Body::Status {
                realm,
                status: Status::Disc,
                ..
            } => {
                let Some(r) = self.realms.remove(&realm) else {
                    self.abandoned.remove(&realm);
                    return;
                };
                match (r.state, r.client) {
                    (State::Binding { .. }, Some(client)) => {
                        self.clients.remove(&client);
                        self.bind_failed(client, BindFailure::Refused);
                    }
                    (State::Open, Some(client)) => {
                        self.clients.remove(&client);
                        self.events.push_back(TunnelEvent::Closed {
                            client,
                            bytes_in: r.bytes_in,
                            bytes_out: r.bytes_out,
                        });
                    }
                    _ => {}
                }
            }
            Body::Data { realm, payload } => {
                if let Some(r) = self.realms.get_mut(&realm) {
                    r.bytes_out += payload.len() as u64;
                    if let (Some(client), State::Open) = (r.client, r.state) {
                        self.backlog += payload.len();
                        self.ptcp.set_backlog(self.backlog);
                        self.events.push_back(TunnelEvent::Data {
                            client,
                            bytes: bytes.slice_ref(payload),
                        });
                    }
                }
            }
            _ => {}
        }
    }
}
