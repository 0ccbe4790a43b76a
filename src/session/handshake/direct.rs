//! The direct leg: p2p-channel's answer (`PubAddr`, `LocalAddr`, the
//! device's nonce), inverted STUN to every candidate at once (FIELD-NOTES
//! §5.2), then the device PTCP session: SYN, and with sign 0x19 → 0x1A →
//! 0x1B → ACK (FIELD-NOTES §5.3).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::codec::cloud::{ChannelAnswer, ErrorBody, Response, XmlBody};
use crate::codec::crypto;
use crate::codec::ptcp::{Body, Header};
use crate::codec::punch::{self, MessageType, PunchMessage};
use crate::session::ptcp::{seq_lt, PtcpSession};

use super::candidates::local_candidates;
use super::lookup::{address, error_for};
use super::timers::Timer;
use super::types::{Candidate, HandshakeError, PathMode, Sock, Stage, Transmit};
use super::{ChannelFacts, Handshake, RelayLeg};

/// Times the device session is begun again after the device restarted its
/// side (see [`Handshake::device_packet`]).
const MAX_DEVICE_RESTARTS: u32 = 3;
/// Packets acknowledging less than the device had already acknowledged
/// that mean it restarted its session rather than that packets were reordered.
const RESTART_EVIDENCE: u32 = 3;

/// Device binding requests that arrive before the channel answer and are
/// kept to be answered once the candidates are known (FIELD-NOTES §2.3).
const MAX_EARLY_PUNCHES: usize = 16;

/// Where the direct leg is.
#[derive(Debug)]
pub(super) enum DirectLeg {
    /// Relay mode: no p2p-channel, no punching.
    Off,
    /// Waiting for `/probe/device` and `/info/device`.
    AwaitLookup,
    /// p2p-channel asked.
    Channel,
    Punching(PunchState),
    Session(Box<DeviceLeg>),
    /// Auto gave up on direct; the agent session is the path.
    FellBack,
}

#[derive(Debug)]
pub(super) struct PunchState {
    /// Public first, then LAN; one transaction ID each.
    candidates: Vec<(SocketAddrV4, Candidate, punch::TransactionId)>,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DevicePhase {
    Syn,
    WaitSign,
    AuthSent,
    ConfirmSent,
}

#[derive(Debug)]
pub(super) struct DeviceLeg {
    pub addr: SocketAddr,
    pub via: Candidate,
    pub session: PtcpSession,
    pub phase: DevicePhase,
    /// When the current phase began; its deadline is [`Timer::DevicePhase`].
    phase_started: Instant,
    /// The most the device has acknowledged, and how many packets since
    /// acknowledged less.
    peer_recv_max: u32,
    regressions: u32,
    restarts: u32,
}

impl Handshake {
    pub(super) fn device(&self) -> Option<&DeviceLeg> {
        match &self.direct {
            DirectLeg::Session(dev) => Some(dev),
            _ => None,
        }
    }

    pub(super) fn device_mut(&mut self) -> Option<&mut DeviceLeg> {
        match &mut self.direct {
            DirectLeg::Session(dev) => Some(dev),
            _ => None,
        }
    }

    /// Auto can still finish on the relay.
    pub(super) fn may_fall_back(&self) -> bool {
        self.config.mode == PathMode::Auto
            && self.relay_running()
            && !matches!(self.direct, DirectLeg::FellBack)
    }

    /// Sends p2p-channel once the device is online and its salt is known.
    pub(super) fn advance_direct(&mut self, now: Instant, unix: i64) {
        if matches!(self.direct, DirectLeg::AwaitLookup)
            && self.facts.online
            && self.facts.salt.is_some()
        {
            self.direct = DirectLeg::Channel;
            let cloud = self.config.cloud;
            self.start_request(super::cloud::Req::P2pChannel, cloud, now, unix);
        }
        // The device waits for the sign.
        let Some(sign) = self.sign.clone() else {
            return;
        };
        let auth_wait = self.config.auth_reply_timeout;
        let Some(dev) = self.device_mut() else {
            return;
        };
        if dev.phase == DevicePhase::WaitSign {
            dev.session.send(&Body::Auth { sign: &sign });
            dev.phase = DevicePhase::AuthSent;
            dev.phase_started = now;
            self.timers.set(Timer::DevicePhase, now + auth_wait);
        }
    }

    pub(super) fn on_channel(&mut self, now: Instant, response: &Response, xml: Option<XmlBody>) {
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
                        error: super::peer_text(&error),
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
        let local_text = answer.local_addr.clone().unwrap_or_default();
        let mut local_note = String::new();
        let plain_local = match (&self.facts.key, &answer.nonce) {
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
        let local_addrs = local_candidates(&plain_local, complemented);
        let lan = local_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let authenticated = answer.nonce.is_some();
        self.facts.channel = Some(ChannelFacts {
            nonce: answer.nonce,
            local_addrs,
        });
        self.stage_done(
            now,
            Stage::Channel,
            format!(
                "channel: PubAddr {public} LocalAddr {}{local_note}{}",
                if lan.is_empty() { "-" } else { &lan },
                if authenticated { ", authenticated" } else { "" }
            ),
        );
        // Auto may have fallen back already; the channel then only serves
        // relay-channel's auth.
        if matches!(self.direct, DirectLeg::Channel) {
            self.start_punch(now, public_v4);
        }
    }

    // -----------------------------------------------------------------
    // Punching

    fn start_punch(&mut self, now: Instant, public: SocketAddrV4) {
        let mut candidates = vec![(public, Candidate::Public, self.rng.gen())];
        let lan = self
            .facts
            .channel
            .as_ref()
            .map(|c| c.local_addrs.clone())
            .unwrap_or_default();
        for lan in lan {
            if !candidates.iter().any(|(a, _, _)| *a == lan) {
                candidates.push((lan, Candidate::Lan, self.rng.gen()));
            }
        }
        self.candidates = candidates.iter().map(|(a, via, _)| (*a, *via)).collect();
        self.direct = DirectLeg::Punching(PunchState {
            candidates,
            started: now,
        });
        self.timers
            .set(Timer::PunchDeadline, now + self.config.punch_timeout);
        self.send_binding_requests(now);
        // Device requests that came before the 200 count now.
        for (from, message) in std::mem::take(&mut self.early_punches) {
            self.on_punch_message(now, from, message);
            if !matches!(self.direct, DirectLeg::Punching(_)) {
                break;
            }
        }
    }

    pub(super) fn send_binding_requests(&mut self, now: Instant) {
        let DirectLeg::Punching(p) = &self.direct else {
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
        self.timers
            .set(Timer::PunchResend, now + self.config.punch_interval);
    }

    pub(super) fn on_punch(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(message) = punch::decode(bytes) else {
            self.skipped += 1;
            return;
        };
        match self.direct {
            DirectLeg::Punching(_) | DirectLeg::Session(_) => {
                self.on_punch_message(now, from, message)
            }
            // Before the channel answer (FIELD-NOTES §2.3): keep requests.
            DirectLeg::AwaitLookup | DirectLeg::Channel
                if message.message_type == MessageType::BindingRequest
                    && self.early_punches.len() < MAX_EARLY_PUNCHES =>
            {
                self.early_punches.push((from, message));
            }
            _ => self.skipped += 1,
        }
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
        let punching = matches!(self.direct, DirectLeg::Punching(_));
        match message.message_type {
            MessageType::BindingRequest => {
                let reply = punch::reply_to(&message, self.identify, from_v4);
                self.transmits.push_back(Transmit {
                    sock: Sock::Device,
                    to: from,
                    payload: reply.encode(),
                });
                if punching {
                    self.win(now, from, via, &message);
                }
            }
            MessageType::BindingSuccess if punching => {
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
        let DirectLeg::Punching(p) = &self.direct else {
            return;
        };
        let ms = now.saturating_duration_since(p.started).as_millis();
        self.timers.stop(Timer::PunchDeadline);
        self.timers.stop(Timer::PunchResend);
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
        self.direct = DirectLeg::Session(Box::new(DeviceLeg {
            addr: from,
            via,
            session,
            phase: DevicePhase::Syn,
            phase_started: now,
            peer_recv_max: 0,
            regressions: 0,
            restarts: 0,
        }));
        self.timers
            .set(Timer::DevicePhase, now + self.config.punch_timeout);
    }

    /// Punching gave up.
    pub(super) fn punch_expired(&mut self, now: Instant) {
        let after = match &self.direct {
            DirectLeg::Punching(p) => now.saturating_duration_since(p.started),
            _ => return,
        };
        self.direct_failed(now, Stage::Punch, after);
    }

    // -----------------------------------------------------------------
    // The device session

    /// Feeds a device packet to the session, watching for a device that
    /// restarted its session: one whose acknowledgements fall back below
    /// what it already acknowledged, again and again (the emulated device
    /// restarts on a late duplicate of our SYN). Our later bodies would then
    /// wait out of order forever, so the session is begun again.
    pub(super) fn device_packet(&mut self, now: Instant, bytes: &[u8]) {
        let Some(dev) = self.device_mut() else {
            return;
        };
        if let Ok(header) = Header::decode(bytes) {
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
        self.leg_events(now, super::Leg::Device);
    }

    fn restart_device_session(&mut self, now: Instant) {
        let config = self.config.ptcp.clone();
        let syn_wait = self.config.punch_timeout;
        let Some(dev) = self.device_mut() else {
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
        dev.peer_recv_max = 0;
        dev.regressions = 0;
        self.timers.set(Timer::DevicePhase, now + syn_wait);
    }

    /// The current device phase waited long enough.
    pub(super) fn device_phase_expired(&mut self, now: Instant) {
        let Some(dev) = self.device() else {
            return;
        };
        let after = now.saturating_duration_since(dev.phase_started);
        match dev.phase {
            DevicePhase::Syn => self.direct_failed(now, Stage::DeviceSession, after),
            DevicePhase::AuthSent => self.fail(HandshakeError::NoAuthReply { after }),
            // 0x1A came but 0x1B is never acknowledged: the device lost our
            // session; begin it again (bounded).
            DevicePhase::ConfirmSent => self.restart_device_session(now),
            DevicePhase::WaitSign => {}
        }
    }

    /// The device session died.
    pub(super) fn device_died(&mut self, now: Instant) {
        let after = self.device().map_or(Duration::ZERO, |d| {
            now.saturating_duration_since(d.phase_started)
        });
        self.direct_failed(now, Stage::DeviceSession, after);
    }

    /// 0x1B acknowledged: the device has taken the whole exchange.
    pub(super) fn check_device_confirmed(&mut self, now: Instant) {
        let confirmed = self.device().is_some_and(|d| {
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

    pub(super) fn device_body(&mut self, now: Instant, bytes: &[u8]) {
        let use_sign = self.config.use_sign;
        let auth_timeout = self.config.auth_reply_timeout;
        let Some(dev) = self.device_mut() else {
            return;
        };
        match (dev.phase, Body::decode(bytes)) {
            (DevicePhase::Syn, Ok(Body::Syn)) => {
                let ms = now.saturating_duration_since(dev.phase_started).as_millis();
                dev.phase = DevicePhase::WaitSign;
                dev.phase_started = now;
                let again = if dev.restarts > 0 {
                    " (the device had restarted its session)"
                } else {
                    ""
                };
                self.timers.stop(Timer::DevicePhase);
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
                self.timers.set(Timer::DevicePhase, now + auth_timeout);
            }
            _ => {}
        }
    }

    /// Punching (or the device's SYN) failed: fatal in Direct mode, the
    /// relay in Auto.
    fn direct_failed(&mut self, now: Instant, stage: Stage, after: Duration) {
        let candidates = match &self.direct {
            DirectLeg::Punching(p) => p
                .candidates
                .iter()
                .map(|(a, via, _)| format!("{via} {a}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        if self.config.mode == PathMode::Direct {
            return self.fail(match stage {
                Stage::Punch => HandshakeError::PunchFailed { candidates, after },
                _ => HandshakeError::Timeout { stage, after },
            });
        }
        self.fall_back(now, stage, after, "no answer");
    }

    /// Auto gives up on direct at `stage` (`reason` within `after`): the
    /// agent session becomes the path, unless the relay failed too.
    pub(super) fn fall_back(&mut self, now: Instant, stage: Stage, after: Duration, reason: &str) {
        for timer in [
            Timer::PunchDeadline,
            Timer::PunchResend,
            Timer::DevicePhase,
            Timer::DeviceSession,
        ] {
            self.timers.stop(timer);
        }
        self.direct = DirectLeg::FellBack;
        if let RelayLeg::Failed(why) = &self.relay {
            let detail = format!(
                "{stage} failed ({reason} within {after:?}) and the relay failed too ({why})"
            );
            return self.fail(HandshakeError::RelayUnavailable { detail });
        }
        // Not a completed stage, but the one status line the user needs.
        let elapsed = self.elapsed(now);
        self.events.push_back(super::HandshakeEvent::Stage {
            stage,
            elapsed,
            detail: format!("{stage}: {reason} within {after:?}; falling back to the relay"),
        });
    }
}
