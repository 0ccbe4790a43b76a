//! The emulated device: inverted-STUN answers, PTCP sessions (direct, or
//! relayed through the agent) and the realms they open to TCP services.
//!
//! Punch counts follow DH-P2P §7.11 so that a literal reference client works:
//! one datagram per client binding request, then five after its success
//! response (for a client that authenticated, one after the success and five
//! after the first 12-byte confirm, the [py] type ≥ 1 path).

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use bytes::{Buf, Bytes};
use bytes_utils::SegmentedBuf;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::config::{Mode, RefuseBind};
use super::core::{
    report, ChannelGrant, ConnId, Emulator, Peer, PeerKey, PunchProgress, Realm, RealmState, Role,
    TcpCommand,
};
use crate::codec::ptcp::{Body, Packet, Status, FRAGMENT_SIZE, HEADER_LEN};
use crate::codec::punch::{self, MessageType, PunchMessage};
use crate::session::ptcp::{Event, LmidMode, PtcpConfig, PtcpSession};

/// Bytes a realm may read from its service ahead of the client's ACKs.
pub const REALM_CREDIT: usize = 1024 * 1024;
/// Client bytes a session may have delivered but its services not yet
/// written; beyond it, new DATA is left unacknowledged.
pub const CLIENT_BACKLOG_LIMIT: usize = 2 * 1024 * 1024;
/// The backlog at which the device's advertised window (`pid`) reads zero:
/// the 16-bit field counts down from 0xFFFF in steps of 12 bytes, so a
/// client that stops at zero still has room for a full 1 MiB window in
/// flight, and a quarter MiB of margin for the round trip its ACK takes,
/// before the limit above (at 1 MiB, the first runs still saw a few
/// dozen deferred bodies).
pub const WINDOW_CLOSED_AT: usize = 768 * 1024;
/// Most peers (punched or relayed clients) kept at once.
const MAX_PEERS: usize = 1024;

/// Whether `datagram` holds a DATA body the session has not received yet.
fn carries_new_data(session: &PtcpSession, datagram: &[u8]) -> bool {
    match Packet::decode(datagram) {
        Ok(p) => {
            matches!(p.body, Body::Data { .. })
                && !crate::session::ptcp::seq_lt(p.header.sent, session.recv())
        }
        Err(_) => false,
    }
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => SocketAddrV4::new(
            a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            a.port(),
        ),
    }
}

impl Emulator {
    fn device_session_config(&mut self) -> PtcpConfig {
        PtcpConfig {
            retransmit: self.config.device_retransmit,
            heartbeat: Some(self.config.device_heartbeat),
            idle_timeout: self.config.device_idle_timeout,
            // A device clock: uptime-like milliseconds (FIELD-NOTES C2 saw ~143 million).
            lmid: LmidMode::Clock {
                base: 143_000_000 + self.rng.gen_range(0..1_000_000),
            },
            ..PtcpConfig::default()
        }
    }

    fn new_peer(&self, serial: String, unit: usize, dest: (Role, SocketAddr)) -> Peer {
        Peer {
            serial,
            unit,
            dest,
            channel: None,
            punch: PunchProgress::default(),
            session: None,
            signed: false,
            relayed: false,
            realms: BTreeMap::new(),
            credits: VecDeque::new(),
            feed_cursor: 0,
            backlog: 0,
        }
    }

    /// Sends from device `unit`'s socket, through its faults.
    fn device_send(&mut self, unit: usize, to: SocketAddr, payload: Vec<u8>) {
        self.transmit_via(Role::Device, unit, Some(unit), to, payload);
    }

    fn unit_mode(&self, unit: usize) -> Mode {
        self.units.get(unit).map_or(Mode::Direct, |u| u.mode)
    }

    /// The cloud granted a p2p-channel to device `unit`: expect this
    /// client's punch.
    pub(super) fn grant_channel(&mut self, now: Instant, unit: usize, grant: ChannelGrant) {
        let key = PeerKey::Direct(unit, grant.client);
        if let Some(existing) = self.peers.get(&key) {
            if existing
                .channel
                .as_ref()
                .is_some_and(|c| c.cseq == grant.cseq)
            {
                // A retransmitted request: answered again, no second punch.
                return;
            }
        }
        if self.peers.len() >= MAX_PEERS {
            self.evict_idle_peer();
        }
        let mut peer = self.new_peer(grant.serial.clone(), unit, (Role::Device, grant.client));
        peer.punch.device_txid = self.rng.gen();
        if self.config.punch_before_200 && self.unit_mode(unit) == Mode::Direct {
            // mcw0: device datagrams may arrive before the 200.
            let request = punch::binding_request(
                punch::MAGIC_COOKIE,
                peer.punch.device_txid,
                grant.identify,
                v4(grant.client),
            );
            self.device_send(unit, grant.client, request.encode());
            peer.punch.proactive_pending = true;
        }
        self.note(format!(
            "{}: p2p-channel from {} (auth: {})",
            grant.serial,
            grant.client,
            if grant.authenticated { "yes" } else { "no" }
        ));
        peer.channel = Some(grant);
        let _ = now;
        self.peers.insert(key, peer);
    }

    fn evict_idle_peer(&mut self) {
        let victim = self
            .peers
            .iter()
            .find(|(_, p)| p.realms.is_empty())
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.peers.remove(&k);
        }
    }

    /// A punch or PTCP datagram for the device (direct) or relayed to it.
    pub(super) fn handle_device(&mut self, now: Instant, key: PeerKey, bytes: &[u8]) {
        let unit = match &key {
            PeerKey::Direct(unit, _) => *unit,
            PeerKey::Relay(_) => self.peers.get(&key).map_or(0, |p| p.unit),
        };
        if self.unit_vanished(unit, now) {
            self.stats.vanished_drops += 1;
            return;
        }
        if matches!(key, PeerKey::Direct(..)) && self.unit_mode(unit) != Mode::Direct {
            // relay-only: the NAT in front of the device lets nothing through.
            self.stats.dropped_binary += 1;
            return;
        }
        let Some(mut peer) = self.peers.remove(&key) else {
            self.stats.dropped_binary += 1;
            return;
        };
        if punch::looks_like_punch(bytes) && !bytes.starts_with(b"PTCP") {
            self.device_punch(&mut peer, bytes);
        } else {
            self.device_ptcp(now, &mut peer, bytes);
        }
        self.peers.insert(key, peer);
    }

    fn device_punch(&mut self, peer: &mut Peer, bytes: &[u8]) {
        let (Ok(message), Some(channel)) = (punch::decode(bytes), peer.channel.as_ref()) else {
            self.stats.dropped_binary += 1;
            return;
        };
        let client = peer.dest.1;
        let unit = peer.unit;
        let identify = channel.identify;
        let authenticated = channel.authenticated;
        let five = |emu: &mut Emulator, request: &PunchMessage| {
            // Five datagrams the reference clients read and discard.
            let reply = punch::reply_to(request, identify, v4(client)).encode();
            for _ in 0..5 {
                emu.device_send(unit, client, reply.clone());
            }
        };
        match message.message_type {
            MessageType::BindingRequest => {
                self.stats.punches_answered += 1;
                if peer.punch.client_request.is_none() {
                    peer.punch.client_request = Some(message.clone());
                }
                if std::mem::take(&mut peer.punch.proactive_pending) {
                    // Our early request already is the one datagram.
                    return;
                }
                // The one datagram whose bytes 8..20 the client takes as
                // the device's transaction id: our own binding request.
                let request = punch::binding_request(
                    punch::MAGIC_COOKIE,
                    peer.punch.device_txid,
                    identify,
                    v4(client),
                );
                self.device_send(unit, client, request.encode());
            }
            MessageType::BindingSuccess => {
                let request = peer
                    .punch
                    .client_request
                    .clone()
                    .unwrap_or_else(|| message.clone());
                let is_confirm = message.declared_length() == 12;
                if is_confirm {
                    if authenticated && !peer.punch.after_confirm_sent {
                        peer.punch.after_confirm_sent = true;
                        five(self, &request);
                    }
                } else if !peer.punch.after_success_sent {
                    peer.punch.after_success_sent = true;
                    if authenticated {
                        let reply = punch::reply_to(&request, identify, v4(client)).encode();
                        self.device_send(unit, client, reply);
                    } else {
                        five(self, &request);
                    }
                }
            }
            _ => self.stats.dropped_binary += 1,
        }
    }

    fn device_ptcp(&mut self, now: Instant, peer: &mut Peer, bytes: &[u8]) {
        let is_fresh_syn = Packet::decode(bytes)
            .is_ok_and(|p| p.body == Body::Syn && p.header.sent == 0 && p.header.recv == 0);
        let restart = peer
            .session
            .as_ref()
            .is_some_and(|s| s.is_dead() || (is_fresh_syn && s.recv() != 0));
        if restart {
            self.close_all_realms(peer, "restarted");
            peer.session = None;
            peer.signed = false;
        }
        if peer.session.is_none() {
            if !is_fresh_syn {
                self.stats.dropped_binary += 1;
                return;
            }
            let config = self.device_session_config();
            peer.session = Some(PtcpSession::new(config, now));
            self.stats.sessions += 1;
            self.note(format!(
                "{}: PTCP session with {}",
                peer.serial, peer.dest.1
            ));
        }
        let Some(session) = peer.session.as_mut() else {
            return;
        };
        if peer.backlog >= CLIENT_BACKLOG_LIMIT && carries_new_data(session, bytes) {
            // The services are not taking what the client sends: take its
            // ACK but not its DATA, so it holds the bytes and resends later
            // (the window closes, as on the tunnel side).
            self.stats.data_deferred += 1;
            session.handle_datagram(now, &bytes[..HEADER_LEN]);
            return;
        }
        session.handle_datagram(now, bytes);
    }

    /// Hands a relayed session over from the agent to the device.
    pub(super) fn adopt_relay_session(
        &mut self,
        token: &str,
        serial: String,
        client: SocketAddr,
        session: PtcpSession,
    ) {
        let unit = self.unit_of(&serial.to_ascii_uppercase());
        let mut peer = self.new_peer(serial, unit, (Role::Agent, client));
        peer.relayed = true;
        peer.session = Some(session);
        self.stats.sessions += 1;
        self.note(format!(
            "{}: relayed PTCP session with {client}",
            peer.serial
        ));
        self.peers.insert(PeerKey::Relay(token.to_string()), peer);
    }

    pub(super) fn drop_relay_peer(&mut self, token: &str) {
        if let Some(mut peer) = self.peers.remove(&PeerKey::Relay(token.to_string())) {
            self.close_all_realms(&mut peer, "unbound");
        }
        self.agent_sessions.remove(token);
    }

    pub(super) fn device_timeouts(&mut self, now: Instant) {
        // A vanished device still times its sessions out; what they would
        // send is dropped in `pump_peer`.
        for peer in self.peers.values_mut() {
            if let Some(s) = peer.session.as_mut() {
                s.handle_timeout(now);
            }
        }
        self.agent_timeouts(now);
    }

    /// Moves events and datagrams out of every session.
    pub(super) fn pump(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().cloned().collect();
        for key in keys {
            let Some(mut peer) = self.peers.remove(&key) else {
                continue;
            };
            let vanished = self.unit_vanished(peer.unit, now);
            self.pump_peer(now, &mut peer, vanished);
            let dead = peer.session.as_ref().is_some_and(PtcpSession::is_dead);
            if dead {
                self.close_all_realms(&mut peer, "session ended");
                self.note(format!(
                    "{}: session with {} ended",
                    peer.serial, peer.dest.1
                ));
                if matches!(key, PeerKey::Relay(_)) {
                    continue;
                }
                peer.session = None;
            }
            self.peers.insert(key, peer);
        }
        self.pump_agents(now);
    }

    fn pump_peer(&mut self, now: Instant, peer: &mut Peer, vanished: bool) {
        while let Some(event) = peer.session.as_mut().and_then(PtcpSession::poll_event) {
            match event {
                Event::Body(bytes) => self.device_body(peer, &bytes),
                Event::Acked { .. } => {
                    let Some(s) = peer.session.as_ref() else {
                        continue;
                    };
                    let acked_to = s.sent().wrapping_sub(s.unacked());
                    while let Some(&(end, conn, n)) = peer.credits.front() {
                        if !crate::session::ptcp::seq_le(end, acked_to) {
                            break;
                        }
                        peer.credits.pop_front();
                        self.tcp.push_back(TcpCommand::Credit { conn, bytes: n });
                    }
                }
                Event::Malformed(_) => self.stats.dropped_binary += 1,
                Event::Dead(reason) => {
                    self.note(format!("{}: session died ({reason:?})", peer.serial));
                }
            }
        }
        Self::feed(peer);
        if let Some(session) = peer.session.as_mut() {
            // The window field is 16 bits: the device scales its backlog
            // into it (zero at WINDOW_CLOSED_AT; the scale is ours).
            session.set_backlog(peer.backlog.min(WINDOW_CLOSED_AT) * 0xFFFF / WINDOW_CLOSED_AT);
            while let Some(datagram) = session.poll_transmit(now) {
                if vanished {
                    self.stats.vanished_drops += 1;
                    continue;
                }
                let index = if peer.dest.0 == Role::Device {
                    peer.unit
                } else {
                    0
                };
                self.transmit_via(peer.dest.0, index, Some(peer.unit), peer.dest.1, datagram);
            }
        }
    }

    fn send_body(peer: &mut Peer, body: &Body<'_>) {
        if let Some(s) = peer.session.as_mut() {
            s.send(body);
        }
    }

    fn device_body(&mut self, peer: &mut Peer, bytes: &[u8]) {
        let Ok(body) = Body::decode(bytes) else {
            return;
        };
        match body {
            Body::Syn => Self::send_body(peer, &Body::Syn),
            Body::Auth { sign } => {
                let valid = self
                    .leases
                    .values()
                    .any(|l| l.sign == sign && l.serial.as_deref() == Some(peer.serial.as_str()));
                if valid || !self.config.require_sign {
                    peer.signed = true;
                    Self::send_body(peer, &Body::AuthReply { data: &[] });
                } else {
                    self.note(format!(
                        "{}: wrong sign from {}: no 0x1A",
                        peer.serial, peer.dest.1
                    ));
                }
            }
            Body::Bind { realm, port, .. } => self.device_bind(peer, realm, port),
            Body::Status {
                realm,
                status: Status::Disc,
                ..
            } => {
                if let Some(r) = peer.realms.remove(&realm) {
                    peer.backlog = peer.backlog.saturating_sub(r.unwritten);
                    self.tcp.push_back(TcpCommand::Close { conn: r.conn });
                    self.conns.remove(&r.conn);
                    Self::send_body(peer, &Body::status(realm, Status::Disc));
                    self.note(format!(
                        "{}: realm 0x{realm:08x} closed by client ({} B in, {} B out)",
                        peer.serial, r.bytes_in, r.bytes_out
                    ));
                    self.reports
                        .push(report(&peer.serial, realm, &r, "closed by client"));
                }
            }
            Body::Data { realm, payload } => {
                if let Some(r) = peer.realms.get_mut(&realm) {
                    if r.state == RealmState::Open {
                        r.bytes_in += payload.len() as u64;
                        r.sha_in.update(payload);
                        r.unwritten += payload.len();
                        peer.backlog += payload.len();
                        self.tcp.push_back(TcpCommand::Write {
                            conn: r.conn,
                            bytes: payload.to_vec(),
                        });
                    }
                }
            }
            // Heartbeats, 0x1B and anything else only need the ACK the
            // session already sends.
            _ => {}
        }
    }

    fn device_bind(&mut self, peer: &mut Peer, realm: u32, port: u32) {
        if self.config.require_sign && !peer.relayed && !peer.signed {
            // BJ: an unauthenticated session's BINDs silently time out.
            self.stats.binds_refused += 1;
            return;
        }
        if let Some(r) = peer.realms.get(&realm) {
            if r.state == RealmState::Open {
                // A repeated BIND gets its CONN again.
                Self::send_body(peer, &Body::status(realm, Status::Conn));
            }
            return;
        }
        let max_realms = self
            .units
            .get(peer.unit)
            .map_or(self.config.max_realms, |u| u.max_realms);
        if peer.realms.len() >= max_realms {
            self.stats.binds_refused += 1;
            self.note(format!(
                "{}: BIND 0x{realm:08x} refused: {} realms open (--max-realms)",
                peer.serial,
                peer.realms.len()
            ));
            if self.config.refuse_bind == RefuseBind::Disc {
                Self::send_body(peer, &Body::status(realm, Status::Disc));
            }
            return;
        }
        let port = u16::try_from(port)
            .ok()
            .filter(|p| self.config.services.contains_key(p));
        let Some(port) = port else {
            Self::send_body(peer, &Body::status(realm, Status::Disc));
            return;
        };
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(conn, (self.key_of(peer), realm));
        peer.realms.insert(
            realm,
            Realm {
                conn,
                port,
                state: RealmState::Connecting,
                bytes_in: 0,
                bytes_out: 0,
                unwritten: 0,
                pending: SegmentedBuf::new(),
                sha_in: Sha256::new(),
                sha_out: Sha256::new(),
            },
        );
        self.stats.realms_opened += 1;
        self.tcp.push_back(TcpCommand::Connect {
            conn,
            port,
            device: peer.unit,
        });
    }

    fn key_of(&self, peer: &Peer) -> PeerKey {
        if peer.relayed {
            let token = self
                .leases
                .iter()
                .find(|(_, l)| l.client == Some(peer.dest.1))
                .map(|(t, _)| t.clone())
                .unwrap_or_default();
            PeerKey::Relay(token)
        } else {
            PeerKey::Direct(peer.unit, peer.dest.1)
        }
    }

    fn close_all_realms(&mut self, peer: &mut Peer, why: &'static str) {
        for (realm, r) in std::mem::take(&mut peer.realms) {
            self.tcp.push_back(TcpCommand::Close { conn: r.conn });
            self.conns.remove(&r.conn);
            self.reports.push(report(&peer.serial, realm, &r, why));
        }
        peer.credits.clear();
        peer.backlog = 0;
    }

    fn with_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut Emulator, &mut Peer, u32),
    ) {
        let Some((key, realm)) = self.conns.get(&conn).cloned() else {
            return;
        };
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        f(self, &mut peer, realm);
        self.peers.insert(key, peer);
        self.pump(now);
    }

    /// The driver connected (or failed to connect) a realm's service.
    pub fn tcp_connected(&mut self, now: Instant, conn: ConnId, ok: bool) {
        self.with_conn(now, conn, |emu, peer, realm| {
            if ok {
                if let Some(r) = peer.realms.get_mut(&realm) {
                    r.state = RealmState::Open;
                    let port = r.port;
                    Self::send_body(peer, &Body::status(realm, Status::Conn));
                    emu.tcp.push_back(TcpCommand::Credit {
                        conn,
                        bytes: REALM_CREDIT,
                    });
                    emu.note(format!(
                        "{}: realm 0x{realm:08x} open to port {port}",
                        peer.serial
                    ));
                }
            } else if let Some(r) = peer.realms.remove(&realm) {
                emu.conns.remove(&conn);
                Self::send_body(peer, &Body::status(realm, Status::Disc));
                emu.note(format!(
                    "{}: realm 0x{realm:08x}: port {} refused, DISC",
                    peer.serial, r.port
                ));
            }
        });
    }

    /// Bytes the service sent: DATA towards the client, 1280 bytes a body.
    pub fn tcp_data(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.with_conn(now, conn, |_, peer, realm| {
            let Some(r) = peer.realms.get_mut(&realm) else {
                return;
            };
            r.bytes_out += bytes.len() as u64;
            r.sha_out.update(bytes);
            if !bytes.is_empty() {
                r.pending.push(Bytes::copy_from_slice(bytes));
            }
            Self::feed(peer);
        });
    }

    /// Moves service bytes into the session a body at a time, round-robin
    /// across realms, while the send window has room: every realm gets an
    /// equal share of the window whatever order its service wrote in (one
    /// FIFO would give a realm that got ahead a lasting larger share).
    fn feed(peer: &mut Peer) {
        let Some(session) = peer.session.as_mut() else {
            return;
        };
        while session.send_capacity() >= FRAGMENT_SIZE + 12 {
            let next = peer
                .realms
                .range(peer.feed_cursor.wrapping_add(1)..)
                .chain(peer.realms.range(..=peer.feed_cursor))
                .find(|(_, r)| r.pending.has_remaining())
                .map(|(id, _)| *id);
            let Some(realm) = next else { return };
            peer.feed_cursor = realm;
            let Some(r) = peer.realms.get_mut(&realm) else {
                return;
            };
            Self::send_pending(session, &mut peer.credits, realm, r);
        }
    }

    /// Sends up to one body of `realm`'s pending bytes as DATA and notes
    /// when its read credit comes back.
    fn send_pending(
        session: &mut PtcpSession,
        credits: &mut VecDeque<(u32, ConnId, usize)>,
        realm: u32,
        r: &mut Realm,
    ) {
        let n = r.pending.remaining().min(FRAGMENT_SIZE);
        session.send_data(realm, r.pending.copy_to_bytes(n));
        let end = session.sent().wrapping_add(session.queued() as u32);
        credits.push_back((end, r.conn, n));
    }

    /// The service wrote `bytes` of what the client sent (for `pid`).
    pub fn tcp_written(&mut self, now: Instant, conn: ConnId, bytes: usize) {
        self.with_conn(now, conn, |_, peer, realm| {
            if let Some(r) = peer.realms.get_mut(&realm) {
                let n = bytes.min(r.unwritten);
                r.unwritten -= n;
                peer.backlog = peer.backlog.saturating_sub(n);
            }
        });
    }

    /// The service closed its side: DISC the realm.
    pub fn tcp_closed(&mut self, now: Instant, conn: ConnId) {
        self.with_conn(now, conn, |emu, peer, realm| {
            if let Some(mut r) = peer.realms.remove(&realm) {
                peer.backlog = peer.backlog.saturating_sub(r.unwritten);
                emu.conns.remove(&conn);
                // What the service wrote before closing goes before the DISC.
                if let Some(session) = peer.session.as_mut() {
                    while r.pending.has_remaining() {
                        Self::send_pending(session, &mut peer.credits, realm, &mut r);
                    }
                }
                Self::send_body(peer, &Body::status(realm, Status::Disc));
                emu.note(format!(
                    "{}: realm 0x{realm:08x} closed by service ({} B in, {} B out)",
                    peer.serial, r.bytes_in, r.bytes_out
                ));
                emu.reports
                    .push(report(&peer.serial, realm, &r, "closed by service"));
            }
        });
    }
}
