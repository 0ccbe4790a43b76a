//! The client side of the cloud handshake, sans-IO: from the first probe to a
//! live PTCP session with the device (direct) or through the agent (relay).
//!
//! The flow is docs/PROTOCOL.md §1.2–1.5 with FIELD-NOTES' corrections:
//!
//! 1. On the relay socket: warm-up (`/probe/p2psrv`, or `/online/stun` in the
//!    SDK dialect), `/online/p2psrv/{SN}`, then at `US` `/probe/device/{SN}`
//!    and `/info/device/{SN}` (the salt and `rtspport`) side by side. The relay
//!    leg runs beside them, as the SDK's relay state machine does
//!    (FIELD-NOTES §2.5): `/online/relay` at once, and once the cloud knows
//!    the serial `/relay/agent` and `/relay/start/{Token}`.
//! 2. On the device socket: p2p-channel (with device auth when credentials
//!    are given), `100 Trying`, then `200 Server Nat Info!`.
//! 3. relay-channel once the lease is started (with device auth only after
//!    the channel answer, whose nonce its auth block reuses), the agent's
//!    notification, the agent PTCP session: SYN, then 0x17 → sign.
//! 4. Punching on the device socket to `PubAddr` and every LAN address at
//!    once; the first candidate to answer wins; one 12-byte confirm; the
//!    device PTCP session: SYN, then 0x19 + sign → 0x1A → 0x1B → ACK.
//! 5. Relay mode, or Auto when punching fails: the agent session is the
//!    session (DH-P2P §6.8).
//!
//! Cloud requests are resent with the same CSeq and fresh WSSE nonce and
//! `Created` after `first_wait`, doubling up to `max_wait` (after p2p-channel's
//! `100 Trying`, only after twice `max_wait`), and the whole early flow is
//! capped by `stage_cap` (FIELD-NOTES §2.2, §2.5). A 401 corrects the clock
//! offset from the server's time and retries under a new CSeq, so that a
//! duplicate of the old 401 cannot count twice; 401s to requests sent before
//! the correction cost no retry.
//!
//! Answers are matched by CSeq where the server echoes it, else by socket and
//! source; anything else arriving on either socket (stray STUN, PTCP, text)
//! is counted in [`Handshake::skipped`] and dropped.
//!
//! One file per leg, the way neolink splits `bc_protocol`: `cloud.rs` (the
//! request/answer machinery), `lookup.rs` (warm-up to `/info/device`),
//! `relay.rs` (lease, relay-channel, agent session), `direct.rs` (channel
//! answer, punching, device session). This file starts them, runs the
//! timers of `timers.rs` and picks the winner.
//!
//! No sockets, no clock, no global randomness: `now` and the Unix time come
//! with every call, and nonces, Identify, transaction IDs and CSeqs come
//! from a generator seeded at construction.

mod candidates;
mod cloud;
mod direct;
mod lookup;
mod policy;
mod relay;
mod request;
mod timers;
mod types;

pub use candidates::local_candidates;
pub use policy::next_cloud;
pub use relay::unbind_request;
pub use types::{
    Candidate, Established, EstablishedPath, HandshakeConfig, HandshakeError, HandshakeEvent,
    Lease, PathMode, Sock, Stage, Transmit,
};

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::codec::classify::{kind_of, Kind};
use crate::codec::crypto::{DeviceInfo, DeviceKey};
use crate::codec::punch::PunchMessage;
use crate::session::ptcp::{Event as PtcpEvent, PtcpSession};

use cloud::{CloudExchanges, Req};
use direct::DirectLeg;
use relay::{AgentPhase, RelayLeg};
use timers::{Timer, TimerTable};

/// Peer text longer than this is cut before it reaches a message or a log
/// (issue 11 item 17).
const PEER_TEXT_MAX: usize = 80;

/// Text a peer sent, cut to [`PEER_TEXT_MAX`] characters, control
/// characters escaped, so that a hostile answer cannot flood a log line.
pub(crate) fn peer_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(PEER_TEXT_MAX)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > PEER_TEXT_MAX {
        out.push('…');
    }
    out
}

/// What the cloud told us about the device.
#[derive(Debug, Default)]
struct Facts {
    /// `US`, from `/online/p2psrv`.
    p2psrv: Option<SocketAddr>,
    /// `/probe/device` said online.
    online: bool,
    /// Set once `/info/device` answered ("" when it gave no salt).
    salt: Option<String>,
    info: Option<DeviceInfo>,
    key: Option<DeviceKey>,
    /// Set once p2p-channel answered.
    channel: Option<ChannelFacts>,
}

#[derive(Debug)]
struct ChannelFacts {
    /// The device's nonce, which relay-channel's auth block reuses.
    nonce: Option<String>,
    local_addrs: Vec<SocketAddrV4>,
}

/// The two PTCP sessions the handshake runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    Agent,
    Device,
}

/// Whether the handshake still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    Ended,
}

/// The handshake state machine. See the module documentation.
pub struct Handshake {
    config: HandshakeConfig,
    device_port: u16,
    start: Instant,
    rng: SmallRng,
    identify: [u8; 8],
    cloud: CloudExchanges,
    timers: TimerTable,
    transmits: VecDeque<Transmit>,
    events: VecDeque<HandshakeEvent>,
    timings: Vec<(Stage, Duration)>,
    outcome: Outcome,
    skipped: u64,
    facts: Facts,
    relay: RelayLeg,
    direct: DirectLeg,
    lease: Option<Lease>,
    /// The agent of the lease, and its address as the cloud wrote it.
    agent_addr: Option<(SocketAddr, String)>,
    sign: Option<Vec<u8>>,
    /// Device binding requests from before the channel answer.
    early_punches: Vec<(SocketAddr, PunchMessage)>,
    /// Every address the device may punch from (kept after the punch).
    candidates: Vec<(SocketAddrV4, Candidate)>,
}

impl Handshake {
    /// Starts a handshake: the first request is queued at once.
    ///
    /// `device_port` is the local port of [`Sock::Device`]: p2p-channel
    /// claims `127.0.0.1:{device_port}` as our LocalAddr (DH-P2P §2.5).
    /// `relay_port` is accepted for symmetry; nothing on the wire names it.
    pub fn new(
        config: HandshakeConfig,
        device_port: u16,
        relay_port: u16,
        now: Instant,
        unix: i64,
        seed: u64,
    ) -> Self {
        let _ = relay_port;
        let mut rng = SmallRng::seed_from_u64(seed);
        let identify = rng.gen();
        let relay = if config.mode != PathMode::Direct || config.use_sign {
            RelayLeg::Locating
        } else {
            RelayLeg::Off
        };
        let direct = if config.mode == PathMode::Relay {
            DirectLeg::Off
        } else {
            DirectLeg::AwaitLookup
        };
        let mut hs = Handshake {
            config,
            device_port,
            start: now,
            rng,
            identify,
            cloud: CloudExchanges::new(),
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timings: Vec::new(),
            outcome: Outcome::Running,
            skipped: 0,
            facts: Facts::default(),
            relay,
            direct,
            lease: None,
            agent_addr: None,
            sign: None,
            early_punches: Vec::new(),
            candidates: Vec::new(),
        };
        let cloud = hs.config.cloud;
        hs.start_request(Req::Warmup, cloud, now, unix);
        if hs.relay_running() {
            hs.start_request(Req::OnlineRelay, cloud, now, unix);
        }
        hs.sync_timers();
        hs
    }

    /// Datagrams received and skipped: stray, stale or of the wrong kind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the handshake has ended (established or failed).
    pub fn is_done(&self) -> bool {
        self.outcome == Outcome::Ended
    }

    /// The `Identify` sent in p2p-channel and the punch messages.
    pub fn identify(&self) -> [u8; 8] {
        self.identify
    }

    /// Handles one datagram that reached `sock` from `from`. Anything that
    /// does not belong to the handshake is skipped, never fatal.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix: i64,
        sock: Sock,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        if self.is_done() {
            return;
        }
        let device_peer = self.device().map(|d| d.addr);
        let agent_peer = self.agent().map(|a| a.addr);
        match (sock, kind_of(bytes)) {
            (_, Kind::Cloud) => self.on_cloud(now, unix, sock, from, bytes),
            (Sock::Device, Kind::Punch) => self.on_punch(now, from, bytes),
            (Sock::Device, Kind::Ptcp) if device_peer == Some(from) => {
                self.device_packet(now, bytes)
            }
            (Sock::Relay, Kind::Ptcp) if agent_peer == Some(from) => {
                if let Some(agent) = self.agent_mut() {
                    agent.session.handle_datagram(now, bytes);
                }
                self.leg_events(now, Leg::Agent);
            }
            (_, kind) => self.invalid(sock, from, || {
                let what = match kind {
                    Kind::Unknown => "an unrecognised datagram",
                    Kind::Cloud | Kind::Punch | Kind::Ptcp => "a stray datagram",
                };
                format!("{what} of {} bytes ({})", bytes.len(), kind.as_str())
            }),
        }
        self.advance(now, unix);
    }

    /// Runs the expired timers of the table, in the table's order.
    pub fn handle_timeout(&mut self, now: Instant, unix: i64) {
        for timer in self.timers.expired(now) {
            if self.is_done() {
                return;
            }
            // An earlier timer may have stopped or moved this one.
            if self.timers.get(timer).is_none_or(|at| at > now) {
                continue;
            }
            self.timers.stop(timer);
            self.on_timer(now, unix, timer);
        }
        self.advance(now, unix);
    }

    fn on_timer(&mut self, now: Instant, unix: i64, timer: Timer) {
        match timer {
            Timer::StageCap => {
                self.cap_requests(now);
                if !self.is_done() {
                    self.cap_agent(now);
                }
            }
            Timer::Resend(req) => self.send_exchange(req, now, unix),
            Timer::AgentSession => {
                if let Some(agent) = self.agent_mut() {
                    agent.session.handle_timeout(now);
                }
                self.leg_events(now, Leg::Agent);
            }
            Timer::PunchDeadline => self.punch_expired(now),
            Timer::PunchResend => self.send_binding_requests(now),
            Timer::DeviceSession => {
                if let Some(dev) = self.device_mut() {
                    dev.session.handle_timeout(now);
                }
                self.leg_events(now, Leg::Device);
            }
            Timer::DevicePhase => self.device_phase_expired(now),
        }
    }

    /// The next datagram to send, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        let from_device = self.device_mut().and_then(|dev| {
            let payload = dev.session.poll_transmit(now)?;
            Some(Transmit {
                sock: Sock::Device,
                to: dev.addr,
                payload,
            })
        });
        let next = from_device.or_else(|| {
            let agent = self.agent_mut()?;
            let payload = agent.session.poll_transmit(now)?;
            Some(Transmit {
                sock: Sock::Relay,
                to: agent.addr,
                payload,
            })
        });
        // Sending arms the sessions' resend timers.
        self.sync_timers();
        next
    }

    /// When [`Handshake::handle_timeout`] wants to run next: the minimum of
    /// the timer table.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next event: stage progress, then `Established` or `Failed` once.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.events.pop_front()
    }

    /// Copies the timers the table does not set itself: the two PTCP
    /// sessions' own, and the stage cap while the early flow waits.
    fn sync_timers(&mut self) {
        if self.is_done() {
            return self.timers.clear();
        }
        let agent = self.agent().and_then(|a| a.session.next_timeout());
        self.timers.set_opt(Timer::AgentSession, agent);
        let device = self.device().and_then(|d| d.session.next_timeout());
        self.timers.set_opt(Timer::DeviceSession, device);
        let agent_pending = self.agent().is_some_and(|a| a.phase != AgentPhase::Open);
        let cap = (!self.cloud.pending.is_empty() || agent_pending)
            .then(|| self.start + self.config.stage_cap);
        self.timers.set_opt(Timer::StageCap, cap);
    }

    // -----------------------------------------------------------------
    // Progress and endings

    fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    fn stage_done(&mut self, now: Instant, stage: Stage, detail: String) {
        let elapsed = self.elapsed(now);
        self.timings.push((stage, elapsed));
        self.events.push_back(HandshakeEvent::Stage {
            stage,
            elapsed,
            detail,
        });
    }

    fn end(&mut self) {
        self.outcome = Outcome::Ended;
        self.cloud.pending.clear();
        self.timers.clear();
        self.relay = RelayLeg::Off;
        self.direct = DirectLeg::Off;
    }

    fn fail(&mut self, error: HandshakeError) {
        if self.is_done() {
            return;
        }
        self.end();
        self.transmits.clear();
        self.events.push_back(HandshakeEvent::Failed(error));
    }

    /// Starts whatever has become possible, and finishes when a path is
    /// ready: the orchestration of the legs.
    fn advance(&mut self, now: Instant, unix: i64) {
        if !self.is_done() {
            self.advance_relay(now, unix);
            self.advance_direct(now, unix);
            // Relay mode, or Auto after giving up on direct: the agent
            // session is it.
            let relay_path =
                self.config.mode == PathMode::Relay || matches!(self.direct, DirectLeg::FellBack);
            if relay_path && self.agent().is_some_and(|a| a.phase == AgentPhase::Open) {
                self.establish_relay(now);
            }
        }
        self.sync_timers();
    }

    /// Hands the bodies (and the death) of one PTCP session to its leg.
    fn leg_events(&mut self, now: Instant, leg: Leg) {
        let session = match leg {
            Leg::Agent => self.agent_mut().map(|a| &mut a.session),
            Leg::Device => self.device_mut().map(|d| &mut d.session),
        };
        let Some(session) = session else {
            return;
        };
        let (bodies, dead) = drain_events(session);
        for body in bodies {
            match leg {
                Leg::Agent => self.agent_body(now, &body),
                Leg::Device => self.device_body(now, &body),
            }
        }
        let alive = match leg {
            Leg::Agent => self.agent().is_some(),
            Leg::Device => self.device().is_some(),
        };
        match (leg, alive, dead) {
            (_, false, _) => {}
            (Leg::Agent, true, true) => {
                self.relay_failure(Stage::AgentSession, "the agent session died".to_owned())
            }
            (Leg::Device, true, true) => self.device_died(now),
            (Leg::Device, true, false) => self.check_device_confirmed(now),
            (Leg::Agent, true, false) => {}
        }
    }

    fn establish_direct(&mut self, now: Instant) {
        let DirectLeg::Session(dev) = std::mem::replace(&mut self.direct, DirectLeg::Off) else {
            return;
        };
        let dev = *dev;
        let signed = self.config.use_sign;
        self.stage_done(
            now,
            Stage::Ready,
            format!(
                "session ready (direct via {} {}{})",
                dev.via,
                dev.addr,
                if signed { ", signed" } else { "" }
            ),
        );
        let path = EstablishedPath::Direct {
            device: dev.addr,
            via: dev.via,
        };
        self.finish(path, Sock::Device, dev.addr, dev.session, signed);
    }

    fn establish_relay(&mut self, now: Instant) {
        let RelayLeg::Agent(agent) = std::mem::replace(&mut self.relay, RelayLeg::Off) else {
            return;
        };
        let agent = *agent;
        self.stage_done(
            now,
            Stage::Ready,
            format!("session ready (relay via agent {})", agent.addr),
        );
        let path = EstablishedPath::Relay { agent: agent.addr };
        self.finish(path, Sock::Relay, agent.addr, agent.session, false);
    }

    fn finish(
        &mut self,
        path: EstablishedPath,
        sock: Sock,
        peer: SocketAddr,
        session: PtcpSession,
        signed: bool,
    ) {
        let local_addrs = self
            .facts
            .channel
            .as_ref()
            .map(|c| c.local_addrs.iter().copied().map(Into::into).collect())
            .unwrap_or_default();
        let established = Established {
            path,
            sock,
            peer,
            session,
            lease: self.lease.clone(),
            device_info: self.facts.info.clone(),
            local_addrs,
            signed,
            timings: self.timings.clone(),
        };
        self.end();
        self.events
            .push_back(HandshakeEvent::Established(Box::new(established)));
    }
}

/// The bodies a session delivered, and whether it died.
fn drain_events(session: &mut PtcpSession) -> (Vec<Vec<u8>>, bool) {
    let mut bodies = Vec::new();
    let mut dead = false;
    while let Some(event) = session.poll_event() {
        match event {
            PtcpEvent::Body(b) => bodies.push(b.to_vec()),
            PtcpEvent::Dead(_) => dead = true,
            PtcpEvent::Acked { .. } | PtcpEvent::Malformed(_) => {}
        }
    }
    (bodies, dead)
}
