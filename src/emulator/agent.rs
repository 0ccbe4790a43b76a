//! The relay agent's PTCP side: it answers the client's SYN itself, hands out
//! the lease's sign for 0x17 (DH-P2P §6.5, §7.9), and when the client goes on
//! to BIND instead (relay mode, DH-P2P §6.8), hands the session to the device
//! and relays every datagram of it both ways.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::core::{Emulator, PeerKey, Role};
use crate::codec::ptcp::{Body, Packet};
use crate::session::ptcp::{seq_lt, Event, LmidMode, PtcpConfig, PtcpSession};

impl Emulator {
    fn lease_of_client(&self, client: SocketAddr) -> Option<String> {
        self.leases
            .iter()
            .filter(|(_, l)| l.client == Some(client))
            .max_by_key(|(_, l)| l.created)
            .map(|(t, _)| t.clone())
    }

    pub(super) fn handle_agent(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some(token) = self.lease_of_client(from) else {
            self.stats.dropped_binary += 1;
            return;
        };
        let relay_key = PeerKey::Relay(token.clone());
        if self.peers.contains_key(&relay_key) {
            return self.handle_device(now, relay_key, bytes);
        }
        let Ok(packet) = Packet::decode(bytes) else {
            self.stats.dropped_binary += 1;
            return;
        };
        let session = self.agent_sessions.get(&token);
        let is_sign_exchange = matches!(packet.body, Body::Syn | Body::Empty | Body::SignRequest)
            || session.is_some_and(|s| seq_lt(packet.header.sent, s.recv()));
        if is_sign_exchange || session.is_none() {
            if session.is_none() && packet.body != Body::Syn {
                self.stats.dropped_binary += 1;
                return;
            }
            let config = PtcpConfig {
                heartbeat: None,
                idle_timeout: Duration::from_secs(60),
                lmid: LmidMode::Clock { base: 90_000_000 },
                ..PtcpConfig::default()
            };
            self.agent_sessions
                .entry(token)
                .or_insert_with(|| PtcpSession::new(config, now))
                .handle_datagram(now, bytes);
            return;
        }
        // Anything else after the SYN: relay mode. The device continues the
        // agent's counters, so the client sees one seamless session.
        let Some(serial) = self.leases.get(&token).and_then(|l| l.serial.clone()) else {
            // No device joined this lease (no relay-channel yet).
            self.stats.dropped_binary += 1;
            return;
        };
        if self.online_serial(now, &serial).is_none() {
            self.stats.vanished_drops += 1;
            return;
        }
        let Some(agent) = self.agent_sessions.remove(&token) else {
            return;
        };
        let device = PtcpSession::with_counters(
            PtcpConfig {
                retransmit: self.config.device_retransmit,
                heartbeat: Some(self.config.device_heartbeat),
                idle_timeout: self.config.device_idle_timeout,
                ..PtcpConfig::default()
            },
            now,
            agent.sent(),
            agent.recv(),
        );
        self.adopt_relay_session(&token, serial, from, device);
        self.handle_device(now, PeerKey::Relay(token), bytes);
    }

    /// The device whose relayed traffic a datagram from `client` to the
    /// agent belongs to (its lease's device, once one joined).
    pub(super) fn agent_leg(&self, client: SocketAddr) -> Option<usize> {
        let token = self.lease_of_client(client)?;
        let serial = self.leases.get(&token)?.serial.as_ref()?;
        Some(self.unit_of(serial))
    }

    pub(super) fn agent_timeouts(&mut self, now: Instant) {
        for s in self.agent_sessions.values_mut() {
            s.handle_timeout(now);
        }
        self.agent_sessions.retain(|_, s| !s.is_dead());
    }

    pub(super) fn pump_agents(&mut self, now: Instant) {
        let tokens: Vec<String> = self.agent_sessions.keys().cloned().collect();
        for token in tokens {
            let (sign, client, leg) = match self.leases.get(&token) {
                Some(l) => (
                    l.sign.clone(),
                    l.client,
                    l.serial.as_ref().map(|s| self.unit_of(s)),
                ),
                None => (Vec::new(), None, None),
            };
            let Some(session) = self.agent_sessions.get_mut(&token) else {
                continue;
            };
            while let Some(event) = session.poll_event() {
                if let Event::Body(bytes) = event {
                    match Body::decode(&bytes) {
                        Ok(Body::Syn) => session.send(&Body::Syn),
                        Ok(Body::SignRequest) => session.send(&Body::Sign { sign: &sign }),
                        _ => {}
                    }
                }
            }
            let mut out = Vec::new();
            while let Some(d) = session.poll_transmit(now) {
                out.push(d);
            }
            if let Some(client) = client {
                for d in out {
                    self.transmit_via(Role::Agent, 0, leg, client, d);
                }
            }
        }
    }
}
