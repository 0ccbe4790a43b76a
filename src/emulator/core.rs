//! The emulator's sans-IO core: every role's state and decisions, with no
//! sockets and no clock. The driver (`driver.rs`) feeds it datagrams, TCP
//! events and `now`, and carries out what it asks: datagrams to send from a
//! role's socket, TCP connections to open, write and close.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytes_utils::SegmentedBuf;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::{DeviceUnit, EmulatorConfig, RoleAddrs};
use crate::codec::classify::{kind_of, Kind};
use crate::codec::crypto;
use crate::codec::punch::PunchMessage;
use crate::session::ptcp::PtcpSession;

/// The emulated servers, one UDP socket each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Role {
    Cloud,
    P2pSrv,
    Relay,
    Agent,
    Device,
}

impl Role {
    pub fn all() -> [Role; 5] {
        [
            Role::Cloud,
            Role::P2pSrv,
            Role::Relay,
            Role::Agent,
            Role::Device,
        ]
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Cloud => "cloud",
            Role::P2pSrv => "p2psrv",
            Role::Relay => "relay",
            Role::Agent => "agent",
            Role::Device => "device",
        }
    }
}

/// A datagram to send from `from`'s socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Transmit {
    pub from: Role,
    /// Which socket of the role: the device's index for [`Role::Device`],
    /// the cloud's (0 = main) for [`Role::Cloud`], else 0.
    pub index: usize,
    /// The device whose faults this datagram travels through, if any.
    pub leg: Option<usize>,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// Addresses of the sockets a fleet adds to [`RoleAddrs`]: one per device
/// after the first, one per extra cloud profile after the main cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetAddrs {
    /// Device sockets of devices 1, 2, … (device 0 is `RoleAddrs::device`).
    pub devices: Vec<SocketAddr>,
    /// Cloud sockets of [`EmulatorConfig::extra_clouds`], in that order.
    pub clouds: Vec<SocketAddr>,
}

/// Identifies one realm's TCP connection behind the device.
pub type ConnId = u64;

/// What the core asks the driver to do on the TCP side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpCommand {
    /// Connect to the service behind device `device`'s port `port`; answer
    /// with [`Emulator::tcp_connected`].
    Connect {
        conn: ConnId,
        port: u16,
        device: usize,
    },
    /// Write stream bytes to the service.
    Write { conn: ConnId, bytes: Vec<u8> },
    /// Allow `bytes` more bytes to be read from the service.
    Credit { conn: ConnId, bytes: usize },
    /// Close the connection (after pending writes).
    Close { conn: ConnId },
}

/// A p2p-channel the cloud granted: the device will punch towards `client`.
#[derive(Debug, Clone)]
pub struct ChannelGrant {
    pub serial: String,
    pub client: SocketAddr,
    pub identify: [u8; 8],
    pub authenticated: bool,
    pub cseq: i64,
    pub granted_at: Instant,
}

/// A relay lease handed out by `/relay/agent`.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Order of allocation.
    pub created: u64,
    /// The socket that sent `/relay/start` (the agent talks to it).
    pub client: Option<SocketAddr>,
    pub allocated_by: SocketAddr,
    /// The device that joined through relay-channel.
    pub serial: Option<String>,
    /// The sign the agent hands out for this lease (0x18).
    pub sign: Vec<u8>,
    pub notified_at: Option<Instant>,
}

/// One emulated device.
#[derive(Debug, Clone)]
pub struct DeviceState {
    pub serial: String,
    /// Index of the device (socket and settings) in [`EmulatorConfig::units`].
    pub unit: usize,
    pub salt: String,
    pub info_blob: String,
    pub last_nonce: Option<String>,
}

/// Where device PTCP traffic flows: straight to a client, or through the
/// agent of a lease (relay mode).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKey {
    /// A punched client of device `.0`.
    Direct(usize, SocketAddr),
    Relay(String),
}

/// Totals the emulator reports on exit and tests assert on.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct EmulatorStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub requests: u64,
    pub dropped_text: u64,
    pub dropped_binary: u64,
    pub rejected_wsse: u64,
    pub rejected_device_auth: u64,
    pub rejected_tokens: u64,
    pub punches_answered: u64,
    pub sessions: u64,
    pub realms_opened: u64,
    pub binds_refused: u64,
    pub vanished_drops: u64,
    /// Client DATA left unacknowledged because the services lag behind.
    pub data_deferred: u64,
}

/// Per-realm figures printed as one JSON line each on exit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RealmReport {
    pub serial: String,
    pub realm: String,
    pub port: u16,
    /// Bytes from the client to the service.
    pub bytes_in: u64,
    /// Bytes from the service to the client.
    pub bytes_out: u64,
    pub sha256_in: String,
    pub sha256_out: String,
    pub status: &'static str,
}

/// The whole emulated world: cloud, P2P server, relay, agent and devices.
pub struct Emulator {
    pub(super) config: EmulatorConfig,
    pub(super) addrs: RoleAddrs,
    pub(super) units: Vec<DeviceUnit>,
    pub(super) device_addrs: Vec<SocketAddr>,
    /// Profiles of the cloud sockets 1, 2, … (0 is the main cloud).
    pub(super) cloud_names: Vec<String>,
    /// Requests per `socket endpoint` (the shutdown totals).
    pub(super) request_counts: BTreeMap<String, u64>,
    pub(super) request_log: VecDeque<String>,
    pub(super) start: Instant,
    pub(super) last_unix: i64,
    pub(super) rng: SmallRng,
    pub(super) devices: BTreeMap<String, DeviceState>,
    pub(super) leases: BTreeMap<String, Lease>,
    pub(super) lease_serial: u64,
    pub(super) peers: BTreeMap<PeerKey, Peer>,
    pub(super) agent_sessions: BTreeMap<String, PtcpSession>,
    pub(super) conns: BTreeMap<ConnId, (PeerKey, u32)>,
    pub(super) next_conn: ConnId,
    transmits: VecDeque<Transmit>,
    delayed: BinaryHeap<Reverse<(Instant, u64, Transmit)>>,
    delayed_serial: u64,
    pub(super) tcp: VecDeque<TcpCommand>,
    pub(super) stats: EmulatorStats,
    pub(super) reports: Vec<RealmReport>,
    pub(super) log: VecDeque<String>,
}

impl Emulator {
    pub fn new(config: EmulatorConfig, addrs: RoleAddrs, now: Instant, unix: i64) -> Self {
        Self::with_fleet(config, addrs, FleetAddrs::default(), now, unix)
    }

    /// An emulator whose fleet devices and extra clouds have their own
    /// sockets (missing addresses fall back to the first device's, the main
    /// cloud's).
    pub fn with_fleet(
        config: EmulatorConfig,
        addrs: RoleAddrs,
        fleet: FleetAddrs,
        now: Instant,
        unix: i64,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let mut devices = BTreeMap::new();
        let units = config.units();
        let device_addrs: Vec<SocketAddr> = (0..units.len())
            .map(|i| match i {
                0 => addrs.device,
                i => fleet.devices.get(i - 1).copied().unwrap_or(addrs.device),
            })
            .collect();
        let cloud_names = config.extra_clouds();
        let serials = units
            .iter()
            .enumerate()
            .flat_map(|(i, u)| u.serials.iter().map(move |s| (i, s)));
        for (unit, serial) in serials {
            let salt: String = (0..32)
                .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
                .collect();
            let service_port = |want: u16| {
                config
                    .services
                    .contains_key(&want)
                    .then_some(want)
                    .or_else(|| config.services.keys().next().copied())
            };
            let info = crypto::DeviceInfo {
                httpport: Some(80),
                privport: Some(37777),
                rtspport: service_port(554),
                tlsprivport: Some(37778),
                randsalt: Some(salt.clone()),
                extra: Default::default(),
            };
            devices.insert(
                serial.to_ascii_uppercase(),
                DeviceState {
                    serial: serial.clone(),
                    unit,
                    salt,
                    info_blob: crypto::encrypt_info(&info),
                    last_nonce: None,
                },
            );
        }
        Emulator {
            config,
            addrs,
            units,
            device_addrs,
            cloud_names,
            request_counts: BTreeMap::new(),
            request_log: VecDeque::new(),
            start: now,
            last_unix: unix,
            rng,
            devices,
            leases: BTreeMap::new(),
            lease_serial: 0,
            peers: BTreeMap::new(),
            agent_sessions: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            transmits: VecDeque::new(),
            delayed: BinaryHeap::new(),
            delayed_serial: 0,
            tcp: VecDeque::new(),
            stats: EmulatorStats::default(),
            reports: Vec::new(),
            log: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    pub fn addrs(&self) -> RoleAddrs {
        self.addrs
    }

    pub fn stats(&self) -> EmulatorStats {
        self.stats
    }

    /// The salt a device's `/info/device` carries (for tests).
    pub fn salt_of(&self, serial: &str) -> Option<&str> {
        self.devices
            .get(&serial.to_ascii_uppercase())
            .map(|d| d.salt.as_str())
    }

    /// Whether the (first) device has fallen silent (`--vanish-after/--vanish-for`).
    pub fn vanished(&self, now: Instant) -> bool {
        self.unit_vanished(0, now)
    }

    /// Whether device `unit` has fallen silent.
    pub fn unit_vanished(&self, unit: usize, now: Instant) -> bool {
        let Some(u) = self.units.get(unit) else {
            return false;
        };
        let Some(after) = u.vanish_after else {
            return false;
        };
        let t = now.saturating_duration_since(self.start);
        t >= after && u.vanish_for.is_none_or(|f| t < after + f)
    }

    /// The devices (serials and settings), in socket order.
    pub fn units(&self) -> &[DeviceUnit] {
        &self.units
    }

    /// Requests answered so far, per `socket endpoint`.
    pub fn request_counts(&self) -> &BTreeMap<String, u64> {
        &self.request_counts
    }

    /// The device whose faults a datagram reaching `role`'s socket `index`
    /// from `from` travels through: the device's own socket, or the agent
    /// leg of a lease a device joined.
    pub fn leg_of(&self, role: Role, index: usize, from: SocketAddr) -> Option<usize> {
        match role {
            Role::Device => Some(index),
            Role::Agent => self.agent_leg(from),
            _ => None,
        }
    }

    /// Handles one datagram that reached `role`'s (first) socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix: i64,
        role: Role,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        self.handle_datagram_on(now, unix, role, 0, from, bytes)
    }

    /// Handles one datagram that reached socket `index` of `role` (see
    /// [`Transmit::index`]).
    pub fn handle_datagram_on(
        &mut self,
        now: Instant,
        unix: i64,
        role: Role,
        index: usize,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        self.last_unix = unix;
        self.stats.datagrams_in += 1;
        match (role, kind_of(bytes)) {
            (_, Kind::Cloud) => self.handle_text(now, unix, role, index, from, bytes),
            (Role::Device, Kind::Punch | Kind::Ptcp) if index < self.units.len() => {
                self.handle_device(now, PeerKey::Direct(index, from), bytes)
            }
            (Role::Agent, Kind::Ptcp) => self.handle_agent(now, from, bytes),
            _ => self.stats.dropped_binary += 1,
        }
        self.pump(now);
    }

    /// Runs expired timers.
    pub fn handle_timeout(&mut self, now: Instant, unix: i64) {
        self.last_unix = unix;
        while let Some(Reverse((at, _, _))) = self.delayed.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, t))) = self.delayed.pop() {
                self.transmits.push_back(t);
            }
        }
        self.device_timeouts(now);
        self.pump(now);
    }

    /// The earliest instant [`Emulator::handle_timeout`] wants to run.
    pub fn next_timeout(&self) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|Reverse((at, _, _))| *at);
        let peers = self.peers.values().filter_map(Peer::next_timeout);
        let agents = self
            .agent_sessions
            .values()
            .filter_map(PtcpSession::next_timeout);
        delayed.into_iter().chain(peers).chain(agents).min()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(t)
    }

    /// Next TCP-side command.
    pub fn poll_tcp(&mut self) -> Option<TcpCommand> {
        self.tcp.pop_front()
    }

    /// Next human-readable log line (sessions, realms, refusals).
    pub fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }

    /// Next line of the request log: one per cloud request, with its time.
    pub fn poll_request_log(&mut self) -> Option<String> {
        self.request_log.pop_front()
    }

    pub(super) fn transmit_via(
        &mut self,
        from: Role,
        index: usize,
        leg: Option<usize>,
        to: SocketAddr,
        payload: Vec<u8>,
    ) {
        self.transmits.push_back(Transmit {
            from,
            index,
            leg,
            to,
            payload,
        });
    }

    pub(super) fn transmit_at(&mut self, at: Instant, t: Transmit) {
        self.delayed_serial += 1;
        self.delayed.push(Reverse((at, self.delayed_serial, t)));
    }

    pub(super) fn log_request(&mut self, line: String) {
        if self.request_log.len() < 10_000 {
            self.request_log.push_back(line);
        }
    }

    pub(super) fn note(&mut self, line: String) {
        if self.log.len() < 10_000 {
            self.log.push_back(line);
        }
    }

    /// Every realm's figures, closed ones and those still open.
    pub fn realm_reports(&self) -> Vec<RealmReport> {
        let mut out = self.reports.clone();
        for peer in self.peers.values() {
            out.extend(peer.open_realm_reports());
        }
        out
    }

    /// How long since the emulator started.
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }
}

// The device's view of each client, kept in `Emulator::peers`; the
// behaviour is in device.rs (which imports these, not the other way round).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RealmState {
    Connecting,
    Open,
}

#[derive(Debug)]
pub(super) struct Realm {
    pub(super) conn: ConnId,
    pub(super) port: u16,
    pub(super) state: RealmState,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// Client bytes handed to the service's writer, not yet written.
    pub(super) unwritten: usize,
    /// Service bytes waiting for their turn in the send window (bounded by
    /// the realm's read credit), cut into bodies as slices, as the tunnel
    /// cuts its realm queues.
    pub(super) pending: SegmentedBuf<Bytes>,
    pub(super) sha_in: Sha256,
    pub(super) sha_out: Sha256,
}

#[derive(Debug, Default)]
pub(super) struct PunchProgress {
    /// The client's first binding request (cookie, txid), for our replies.
    pub(super) client_request: Option<PunchMessage>,
    /// A binding request we sent before the client asked (punch before 200).
    pub(super) proactive_pending: bool,
    pub(super) device_txid: [u8; 12],
    pub(super) after_success_sent: bool,
    pub(super) after_confirm_sent: bool,
}

/// One client as the device sees it.
#[derive(Debug)]
pub struct Peer {
    pub(super) serial: String,
    /// The device (socket and settings) this client talks to.
    pub(super) unit: usize,
    /// Where our datagrams go: the device's socket to a punched client, or
    /// the agent's socket to a relayed one.
    pub(super) dest: (Role, SocketAddr),
    pub(super) channel: Option<ChannelGrant>,
    pub(super) punch: PunchProgress,
    pub(super) session: Option<PtcpSession>,
    pub(super) signed: bool,
    pub(super) relayed: bool,
    pub(super) realms: BTreeMap<u32, Realm>,
    /// (end of a DATA body in our sequence space, its realm's conn, bytes):
    /// when the client ACKs past it, the realm may read that much more.
    pub(super) credits: VecDeque<(u32, ConnId, usize)>,
    pub(super) backlog: usize,
    /// The realm that last had a body fed into the session (round-robin).
    pub(super) feed_cursor: u32,
}

impl Peer {
    pub fn next_timeout(&self) -> Option<Instant> {
        self.session.as_ref().and_then(PtcpSession::next_timeout)
    }

    pub fn open_realm_reports(&self) -> Vec<RealmReport> {
        self.realms
            .iter()
            .map(|(id, r)| report(&self.serial, *id, r, "open"))
            .collect()
    }
}

pub(super) fn report(serial: &str, realm: u32, r: &Realm, status: &'static str) -> RealmReport {
    RealmReport {
        serial: serial.to_string(),
        realm: format!("0x{realm:08x}"),
        port: r.port,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        sha256_in: hex::encode(r.sha_in.clone().finalize()),
        sha256_out: hex::encode(r.sha_out.clone().finalize()),
        status,
    }
}
