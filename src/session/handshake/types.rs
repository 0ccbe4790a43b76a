//! The handshake's public vocabulary: its configuration, the datagrams it
//! asks to send, the events it reports and the errors it ends with.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::codec::crypto::DeviceInfo;
use crate::codec::identity::{CloudProfile, Dialect};
use crate::session::ptcp::{PtcpConfig, PtcpSession};

/// Which path the handshake may end on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PathMode {
    /// Direct first; the relay when punching fails (the lease is taken in
    /// parallel so the fallback costs no extra round trips).
    #[default]
    Auto,
    /// Direct only: a failed punch is an error.
    Direct,
    /// The agent session carries everything; no p2p-channel, no punching
    /// (DH-P2P §6.8).
    Relay,
}

impl FromStr for PathMode {
    type Err = String;

    /// `auto`, `direct` or `relay`, any case.
    fn from_str(text: &str) -> Result<PathMode, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(PathMode::Auto),
            "direct" | "p2p" => Ok(PathMode::Direct),
            "relay" => Ok(PathMode::Relay),
            _ => Err(format!(
                "unknown mode {text:?}: want `auto`, `direct` or `relay`"
            )),
        }
    }
}

impl fmt::Display for PathMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathMode::Auto => "auto",
            PathMode::Direct => "direct",
            PathMode::Relay => "relay",
        })
    }
}

/// Everything the handshake needs to know. [`HandshakeConfig::new`] fills in
/// the defaults of docs/PROTOCOL.md §2.8.
#[derive(Clone)]
pub struct HandshakeConfig {
    pub serial: String,
    /// The main server, already resolved by the driver.
    pub cloud: SocketAddr,
    /// WSSE pair and request dialect.
    pub profile: CloudProfile,
    /// Device user and password for device auth (DH-P2P §4).
    pub credentials: Option<(String, String)>,
    pub mode: PathMode,
    /// Relay lease → agent 0x17 → device 0x19/0x1A/0x1B (FIELD-NOTES §5.3).
    pub use_sign: bool,
    /// First resend wait of a cloud request; doubles per resend (FIELD-NOTES §2.5).
    pub first_wait: Duration,
    /// The doubling stops here, so that a run of lost answers late in the
    /// flow still leaves room for more tries within the cap (0.5, 1, 1, … s).
    pub max_wait: Duration,
    /// Wait for the agent's notification before repeating relay-channel. PR
    /// saw duplicates at 500 ms and used 2 s; dhp2p takes 1 s so that a few
    /// lost notifications still fit in the cap (duplicates are harmless here).
    pub relay_channel_wait: Duration,
    /// The whole early (cloud, relay, agent) flow, from the start.
    pub stage_cap: Duration,
    /// Punching (and the device's SYN answer) before giving up on direct.
    pub punch_timeout: Duration,
    /// Binding requests are resent this often while punching.
    pub punch_interval: Duration,
    /// How long 0x19 may go without 0x1A (and 0x1B without its ACK).
    pub auth_reply_timeout: Duration,
    /// 401 answers tolerated (each corrects the clock offset first).
    pub max_401_retries: u32,
    /// For the agent and device sessions.
    pub ptcp: PtcpConfig,
}

impl HandshakeConfig {
    /// dhp2p's defaults: Auto with sign, 500 ms first wait, 10 s cap, 3 s
    /// punch, 5 s for 0x1A, 3 retries on 401.
    pub fn new(serial: impl Into<String>, cloud: SocketAddr, profile: CloudProfile) -> Self {
        HandshakeConfig {
            serial: serial.into(),
            cloud,
            profile,
            credentials: None,
            mode: PathMode::Auto,
            use_sign: true,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(1),
            relay_channel_wait: Duration::from_secs(1),
            stage_cap: Duration::from_secs(10),
            punch_timeout: Duration::from_secs(3),
            punch_interval: Duration::from_millis(500),
            auth_reply_timeout: Duration::from_secs(5),
            max_401_retries: 3,
            // Resends during the handshake follow the cloud's pace (at most
            // 1 s apart), so a lossy path gets several tries at each step.
            ptcp: PtcpConfig {
                min_rto: Duration::from_millis(100),
                max_rto: Duration::from_secs(1),
                ..PtcpConfig::default()
            },
        }
    }
}

impl fmt::Debug for HandshakeConfig {
    /// Never prints the device password or the WSSE key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("serial", &self.serial)
            .field("cloud", &self.cloud)
            .field("profile", &self.profile.name)
            .field("dialect", &self.profile.dialect)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("mode", &self.mode)
            .field("use_sign", &self.use_sign)
            .field("first_wait", &self.first_wait)
            .field("max_wait", &self.max_wait)
            .field("relay_channel_wait", &self.relay_channel_wait)
            .field("stage_cap", &self.stage_cap)
            .field("punch_timeout", &self.punch_timeout)
            .field("punch_interval", &self.punch_interval)
            .field("auth_reply_timeout", &self.auth_reply_timeout)
            .field("max_401_retries", &self.max_401_retries)
            .finish_non_exhaustive()
    }
}

/// The client's two local UDP sockets (DH-P2P §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sock {
    /// Sends p2p-channel, then carries all device traffic: the device punches
    /// towards the address the cloud saw on p2p-channel.
    Device,
    /// Probes, look-ups, the relay lease, relay-channel and the agent
    /// session: the agent binds the lease to this socket.
    Relay,
}

/// A datagram to send from `sock` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub sock: Sock,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// The steps of the handshake, in the order they usually complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// `/probe/p2psrv` (legacy) or `/online/stun` (SDK).
    Warmup,
    /// `/online/p2psrv/{SN}`: the P2P server (`US`).
    P2pServer,
    /// `/probe/device/{SN}`: is the device online.
    DeviceProbe,
    /// `/info/device/{SN}`: salt and service ports.
    DeviceInfo,
    /// `/online/relay`: the relay server.
    RelayServer,
    /// p2p-channel: `PubAddr`, `LocalAddr`, the device's nonce.
    Channel,
    /// `/relay/agent`: token and agent.
    RelayLease,
    /// `/relay/start/{Token}` at the agent.
    RelayStart,
    /// relay-channel, until the agent's notification.
    RelayChannel,
    /// The agent PTCP session's SYN exchange.
    AgentSession,
    /// 0x17 → the sign.
    Sign,
    /// Inverted STUN with the device.
    Punch,
    /// The device PTCP session's SYN exchange.
    DeviceSession,
    /// 0x19 → 0x1A → 0x1B → ACK.
    DeviceAuth,
    /// The session is handed over.
    Ready,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Warmup => "warm-up",
            Stage::P2pServer => "p2p server",
            Stage::DeviceProbe => "device probe",
            Stage::DeviceInfo => "device info",
            Stage::RelayServer => "relay server",
            Stage::Channel => "p2p-channel",
            Stage::RelayLease => "relay lease",
            Stage::RelayStart => "relay start",
            Stage::RelayChannel => "relay-channel",
            Stage::AgentSession => "agent session",
            Stage::Sign => "sign",
            Stage::Punch => "punch",
            Stage::DeviceSession => "device session",
            Stage::DeviceAuth => "device auth",
            Stage::Ready => "ready",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the device's addresses answered the punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Candidate {
    /// `PubAddr` of the p2p-channel answer.
    Public,
    /// One of the (decrypted) `LocalAddr` addresses.
    Lan,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Candidate::Public => "public",
            Candidate::Lan => "LAN",
        })
    }
}

/// Where the established session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstablishedPath {
    /// Straight to the device, on [`Sock::Device`].
    Direct { device: SocketAddr, via: Candidate },
    /// Through the agent, on [`Sock::Relay`] (DH-P2P §6.8).
    Relay { agent: SocketAddr },
}

/// A relay allocation, released with `/relay/unbind/{token}` to `relay`
/// from [`Sock::Relay`] on exit (FIELD-NOTES C12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub relay: SocketAddr,
    pub token: String,
}

/// A finished handshake: the live session and what the tunnel needs later.
#[derive(Debug)]
pub struct Established {
    pub path: EstablishedPath,
    /// The socket that carries the session from now on.
    pub sock: Sock,
    /// The peer of `session` (the device or the agent).
    pub peer: SocketAddr,
    /// The live session, SYN (and sign) exchanged; drive it from here on.
    pub session: PtcpSession,
    pub lease: Option<Lease>,
    /// From `/info/device`: `rtspport` for the default RTSP port.
    pub device_info: Option<DeviceInfo>,
    /// The device's LAN addresses as it reported them (decrypted when the
    /// channel was authenticated); empty in relay mode.
    pub local_addrs: Vec<SocketAddr>,
    /// Whether 0x19/0x1A/0x1B took place on `session`.
    pub signed: bool,
    pub timings: Vec<(Stage, Duration)>,
}

/// What the handshake tells its driver.
#[derive(Debug)]
pub enum HandshakeEvent {
    /// A stage completed; `detail` is for one status line and never holds
    /// passwords, keys, DevAuth values or sign bytes.
    Stage {
        stage: Stage,
        elapsed: Duration,
        detail: String,
    },
    Established(Box<Established>),
    Failed(HandshakeError),
}

/// Why a handshake failed: what happened and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "device {serial} is unknown to this cloud or offline (404 at {stage}): check the \
         serial, or use the cloud profile the device is bound to (--cloud)"
    )]
    NotFound { serial: String, stage: Stage },

    #[error(
        "device {serial} requires authentication (403 DevPwd_InvalidSalt from the cloud): \
         add --username and --password"
    )]
    AuthRequired { serial: String },

    #[error(
        "the cloud refused the device authentication for {serial} (403 {error}): {}",
        bad_credentials_hint(*credentials_given, *dialect)
    )]
    BadCredentials {
        serial: String,
        /// The cloud's `<Error>` text.
        error: String,
        credentials_given: bool,
        dialect: Dialect,
    },

    #[error(
        "the cloud rejected the client identity or our clock is off by {offset_secs} s \
         (401 {error} after {retries} retries): check the cloud profile's WSSE pair and the \
         system clock"
    )]
    Unauthorized {
        retries: u32,
        /// Server time minus our clock, from the last 401.
        offset_secs: i64,
        error: String,
    },

    #[error(
        "the cloud refused {stage} (403 {error}): this client identity may be retired; try \
         another cloud profile"
    )]
    Forbidden { stage: Stage, error: String },

    #[error(
        "no answer at stage {stage} within {after:?}: the cloud, relay or device is \
         unreachable or drops our datagrams; check the network and the cloud address"
    )]
    Timeout { stage: Stage, after: Duration },

    #[error(
        "no valid answer at stage {stage} within {after:?}: {answers} answers came back from \
         {peer}, none valid (first: {first}); {peer} is not behaving as a Dahua P2P server: \
         check the cloud address and profile"
    )]
    NoValidAnswer {
        stage: Stage,
        after: Duration,
        peer: std::net::SocketAddr,
        answers: u32,
        /// Why the first answer was not valid (peer text truncated).
        first: String,
    },

    #[error(
        "the cloud answered {stage} with `100 Trying` {answers} times but gave no result within \
         {after:?}: the device does not answer the cloud; check that it is online, or try \
         --mode relay"
    )]
    StillTrying {
        stage: Stage,
        after: Duration,
        answers: u32,
    },

    #[error(
        "hole punching failed: none of {candidates} answered within {after:?} (NAT on either \
         side); try --mode relay or --mode auto"
    )]
    PunchFailed { candidates: String, after: Duration },

    #[error(
        "the device never answered 0x19 within {after:?}: the sign was refused; try --mode \
         relay or --no-sign"
    )]
    NoAuthReply { after: Duration },

    #[error("the relay path is unavailable: {detail}; try --mode direct or --no-sign")]
    RelayUnavailable { detail: String },

    #[error("malformed or unexpected answer at stage {stage}: {detail}")]
    Protocol { stage: Stage, detail: String },
}

fn bad_credentials_hint(credentials_given: bool, dialect: Dialect) -> String {
    if credentials_given {
        format!(
            "wrong user name or password, or this cloud wants another request dialect than \
             `{dialect}` (DMSS/Dolynk devices need the dmss profile); also check the clock"
        )
    } else {
        format!(
            "no credentials were given, so this cloud most likely wants another request \
             dialect than `{dialect}` (DMSS/Dolynk devices need the dmss profile), or the \
             device needs --username and --password"
        )
    }
}

impl HandshakeError {
    /// A few words for a status line (the full text is the `Display`).
    pub fn short_reason(&self) -> String {
        match self {
            HandshakeError::Timeout { .. } => "no answer".to_owned(),
            HandshakeError::NoValidAnswer { answers, .. } => {
                format!("{answers} answers, none valid")
            }
            HandshakeError::StillTrying { answers, .. } => {
                format!("`100 Trying` {answers} times, no result")
            }
            other => other.to_string(),
        }
    }
}
