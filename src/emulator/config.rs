//! What the emulated cloud and device are told to be (the `emulate-device`
//! flags), as plain data.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::net::faults::FaultConfig;

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
    /// The cloud reports the device offline (404), already at `/online/p2psrv`
    /// as if it did not know it (FIELD-NOTES C: "wrong cloud or offline").
    Offline,
    /// The cloud knows the device (200 at `/online/p2psrv`) but the P2P
    /// server says it is away: 404 at `/probe/device` and `/info/device`
    /// (FIELD-NOTES: "200 online, 404 offline"). Real clouds are seen doing
    /// both; this one lets `dhp2p probe` tell "offline" from "unknown".
    OfflineKnown,
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
    /// More devices, each with its own socket and settings (`--device`,
    /// `--fleet`); see [`EmulatorConfig::units`].
    pub fleet: Vec<DeviceSpec>,
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
            fleet: Vec::new(),
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

/// One device of a fleet (`--device SERIAL,key=value,…` or a `[[device]]`
/// table of `--fleet FILE.toml`). Keys left out take the global flags' value.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceSpec {
    pub serial: String,
    #[serde(default, deserialize_with = "de_from_str")]
    pub auth: Option<AuthPolicy>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "de_from_str")]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub loss: Option<f64>,
    #[serde(default)]
    pub dup: Option<f64>,
    #[serde(default)]
    pub reorder: Option<f64>,
    /// Milliseconds.
    #[serde(default)]
    pub delay: Option<u64>,
    /// Seconds.
    #[serde(default)]
    pub vanish_after: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub vanish_for: Option<f64>,
    #[serde(default)]
    pub max_realms: Option<usize>,
    /// The cloud this device is registered with: a profile name
    /// (codec/identity.rs). Unset: the main cloud (`--cloud-port`).
    #[serde(default)]
    pub cloud: Option<String>,
}

fn de_from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let text = <String as serde::Deserialize>::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

impl FromStr for AuthPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AuthPolicy::None),
            "required" => Ok(AuthPolicy::Required),
            other => Err(format!("auth {other:?}: expected none or required")),
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(Mode::Direct),
            "relay-only" => Ok(Mode::RelayOnly),
            "offline" => Ok(Mode::Offline),
            "offline-known" => Ok(Mode::OfflineKnown),
            other => Err(format!(
                "mode {other:?}: expected direct, relay-only, offline or offline-known"
            )),
        }
    }
}

/// Characters a serial may have (real ones are 15–20 capitals and digits).
fn check_serial(serial: &str) -> Result<(), String> {
    let ok = !serial.is_empty()
        && serial.len() <= 64
        && serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "serial {serial:?}: expected 1-64 letters, digits, '-' or '_'"
        ))
    }
}

fn parse_value<T: FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{key}={value:?} is not a valid {key}"))
}

impl FromStr for DeviceSpec {
    type Err = String;
    /// `SERIAL[,key=value…]`, keys as in the TOML file.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let serial = parts.next().unwrap_or_default().trim().to_string();
        let mut spec = DeviceSpec {
            serial,
            ..DeviceSpec::default()
        };
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KEY=VALUE"))?;
            match key {
                "auth" => spec.auth = Some(value.parse()?),
                "password" => spec.password = Some(value.to_string()),
                "mode" => spec.mode = Some(value.parse()?),
                "loss" => spec.loss = Some(parse_value(key, value)?),
                "dup" => spec.dup = Some(parse_value(key, value)?),
                "reorder" => spec.reorder = Some(parse_value(key, value)?),
                "delay" => spec.delay = Some(parse_value(key, value)?),
                "vanish-after" => spec.vanish_after = Some(parse_value(key, value)?),
                "vanish-for" => spec.vanish_for = Some(parse_value(key, value)?),
                "max-realms" => spec.max_realms = Some(parse_value(key, value)?),
                "cloud" => spec.cloud = Some(value.to_string()),
                other => {
                    return Err(format!(
                        "unknown device key {other:?}: expected auth, password, mode, loss, dup, \
                         reorder, delay, vanish-after, vanish-for, max-realms or cloud"
                    ))
                }
            }
        }
        spec.validate()?;
        Ok(spec)
    }
}

impl DeviceSpec {
    /// Checks what parsing cannot: the serial, percentages, durations, the cloud.
    pub fn validate(&self) -> Result<(), String> {
        check_serial(&self.serial)?;
        for (key, pct) in [
            ("loss", self.loss),
            ("dup", self.dup),
            ("reorder", self.reorder),
        ] {
            if pct.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
                return Err(format!(
                    "{}: {key} must be a percentage from 0 to 100",
                    self.serial
                ));
            }
        }
        for (key, secs) in [
            ("vanish-after", self.vanish_after),
            ("vanish-for", self.vanish_for),
        ] {
            if secs.is_some_and(|s| Duration::try_from_secs_f64(s).is_err()) {
                return Err(format!(
                    "{}: {key} must be a duration in seconds",
                    self.serial
                ));
            }
        }
        if self
            .delay
            .is_some_and(|ms| Duration::from_millis(ms) > crate::net::faults::MAX_DELAY)
        {
            return Err(format!("{}: delay is too long", self.serial));
        }
        if let Some(cloud) = &self.cloud {
            if crate::codec::identity::by_name(cloud).is_none() {
                return Err(format!(
                    "{}: unknown cloud {cloud:?}: want one of easy4ip, easy4ip-retired, amcrest, dmss",
                    self.serial
                ));
            }
        }
        Ok(())
    }
}

/// A `--fleet FILE.toml`: `[[device]]` tables with the keys of [`DeviceSpec`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    #[serde(default)]
    pub device: Vec<DeviceSpec>,
}

impl FleetFile {
    /// Parses a fleet file's text; errors name the line, column and key.
    pub fn parse(text: &str) -> Result<FleetFile, String> {
        let fleet: FleetFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for spec in &fleet.device {
            spec.validate()?;
        }
        Ok(fleet)
    }

    /// Reads and parses `path`; errors name the file.
    pub fn load(path: &std::path::Path) -> Result<FleetFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--fleet {}: {e}", path.display()))?;
        FleetFile::parse(&text).map_err(|e| format!("--fleet {}: {e}", path.display()))
    }
}

/// What one emulated device (with its own UDP socket) is: its serials and
/// the settings that may differ between devices of a fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceUnit {
    pub serials: Vec<String>,
    pub auth: AuthPolicy,
    pub password: String,
    pub mode: Mode,
    pub max_realms: usize,
    pub vanish_after: Option<Duration>,
    pub vanish_for: Option<Duration>,
    /// Cloud profile name; `None` = the main cloud.
    pub cloud: Option<String>,
    /// Fault overrides; `None` keeps the global `--loss/--dup/--reorder/--delay`.
    pub loss: Option<f64>,
    pub dup: Option<f64>,
    pub reorder: Option<f64>,
    pub delay: Option<Duration>,
}

impl DeviceUnit {
    /// Whether this device's faults differ from the global ones.
    pub fn has_own_faults(&self) -> bool {
        self.loss.is_some() || self.dup.is_some() || self.reorder.is_some() || self.delay.is_some()
    }

    /// This device's faults: its own values over the global ones.
    pub fn faults(&self, global: &FaultConfig) -> FaultConfig {
        FaultConfig {
            loss_pct: self.loss.unwrap_or(global.loss_pct),
            dup_pct: self.dup.unwrap_or(global.dup_pct),
            reorder_pct: self.reorder.unwrap_or(global.reorder_pct),
            delay: self.delay.unwrap_or(global.delay),
            seed: global.seed,
        }
    }
}

impl EmulatorConfig {
    /// Every device: the `serials` (one device, today's behaviour) when there
    /// are any, then one per fleet entry, globals filling what it leaves out.
    pub fn units(&self) -> Vec<DeviceUnit> {
        let base = DeviceUnit {
            serials: self.serials.clone(),
            auth: self.auth,
            password: self.password.clone(),
            mode: self.mode,
            max_realms: self.max_realms,
            vanish_after: self.vanish_after,
            vanish_for: self.vanish_for,
            cloud: None,
            loss: None,
            dup: None,
            reorder: None,
            delay: None,
        };
        let mut units = Vec::new();
        if !self.serials.is_empty() {
            units.push(base.clone());
        }
        for spec in &self.fleet {
            let secs = |s: Option<f64>| s.and_then(|s| Duration::try_from_secs_f64(s).ok());
            units.push(DeviceUnit {
                serials: vec![spec.serial.clone()],
                auth: spec.auth.unwrap_or(base.auth),
                password: spec.password.clone().unwrap_or(base.password.clone()),
                mode: spec.mode.unwrap_or(base.mode),
                max_realms: spec.max_realms.unwrap_or(base.max_realms),
                vanish_after: secs(spec.vanish_after).or(base.vanish_after),
                vanish_for: secs(spec.vanish_for).or(base.vanish_for),
                cloud: spec.cloud.as_ref().map(|c| c.to_ascii_lowercase()),
                loss: spec.loss,
                dup: spec.dup,
                reorder: spec.reorder,
                delay: spec.delay.map(Duration::from_millis),
            });
        }
        units
    }

    /// The cloud profiles devices use besides the main cloud, sorted: each
    /// gets its own cloud socket (index 1, 2, … after the main cloud's 0).
    pub fn extra_clouds(&self) -> Vec<String> {
        let mut clouds: Vec<String> = self.units().into_iter().filter_map(|u| u.cloud).collect();
        clouds.sort();
        clouds.dedup();
        clouds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_spec_from_flag_and_units_take_the_globals_for_missing_keys() {
        let spec: DeviceSpec = "CAM1,auth=required,password=p,mode=relay-only,loss=5,cloud=amcrest"
            .parse()
            .unwrap();
        let config = EmulatorConfig {
            serials: Vec::new(),
            max_realms: 3,
            fleet: vec![spec, "CAM2".parse().unwrap()],
            ..EmulatorConfig::default()
        };
        let units = config.units();
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].auth, AuthPolicy::Required);
        assert_eq!(units[0].mode, Mode::RelayOnly);
        assert_eq!(units[0].password, "p");
        assert_eq!(units[0].cloud.as_deref(), Some("amcrest"));
        assert_eq!(units[0].faults(&FaultConfig::none()).loss_pct, 5.0);
        assert_eq!(units[1].password, "admin");
        assert_eq!(units[1].max_realms, 3);
        assert!(!units[1].has_own_faults());
        assert_eq!(config.extra_clouds(), vec!["amcrest".to_string()]);
    }

    #[test]
    fn bad_device_specs_say_what_is_wrong() {
        for (text, want) in [
            ("", "serial"),
            ("CAM1,mode=sideways", "sideways"),
            ("CAM1,loss=150", "percentage"),
            ("CAM1,cloud=nowhere", "nowhere"),
            ("CAM1,colour=red", "colour"),
            ("CAM1,loss", "KEY=VALUE"),
            ("CAM\r\nX,mode=direct", "serial"),
        ] {
            let err = text.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = FleetFile::parse("[[device]]\nserial = \"A\"\nmdoe = \"x\"\n").unwrap_err();
        assert!(err.contains("mdoe") && err.contains("line 3"), "{err}");
    }
}
