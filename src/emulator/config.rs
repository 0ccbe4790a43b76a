//! What the emulated cloud and device are told to be (the `emulate-device`
//! flags), as plain data.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Whether the device demands device-level authentication on p2p-channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthPolicy {
    /// No demand; a client that sends a valid auth block still gets the
    /// authenticated answer forms.
    #[default]
    None,
    /// p2p-channel without a valid auth block gets 403 (FIELD-NOTES §2.3).
    Required,
}

/// How reachable the device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Hole punching works; relay works too.
    #[default]
    Direct,
    /// The device never answers hole punching: only the relay gets through.
    RelayOnly,
    /// The cloud reports the device offline (404).
    Offline,
}

/// Which request dialects the main cloud accepts on channel requests
/// (FIELD-NOTES C9: the DMSS cloud rejects the legacy layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloudDialect {
    /// easy4ip: legacy DH* and SDK NF* both accepted.
    #[default]
    Legacy,
    /// DMSS/Dolynk: legacy-dialect channel requests get 403 DevPwd_InvalidDigest.
    Sdk,
}

/// What the device does with a BIND beyond `--max-realms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefuseBind {
    /// Never answer (seen in production, FIELD-NOTES §4.5).
    #[default]
    Silent,
    /// Answer STATUS DISC.
    Disc,
}

/// A TCP service behind a device port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// The built-in Dahua-like RTSP server.
    BuiltinRtsp,
    /// A TCP echo server (handy for byte-exact tests).
    Echo,
    /// Forward to a real TCP server.
    Forward(String),
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Service, String> {
        match s {
            "builtin" | "rtsp" => Ok(Service::BuiltinRtsp),
            "echo" => Ok(Service::Echo),
            target
                if target
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
            {
                Ok(Service::Forward(target.to_string()))
            }
            other => Err(format!(
                "service {other:?}: expected builtin, echo or HOST:PORT"
            )),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::BuiltinRtsp => f.write_str("builtin"),
            Service::Echo => f.write_str("echo"),
            Service::Forward(t) => f.write_str(t),
        }
    }
}

/// Everything the emulator core needs to know. Addresses of the roles are
/// given separately ([`super::RoleAddrs`]) because the driver binds first.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Serial numbers served (matched case-insensitively).
    pub serials: Vec<String>,
    pub username: String,
    pub password: String,
    pub auth: AuthPolicy,
    pub mode: Mode,
    pub dialect: CloudDialect,
    /// Device port → service.
    pub services: BTreeMap<u16, Service>,
    pub max_realms: usize,
    pub refuse_bind: RefuseBind,
    pub device_retransmit: bool,
    /// The device ignores BINDs until a valid 0x19 sign (direct sessions).
    pub require_sign: bool,
    /// The device sends its binding request before the cloud's 200
    /// (mcw0's observation) instead of in answer to the client's request.
    pub punch_before_200: bool,
    /// Largest accepted difference between WSSE `Created` and our clock.
    pub max_skew: Duration,
    /// Delay between `100 Trying` and `200 Server Nat Info!`.
    pub trying_delay: Duration,
    pub vanish_after: Option<Duration>,
    pub vanish_for: Option<Duration>,
    /// The device's idle timeout for a silent session.
    pub device_idle_timeout: Duration,
    /// Device heartbeat interval.
    pub device_heartbeat: Duration,
    /// Seed of every random choice (salt, tokens, nonces, realm answers).
    pub seed: u64,
    /// `DevVersion` answered by /info/device.
    pub dev_version: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let mut services = BTreeMap::new();
        services.insert(554, Service::BuiltinRtsp);
        EmulatorConfig {
            serials: vec!["DEMO00000000001".to_string()],
            username: "admin".to_string(),
            password: "admin".to_string(),
            auth: AuthPolicy::None,
            mode: Mode::Direct,
            dialect: CloudDialect::Legacy,
            services,
            max_realms: 8,
            refuse_bind: RefuseBind::Silent,
            device_retransmit: true,
            require_sign: true,
            punch_before_200: false,
            max_skew: Duration::from_secs(300),
            trying_delay: Duration::from_millis(20),
            vanish_after: None,
            vanish_for: None,
            device_idle_timeout: Duration::from_secs(30),
            device_heartbeat: Duration::from_secs(5),
            seed: 1,
            dev_version: "6.7.11".to_string(),
        }
    }
}

/// Socket address of every role (all on one IP, each on its own port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleAddrs {
    pub cloud: SocketAddr,
    pub p2psrv: SocketAddr,
    pub relay: SocketAddr,
    pub agent: SocketAddr,
    pub device: SocketAddr,
}
