//! What the tunnel driver is told, as data: one camera's configuration
//! ([`CameraConfig`]: serial, credentials source, cloud, mode, ports,
//! timeouts, limits) with its defaults and validation in one place, built
//! the same way from `dhp2p tunnel` flags or a TOML file of `[[camera]]`
//! entries with a `[defaults]` section; and from it the driver's
//! [`TunnelOptions`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::driver::{CloudCandidate, PortSpec, RemotePort, Target, TunnelOptions};
use crate::codec::cloud::{Dialect, HostPort};
use crate::codec::identity::{self, CloudProfile};
use crate::net::record::Recorder;
use crate::session::handshake::PathMode;
use crate::session::ptcp::PeerWindow;
use crate::session::tunnel::TunnelConfig;

/// Every default of a camera's configuration, in one place (the flags'
/// help shows them too).
pub mod defaults {
    /// Realms one device session carries before another opens (a guess).
    pub const MAX_REALMS: usize = 8;
    /// Most device sessions at once.
    pub const MAX_SESSIONS: usize = 8;
    /// Seconds without a datagram from the device before the session is lost.
    pub const IDLE_TIMEOUT_SECS: u64 = 10;
    /// Seconds between our heartbeats (5, as the original; the SDK uses 10).
    pub const HEARTBEAT_SECS: u64 = 5;
    /// Seconds a client that connects early may wait for the device.
    pub const HOLD_TIMEOUT_SECS: u64 = 15;
    /// Local address of the UDP sockets.
    pub const UDP_BIND: &str = "0.0.0.0";
    /// The one port served unless told otherwise: the device's RTSP.
    pub const PORT: &str = "127.0.0.1:1554:rtsp";
    /// Longest serial accepted (real ones are 15-20 characters).
    pub const MAX_SERIAL_LEN: usize = 64;
}

/// Why a camera configuration is unusable. Every one is a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("serial {serial:?}: {reason}")]
    BadSerial { serial: String, reason: String },
    #[error("--password needs --username (in a file: password, password_file or password_env need username)")]
    PasswordWithoutUsername,
    #[error("give one password source, not several (--password, --password-file, password_env)")]
    SeveralPasswordSources,
    #[error(
        "--idle-timeout {idle} s must be longer than the heartbeat ({heartbeat} s, --heartbeat): \
         the session would be declared lost between two heartbeats"
    )]
    IdleBelowHeartbeat { idle: u64, heartbeat: u64 },
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("no port to serve")]
    NoPorts,
    #[error("{0}")]
    File(String),
}

/// Which cloud to ask.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CloudChoice {
    /// Every built-in cloud in the identity table's order; a 404 moves on.
    #[default]
    All,
    /// One built-in profile by name or alias.
    Named(String),
    /// A custom cloud (the emulator): the default profile's pair and dialect.
    Address(HostPort),
}

impl FromStr for CloudChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<CloudChoice, String> {
        if s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("auto") {
            return Ok(CloudChoice::All);
        }
        if let Some(profile) = identity::by_name(s) {
            return Ok(CloudChoice::Named(profile.name));
        }
        if s.starts_with('[') || s.matches(':').count() > 1 {
            return Err(format!(
                "{s:?}: the cloud protocol is IPv4-only here; give an IPv4 address or a host name as HOST:PORT"
            ));
        }
        let names: Vec<String> = identity::profiles().into_iter().map(|p| p.name).collect();
        let unknown = || {
            format!(
                "{s:?} is not a cloud: want one of {}, all, or HOST:PORT",
                names.join(", ")
            )
        };
        let address = HostPort::from_str(s).map_err(|_| unknown())?;
        if address.port == 0 {
            return Err(unknown());
        }
        Ok(CloudChoice::Address(address))
    }
}

impl fmt::Display for CloudChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudChoice::All => f.write_str("all"),
            CloudChoice::Named(name) => f.write_str(name),
            CloudChoice::Address(a) => write!(f, "{}:{}", a.host, a.port),
        }
    }
}

impl TryFrom<String> for CloudChoice {
    type Error = String;
    fn try_from(s: String) -> Result<CloudChoice, String> {
        s.parse()
    }
}

impl From<CloudChoice> for String {
    fn from(c: CloudChoice) -> String {
        c.to_string()
    }
}

impl CloudChoice {
    /// The profiles to try, in order (environment overrides not applied).
    pub fn profiles(&self) -> Vec<CloudProfile> {
        match self {
            CloudChoice::All => identity::auto_order(),
            CloudChoice::Named(name) => identity::by_name(name).into_iter().collect(),
            CloudChoice::Address(a) => vec![CloudProfile {
                name: "custom".to_owned(),
                host: a.host.clone(),
                port: a.port,
                ..identity::default_profile()
            }],
        }
    }
}

/// How the device is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Hole punching first, the relay if that fails.
    #[default]
    Auto,
    /// Hole punching only.
    Direct,
    /// The relay only.
    Relay,
}

impl From<Mode> for PathMode {
    fn from(m: Mode) -> PathMode {
        match m {
            Mode::Auto => PathMode::Auto,
            Mode::Direct => PathMode::Direct,
            Mode::Relay => PathMode::Relay,
        }
    }
}

/// What the device's advertised window (the PTCP `pid`) means to the
/// tunnel. Reading a zero window as "send no new DATA" is dhp2p's own
/// reading of FIELD-NOTES C1, not something a capture shows
/// (docs/PROTOCOL.md 5.2), so it can be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerWindowRule {
    /// No new DATA while the device's window reads zero; one probe body
    /// when nothing is in flight.
    #[default]
    Pause,
    /// The field is not read (the original client).
    Ignore,
}

impl From<PeerWindowRule> for PeerWindow {
    fn from(r: PeerWindowRule) -> PeerWindow {
        match r {
            PeerWindowRule::Pause => PeerWindow::PauseWhenClosed,
            PeerWindowRule::Ignore => PeerWindow::Ignore,
        }
    }
}

/// Where the device password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Inline(String),
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// Ask on the terminal (the command layer does).
    Prompt,
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            CredentialSource::File(p) => write!(f, "File({})", p.display()),
            CredentialSource::Env(v) => write!(f, "Env({v})"),
            CredentialSource::Prompt => f.write_str("Prompt"),
        }
    }
}

/// Why a password could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read the password file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the password variable {0} is not set")]
    EnvUnset(String),
}

impl CredentialSource {
    /// The password, unless it must be asked for (`Ok(None)` for
    /// [`CredentialSource::Prompt`]). A file keeps its content up to the
    /// first line end; one readable by others is warned about.
    pub fn read(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, PasswordError> {
        match self {
            CredentialSource::Inline(p) => Ok(Some(p.clone())),
            CredentialSource::Env(var) => env(var)
                .map(Some)
                .ok_or_else(|| PasswordError::EnvUnset(var.clone())),
            CredentialSource::Prompt => Ok(None),
            CredentialSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| PasswordError::File {
                    path: path.clone(),
                    source,
                })?;
                if readable_by_others(path) {
                    tracing::warn!(
                        "the password file {} is readable by other users (chmod 600 it)",
                        path.display()
                    );
                }
                Ok(Some(text.lines().next().unwrap_or("").to_owned()))
            }
        }
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

/// One camera (or NVR) to tunnel to: `dhp2p tunnel`'s flags, or one
/// `[[camera]]` of a service file. Defaults are in [`defaults`]; call
/// [`CameraConfig::validate`] before use (the builders here do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// A label for logs and status (a file's cameras have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Inline password (never written back out).
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Name of the environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default)]
    pub cloud: CloudChoice,
    /// Request dialect, overriding the cloud profile's.
    #[serde(
        default,
        with = "dialect_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub dialect: Option<Dialect>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_ports")]
    pub ports: Vec<PortSpec>,
    /// The sign exchange (relay lease → 0x17 → 0x19).
    #[serde(default = "yes")]
    pub sign: bool,
    /// Whether a device window of zero pauses new DATA (`pause`) or is
    /// not read (`ignore`).
    #[serde(default)]
    pub peer_window: PeerWindowRule,
    #[serde(default = "default_max_realms")]
    pub max_realms: usize,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Seconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Seconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: u64,
    /// Seconds.
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout: u64,
    #[serde(default = "default_udp_bind")]
    pub udp_bind: IpAddr,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}
fn default_ports() -> Vec<PortSpec> {
    defaults::PORT.parse().map(|p| vec![p]).unwrap_or_default()
}
fn default_max_realms() -> usize {
    defaults::MAX_REALMS
}
fn default_max_sessions() -> usize {
    defaults::MAX_SESSIONS
}
fn default_idle_timeout() -> u64 {
    defaults::IDLE_TIMEOUT_SECS
}
fn default_heartbeat() -> u64 {
    defaults::HEARTBEAT_SECS
}
fn default_hold_timeout() -> u64 {
    defaults::HOLD_TIMEOUT_SECS
}
fn default_udp_bind() -> IpAddr {
    defaults::UDP_BIND
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

mod dialect_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::codec::cloud::Dialect;

    pub fn serialize<S: Serializer>(d: &Option<Dialect>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dialect>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `[bind_addr:]local_port:remote_port`; remote `RTSP` means the device's
/// rtspport from /info/device (554 when unknown).
impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (head, remote) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected [BIND_ADDR:]LOCAL_PORT:REMOTE_PORT"))?;
        let remote = if remote.eq_ignore_ascii_case("rtsp") {
            RemotePort::Rtsp
        } else {
            RemotePort::Port(
                remote
                    .parse()
                    .map_err(|_| format!("{s:?}: remote port {remote:?} is not a port or RTSP"))?,
            )
        };
        let (bind, local) = match head.rsplit_once(':') {
            Some((addr, port)) => (
                addr.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?,
                port,
            ),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), head),
        };
        let local = local
            .parse()
            .map_err(|_| format!("{s:?}: local port {local:?} is not a port number"))?;
        Ok(PortSpec {
            bind,
            local,
            remote,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remote = match self.remote {
            RemotePort::Rtsp => "rtsp".to_owned(),
            RemotePort::Port(p) => p.to_string(),
        };
        match self.bind {
            IpAddr::V6(a) => write!(f, "[{a}]:{}:{remote}", self.local),
            IpAddr::V4(a) => write!(f, "{a}:{}:{remote}", self.local),
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortSpec, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Checks a serial before anything is sent: letters and digits only (no
/// CR/LF that would end a request line), not empty, not absurdly long.
pub fn validate_serial(serial: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::BadSerial {
        serial: serial.to_owned(),
        reason: reason.to_owned(),
    };
    if serial.is_empty() {
        return Err(bad("empty"));
    }
    if serial.len() > defaults::MAX_SERIAL_LEN {
        return Err(bad(&format!(
            "longer than {} characters",
            defaults::MAX_SERIAL_LEN
        )));
    }
    if !serial.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad("only letters A-Z, a-z and digits 0-9 may appear"));
    }
    Ok(())
}

impl CameraConfig {
    /// A camera with every default, for `serial`.
    pub fn new(serial: impl Into<String>) -> CameraConfig {
        CameraConfig {
            name: None,
            serial: serial.into(),
            username: None,
            password: None,
            password_file: None,
            password_env: None,
            cloud: CloudChoice::All,
            dialect: None,
            mode: Mode::Auto,
            ports: default_ports(),
            sign: true,
            peer_window: PeerWindowRule::Pause,
            max_realms: defaults::MAX_REALMS,
            max_sessions: defaults::MAX_SESSIONS,
            idle_timeout: defaults::IDLE_TIMEOUT_SECS,
            heartbeat: defaults::HEARTBEAT_SECS,
            hold_timeout: defaults::HOLD_TIMEOUT_SECS,
            udp_bind: default_udp_bind(),
            enabled: true,
        }
    }

    /// The one place a camera's settings are checked.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_serial(&self.serial)?;
        let sources = [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_env.is_some(),
        ];
        let given = sources.iter().filter(|s| **s).count();
        if given > 0 && self.username.is_none() {
            return Err(ConfigError::PasswordWithoutUsername);
        }
        if given > 1 {
            return Err(ConfigError::SeveralPasswordSources);
        }
        for (what, value) in [
            ("max_realms", self.max_realms as u64),
            ("max_sessions", self.max_sessions as u64),
            ("heartbeat", self.heartbeat),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { what });
            }
        }
        if self.idle_timeout <= self.heartbeat {
            return Err(ConfigError::IdleBelowHeartbeat {
                idle: self.idle_timeout,
                heartbeat: self.heartbeat,
            });
        }
        if self.ports.is_empty() {
            return Err(ConfigError::NoPorts);
        }
        Ok(())
    }

    /// Where the password comes from; `None` without a username.
    pub fn credential_source(&self) -> Option<CredentialSource> {
        self.username.as_ref()?;
        Some(if let Some(p) = &self.password {
            CredentialSource::Inline(p.clone())
        } else if let Some(path) = &self.password_file {
            CredentialSource::File(path.clone())
        } else if let Some(var) = &self.password_env {
            CredentialSource::Env(var.clone())
        } else {
            CredentialSource::Prompt
        })
    }

    /// Who the driver reaches and how; `password` from the credential source.
    pub fn target(&self, password: Option<String>) -> Target {
        Target {
            serial: self.serial.clone(),
            credentials: self.username.clone().zip(password),
            mode: self.mode.into(),
            use_sign: self.sign,
            peer_window: self.peer_window.into(),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            heartbeat: Duration::from_secs(self.heartbeat),
        }
    }
}

/// A service file: `[defaults]` merged under every `[[camera]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraFile {
    #[serde(default)]
    defaults: toml::Table,
    #[serde(default)]
    camera: Vec<toml::Table>,
}

/// The cameras of a TOML service file, each validated; keys a camera sets
/// win over `[defaults]`.
pub fn cameras_from_toml(text: &str) -> Result<Vec<CameraConfig>, ConfigError> {
    let file: CameraFile = toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))?;
    file.camera
        .into_iter()
        .enumerate()
        .map(|(i, table)| {
            let mut merged = file.defaults.clone();
            merged.extend(table);
            let camera: CameraConfig = toml::Value::Table(merged)
                .try_into()
                .map_err(|e| ConfigError::File(format!("camera {}: {e}", i + 1)))?;
            camera.validate()?;
            Ok(camera)
        })
        .collect()
}

/// The clouds to try, resolved (IPv4), in order; environment overrides
/// (`DHP2P_CLOUD_HOST`…) applied with `env`.
pub async fn resolve_clouds(
    choice: &CloudChoice,
    dialect: Option<Dialect>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<CloudCandidate>> {
    let mut out = Vec::new();
    for profile in choice.profiles() {
        let mut profile = profile.with_overrides(&env)?;
        if let Some(d) = dialect {
            profile.dialect = d;
        }
        let target = profile.address();
        let resolved = tokio::net::lookup_host(target.as_str())
            .await
            .map(|addrs| addrs.filter(SocketAddr::is_ipv4).collect::<Vec<_>>());
        match resolved {
            Ok(addrs) => {
                if let Some(addr) = addrs.first().copied() {
                    out.push(CloudCandidate { profile, addr });
                }
            }
            Err(e) => tracing::warn!("cannot resolve the {} cloud ({target}): {e}", profile.name),
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no cloud address could be resolved: check the network or --cloud"
    );
    Ok(out)
}

/// The driver's options for a validated camera, its password and clouds.
pub fn tunnel_options(
    camera: &CameraConfig,
    password: Option<String>,
    clouds: Vec<CloudCandidate>,
    recorder: Recorder,
) -> TunnelOptions {
    TunnelOptions {
        target: camera.target(password),
        clouds,
        tunnel: TunnelConfig {
            max_realms: camera.max_realms,
            ..TunnelConfig::default()
        },
        ports: camera.ports.clone(),
        udp_bind: camera.udp_bind,
        hold_timeout: Duration::from_secs(camera.hold_timeout),
        bind_delay: Duration::from_millis(300),
        max_sessions: camera.max_sessions,
        keep_warm: true,
        max_backoff: Duration::from_secs(30),
        recorder,
        counters: Default::default(),
    }
}

/// Options for a tunnel to a cloud on loopback (the emulator): `demo`,
/// `tools/bench` and tests. One listener on 127.0.0.1:`local_port`.
pub fn loopback_options(
    cloud: SocketAddr,
    serial: &str,
    credentials: Option<(String, String)>,
    local_port: u16,
    remote: RemotePort,
) -> anyhow::Result<TunnelOptions> {
    let profile = identity::resolve(&cloud.to_string())?;
    let mut camera = CameraConfig::new(serial);
    camera.username = credentials.as_ref().map(|(u, _)| u.clone());
    camera.ports = vec![PortSpec {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local: local_port,
        remote,
    }];
    camera.udp_bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let clouds = vec![CloudCandidate {
        profile,
        addr: cloud,
    }];
    let mut opts = tunnel_options(
        &camera,
        credentials.map(|(_, p)| p),
        clouds,
        Recorder::disabled(),
    );
    opts.max_backoff = Duration::from_secs(5);
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_with_line_ends_or_nothing_are_refused() {
        assert!(validate_serial("ABC123456789XYZ").is_ok());
        for bad in ["", "ABC\r\nHost: x", "ABC 123", "ABC/123", &"A".repeat(65)] {
            assert!(validate_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cloud_choices_parse_names_addresses_and_refuse_ipv6() {
        assert_eq!("dolynk".parse(), Ok(CloudChoice::Named("dmss".into())));
        assert_eq!("all".parse(), Ok(CloudChoice::All));
        assert!(matches!(
            "127.0.0.1:8800".parse(),
            Ok(CloudChoice::Address(HostPort { port: 8800, .. }))
        ));
        let v6 = "[::1]:8800".parse::<CloudChoice>().unwrap_err();
        assert!(v6.contains("IPv4-only"), "{v6}");
        assert!("nowhere".parse::<CloudChoice>().is_err());
        assert!("host:0".parse::<CloudChoice>().is_err());
    }

    #[test]
    fn validation_names_the_rule() {
        let mut c = CameraConfig::new("ABC123");
        c.password = Some("x".into());
        assert_eq!(c.validate(), Err(ConfigError::PasswordWithoutUsername));
        let mut c = CameraConfig::new("ABC123");
        c.idle_timeout = 3;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("heartbeat (5 s"), "{e}");
    }

    #[test]
    fn defaults_merge_under_each_camera_and_unknown_keys_fail() {
        let text = r#"
            [defaults]
            username = "admin"
            password_env = "CAM_PASS"
            cloud = "dmss"

            [[camera]]
            name = "door"
            serial = "ABC123456789XYZ"
            ports = ["1554:rtsp", "8080:80"]

            [[camera]]
            serial = "DEF456"
            cloud = "127.0.0.1:8800"
            mode = "relay"
            enabled = false
        "#;
        let cams = cameras_from_toml(text).unwrap();
        assert_eq!(cams.len(), 2);
        assert_eq!(cams[0].cloud, CloudChoice::Named("dmss".into()));
        assert_eq!(cams[0].ports.len(), 2);
        assert_eq!(
            cams[0].credential_source(),
            Some(CredentialSource::Env("CAM_PASS".into()))
        );
        assert_eq!(cams[1].mode, Mode::Relay);
        assert!(!cams[1].enabled);
        assert_eq!(cams[1].ports, default_ports());
        let typo = "[[camera]]\nserial = \"ABC123\"\nusrename = \"admin\"\n";
        assert!(cameras_from_toml(typo).is_err());
        let bad = "[[camera]]\nserial = \"ABC\\r\\n123\"\n";
        assert!(matches!(
            cameras_from_toml(bad),
            Err(ConfigError::BadSerial { .. })
        ));
    }

    #[test]
    fn a_camera_round_trips_through_toml() {
        let mut c = CameraConfig::new("ABC123");
        c.cloud = "127.0.0.1:9000".parse().unwrap();
        c.dialect = Some(Dialect::Sdk);
        c.ports = vec!["[::1]:1554:rtsp".parse().unwrap()];
        c.peer_window = PeerWindowRule::Ignore;
        let text = toml::to_string(&c).unwrap();
        let back: CameraConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_peer_window_rule_reaches_every_attempts_ptcp_and_defaults_to_pause() {
        let cloud = CloudCandidate {
            profile: identity::resolve("127.0.0.1:9000").unwrap(),
            addr: "127.0.0.1:9000".parse().unwrap(),
        };
        let mut c = CameraConfig::new("ABC123");
        let ptcp = |c: &CameraConfig| c.target(None).handshake(&cloud).ptcp.peer_window;
        assert_eq!(ptcp(&c), PeerWindow::PauseWhenClosed);
        c.peer_window = PeerWindowRule::Ignore;
        assert_eq!(ptcp(&c), PeerWindow::Ignore);
        let bad = "[[camera]]\nserial = \"ABC123\"\npeer_window = \"sometimes\"\n";
        let err = cameras_from_toml(bad).unwrap_err().to_string();
        assert!(
            err.contains("peer_window") || err.contains("sometimes"),
            "{err}"
        );
    }
}
