//! PTCP datagrams: the header's counters (lmid, rmid, recv), body arrival
//! against the `sent` tracker, and what each body type means.

use super::sent::{Arrival, SentTracker, Way};
use super::session::{At, BindSeen, Direction, RealmState, SessionStats};
use super::timeline::{Awaiting, Timeline};
use crate::codec::ptcp::{self, Body, Packet, Status};
use crate::decode::record::Record;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Our data unacknowledged this long while realms keep writing: the outbound
/// stall of FIELD-NOTES §4.4 (BJ `tunnel.go`).
pub const OUTBOUND_STALL: Duration = Duration::from_secs(20);
/// Most DISC events kept per realm.
const MAX_DISCS: usize = 8;

/// Everything one PTCP datagram tells: restarts, header counters, the body's
/// arrival against the `sent` tracker, then what the body type means.
pub(crate) fn on_ptcp(
    session: &mut SessionStats,
    timeline: &mut Timeline,
    way: Way,
    record: &Record,
    at: At,
    packet: &Packet<'_>,
) {
    session.first_ptcp_way.get_or_insert(way);
    let header = packet.header;
    let body = packet.body;
    detect_restart(session, way, at, &body);
    count_header(session, way, record, &packet.header);
    track_ack(session, way, at, header.recv);
    if body.is_empty() {
        let dir = &mut session.dirs[way.index()];
        dir.acks = dir.acks.saturating_add(1);
        return;
    }
    let new = track_body(session, way, record, header.sent, &body);
    on_body(session, timeline, way, at, &body, new);
}

/// Whether `body`, sent `way`, opens a new PTCP session on the same sockets:
/// a SYN from the side that opened PTCP there (`initiator`, or anyone while
/// none is known) after it sent `sent_before` other bodies. A late SYN reply
/// from the other side is a repeat, not a restart.
pub fn opens_new_session(
    body: &Body<'_>,
    way: Way,
    initiator: Option<Way>,
    sent_before: u64,
) -> bool {
    *body == Body::Syn && initiator.unwrap_or(way) == way && sent_before > 0
}

/// A SYN from the initiator after it sent other bodies: a new PTCP session
/// on the same sockets. (The peer's SYN reply resent late is not: only the
/// initiator opens sessions.)
fn detect_restart(session: &mut SessionStats, way: Way, at: At, body: &Body<'_>) {
    let sent_before = session.dirs[way.index()].non_syn_bodies;
    if opens_new_session(body, way, session.syn_initiator, sent_before) {
        session.ptcp_restarts.push(at);
        for dir in &mut session.dirs {
            dir.tracker = SentTracker::new();
            dir.non_syn_bodies = 0;
            dir.last_recv = None;
            dir.unacked_since = None;
            dir.syn = None;
        }
    }
}

/// Header: lmid clock and rmid echo (FIELD-NOTES C2).
fn count_header(session: &mut SessionStats, way: Way, record: &Record, header: &ptcp::Header) {
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

/// `recv` acknowledges the other direction; progress restarts its stall clock.
fn track_ack(session: &mut SessionStats, way: Way, at: At, recv: u32) {
    let changed = session.dirs[way.index()].last_recv != Some(recv);
    session.dirs[way.index()].last_recv = Some(recv);
    if changed {
        let acked = &mut session.dirs[way.reverse().index()];
        if let Some(high) = acked.tracker.high() {
            let position = acked.tracker.position(recv);
            acked.unacked_since = if position >= high { None } else { Some(at) };
        }
    }
}

/// Places the body in its direction's stream and counts how it arrived;
/// returns whether it brought new bytes.
fn track_body(
    session: &mut SessionStats,
    way: Way,
    record: &Record,
    sent: u32,
    body: &Body<'_>,
) -> bool {
    let body_bytes = record.payload.get(ptcp::HEADER_LEN..).unwrap_or_default();
    let body_len = u64::try_from(body_bytes.len()).unwrap_or(u64::MAX);
    let dir = &mut session.dirs[way.index()];
    let (_, arrival) = dir.tracker.observe(sent, body_bytes, &record.payload);
    dir.bodies = dir.bodies.saturating_add(1);
    dir.body_bytes = dir.body_bytes.saturating_add(body_len);
    if *body != Body::Syn {
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
    arrival.is_new()
}

/// What the body type means for the session, its realms and the timeline.
/// Exhaustive: a new body type must be given a meaning here.
fn on_body(
    session: &mut SessionStats,
    timeline: &mut Timeline,
    way: Way,
    at: At,
    body: &Body<'_>,
    new: bool,
) {
    let key = session.key;
    match *body {
        Body::Syn => {
            session.syn_initiator.get_or_insert(way);
            session.dirs[way.index()].syn.get_or_insert(at);
            session.stage(at, way, "PTCP SYN");
            timeline.answer_awaiting(key, Awaiting::Syn, way, "SYN".into(), at.time);
            timeline.start_awaiting(key, Awaiting::Syn, way, "PTCP SYN".into(), at.time);
        }
        Body::Heartbeat => {
            let dir = &mut session.dirs[way.index()];
            dir.heartbeats = dir.heartbeats.saturating_add(1);
            dir.last_heartbeat = Some(at);
        }
        Body::SignRequest => {
            session.sign_request.get_or_insert(at);
            session.stage(at, way, "0x17 sign request");
            timeline.start_awaiting(key, Awaiting::Sign, way, "SIGN".into(), at.time);
        }
        Body::Sign { sign } => {
            session.sign.get_or_insert(at);
            session.stage(at, way, "0x18 sign");
            let result = format!("{} bytes", sign.len());
            timeline.answer_awaiting(key, Awaiting::Sign, way, result, at.time);
        }
        Body::Auth { .. } => {
            session.auth.get_or_insert((at, way));
            session.stage(at, way, "0x19 auth");
            timeline.start_awaiting(key, Awaiting::Auth, way, "AUTH".into(), at.time);
        }
        Body::AuthReply { .. } => {
            session.auth_reply.get_or_insert(at);
            session.stage(at, way, "0x1A auth reply");
            let reply = "AUTH-REPLY".to_owned();
            timeline.answer_awaiting(key, Awaiting::Auth, way, reply, at.time);
        }
        Body::AuthConfirm => {
            session.auth_confirm.get_or_insert(at);
            session.stage(at, way, "0x1B auth confirm");
        }
        Body::Bind {
            realm, port, ip, ..
        } => {
            let name = format!("BIND 0x{realm:08x}");
            timeline.start_awaiting(key, Awaiting::Bind(realm), way, name, at.time);
            on_bind(session, way, at, realm, port, ip);
        }
        Body::Status { realm, status, .. } => {
            let answer = status.name().to_owned();
            timeline.answer_awaiting(key, Awaiting::Bind(realm), way, answer, at.time);
            on_status(session, way, at, realm, status, new);
        }
        Body::Data { realm, payload } => on_data(session, way, at, realm, payload, new),
        // Bodies of no meaning to the conversation: counted as bodies above.
        Body::Empty | Body::Unknown { .. } => {}
    }
}

fn on_bind(session: &mut SessionStats, way: Way, at: At, realm: u32, port: u32, ip: Ipv4Addr) {
    session.bind_way.get_or_insert(way);
    session.stage(at, way, "first BIND");
    let Some(r) = session.realm(realm, at, way) else {
        return;
    };
    r.packets = r.packets.saturating_add(1);
    r.last = at;
    if r.state == RealmState::Seen {
        r.state = RealmState::Bind;
    }
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

fn on_status(session: &mut SessionStats, way: Way, at: At, realm: u32, status: Status, new: bool) {
    let milestone = match status {
        Status::Conn => "first CONN",
        Status::Disc => "first DISC",
    };
    session.stage(at, way, milestone);
    let Some(r) = session.realm(realm, at, way) else {
        return;
    };
    r.packets = r.packets.saturating_add(1);
    r.last = at;
    match status {
        Status::Conn => {
            r.state = RealmState::Conn;
            r.conn.get_or_insert((at, way));
        }
        Status::Disc => {
            r.state = RealmState::Disc;
            r.disc_count = r.disc_count.saturating_add(1);
            if r.discs.len() < MAX_DISCS && (new || r.discs.is_empty()) {
                r.discs.push((at, way));
            }
        }
    }
}

fn on_data(session: &mut SessionStats, way: Way, at: At, realm: u32, payload: &[u8], new: bool) {
    if !new {
        // A resend or duplicate: counted for a realm already known only.
        if let Some(r) = session.realms.get_mut(&realm) {
            r.repeats = r.repeats.saturating_add(1);
            r.packets = r.packets.saturating_add(1);
            r.last = at;
        }
        return;
    }
    let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
    if let Some(r) = session.realm(realm, at, way) {
        let slot = &mut r.data[way.index()];
        slot.0 = slot.0.saturating_add(1);
        slot.1 = slot.1.saturating_add(len);
        r.packets = r.packets.saturating_add(1);
        r.last = at;
    }
    let dir = &mut session.dirs[way.index()];
    dir.data_bodies = dir.data_bodies.saturating_add(1);
    dir.data_bytes = dir.data_bytes.saturating_add(len);
    dir.last_data = Some(at);
    if payload.starts_with(b"PLAY ") {
        dir.play.get_or_insert(at);
    }
    check_stall(session, way, at, len);
}

/// Outbound stall (FIELD-NOTES §4.4): new data while earlier data has waited
/// for the peer's recv for 20 s.
fn check_stall(session: &mut SessionStats, way: Way, at: At, len: u64) {
    let (this, other) = split_dirs(&mut session.dirs, way);
    let Some(unacked) = this.out_unacked(other) else {
        return;
    };
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

pub(crate) fn split_dirs(dirs: &mut [Direction; 2], way: Way) -> (&mut Direction, &Direction) {
    let [a, b] = dirs;
    match way {
        Way::AtoB => (a, b),
        Way::BtoA => (b, a),
    }
}
