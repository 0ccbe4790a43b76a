//! The relay leg (FIELD-NOTES §2.5, §5.3): `/online/relay`, the lease
//! (`/relay/agent`, `/relay/start/{Token}`), relay-channel until the agent's
//! notification, then the agent PTCP session: SYN, and 0x17 → the sign when
//! the direct leg needs one. In relay mode, or when Auto falls back, the
//! agent session is the session (DH-P2P §6.8).

use std::net::SocketAddr;
use std::time::Instant;

use crate::codec::cloud::{
    build_request, format_created_utc, AgentInfo, RelayInfo, RequestParams, Response, WsseAuth,
    XmlBody,
};
use crate::codec::identity::CloudProfile;
use crate::codec::ptcp::Body;
use crate::session::ptcp::PtcpSession;

use super::cloud::{status_text, Req};
use super::lookup::address;
use super::timers::Timer;
use super::types::{HandshakeError, Lease, PathMode, Sock, Stage, Transmit};
use super::{DirectLeg, Handshake};

/// Where the relay leg is.
#[derive(Debug)]
pub(super) enum RelayLeg {
    /// Not needed in this mode.
    Off,
    /// `/online/relay` asked.
    Locating,
    /// The relay server is known; the lease waits until the cloud knows the
    /// serial, so that nothing is held for a device that does not exist.
    Located { server: SocketAddr },
    /// `/relay/agent` asked.
    Leasing { server: SocketAddr },
    /// `/relay/start/{Token}` asked at the agent.
    Starting,
    /// The agent took the lease; relay-channel waits for what it signs with.
    Started,
    /// relay-channel asked; waiting for the agent's notification.
    Joining,
    /// The agent PTCP session.
    Agent(Box<AgentLeg>),
    /// Gave up; the text says why (used if the relay is needed later).
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AgentPhase {
    Syn,
    Open,
    SignRequested,
}

#[derive(Debug)]
pub(super) struct AgentLeg {
    pub addr: SocketAddr,
    pub session: PtcpSession,
    pub phase: AgentPhase,
}

/// `/relay/unbind/{token}` to the lease's relay, WSSE-signed, to send from
/// [`Sock::Relay`] when a relayed or leasing session ends (FIELD-NOTES C12).
/// `nonce` comes from the caller's random source; `unix` is now.
pub fn unbind_request(profile: &CloudProfile, lease: &Lease, unix: i64, nonce: u32) -> Transmit {
    let created = format_created_utc(unix).unwrap_or_default();
    // The legacy WSSE nonce range, [0, 2^31).
    let nonce = (nonce & 0x7fff_ffff).to_string();
    let payload = build_request(
        &profile.request_style(),
        &RequestParams {
            path: &format!("/relay/unbind/{}", lease.token),
            body: "",
            cseq: Some(i64::from(u16::MAX)),
            auth: Some(WsseAuth {
                username: &profile.username,
                key: &profile.key,
                nonce: &nonce,
                created: &created,
            }),
            request_id: None,
        },
    )
    .encode();
    Transmit {
        sock: Sock::Relay,
        to: lease.relay,
        payload,
    }
}

impl Handshake {
    pub(super) fn agent(&self) -> Option<&AgentLeg> {
        match &self.relay {
            RelayLeg::Agent(agent) => Some(agent),
            _ => None,
        }
    }

    pub(super) fn agent_mut(&mut self) -> Option<&mut AgentLeg> {
        match &mut self.relay {
            RelayLeg::Agent(agent) => Some(agent),
            _ => None,
        }
    }

    /// Whether the relay leg is needed to finish from here.
    fn relay_required(&self) -> bool {
        self.config.mode == PathMode::Relay
            || matches!(self.direct, DirectLeg::FellBack)
            || (self.config.use_sign && self.sign.is_none())
    }

    /// The relay leg cannot go on (an answer said so): fatal when it is
    /// needed, else remembered in case Auto needs it later.
    pub(super) fn relay_failure(&mut self, stage: Stage, detail: String) {
        let error = HandshakeError::RelayUnavailable {
            detail: format!("{stage}: {detail}"),
        };
        self.relay_gave_up(stage, error);
    }

    /// Like [`Handshake::relay_failure`], with the error to report when the
    /// relay was needed.
    pub(super) fn relay_gave_up(&mut self, stage: Stage, error: HandshakeError) {
        if self.relay_required() {
            return self.fail(error);
        }
        let why = match &error {
            HandshakeError::Timeout { .. } => format!("{stage}: no answer"),
            HandshakeError::RelayUnavailable { detail } => detail.clone(),
            other => format!("{stage}: {other}"),
        };
        self.relay = RelayLeg::Failed(why);
        let relay_reqs: Vec<Req> = self
            .cloud
            .pending
            .iter()
            .map(|e| e.req)
            .filter(|r| r.is_relay_leg())
            .collect();
        for req in relay_reqs {
            self.end_exchange(req);
        }
        self.timers.stop(Timer::AgentSession);
    }

    /// Starts the lease and relay-channel once they are possible.
    pub(super) fn advance_relay(&mut self, now: Instant, unix: i64) {
        match self.relay {
            RelayLeg::Located { server } if self.facts.p2psrv.is_some() => {
                self.relay = RelayLeg::Leasing { server };
                self.start_request(Req::RelayAgent, server, now, unix);
            }
            // relay-channel: with device auth after the channel answer,
            // whose nonce its auth block reuses (DH-P2P §4), or in relay
            // mode after the salt; without, as soon as the lease is
            // started, so that the sign is not held up by the channel.
            RelayLeg::Started => {
                let ready = match (self.config.mode, self.config.credentials.is_some()) {
                    (PathMode::Relay, true) => self.facts.salt.is_some() && self.facts.online,
                    (_, true) => self.facts.channel.is_some(),
                    (_, false) => self.facts.online,
                };
                if ready {
                    self.relay = RelayLeg::Joining;
                    let cloud = self.config.cloud;
                    self.start_request(Req::RelayChannel, cloud, now, unix);
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_online_relay(
        &mut self,
        now: Instant,
        response: &Response,
        xml: Option<XmlBody>,
    ) {
        if response.code >= 300 {
            return self.relay_failure(Stage::RelayServer, status_text(response));
        }
        let info = xml.as_ref().map(RelayInfo::from_xml).unwrap_or_default();
        let server = match address(Stage::RelayServer, "Address", info.address.as_deref()) {
            Ok((addr, _)) => addr,
            Err(e) => return self.relay_failure(Stage::RelayServer, e.to_string()),
        };
        if matches!(self.relay, RelayLeg::Locating) {
            self.relay = RelayLeg::Located { server };
        }
        self.stage_done(now, Stage::RelayServer, format!("relay server {server}"));
    }

    pub(super) fn on_relay_agent(
        &mut self,
        now: Instant,
        unix: i64,
        response: &Response,
        xml: Option<XmlBody>,
    ) {
        if response.code >= 300 {
            return self.relay_failure(Stage::RelayLease, status_text(response));
        }
        let info = xml.as_ref().map(AgentInfo::from_xml).unwrap_or_default();
        let agent = match address(Stage::RelayLease, "Agent", info.agent.as_deref()) {
            Ok(a) => a,
            Err(e) => return self.relay_failure(Stage::RelayLease, e.to_string()),
        };
        let token = info.token.unwrap_or_default();
        if token.is_empty() || token.contains(['/', ' ']) {
            let detail = "the answer has no usable <Token>".to_owned();
            return self.relay_failure(Stage::RelayLease, detail);
        }
        let RelayLeg::Leasing { server } = self.relay else {
            return;
        };
        self.lease = Some(Lease {
            relay: server,
            token,
        });
        self.relay = RelayLeg::Starting;
        let agent_addr = agent.0;
        self.agent_addr = Some(agent);
        self.stage_done(
            now,
            Stage::RelayLease,
            format!("relay lease: agent {agent_addr}"),
        );
        self.start_request(Req::RelayStart, agent_addr, now, unix);
    }

    pub(super) fn on_relay_start(&mut self, now: Instant, response: &Response) {
        if response.code >= 300 {
            return self.relay_failure(Stage::RelayStart, status_text(response));
        }
        if matches!(self.relay, RelayLeg::Starting) {
            self.relay = RelayLeg::Started;
        }
        self.stage_done(
            now,
            Stage::RelayStart,
            "the agent took the lease".to_owned(),
        );
    }

    pub(super) fn on_agent_notified(&mut self, now: Instant, response: &Response) {
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
        self.relay = RelayLeg::Agent(Box::new(AgentLeg {
            addr,
            session,
            phase: AgentPhase::Syn,
        }));
    }

    /// One body from the agent: its SYN, then the sign.
    pub(super) fn agent_body(&mut self, now: Instant, bytes: &[u8]) {
        let want_sign = self.config.use_sign
            && self.config.mode != PathMode::Relay
            && !matches!(self.direct, DirectLeg::FellBack)
            && self.sign.is_none();
        let Some(agent) = self.agent_mut() else {
            return;
        };
        let body = Body::decode(bytes);
        match (agent.phase, body) {
            (AgentPhase::Syn, Ok(Body::Syn)) => {
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
            // The sign: the data of the first reply that carries any,
            // whatever its type (FIELD-NOTES §5.3).
            (AgentPhase::SignRequested, Ok(body)) if !body.command_data().is_empty() => {
                let sign = body.command_data().to_vec();
                agent.phase = AgentPhase::Open;
                let detail = format!("sign ({} bytes)", sign.len());
                self.sign = Some(sign);
                self.stage_done(now, Stage::Sign, detail);
            }
            _ => {}
        }
    }

    /// The stage cap passed with the agent session not open, or open with
    /// no sign. An agent that opened its session but never signs still
    /// relays: Auto then falls back to it rather than failing
    /// (issue 11 item 7).
    pub(super) fn cap_agent(&mut self, now: Instant) {
        let Some(phase) = self.agent().map(|a| a.phase) else {
            return;
        };
        let after = self.config.stage_cap;
        match phase {
            AgentPhase::Open => {}
            AgentPhase::Syn => self.relay_gave_up(
                Stage::AgentSession,
                HandshakeError::Timeout {
                    stage: Stage::AgentSession,
                    after,
                },
            ),
            AgentPhase::SignRequested if self.config.mode == PathMode::Auto => {
                if let Some(agent) = self.agent_mut() {
                    agent.phase = AgentPhase::Open;
                }
                self.fall_back(now, Stage::Sign, after, "the agent opened but sent no sign");
            }
            AgentPhase::SignRequested => self.fail(HandshakeError::RelayUnavailable {
                detail: format!(
                    "sign: the agent opened its session but sent no sign within {after:?}"
                ),
            }),
        }
    }
}
