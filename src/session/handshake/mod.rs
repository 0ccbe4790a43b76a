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
//! No sockets, no clock, no global randomness: `now` and the Unix time come
//! with every call, and nonces, Identify, transaction IDs and CSeqs come
//! from a generator seeded at construction.

mod candidates;
mod types;

pub use candidates::local_candidates;
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
use crate::codec::cloud::{
    self, build_request, build_sdk_stun_warmup, format_created_offset, format_created_utc,
    p2p_channel_auth_body, p2p_channel_body, parse_created, relay_agent_body,
    relay_channel_auth_body, relay_channel_body, relay_start_body, AgentInfo, ChannelAnswer,
    DeviceAuthBlock, Endpoint, ErrorBody, HostPort, Identify, InfoDeviceAnswer, Message,
    P2pSrvInfo, RelayInfo, RequestParams, RequestStyle, Response, WsseAuth, XmlBody,
};
use crate::codec::crypto::{self, DeviceInfo, DeviceKey};
use crate::codec::identity::Dialect;
use crate::codec::ptcp::Body;
use crate::codec::punch::{self, MessageType, PunchMessage};
use crate::session::ptcp::{seq_lt, Event as PtcpEvent, PtcpSession};

/// Times the device session is begun again after the device restarted its
/// side (see [`Handshake::device_packet`]).
const MAX_DEVICE_RESTARTS: u32 = 3;
/// Packets acknowledging less than the device had already acknowledged
/// that mean it restarted its session rather than that packets were reordered.
const RESTART_EVIDENCE: u32 = 3;

/// Device binding requests that arrive before the channel answer and are
/// kept to be answered once the candidates are known (FIELD-NOTES §2.3).
const MAX_EARLY_PUNCHES: usize = 16;

/// One cloud request the handshake sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Warmup,
    P2pSrv,
    ProbeDevice,
    InfoDevice,
    OnlineRelay,
    RelayAgent,
    RelayStart,
    RelayChannel,
    P2pChannel,
}

impl Req {
    fn stage(self) -> Stage {
        match self {
            Req::Warmup => Stage::Warmup,
            Req::P2pSrv => Stage::P2pServer,
            Req::ProbeDevice => Stage::DeviceProbe,
            Req::InfoDevice => Stage::DeviceInfo,
            Req::OnlineRelay => Stage::RelayServer,
            Req::RelayAgent => Stage::RelayLease,
            Req::RelayStart => Stage::RelayStart,
            Req::RelayChannel => Stage::RelayChannel,
            Req::P2pChannel => Stage::Channel,
        }
    }

    fn sock(self) -> Sock {
        match self {
            Req::P2pChannel => Sock::Device,
            _ => Sock::Relay,
        }
    }

    /// Part of the relay leg, which Auto without sign can do without.
    fn is_relay_leg(self) -> bool {
        matches!(
            self,
            Req::OnlineRelay | Req::RelayAgent | Req::RelayStart | Req::RelayChannel
        )
    }
}

/// A request awaiting its answer.
#[derive(Debug, Clone)]
struct Exchange {
    req: Req,
    to: SocketAddr,
    /// `None` only for the SDK warm-up, which carries no CSeq.
    cseq: Option<i64>,
    /// p2p-channel's `CreateDate`, kept across resends (FIELD-NOTES §2.2).
    create_date: i64,
    next_send: Instant,
    /// The wait after the next send.
    wait: Duration,
    /// The clock offset the last send was built with.
    offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RelayLeg {
    /// Not needed in this mode.
    Off,
    Running,
    /// Gave up; the text says why (used if the relay is needed later).
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentPhase {
    Syn,
    Open,
    SignRequested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DevicePhase {
    Syn,
    WaitSign,
    AuthSent,
    ConfirmSent,
}

struct AgentLeg {
    addr: SocketAddr,
    session: PtcpSession,
    phase: AgentPhase,
}

struct PunchState {
    /// Public first, then LAN; one transaction ID each.
    candidates: Vec<(SocketAddrV4, Candidate, punch::TransactionId)>,
    started: Instant,
    next_send: Instant,
    deadline: Instant,
}

struct DeviceLeg {
    addr: SocketAddr,
    via: Candidate,
    session: PtcpSession,
    phase: DevicePhase,
    /// Of the current phase (none while waiting for the sign).
    deadline: Option<Instant>,
    phase_started: Instant,
    /// The most the device has acknowledged, and how many packets since
    /// acknowledged less.
    peer_recv_max: u32,
    regressions: u32,
    restarts: u32,
}

/// The handshake state machine. See the module documentation.
pub struct Handshake {
    config: HandshakeConfig,
    device_port: u16,
    start: Instant,
    rng: SmallRng,
    identify: [u8; 8],
    next_cseq: i64,
    /// Server time minus our clock, learnt from a 401.
    clock_offset: i64,
    unauthorized: u32,
    /// Some answer carried a CSeq: CSeq-less answers then only match
    /// requests sent without one.
    servers_echo_cseq: bool,
    exchanges: Vec<Exchange>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<HandshakeEvent>,
    timings: Vec<(Stage, Duration)>,
    done: bool,
    skipped: u64,
    // What the cloud told us.
    p2psrv: Option<SocketAddr>,
    probe_done: bool,
    info_done: bool,
    device_info: Option<DeviceInfo>,
    salt: String,
    device_key: Option<DeviceKey>,
    channel_answered: bool,
    device_nonce: Option<String>,
    local_addrs: Vec<SocketAddrV4>,
    // Relay leg.
    relay: RelayLeg,
    relay_server: Option<SocketAddr>,
    lease: Option<Lease>,
    agent_addr: Option<(SocketAddr, String)>,
    lease_requested: bool,
    relay_started: bool,
    relay_channel_sent: bool,
    channel_requested: bool,
    agent: Option<AgentLeg>,
    sign: Option<Vec<u8>>,
    /// Auto gave up on direct and waits for the agent session.
    fallback: bool,
    // Direct leg.
    early_punches: Vec<(SocketAddr, PunchMessage)>,
    /// Every address the device may punch from (kept after the punch).
    candidates: Vec<(SocketAddrV4, Candidate)>,
    punch: Option<PunchState>,
    device: Option<DeviceLeg>,
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
            RelayLeg::Running
        } else {
            RelayLeg::Off
        };
        let mut hs = Handshake {
            config,
            device_port,
            start: now,
            rng,
            identify,
            next_cseq: 1,
            clock_offset: 0,
            unauthorized: 0,
            servers_echo_cseq: false,
            exchanges: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timings: Vec::new(),
            done: false,
            skipped: 0,
            p2psrv: None,
            probe_done: false,
            info_done: false,
            device_info: None,
            salt: String::new(),
            device_key: None,
            channel_answered: false,
            device_nonce: None,
            local_addrs: Vec::new(),
            relay,
            relay_server: None,
            lease: None,
            agent_addr: None,
            lease_requested: false,
            relay_started: false,
            relay_channel_sent: false,
            channel_requested: false,
            agent: None,
            sign: None,
            fallback: false,
            early_punches: Vec::new(),
            candidates: Vec::new(),
            punch: None,
            device: None,
        };
        let cloud = hs.config.cloud;
        hs.start_request(Req::Warmup, cloud, now, unix);
        if hs.relay == RelayLeg::Running {
            hs.start_request(Req::OnlineRelay, cloud, now, unix);
        }
        hs
    }

    /// Datagrams received and skipped: stray, stale or of the wrong kind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the handshake has ended (established or failed).
    pub fn is_done(&self) -> bool {
        self.done
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
        if self.done {
            return;
        }
        match (sock, kind_of(bytes)) {
            (_, Kind::Cloud) => self.on_cloud(now, unix, sock, from, bytes),
            (Sock::Device, Kind::Punch) => self.on_punch(now, from, bytes),
            (Sock::Device, Kind::Ptcp) => match self.device.as_ref() {
                Some(dev) if dev.addr == from => self.device_packet(now, bytes),
                _ => self.skipped += 1,
            },
            (Sock::Relay, Kind::Ptcp) => match self.agent.as_mut() {
                Some(agent) if agent.addr == from => {
                    agent.session.handle_datagram(now, bytes);
                    self.agent_events(now);
                }
                _ => self.skipped += 1,
            },
            _ => self.skipped += 1,
        }
        self.advance(now, unix);
    }

    /// Runs expired timers: resends, stage caps, punch and session timers.
    pub fn handle_timeout(&mut self, now: Instant, unix: i64) {
        if self.done {
            return;
        }
        let cap = self.cap_deadline();
        // Cloud requests: give up at the cap, else resend when due.
        let mut expired = Vec::new();
        for i in 0..self.exchanges.len() {
            if now >= cap {
                expired.push(self.exchanges[i].req);
            } else if now >= self.exchanges[i].next_send {
                self.send_exchange(i, now, unix);
            }
        }
        for req in expired {
            self.exchanges.retain(|e| e.req != req);
            if req.is_relay_leg() {
                self.relay_failure(req.stage(), "no answer".to_owned(), true);
            } else {
                self.fail(HandshakeError::Timeout {
                    stage: req.stage(),
                    after: self.config.stage_cap,
                });
            }
            if self.done {
                return;
            }
        }
        // The agent session belongs to the early flow too.
        if let Some(agent) = self.agent.as_mut() {
            agent.session.handle_timeout(now);
            self.agent_events(now);
        }
        if let Some(phase) = self.agent.as_ref().map(|a| a.phase) {
            if now >= cap && phase != AgentPhase::Open {
                let stage = if phase == AgentPhase::Syn {
                    Stage::AgentSession
                } else {
                    Stage::Sign
                };
                self.relay_failure(stage, "the agent did not answer".to_owned(), true);
            }
        }
        if self.done {
            return;
        }
        // Punching.
        if let Some(p) = self.punch.as_ref() {
            if now >= p.deadline {
                let after = now.saturating_duration_since(p.started);
                self.direct_failed(now, Stage::Punch, after);
            } else if now >= p.next_send {
                self.send_binding_requests(now);
            }
        }
        if self.done {
            return;
        }
        // The device session and its phase deadlines.
        if let Some(dev) = self.device.as_mut() {
            dev.session.handle_timeout(now);
            self.device_events(now);
        }
        if let Some(dev) = self.device.as_ref() {
            if dev.deadline.is_some_and(|d| now >= d) {
                let after = now.saturating_duration_since(dev.phase_started);
                match dev.phase {
                    DevicePhase::Syn => self.direct_failed(now, Stage::DeviceSession, after),
                    DevicePhase::AuthSent => self.fail(HandshakeError::NoAuthReply { after }),
                    // 0x1A came but 0x1B is never acknowledged: the device
                    // lost our session; begin it again (bounded).
                    DevicePhase::ConfirmSent => self.restart_device_session(now),
                    DevicePhase::WaitSign => {}
                }
            }
        }
        self.advance(now, unix);
    }

    /// The next datagram to send, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        if let Some(dev) = self.device.as_mut() {
            if let Some(payload) = dev.session.poll_transmit(now) {
                return Some(Transmit {
                    sock: Sock::Device,
                    to: dev.addr,
                    payload,
                });
            }
        }
        if let Some(agent) = self.agent.as_mut() {
            if let Some(payload) = agent.session.poll_transmit(now) {
                return Some(Transmit {
                    sock: Sock::Relay,
                    to: agent.addr,
                    payload,
                });
            }
        }
        None
    }

    /// When [`Handshake::handle_timeout`] wants to run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for e in &self.exchanges {
            consider(e.next_send);
        }
        let agent_pending = self
            .agent
            .as_ref()
            .is_some_and(|a| a.phase != AgentPhase::Open);
        if !self.exchanges.is_empty() || agent_pending {
            consider(self.cap_deadline());
        }
        if let Some(agent) = &self.agent {
            if let Some(t) = agent.session.next_timeout() {
                consider(t);
            }
        }
        if let Some(p) = &self.punch {
            consider(p.next_send);
            consider(p.deadline);
        }
        if let Some(dev) = &self.device {
            if let Some(t) = dev.session.next_timeout() {
                consider(t);
            }
            if let Some(d) = dev.deadline {
                consider(d);
            }
        }
        next
    }

    /// The next event: stage progress, then `Established` or `Failed` once.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.events.pop_front()
    }

    // -----------------------------------------------------------------
    // Progress and endings

    fn cap_deadline(&self) -> Instant {
        self.start + self.config.stage_cap
    }

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

    fn fail(&mut self, error: HandshakeError) {
        if self.done {
            return;
        }
        self.done = true;
        self.exchanges.clear();
        self.transmits.clear();
        self.punch = None;
        self.device = None;
        self.agent = None;
        self.events.push_back(HandshakeEvent::Failed(error));
    }

    fn lease_wanted(&self) -> bool {
        !self.lease_requested && self.p2psrv.is_some()
    }

    /// Whether the relay leg is needed to finish from here.
    fn relay_required(&self) -> bool {
        self.config.mode == PathMode::Relay
            || self.fallback
            || (self.config.use_sign && self.sign.is_none())
    }

    /// The relay leg cannot go on: fatal when it is needed, else remembered
    /// in case Auto needs it later.
    fn relay_failure(&mut self, stage: Stage, detail: String, timed_out: bool) {
        if self.relay_required() {
            if timed_out {
                self.fail(HandshakeError::Timeout {
                    stage,
                    after: self.config.stage_cap,
                });
            } else {
                self.fail(HandshakeError::RelayUnavailable {
                    detail: format!("{stage}: {detail}"),
                });
            }
            return;
        }
        self.relay = RelayLeg::Failed(format!("{stage}: {detail}"));
        self.exchanges.retain(|e| !e.req.is_relay_leg());
        self.agent = None;
    }

    /// Punching (or the device's SYN) failed: fatal in Direct mode, the
    /// relay in Auto.
    fn direct_failed(&mut self, now: Instant, stage: Stage, after: Duration) {
        let candidates = self
            .punch
            .as_ref()
            .map(|p| {
                p.candidates
                    .iter()
                    .map(|(a, via, _)| format!("{via} {a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        self.punch = None;
        self.device = None;
        if self.config.mode == PathMode::Direct {
            return self.fail(match stage {
                Stage::Punch => HandshakeError::PunchFailed { candidates, after },
                _ => HandshakeError::Timeout { stage, after },
            });
        }
        if let RelayLeg::Failed(why) = &self.relay {
            let detail = format!("{stage} failed after {after:?} and the relay failed too ({why})");
            return self.fail(HandshakeError::RelayUnavailable { detail });
        }
        self.fallback = true;
        // Not a completed stage, but the one status line the user needs.
        self.events.push_back(HandshakeEvent::Stage {
            stage,
            elapsed: self.elapsed(now),
            detail: format!("{stage}: no answer within {after:?}; falling back to the relay"),
        });
    }

    /// Starts whatever has become possible, and finishes when a path is ready.
    fn advance(&mut self, now: Instant, unix: i64) {
        if self.done {
            return;
        }
        // A lease only once the cloud knows the serial: nothing is held
        // for a device that turns out not to exist.
        if self.relay == RelayLeg::Running && self.lease_wanted() {
            if let Some(relay) = self.relay_server {
                self.lease_requested = true;
                self.start_request(Req::RelayAgent, relay, now, unix);
            }
        }
        // The channel once the device is online and its salt is known.
        if self.probe_done
            && self.info_done
            && !self.channel_requested
            && self.config.mode != PathMode::Relay
        {
            self.channel_requested = true;
            let cloud = self.config.cloud;
            self.start_request(Req::P2pChannel, cloud, now, unix);
        }
        // relay-channel: with device auth after the channel answer, whose
        // nonce its auth block reuses (DH-P2P §4), or in relay mode after the
        // salt; without, as soon as the lease is started, so that the sign
        // is not held up by the channel.
        if self.relay == RelayLeg::Running && self.relay_started && !self.relay_channel_sent {
            let ready = match (self.config.mode, self.config.credentials.is_some()) {
                (PathMode::Relay, true) => self.info_done && self.probe_done,
                (_, true) => self.channel_answered,
                (_, false) => self.probe_done,
            };
            if ready {
                self.relay_channel_sent = true;
                let cloud = self.config.cloud;
                self.start_request(Req::RelayChannel, cloud, now, unix);
            }
        }
        // The device waits for the sign.
        let sign_ready = self.sign.is_some();
        if let Some(dev) = self.device.as_mut() {
            if dev.phase == DevicePhase::WaitSign && sign_ready {
                let sign = self.sign.clone().unwrap_or_default();
                dev.session.send(&Body::Auth { sign: &sign });
                dev.phase = DevicePhase::AuthSent;
                dev.phase_started = now;
                dev.deadline = Some(now + self.config.auth_reply_timeout);
            }
        }
        // Relay mode, or Auto after a failed punch: the agent session is it.
        let agent_open = self
            .agent
            .as_ref()
            .is_some_and(|a| a.phase == AgentPhase::Open);
        if (self.config.mode == PathMode::Relay || self.fallback) && agent_open {
            self.establish_relay(now);
        }
    }

    fn establish_direct(&mut self, now: Instant) {
        let Some(dev) = self.device.take() else {
            return;
        };
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
        let established = Established {
            path: EstablishedPath::Direct {
                device: dev.addr,
                via: dev.via,
            },
            sock: Sock::Device,
            peer: dev.addr,
            session: dev.session,
            lease: self.lease.clone(),
            device_info: self.device_info.clone(),
            local_addrs: self.local_addrs.iter().copied().map(Into::into).collect(),
            signed,
            timings: self.timings.clone(),
        };
        self.finish(established);
    }

    fn establish_relay(&mut self, now: Instant) {
        let Some(agent) = self.agent.take() else {
            return;
        };
        self.stage_done(
            now,
            Stage::Ready,
            format!("session ready (relay via agent {})", agent.addr),
        );
        let established = Established {
            path: EstablishedPath::Relay { agent: agent.addr },
            sock: Sock::Relay,
            peer: agent.addr,
            session: agent.session,
            lease: self.lease.clone(),
            device_info: self.device_info.clone(),
            local_addrs: self.local_addrs.iter().copied().map(Into::into).collect(),
            signed: false,
            timings: self.timings.clone(),
        };
        self.finish(established);
    }

    fn finish(&mut self, established: Established) {
        self.done = true;
        self.exchanges.clear();
        self.punch = None;
        self.device = None;
        self.agent = None;
        self.events
            .push_back(HandshakeEvent::Established(Box::new(established)));
    }

    // -----------------------------------------------------------------
    // Cloud requests

    fn corrected_unix(&self, unix: i64) -> i64 {
        unix.saturating_add(self.clock_offset)
    }

    fn sdk(&self) -> bool {
        self.config.profile.dialect == Dialect::Sdk
    }

    /// Legacy: a counter from 1 shared by both sockets; SDK: a random signed
    /// int32 per logical request (FIELD-NOTES §2.2).
    fn new_cseq(&mut self) -> i64 {
        if self.sdk() {
            i64::from(self.rng.gen::<i32>())
        } else {
            let c = self.next_cseq;
            self.next_cseq = self.next_cseq.wrapping_add(1);
            c
        }
    }

    /// A WSSE or device-auth nonce: [0, 2^31) legacy, signed int32 SDK.
    fn nonce_text(&mut self) -> String {
        if self.sdk() {
            self.rng.gen::<i32>().to_string()
        } else {
            self.rng.gen_range(0..=i32::MAX).to_string()
        }
    }

    fn start_request(&mut self, req: Req, to: SocketAddr, now: Instant, unix: i64) {
        let cseq = if req == Req::Warmup && self.sdk() {
            None
        } else {
            Some(self.new_cseq())
        };
        let wait = if req == Req::RelayChannel {
            self.config.relay_channel_wait
        } else {
            self.config.first_wait
        };
        self.exchanges.push(Exchange {
            req,
            to,
            cseq,
            create_date: self.corrected_unix(unix),
            next_send: now,
            wait,
            offset: self.clock_offset,
        });
        let index = self.exchanges.len() - 1;
        self.send_exchange(index, now, unix);
    }

    fn send_exchange(&mut self, index: usize, now: Instant, unix: i64) {
        let Some(exchange) = self.exchanges.get(index).cloned() else {
            return;
        };
        let payload = self.build(&exchange, unix);
        self.transmits.push_back(Transmit {
            sock: exchange.req.sock(),
            to: exchange.to,
            payload,
        });
        let max_wait = self.config.max_wait.max(exchange.wait);
        let offset = self.clock_offset;
        if let Some(e) = self.exchanges.get_mut(index) {
            e.next_send = now + e.wait;
            e.wait = (e.wait * 2).min(max_wait);
            e.offset = offset;
        }
    }

    fn path(&self, req: Req) -> String {
        let serial = self.config.serial.clone();
        let endpoint = match req {
            Req::Warmup if self.sdk() => Endpoint::OnlineStun,
            Req::Warmup => Endpoint::ProbeP2pSrv,
            Req::P2pSrv => Endpoint::OnlineP2pSrv { serial },
            Req::ProbeDevice => Endpoint::ProbeDevice { serial },
            Req::InfoDevice => Endpoint::InfoDevice { serial },
            Req::OnlineRelay => Endpoint::OnlineRelay,
            Req::RelayAgent => Endpoint::RelayAgent,
            Req::RelayStart => Endpoint::RelayStart {
                token: self
                    .lease
                    .as_ref()
                    .map(|l| l.token.clone())
                    .unwrap_or_default(),
            },
            Req::RelayChannel => Endpoint::RelayChannel { serial },
            Req::P2pChannel => Endpoint::P2pChannel { serial },
        };
        endpoint.path()
    }

    /// The request's bytes, with a fresh WSSE nonce and `Created` (and fresh
    /// device-auth crypto) on every send.
    fn build(&mut self, exchange: &Exchange, unix: i64) -> Vec<u8> {
        let style = self.config.profile.request_style();
        if exchange.req == Req::Warmup && self.sdk() {
            let tou = match &style {
                RequestStyle::Sdk(headers) => headers.tou_type.clone(),
                RequestStyle::Legacy { .. } => String::new(),
            };
            return build_sdk_stun_warmup(&tou).encode();
        }
        let now_unix = self.corrected_unix(unix);
        let created = if self.sdk() {
            format_created_offset(now_unix, 0)
        } else {
            format_created_utc(now_unix)
        }
        .unwrap_or_default();
        let nonce = self.nonce_text();
        let path = self.path(exchange.req);
        let body = self.body(exchange, now_unix);
        let request_id = (self.sdk() && exchange.req == Req::P2pChannel).then(|| {
            let bytes: [u8; 16] = self.rng.gen();
            hex::encode(bytes)
        });
        let profile = &self.config.profile;
        build_request(
            &style,
            &RequestParams {
                path: &path,
                body: &body,
                cseq: exchange.cseq,
                auth: Some(WsseAuth {
                    username: &profile.username,
                    key: &profile.key,
                    nonce: &nonce,
                    created: &created,
                }),
                request_id: request_id.as_deref(),
            },
        )
        .encode()
    }

    fn body(&mut self, exchange: &Exchange, now_unix: i64) -> String {
        let serial = self.config.serial.clone();
        match exchange.req {
            Req::RelayAgent if self.sdk() => relay_agent_body(&serial),
            Req::RelayStart => relay_start_body(self.sdk().then_some(serial.as_str())),
            Req::P2pChannel => self.p2p_channel_body(exchange.create_date),
            Req::RelayChannel => self.relay_channel_body(now_unix),
            _ => String::new(),
        }
    }

    /// Type 0, or with credentials the auth block over the encrypted
    /// `127.0.0.1:{port}` (DH-P2P §4; `RandSalt` left out for an empty salt,
    /// FIELD-NOTES §3.3).
    fn p2p_channel_body(&mut self, create_date: i64) -> String {
        let identify = Identify(self.identify);
        let (Some(key), Some((user, _))) =
            (self.device_key.clone(), self.config.credentials.clone())
        else {
            return p2p_channel_body(&identify, self.device_port);
        };
        let nonce = self.nonce_text();
        let local = format!("127.0.0.1:{}", self.device_port);
        let encrypted = crypto::encrypt_local_addr(&key, &nonce, &local);
        let date = create_date.to_string();
        let dev_auth = crypto::dev_auth(&key, &nonce, &date, &encrypted);
        let block = DeviceAuthBlock {
            create_date: &date,
            dev_auth: &dev_auth,
            nonce: &nonce,
            rand_salt: (!self.salt.is_empty()).then_some(self.salt.as_str()),
            user_name: &user,
        };
        p2p_channel_auth_body(&block, &identify, &encrypted)
    }

    /// `agentAddr`, with credentials after the auth block signed over an
    /// empty payload with the device's nonce (a fresh one in relay mode,
    /// where no channel answer gave one; FIELD-NOTES §3.2 has both).
    fn relay_channel_body(&mut self, now_unix: i64) -> String {
        let agent = self
            .agent_addr
            .as_ref()
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        let (Some(key), Some((user, _))) =
            (self.device_key.clone(), self.config.credentials.clone())
        else {
            return relay_channel_body(&agent);
        };
        let nonce = match self.device_nonce.clone() {
            Some(n) => n,
            None => self.nonce_text(),
        };
        let date = now_unix.to_string();
        let dev_auth = crypto::dev_auth(&key, &nonce, &date, "");
        let block = DeviceAuthBlock {
            create_date: &date,
            dev_auth: &dev_auth,
            nonce: &nonce,
            rand_salt: (!self.salt.is_empty()).then_some(self.salt.as_str()),
            user_name: &user,
        };
        relay_channel_auth_body(&block, &agent)
    }

    // -----------------------------------------------------------------
    // Cloud answers

    fn on_cloud(&mut self, now: Instant, unix: i64, sock: Sock, from: SocketAddr, bytes: &[u8]) {
        let Ok(Message::Response(response)) = cloud::decode(bytes) else {
            self.skipped += 1;
            return;
        };
        if response.cseq().is_some() {
            self.servers_echo_cseq = true;
        }
        let Some(index) = self.match_exchange(sock, from, &response) else {
            // A duplicate, an answer to a request already answered, or noise.
            self.skipped += 1;
            return;
        };
        self.on_answer(now, unix, index, from, &response);
    }

    /// Which outstanding request an answer belongs to: by CSeq where the
    /// server echoes it; the agent's notification (no CSeq, a code below
    /// 300, from the agent) to relay-channel; else the request this socket
    /// sent to that address.
    fn match_exchange(&self, sock: Sock, from: SocketAddr, response: &Response) -> Option<usize> {
        let on_sock = |e: &&Exchange| e.req.sock() == sock;
        if let Some(cseq) = response.cseq() {
            return self
                .exchanges
                .iter()
                .position(|e| e.req.sock() == sock && e.cseq == Some(cseq));
        }
        let from_agent = self.agent_addr.as_ref().is_some_and(|(a, _)| *a == from);
        if from_agent && response.code < 300 {
            if let Some(i) = self
                .exchanges
                .iter()
                .position(|e| e.req == Req::RelayChannel && on_sock(&e))
            {
                return Some(i);
            }
        }
        self.exchanges.iter().position(|e| {
            on_sock(&e)
                && e.to == from
                && e.req != Req::RelayChannel
                && (e.cseq.is_none() || !self.servers_echo_cseq)
        })
    }

    fn on_answer(
        &mut self,
        now: Instant,
        unix: i64,
        index: usize,
        from: SocketAddr,
        response: &Response,
    ) {
        let Some(exchange) = self.exchanges.get(index).cloned() else {
            return;
        };
        let code = response.code;
        if code == 401 {
            return self.on_unauthorized(now, unix, index, response);
        }
        if (100..200).contains(&code) {
            // p2p-channel's `100 Trying`: the channel is being prepared and
            // the 200 follows once the device answered the cloud. Asking
            // again is only for a lost 200, so it waits twice as long.
            if exchange.req == Req::P2pChannel {
                let wait = self.config.max_wait * 2;
                if let Some(e) = self.exchanges.get_mut(index) {
                    e.next_send = now + wait;
                }
            }
            return;
        }
        if exchange.req == Req::RelayChannel {
            let from_agent = self.agent_addr.as_ref().is_some_and(|(a, _)| *a == from);
            if from_agent && code < 300 {
                self.exchanges.remove(index);
                return self.on_agent_notified(now, response);
            }
            if code >= 400 {
                self.exchanges.remove(index);
                let detail = status_text(response);
                return self.relay_failure(Stage::RelayChannel, detail, false);
            }
            // Main answered relay-channel after all: keep waiting for the agent.
            return;
        }
        self.exchanges.remove(index);
        let xml = response.xml_body().ok().flatten();
        match exchange.req {
            Req::Warmup => self.on_warmup(now, unix, response),
            Req::P2pSrv => self.on_p2psrv(now, unix, response, xml),
            Req::ProbeDevice => self.on_probe_device(now, response),
            Req::InfoDevice => self.on_info(now, response, xml),
            Req::OnlineRelay => self.on_online_relay(now, response, xml),
            Req::RelayAgent => self.on_relay_agent(now, unix, response, xml),
            Req::RelayStart => self.on_relay_start(now, response),
            Req::P2pChannel => self.on_channel(now, response, xml),
            Req::RelayChannel => {}
        }
    }

    /// 401: learn the server's clock from `<Time>` (or `Date`), then retry
    /// under a new CSeq, at most `max_401_retries` times (FIELD-NOTES §2.5).
    /// A 401 to a request built before the latest correction is only
    /// retried: the requests in flight all share the one clock error.
    fn on_unauthorized(&mut self, now: Instant, unix: i64, index: usize, response: &Response) {
        let stale = self
            .exchanges
            .get(index)
            .is_some_and(|e| e.offset != self.clock_offset);
        let xml = response.xml_body().ok().flatten();
        let body_time = xml
            .as_ref()
            .and_then(|x| x.get("Time"))
            .and_then(|t| t.trim().parse::<i64>().ok());
        let server_time =
            body_time.or_else(|| response.header("Date").and_then(|d| parse_created(d).ok()));
        if stale {
            return self.retry_after_401(now, unix, index);
        }
        if let Some(t) = server_time {
            self.clock_offset = t.saturating_sub(unix);
        }
        self.unauthorized += 1;
        if self.unauthorized > self.config.max_401_retries {
            let error = xml
                .as_ref()
                .and_then(|x| ErrorBody::from_xml(x).error)
                .unwrap_or_else(|| response.reason.clone());
            return self.fail(HandshakeError::Unauthorized {
                retries: self.config.max_401_retries,
                offset_secs: self.clock_offset,
                error,
            });
        }
        self.retry_after_401(now, unix, index);
    }

    fn retry_after_401(&mut self, now: Instant, unix: i64, index: usize) {
        let had_cseq = self.exchanges.get(index).is_some_and(|e| e.cseq.is_some());
        let cseq = if had_cseq {
            Some(self.new_cseq())
        } else {
            None
        };
        let first_wait = self.config.first_wait;
        let create_date = self.corrected_unix(unix);
        if let Some(e) = self.exchanges.get_mut(index) {
            e.cseq = cseq;
            e.wait = if e.req == Req::RelayChannel {
                e.wait
            } else {
                first_wait
            };
            e.create_date = create_date;
        }
        self.send_exchange(index, now, unix);
    }

    fn on_warmup(&mut self, now: Instant, unix: i64, response: &Response) {
        if response.code >= 400 {
            return self.fail(error_for(Stage::Warmup, response, &self.config.serial));
        }
        let detail = format!("cloud {} answered {}", self.config.cloud, response.code);
        self.stage_done(now, Stage::Warmup, detail);
        let cloud = self.config.cloud;
        self.start_request(Req::P2pSrv, cloud, now, unix);
    }

    fn on_p2psrv(&mut self, now: Instant, unix: i64, response: &Response, xml: Option<XmlBody>) {
        if response.code >= 300 {
            return self.fail(error_for(Stage::P2pServer, response, &self.config.serial));
        }
        let info = xml.as_ref().map(P2pSrvInfo::from_xml).unwrap_or_default();
        let us = match address(Stage::P2pServer, "US", info.us.as_deref()) {
            Ok((addr, _)) => addr,
            Err(e) => return self.fail(e),
        };
        self.p2psrv = Some(us);
        self.stage_done(now, Stage::P2pServer, format!("p2psrv US={us}"));
        self.start_request(Req::ProbeDevice, us, now, unix);
        self.start_request(Req::InfoDevice, us, now, unix);
    }

    fn on_probe_device(&mut self, now: Instant, response: &Response) {
        if response.code >= 300 {
            return self.fail(error_for(Stage::DeviceProbe, response, &self.config.serial));
        }
        let serial = self.config.serial.clone();
        self.probe_done = true;
        self.stage_done(now, Stage::DeviceProbe, format!("device {serial} online"));
    }

    /// The salt and ports; an empty or undecryptable `Info` means no salt
    /// (FIELD-NOTES §3.1 item 5, §3.3), never an error.
    fn on_info(&mut self, now: Instant, response: &Response, xml: Option<XmlBody>) {
        if response.code == 404 {
            return self.fail(error_for(Stage::DeviceInfo, response, &self.config.serial));
        }
        let answer = xml
            .as_ref()
            .map(InfoDeviceAnswer::from_xml)
            .unwrap_or_default();
        let info = answer
            .info
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .and_then(|t| crypto::decrypt_info(t).ok());
        let detail = match &info {
            Some(i) => format!(
                "device info: rtspport {}, {}",
                i.rtspport
                    .map_or_else(|| "not given (554)".to_owned(), |p| p.to_string()),
                if i.salt().is_empty() {
                    "no salt"
                } else {
                    "salt present"
                }
            ),
            None if response.code >= 300 => {
                format!("device info: {}; no salt", status_text(response))
            }
            None => "device info: no usable Info; no salt".to_owned(),
        };
        self.salt = info
            .as_ref()
            .map(|i| i.salt().to_owned())
            .unwrap_or_default();
        self.device_info = info;
        if let Some((user, password)) = &self.config.credentials {
            self.device_key = Some(crypto::device_key(user, &self.salt, password));
        }
        self.info_done = true;
        self.stage_done(now, Stage::DeviceInfo, detail);
    }

    fn on_online_relay(&mut self, now: Instant, response: &Response, xml: Option<XmlBody>) {
        if response.code >= 300 {
            return self.relay_failure(Stage::RelayServer, status_text(response), false);
        }
        let info = xml.as_ref().map(RelayInfo::from_xml).unwrap_or_default();
        let relay = match address(Stage::RelayServer, "Address", info.address.as_deref()) {
            Ok((addr, _)) => addr,
            Err(e) => return self.relay_failure(Stage::RelayServer, e.to_string(), false),
        };
        self.relay_server = Some(relay);
        self.stage_done(now, Stage::RelayServer, format!("relay server {relay}"));
    }

    fn on_relay_agent(
        &mut self,
        now: Instant,
        unix: i64,
        response: &Response,
        xml: Option<XmlBody>,
    ) {
        if response.code >= 300 {
            return self.relay_failure(Stage::RelayLease, status_text(response), false);
        }
        let info = xml.as_ref().map(AgentInfo::from_xml).unwrap_or_default();
        let agent = match address(Stage::RelayLease, "Agent", info.agent.as_deref()) {
            Ok(a) => a,
            Err(e) => return self.relay_failure(Stage::RelayLease, e.to_string(), false),
        };
        let token = info.token.unwrap_or_default();
        if token.is_empty() || token.contains(['/', ' ']) {
            let detail = "the answer has no usable <Token>".to_owned();
            return self.relay_failure(Stage::RelayLease, detail, false);
        }
        let Some(relay) = self.relay_server else {
            return;
        };
        self.lease = Some(Lease { relay, token });
        self.agent_addr = Some(agent.clone());
        self.stage_done(
            now,
            Stage::RelayLease,
            format!("relay lease: agent {}", agent.0),
        );
        self.start_request(Req::RelayStart, agent.0, now, unix);
    }

    fn on_relay_start(&mut self, now: Instant, response: &Response) {
        if response.code >= 300 {
            return self.relay_failure(Stage::RelayStart, status_text(response), false);
        }
        self.relay_started = true;
        self.stage_done(
            now,
            Stage::RelayStart,
            "the agent took the lease".to_owned(),
        );
    }

    fn on_agent_notified(&mut self, now: Instant, response: &Response) {
        let Some((addr, _)) = self.agent_addr.clone() else {
            return;
        };
        self.stage_done(
            now,
            Stage::RelayChannel,
            format!("device joined the agent ({})", status_text(response)),
        );
        let mut session = PtcpSession::new(self.config.ptcp.clone(), now);
        session.send(&Body::Syn);
        self.agent = Some(AgentLeg {
            addr,
            session,
            phase: AgentPhase::Syn,
        });
    }

    fn on_channel(&mut self, now: Instant, response: &Response, xml: Option<XmlBody>) {
        let serial = self.config.serial.clone();
        match response.code {
            200..=299 => {}
            403 => {
                let error = xml
                    .as_ref()
                    .and_then(|x| ErrorBody::from_xml(x).error)
                    .unwrap_or_default();
                let credentials_given = self.config.credentials.is_some();
                return self.fail(if error == "DevPwd_InvalidSalt" && !credentials_given {
                    HandshakeError::AuthRequired { serial }
                } else if error.starts_with("DevPwd_") {
                    HandshakeError::BadCredentials {
                        serial,
                        error,
                        credentials_given,
                        dialect: self.config.profile.dialect,
                    }
                } else {
                    error_for(Stage::Channel, response, &serial)
                });
            }
            _ => return self.fail(error_for(Stage::Channel, response, &serial)),
        }
        let answer = xml
            .as_ref()
            .map(ChannelAnswer::from_xml)
            .unwrap_or_default();
        let public = match address(Stage::Channel, "PubAddr", answer.pub_addr.as_deref()) {
            Ok((a, _)) => a,
            Err(e) => return self.fail(e),
        };
        let SocketAddr::V4(public_v4) = public else {
            return;
        };
        self.device_nonce = answer.nonce.clone();
        let local_text = answer.local_addr.clone().unwrap_or_default();
        let mut local_note = String::new();
        let plain_local = match (&self.device_key, &answer.nonce) {
            (Some(key), Some(nonce)) => match crypto::decrypt_local_addr(key, nonce, &local_text) {
                Ok(text) => text,
                Err(_) => {
                    local_note = " (undecryptable)".to_owned();
                    String::new()
                }
            },
            _ => local_text,
        };
        let complemented = answer.ip_encrpt.as_deref() == Some("true");
        self.local_addrs = local_candidates(&plain_local, complemented);
        self.channel_answered = true;
        let lan = self
            .local_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.stage_done(
            now,
            Stage::Channel,
            format!(
                "channel: PubAddr {public} LocalAddr {}{local_note}{}",
                if lan.is_empty() { "-" } else { &lan },
                if self.device_nonce.is_some() {
                    ", authenticated"
                } else {
                    ""
                }
            ),
        );
        self.start_punch(now, public_v4);
    }

    // -----------------------------------------------------------------
    // Punching

    fn start_punch(&mut self, now: Instant, public: SocketAddrV4) {
        let mut candidates = vec![(public, Candidate::Public, self.rng.gen())];
        for lan in self.local_addrs.clone() {
            if !candidates.iter().any(|(a, _, _)| *a == lan) {
                candidates.push((lan, Candidate::Lan, self.rng.gen()));
            }
        }
        self.candidates = candidates.iter().map(|(a, via, _)| (*a, *via)).collect();
        self.punch = Some(PunchState {
            candidates,
            started: now,
            next_send: now,
            deadline: now + self.config.punch_timeout,
        });
        self.send_binding_requests(now);
        // Device requests that came before the 200 count now.
        for (from, message) in std::mem::take(&mut self.early_punches) {
            self.on_punch_message(now, from, message);
            if self.punch.is_none() {
                break;
            }
        }
    }

    fn send_binding_requests(&mut self, now: Instant) {
        let Some(p) = self.punch.as_mut() else {
            return;
        };
        for (addr, _, txid) in &p.candidates {
            let request = punch::binding_request(punch::MAGIC_COOKIE, *txid, self.identify, *addr);
            self.transmits.push_back(Transmit {
                sock: Sock::Device,
                to: SocketAddr::V4(*addr),
                payload: request.encode(),
            });
        }
        p.next_send = now + self.config.punch_interval;
    }

    fn on_punch(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(message) = punch::decode(bytes) else {
            self.skipped += 1;
            return;
        };
        if self.punch.is_none() && self.device.is_none() {
            // Before the channel answer (FIELD-NOTES §2.3): keep requests.
            if message.message_type == MessageType::BindingRequest
                && self.config.mode != PathMode::Relay
                && !self.fallback
                && self.early_punches.len() < MAX_EARLY_PUNCHES
            {
                self.early_punches.push((from, message));
            } else {
                self.skipped += 1;
            }
            return;
        }
        self.on_punch_message(now, from, message);
    }

    fn candidate_of(&self, from: SocketAddr) -> Option<Candidate> {
        self.candidates
            .iter()
            .find(|(a, _)| SocketAddr::V4(*a) == from)
            .map(|(_, via)| *via)
    }

    /// Answers every device Binding Request; the first candidate that sends
    /// a request or a success wins the punch (FIELD-NOTES §5.2).
    fn on_punch_message(&mut self, now: Instant, from: SocketAddr, message: PunchMessage) {
        let (Some(via), SocketAddr::V4(from_v4)) = (self.candidate_of(from), from) else {
            self.skipped += 1;
            return;
        };
        match message.message_type {
            MessageType::BindingRequest => {
                let reply = punch::reply_to(&message, self.identify, from_v4);
                self.transmits.push_back(Transmit {
                    sock: Sock::Device,
                    to: from,
                    payload: reply.encode(),
                });
                if self.device.is_none() {
                    self.win(now, from, via, &message);
                }
            }
            MessageType::BindingSuccess if self.device.is_none() => {
                let ours = message.identify().is_none_or(|i| i == self.identify);
                if ours {
                    self.win(now, from, via, &message);
                } else {
                    self.skipped += 1;
                }
            }
            _ => self.skipped += 1,
        }
    }

    fn win(&mut self, now: Instant, from: SocketAddr, via: Candidate, message: &PunchMessage) {
        let Some(p) = self.punch.take() else {
            return;
        };
        let ms = now.saturating_duration_since(p.started).as_millis();
        self.stage_done(
            now,
            Stage::Punch,
            format!("punch: {via} {from} answered in {ms} ms"),
        );
        // One clean confirm with the completing exchange's IDs (BJ, §5.2).
        let confirm = punch::confirm(message.cookie, message.transaction_id, self.identify);
        self.transmits.push_back(Transmit {
            sock: Sock::Device,
            to: from,
            payload: confirm.encode(),
        });
        let mut session = PtcpSession::new(self.config.ptcp.clone(), now);
        session.send(&Body::Syn);
        self.device = Some(DeviceLeg {
            addr: from,
            via,
            session,
            phase: DevicePhase::Syn,
            deadline: Some(now + self.config.punch_timeout),
            phase_started: now,
            peer_recv_max: 0,
            regressions: 0,
            restarts: 0,
        });
    }

    // -----------------------------------------------------------------
    // PTCP sessions

    fn agent_events(&mut self, now: Instant) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let mut bodies = Vec::new();
        let mut dead = false;
        while let Some(event) = agent.session.poll_event() {
            match event {
                PtcpEvent::Body(b) => bodies.push(b),
                PtcpEvent::Dead(_) => dead = true,
                PtcpEvent::Acked { .. } | PtcpEvent::Malformed(_) => {}
            }
        }
        for body in bodies {
            self.agent_body(now, &body);
        }
        if dead && self.agent.is_some() {
            self.relay_failure(
                Stage::AgentSession,
                "the agent session died".to_owned(),
                false,
            );
        }
    }

    fn agent_body(&mut self, now: Instant, bytes: &[u8]) {
        let want_sign = self.config.use_sign
            && self.config.mode != PathMode::Relay
            && !self.fallback
            && self.sign.is_none();
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        match agent.phase {
            AgentPhase::Syn if matches!(Body::decode(bytes), Ok(Body::Syn)) => {
                let addr = agent.addr;
                if want_sign {
                    agent.session.send(&Body::SignRequest);
                    agent.phase = AgentPhase::SignRequested;
                } else {
                    agent.phase = AgentPhase::Open;
                }
                self.stage_done(
                    now,
                    Stage::AgentSession,
                    format!("agent session {addr} open"),
                );
            }
            // The sign: body[12..] of the first reply that carries data,
            // whatever its type (FIELD-NOTES §5.3).
            AgentPhase::SignRequested if bytes.len() > 12 => {
                let sign = bytes.get(12..).unwrap_or_default().to_vec();
                agent.phase = AgentPhase::Open;
                let detail = format!("sign ({} bytes)", sign.len());
                self.sign = Some(sign);
                self.stage_done(now, Stage::Sign, detail);
            }
            _ => {}
        }
    }

    /// Feeds a device packet to the session, watching for a device that
    /// restarted its session: one whose acknowledgements fall back below
    /// what it already acknowledged, again and again (the emulated device
    /// restarts on a late duplicate of our SYN). Our later bodies would then
    /// wait out of order forever, so the session is begun again.
    fn device_packet(&mut self, now: Instant, bytes: &[u8]) {
        let Some(dev) = self.device.as_mut() else {
            return;
        };
        if let Ok(header) = crate::codec::ptcp::Header::decode(bytes) {
            if seq_lt(dev.peer_recv_max, header.recv) {
                dev.peer_recv_max = header.recv;
            } else if seq_lt(header.recv, dev.peer_recv_max)
                && matches!(dev.phase, DevicePhase::AuthSent | DevicePhase::ConfirmSent)
            {
                dev.regressions += 1;
            }
        }
        if dev.regressions >= RESTART_EVIDENCE {
            return self.restart_device_session(now);
        }
        dev.session.handle_datagram(now, bytes);
        self.device_events(now);
    }

    fn restart_device_session(&mut self, now: Instant) {
        let config = self.config.ptcp.clone();
        let syn_wait = self.config.punch_timeout;
        let Some(dev) = self.device.as_mut() else {
            return;
        };
        if dev.restarts >= MAX_DEVICE_RESTARTS {
            let after = now.saturating_duration_since(dev.phase_started);
            return self.fail(HandshakeError::Timeout {
                stage: Stage::DeviceAuth,
                after,
            });
        }
        dev.restarts += 1;
        dev.session = PtcpSession::new(config, now);
        dev.session.send(&Body::Syn);
        dev.phase = DevicePhase::Syn;
        dev.phase_started = now;
        dev.deadline = Some(now + syn_wait);
        dev.peer_recv_max = 0;
        dev.regressions = 0;
    }

    fn device_events(&mut self, now: Instant) {
        let Some(dev) = self.device.as_mut() else {
            return;
        };
        let mut bodies = Vec::new();
        let mut dead = false;
        while let Some(event) = dev.session.poll_event() {
            match event {
                PtcpEvent::Body(b) => bodies.push(b),
                PtcpEvent::Dead(_) => dead = true,
                PtcpEvent::Acked { .. } | PtcpEvent::Malformed(_) => {}
            }
        }
        for body in bodies {
            self.device_body(now, &body);
            if self.device.is_none() {
                return;
            }
        }
        if dead {
            let after = self.device.as_ref().map_or(Duration::ZERO, |d| {
                now.saturating_duration_since(d.phase_started)
            });
            return self.direct_failed(now, Stage::DeviceSession, after);
        }
        // 0x1B acknowledged: the device has taken the whole exchange.
        let confirmed = self.device.as_ref().is_some_and(|d| {
            d.phase == DevicePhase::ConfirmSent
                && d.session.unacked() == 0
                && d.session.queued() == 0
        });
        if confirmed {
            self.stage_done(
                now,
                Stage::DeviceAuth,
                "device accepted the sign".to_owned(),
            );
            self.establish_direct(now);
        }
    }

    fn device_body(&mut self, now: Instant, bytes: &[u8]) {
        let use_sign = self.config.use_sign;
        let auth_timeout = self.config.auth_reply_timeout;
        let Some(dev) = self.device.as_mut() else {
            return;
        };
        match (dev.phase, Body::decode(bytes)) {
            (DevicePhase::Syn, Ok(Body::Syn)) => {
                let ms = now.saturating_duration_since(dev.phase_started).as_millis();
                dev.phase = DevicePhase::WaitSign;
                dev.deadline = None;
                dev.phase_started = now;
                let again = if dev.restarts > 0 {
                    " (the device had restarted its session)"
                } else {
                    ""
                };
                self.stage_done(
                    now,
                    Stage::DeviceSession,
                    format!("device session: SYN answered in {ms} ms{again}"),
                );
                if !use_sign {
                    self.establish_direct(now);
                }
            }
            (DevicePhase::AuthSent, Ok(Body::AuthReply { .. })) => {
                dev.session.send(&Body::AuthConfirm);
                dev.phase = DevicePhase::ConfirmSent;
                dev.phase_started = now;
                dev.deadline = Some(now + auth_timeout);
            }
            _ => {}
        }
    }
}

/// `host:port` of a cloud answer as a socket address. Names are not
/// resolved here (that needs I/O); every known cloud answers with IPv4.
fn address(
    stage: Stage,
    element: &str,
    text: Option<&str>,
) -> Result<(SocketAddr, String), HandshakeError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(HandshakeError::Protocol {
            stage,
            detail: format!("the answer has no <{element}>"),
        });
    };
    let parsed = text
        .parse::<HostPort>()
        .ok()
        .and_then(|hp| hp.to_socket_addr_v4());
    match parsed {
        Some(addr) if addr.port() != 0 => Ok((SocketAddr::V4(addr), text.to_owned())),
        _ => Err(HandshakeError::Protocol {
            stage,
            detail: format!("<{element}> is {text:?}, not an IPv4 ip:port"),
        }),
    }
}

fn status_text(response: &Response) -> String {
    let error = response
        .xml_body()
        .ok()
        .flatten()
        .and_then(|x| ErrorBody::from_xml(&x).error);
    match error {
        Some(e) => format!("{} {} ({e})", response.code, response.reason),
        None => format!("{} {}", response.code, response.reason),
    }
}

/// The error for a failed answer outside the special cases.
fn error_for(stage: Stage, response: &Response, serial: &str) -> HandshakeError {
    match response.code {
        404 => HandshakeError::NotFound {
            serial: serial.to_owned(),
            stage,
        },
        403 => HandshakeError::Forbidden {
            stage,
            error: status_text(response),
        },
        _ => HandshakeError::Protocol {
            stage,
            detail: format!("unexpected answer {}", status_text(response)),
        },
    }
}
