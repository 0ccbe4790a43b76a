//! The PTCP session: reliable, ordered delivery of PTCP bodies over a lossy
//! datagram path, as both the emulated device and the tunnel run it.
//!
//! This is the reliability model of docs/PROTOCOL.md ("Reliability model"):
//!
//! - every non-empty body occupies `len` bytes of sequence space; the header's
//!   `sent` is the body's first byte, `recv` is the cumulative count of bytes
//!   received in order (FIELD-NOTES C16);
//! - a body counts as received only when it is in order (peer `sent` == our
//!   `recv`); bodies ahead of it are buffered, duplicates dropped;
//! - one empty ACK answers each non-empty packet, unless a packet we send
//!   anyway carries the new `recv` first (coalescing); an ACK is never ACKed;
//! - unacknowledged bodies are resent from the peer's `recv` after a
//!   retransmission timeout (RFC 6298 estimator, Karn's rule) or after three
//!   duplicate acknowledgements;
//! - LMID order is never a reason to drop a datagram.
//!
//! Sans-IO: the session owns no socket and no clock. The driver feeds it
//! datagrams and `now`, sends what [`PtcpSession::poll_transmit`] returns,
//! delivers what [`PtcpSession::poll_event`] returns, and sleeps until
//! [`PtcpSession::next_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::ptcp::{
    Body, Header, Packet, PtcpError, HEADER_LEN, PID_IDLE, PID_SYN, SUBHEADER_LEN, SYN_BODY,
};

/// How the `pid` header field is filled (FIELD-NOTES C1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidMode {
    /// `0x0000FFFF` minus bytes received but not yet consumed (default).
    Window,
    /// The original client's countdown: `0x0000FFFF` minus the number of
    /// non-empty packets sent (DH-P2P §6.2).
    Countdown,
}

/// What the peer's `pid` means to our sender (FIELD-NOTES C1: devices fill
/// it as `0xFFFF` minus the bytes they hold unconsumed, and DF reports that
/// devices honour ours as a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerWindow {
    /// A peer whose window reads zero has no room: no new bodies until it
    /// reopens, one probe body when nothing is in flight (default). Without
    /// it a peer that drops what it cannot hold costs a resend per body.
    PauseWhenClosed,
    /// The field is not read (the original client).
    Ignore,
}

/// How the `lmid` header field is filled (FIELD-NOTES C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmidMode {
    /// A millisecond clock quantised to 10 ms, starting at `base`, kept in
    /// `1..2^31` (default).
    Clock { base: u32 },
    /// The original client's packet counter, starting at `start`.
    Counter { start: u32 },
}

/// Tunables of a session. Defaults follow docs/PROTOCOL.md.
#[derive(Debug, Clone)]
pub struct PtcpConfig {
    /// Resend unacknowledged bodies (the device's `--device-retransmit`).
    pub retransmit: bool,
    /// Retransmission timeout before any RTT sample.
    pub initial_rto: Duration,
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// How long an ACK may wait for a packet that would carry it anyway.
    /// Zero answers every non-empty packet at the next `poll_transmit`.
    pub ack_delay: Duration,
    /// Interval of our own HEARTBEAT bodies; `None` sends none.
    pub heartbeat: Option<Duration>,
    /// No datagram at all from the peer for this long ends the session.
    pub idle_timeout: Duration,
    /// Our data unacknowledged, with the peer's `recv` not moving, for this
    /// long ends the session (FIELD-NOTES §4.4 outbound stall).
    pub stall_timeout: Duration,
    /// Bytes of body we may have in flight unacknowledged.
    pub send_window: u32,
    /// Bytes of out-of-order bodies we buffer before dropping more.
    pub reorder_buffer: usize,
    pub pid: PidMode,
    pub peer_window: PeerWindow,
    pub lmid: LmidMode,
}

impl Default for PtcpConfig {
    fn default() -> Self {
        PtcpConfig {
            retransmit: true,
            initial_rto: Duration::from_millis(400),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(3),
            ack_delay: Duration::ZERO,
            heartbeat: Some(Duration::from_secs(5)),
            idle_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(20),
            send_window: 1024 * 1024,
            reorder_buffer: 4 * 1024 * 1024,
            pid: PidMode::Window,
            peer_window: PeerWindow::PauseWhenClosed,
            lmid: LmidMode::Clock { base: 60_000 },
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Nothing received for `idle_timeout`.
    Silence,
    /// Our data went unacknowledged for `stall_timeout`.
    Stalled,
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A non-empty body, in order, exactly once (raw bytes; decode with
    /// [`Body::decode`]): a view into the received datagram, not a copy.
    Body(Bytes),
    /// The peer acknowledged bytes; send capacity may have opened.
    Acked {
        bytes: u32,
    },
    /// A datagram that is not a valid PTCP packet (counted, then dropped).
    Malformed(PtcpError),
    Dead(DeadReason),
}

/// Counters a status line, `--stats` or a test reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub bodies_in: u64,
    pub bodies_out: u64,
    pub acks_out: u64,
    pub retransmits: u64,
    pub duplicates_in: u64,
    pub out_of_order_in: u64,
    pub reorder_drops: u64,
    pub malformed_in: u64,
    pub heartbeats_out: u64,
}

/// A body waiting to be sent, or to be acknowledged: an encoded head and
/// the rest. A DATA payload stays the buffer the client's bytes were read
/// into, sent (and resent) without a copy until its datagram is written;
/// any other body is encoded whole into `rest`.
#[derive(Debug, Clone)]
struct OutBody {
    head: [u8; SUBHEADER_LEN],
    head_len: u8,
    rest: Bytes,
}

impl OutBody {
    fn encoded(body: &Body<'_>) -> OutBody {
        let mut bytes = Vec::with_capacity(body.encoded_len());
        body.encode(&mut bytes);
        OutBody {
            head: [0; SUBHEADER_LEN],
            head_len: 0,
            rest: Bytes::from(bytes),
        }
    }

    fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    fn len(&self) -> usize {
        usize::from(self.head_len) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_syn(&self) -> bool {
        self.head_len == 0 && self.rest[..] == SYN_BODY
    }
}

/// One body we sent and the peer has not acknowledged yet.
#[derive(Debug)]
struct Segment {
    seq: u32,
    body: OutBody,
    first_sent: Instant,
    last_sent: Instant,
    transmissions: u32,
}

impl Segment {
    fn end(&self) -> u32 {
        self.seq.wrapping_add(self.body.len() as u32)
    }
}

/// `a` comes before `b` in wrapping u32 sequence space.
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes at or before `b`.
pub fn seq_le(a: u32, b: u32) -> bool {
    a == b || seq_lt(a, b)
}

/// A PTCP session with one peer.
#[derive(Debug)]
pub struct PtcpSession {
    config: PtcpConfig,
    epoch: Instant,
    // Outbound.
    snd_nxt: u32,
    snd_una: u32,
    in_flight: VecDeque<Segment>,
    queued: VecDeque<OutBody>,
    queued_bytes: usize,
    retransmit_from: Option<u32>,
    /// How many bodies to resend from `retransmit_from`.
    retransmit_budget: u32,
    /// Bodies resent per partial ACK while recovering; doubles while each
    /// partial ACK only covers what we resent (a burst was lost).
    recovery_burst: u32,
    /// End of the last body resent.
    last_resent_end: Option<u32>,
    rto: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto_backoff: u32,
    dup_acks: u32,
    /// While set, we are recovering losses sent before this point: each
    /// partial ACK resends the next missing body at once (NewReno).
    recovery_until: Option<u32>,
    peer_recv: Option<u32>,
    /// The peer's last advertised window said it has no room.
    peer_window_closed: bool,
    last_ack_progress: Instant,
    // Inbound.
    rcv_nxt: u32,
    reorder: BTreeMap<u32, Bytes>,
    reorder_bytes: usize,
    ack_due: Option<Instant>,
    rmid: u32,
    last_rx: Instant,
    backlog: u32,
    // Other.
    counter_lmid: u32,
    packets_with_body: u32,
    next_heartbeat: Option<Instant>,
    events: VecDeque<Event>,
    dead: bool,
    stats: Stats,
}

impl PtcpSession {
    /// A fresh session: both counters at zero, nothing exchanged.
    pub fn new(config: PtcpConfig, now: Instant) -> Self {
        Self::with_counters(config, now, 0, 0)
    }

    /// A session whose counters start at `sent`/`recv`: a session taken over
    /// after someone else exchanged the SYN (the relay agent), or a test that
    /// starts near 2^32 to exercise wrapping.
    pub fn with_counters(config: PtcpConfig, now: Instant, sent: u32, recv: u32) -> Self {
        let counter_lmid = match config.lmid {
            LmidMode::Counter { start } => start,
            LmidMode::Clock { .. } => 0,
        };
        // Heartbeats start once the session is up (something was received),
        // so a peer still waiting for our SYN never sees one first.
        let next_heartbeat = config.heartbeat.filter(|_| recv != 0).map(|h| now + h);
        PtcpSession {
            rto: config.initial_rto,
            config,
            epoch: now,
            snd_nxt: sent,
            snd_una: sent,
            in_flight: VecDeque::new(),
            queued: VecDeque::new(),
            queued_bytes: 0,
            retransmit_from: None,
            retransmit_budget: 0,
            recovery_burst: 1,
            last_resent_end: None,
            srtt: None,
            rttvar: Duration::ZERO,
            rto_backoff: 0,
            dup_acks: 0,
            recovery_until: None,
            peer_recv: None,
            peer_window_closed: false,
            last_ack_progress: now,
            rcv_nxt: recv,
            reorder: BTreeMap::new(),
            reorder_bytes: 0,
            ack_due: None,
            rmid: 0,
            last_rx: now,
            backlog: 0,
            counter_lmid,
            packets_with_body: 0,
            next_heartbeat,
            events: VecDeque::new(),
            dead: false,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &PtcpConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Our `sent` counter: body bytes queued for sending so far.
    pub fn sent(&self) -> u32 {
        self.snd_nxt
    }

    /// Our `recv` counter: body bytes received in order.
    pub fn recv(&self) -> u32 {
        self.rcv_nxt
    }

    /// Bytes sent but not yet acknowledged by the peer.
    pub fn unacked(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }

    /// Bytes queued behind the send window.
    pub fn queued(&self) -> usize {
        self.queued_bytes
    }

    /// The last `recv` the peer reported, if any.
    pub fn peer_recv(&self) -> Option<u32> {
        self.peer_recv
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Tells the session how many received bytes the application still holds
    /// unconsumed; it advertises the rest of 0xFFFF in `pid` (FIELD-NOTES C1).
    pub fn set_backlog(&mut self, bytes: usize) {
        self.backlog = u32::try_from(bytes).unwrap_or(u32::MAX);
    }

    /// Room for more bodies before the send window and queue are full.
    pub fn send_capacity(&self) -> usize {
        let window = self.config.send_window as usize;
        window.saturating_sub(self.unacked() as usize + self.queued_bytes)
    }

    /// Queues a body for reliable delivery. Bodies are sent in the order
    /// queued; the send window decides when.
    pub fn send(&mut self, body: &Body<'_>) {
        if body.is_empty() {
            return;
        }
        self.enqueue(OutBody::encoded(body));
    }

    /// Queues a DATA body for `realm` whose payload is `payload` itself:
    /// the same bytes on the wire as `send(&Body::Data { .. })`, without
    /// copying the payload until its datagram is built. As there, the
    /// payload must fit a datagram (the `len` field has 24 bits).
    pub fn send_data(&mut self, realm: u32, payload: Bytes) {
        self.enqueue(OutBody {
            head: Body::data_head(realm, payload.len()),
            head_len: SUBHEADER_LEN as u8,
            rest: payload,
        });
    }

    fn enqueue(&mut self, body: OutBody) {
        self.queued_bytes += body.len();
        self.queued.push_back(body);
    }

    /// Handles one datagram from the peer (copied once; a driver that owns
    /// the datagram passes it to [`PtcpSession::handle_owned`] instead).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if !self.dead {
            self.handle_owned(now, Bytes::copy_from_slice(datagram));
        }
    }

    /// Handles one datagram from the peer, keeping its body as a view of
    /// it: the body reaches [`Event::Body`] without another copy.
    pub fn handle_owned(&mut self, now: Instant, datagram: Bytes) {
        if self.dead {
            return;
        }
        let packet = match Packet::decode(&datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed_in += 1;
                self.events.push_back(Event::Malformed(e));
                return;
            }
        };
        self.stats.datagrams_in += 1;
        self.last_rx = now;
        self.rmid = packet.header.lmid;
        if self.config.peer_window == PeerWindow::PauseWhenClosed {
            self.peer_window_closed = packet.header.pid & 0xFFFF == 0;
        }
        self.on_ack(now, packet.header.recv, packet.body.is_empty());
        let sent = packet.header.sent;
        if datagram.len() <= HEADER_LEN {
            return;
        }
        self.on_body(now, sent, datagram.slice(HEADER_LEN..));
    }

    fn on_ack(&mut self, now: Instant, peer_recv: u32, pure_ack: bool) {
        // An ACK for bytes we never sent is ignored (a confused or hostile peer).
        if seq_lt(self.snd_nxt, peer_recv) {
            return;
        }
        let previous = self.peer_recv.replace(peer_recv);
        if seq_lt(self.snd_una, peer_recv) {
            let acked = peer_recv.wrapping_sub(self.snd_una);
            self.snd_una = peer_recv;
            self.dup_acks = 0;
            self.rto_backoff = 0;
            self.last_ack_progress = now;
            // One RTT sample per ACK, from the body this ACK answers
            // directly (the one ending at the new recv), never during
            // recovery and never from a resent body (Karn): a body acked
            // only after a hole filled would measure the hole, not the path.
            let mut sample = None;
            while let Some(seg) = self.in_flight.front() {
                if !seq_le(seg.end(), peer_recv) {
                    break;
                }
                if seg.end() == peer_recv && seg.transmissions == 1 && self.recovery_until.is_none()
                {
                    sample = Some(now.saturating_duration_since(seg.first_sent));
                }
                self.in_flight.pop_front();
            }
            if let Some(rtt) = sample {
                self.rtt_sample(rtt);
            }
            if let Some(from) = self.retransmit_from {
                if seq_lt(from, peer_recv) {
                    self.retransmit_from = None;
                }
            }
            if let Some(until) = self.recovery_until {
                if seq_lt(peer_recv, until) && self.config.retransmit && !self.in_flight.is_empty()
                {
                    // A partial ACK: the next hole starts at peer_recv. If
                    // the peer had nothing beyond what we resent, the loss
                    // was a burst: resend more at once, doubling.
                    self.recovery_burst = if self.last_resent_end == Some(peer_recv) {
                        (self.recovery_burst * 2).min(64)
                    } else {
                        1
                    };
                    self.resend_from(peer_recv, self.recovery_burst);
                } else {
                    self.recovery_until = None;
                    self.recovery_burst = 1;
                }
            }
            self.events.push_back(Event::Acked { bytes: acked });
        } else if pure_ack && previous == Some(peer_recv) && !self.in_flight.is_empty() {
            // The peer acknowledged something without moving its recv: a
            // hole. (Its data packets repeat its recv too; only pure ACKs
            // count, as in TCP.)
            self.dup_acks += 1;
            if self.dup_acks == 3 && self.config.retransmit && self.recovery_until.is_none() {
                self.resend_from(self.snd_una, 1);
                self.recovery_until = Some(self.snd_nxt);
            }
        }
    }

    /// Resend up to `count` bodies, starting with the one holding `from`.
    fn resend_from(&mut self, from: u32, count: u32) {
        self.retransmit_from = Some(from);
        self.retransmit_budget = count.max(1);
    }

    fn rtt_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + (self.rttvar * 4).max(Duration::from_millis(10)))
            .clamp(self.config.min_rto, self.config.max_rto);
    }

    fn on_body(&mut self, now: Instant, seq: u32, body: Bytes) {
        self.schedule_ack(now);
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = self.config.heartbeat.map(|h| now + h);
        }
        let len = body.len() as u32;
        if seq == self.rcv_nxt {
            self.deliver(body);
            // Drain whatever the hole was holding back.
            while let Some(next) = self.reorder.remove(&self.rcv_nxt) {
                self.reorder_bytes -= next.len();
                self.deliver(next);
            }
            // Drop buffered bodies the new recv has passed (overlaps).
            let stale: Vec<u32> = self
                .reorder
                .keys()
                .copied()
                .filter(|&s| seq_lt(s, self.rcv_nxt))
                .collect();
            for s in stale {
                if let Some(b) = self.reorder.remove(&s) {
                    self.reorder_bytes -= b.len();
                }
            }
        } else if seq_lt(seq, self.rcv_nxt) {
            self.stats.duplicates_in += 1;
            // The peer resent something we have: it probably missed our ACK
            // or our answer. Re-answer: resend our oldest unacked body too
            // (a repeated SYN gets the SYN again, 0x17 the sign again…).
            // Only when our answer has had a round trip to arrive: else two
            // peers with data in flight would answer each other's resends
            // forever.
            let settle = self
                .srtt
                .map_or(self.config.initial_rto / 2, |srtt| srtt * 3 / 2)
                .max(Duration::from_millis(10));
            let stale = self
                .in_flight
                .front()
                .filter(|s| now.saturating_duration_since(s.last_sent) >= settle)
                .map(|s| s.seq);
            if let (true, None, Some(oldest)) = (
                seq_le(seq.wrapping_add(len), self.rcv_nxt),
                self.retransmit_from,
                stale,
            ) {
                self.resend_from(oldest, 1);
            }
        } else {
            self.stats.out_of_order_in += 1;
            if self.reorder.contains_key(&seq) {
                self.stats.duplicates_in += 1;
            } else if self.reorder_bytes + body.len() <= self.config.reorder_buffer {
                self.reorder_bytes += body.len();
                self.reorder.insert(seq, body);
            } else {
                self.stats.reorder_drops += 1;
            }
        }
    }

    fn deliver(&mut self, body: Bytes) {
        self.rcv_nxt = self.rcv_nxt.wrapping_add(body.len() as u32);
        self.stats.bodies_in += 1;
        self.events.push_back(Event::Body(body));
    }

    fn schedule_ack(&mut self, now: Instant) {
        let due = now + self.config.ack_delay;
        self.ack_due = Some(self.ack_due.map_or(due, |d| d.min(due)));
    }

    /// Handles expired timers: retransmission, heartbeat, liveness.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dead {
            return;
        }
        if now.saturating_duration_since(self.last_rx) >= self.config.idle_timeout {
            return self.die(DeadReason::Silence);
        }
        if !self.in_flight.is_empty()
            && now.saturating_duration_since(self.last_ack_progress) >= self.config.stall_timeout
        {
            return self.die(DeadReason::Stalled);
        }
        if self.config.retransmit {
            if let Some(seg) = self.in_flight.front() {
                if now >= seg.last_sent + self.current_rto() && self.retransmit_from.is_none() {
                    // Resend from the peer's recv (go-back-N, bounded).
                    let seq = seg.seq;
                    let count = self.in_flight.len().min(32) as u32;
                    self.resend_from(seq, count);
                    self.recovery_until = Some(self.snd_nxt);
                    self.rto_backoff = (self.rto_backoff + 1).min(6);
                }
            }
        }
        if let (Some(due), Some(interval)) = (self.next_heartbeat, self.config.heartbeat) {
            if now >= due {
                self.send(&Body::Heartbeat);
                self.stats.heartbeats_out += 1;
                self.next_heartbeat = Some(now + interval);
            }
        }
    }

    fn current_rto(&self) -> Duration {
        (self.rto * (1u32 << self.rto_backoff)).min(self.config.max_rto)
    }

    fn die(&mut self, reason: DeadReason) {
        self.dead = true;
        self.events.push_back(Event::Dead(reason));
    }

    /// When [`PtcpSession::handle_timeout`] wants to run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        let mut next = self.last_rx + self.config.idle_timeout;
        let mut consider = |t: Instant| next = next.min(t);
        if let Some(seg) = self.in_flight.front() {
            consider(self.last_ack_progress + self.config.stall_timeout);
            if self.config.retransmit {
                consider(seg.last_sent + self.current_rto());
            }
        }
        if let Some(h) = self.next_heartbeat {
            consider(h);
        }
        if let Some(a) = self.ack_due {
            consider(a);
        }
        Some(next)
    }

    /// The next datagram to send, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut datagram = Vec::new();
        self.poll_transmit_into(now, &mut datagram)
            .then_some(datagram)
    }

    /// [`PtcpSession::poll_transmit`] appending the datagram to `out` (a
    /// driver's buffer of one flush's datagrams): returns whether there
    /// was one. The payload is copied once, from where it was queued.
    pub fn poll_transmit_into(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if self.dead {
            return false;
        }
        // 1. Retransmissions, oldest first.
        if let Some(from) = self.retransmit_from {
            let index = self
                .in_flight
                .iter()
                .position(|s| seq_le(from, s.seq) || seq_lt(from, s.end()));
            match index {
                Some(i) => {
                    let seg = &mut self.in_flight[i];
                    seg.last_sent = now;
                    seg.transmissions += 1;
                    let (seq, end, body) = (seg.seq, seg.end(), seg.body.clone());
                    self.retransmit_budget = self.retransmit_budget.saturating_sub(1);
                    self.retransmit_from = (self.retransmit_budget > 0).then_some(end);
                    self.last_resent_end = Some(end);
                    self.stats.retransmits += 1;
                    self.packet(now, seq, Some(&body), out);
                    return true;
                }
                None => self.retransmit_from = None,
            }
        }
        // 2. New bodies within the window.
        if let Some(len) = self.queued.front().map(OutBody::len) {
            let fits = self.unacked() as usize + len <= self.config.send_window as usize
                && !self.peer_window_closed;
            // Nothing in flight: one body goes anyway (a probe of a closed
            // window; its ACK brings the window, its resends the retries).
            if fits || self.in_flight.is_empty() {
                let Some(body) = self.queued.pop_front() else {
                    return false;
                };
                self.queued_bytes -= body.len();
                let seq = self.snd_nxt;
                self.snd_nxt = self.snd_nxt.wrapping_add(body.len() as u32);
                self.packet(now, seq, Some(&body), out);
                self.stats.bodies_out += 1;
                // Kept even without timer resends: a repeated request from
                // the peer is answered by resending what it missed.
                self.in_flight.push_back(Segment {
                    seq,
                    body,
                    first_sent: now,
                    last_sent: now,
                    transmissions: 1,
                });
                return true;
            }
        }
        // 3. A pure ACK, when no other packet carried our recv in time.
        if let Some(due) = self.ack_due {
            if now >= due {
                self.stats.acks_out += 1;
                self.packet(now, self.snd_nxt, None, out);
                return true;
            }
        }
        false
    }

    /// Appends a datagram to `out`; every packet carries our current recv,
    /// so it settles any pending ACK.
    fn packet(&mut self, now: Instant, sent: u32, body: Option<&OutBody>, out: &mut Vec<u8>) {
        self.ack_due = None;
        let syn = body.is_some_and(OutBody::is_syn);
        let pid = if syn {
            PID_SYN
        } else {
            match self.config.pid {
                PidMode::Window => PID_IDLE - self.backlog.min(PID_IDLE),
                PidMode::Countdown => PID_IDLE.wrapping_sub(self.packets_with_body) & 0xFFFF,
            }
        };
        if body.is_some_and(|b| !b.is_empty()) && !syn {
            self.packets_with_body = self.packets_with_body.wrapping_add(1);
        }
        let header = Header {
            sent,
            recv: self.rcv_nxt,
            pid,
            lmid: self.lmid(now),
            rmid: self.rmid,
        };
        out.reserve(HEADER_LEN + body.map_or(0, OutBody::len));
        header.encode(out);
        if let Some(body) = body {
            out.extend_from_slice(body.head());
            out.extend_from_slice(&body.rest);
        }
        self.stats.datagrams_out += 1;
    }

    fn lmid(&mut self, now: Instant) -> u32 {
        match self.config.lmid {
            LmidMode::Clock { base } => {
                let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
                let quantised = (u64::from(base) + ms) / 10 * 10;
                // Keep it in 1..2^31 so signed readers never see a negative value.
                let v = (quantised % 0x7FFF_FFFF) as u32;
                v.max(10)
            }
            LmidMode::Counter { .. } => {
                let v = self.counter_lmid;
                self.counter_lmid = self.counter_lmid.wrapping_add(1);
                v
            }
        }
    }

    /// The next event for the owner, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
