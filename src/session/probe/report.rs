//! What a probe found about one serial: the verdict, the cloud that knows
//! it, firmware and ports, and (with `--deep`) the handshake's outcome.
//! Serialised as `dhp2p probe --json` (schema in docs/PROBE.md).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::codec::crypto::DeviceInfo;

/// The one-word answer for a serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A cloud knows it and its P2P server says it is online.
    Online,
    /// A cloud knows it but its P2P server says 404 at `/probe/device`.
    Offline,
    /// Every cloud asked answered 404 at `/online/p2psrv`: the serial is
    /// unknown to them, or (on clouds that do not tell) offline.
    Unknown,
    /// Some question got no usable answer (timeout, refusal).
    #[default]
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Online => "online",
            Verdict::Offline => "offline",
            Verdict::Unknown => "unknown",
            Verdict::Failed => "failed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one cloud answered `/online/p2psrv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudAnswer {
    Known,
    NotFound,
    /// Any other status, with its text (e.g. `401 InvalidDigest`).
    Refused(String),
    NoAnswer,
}

impl fmt::Display for CloudAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudAnswer::Known => f.write_str("known"),
            CloudAnswer::NotFound => f.write_str("404"),
            CloudAnswer::Refused(text) => f.write_str(text),
            CloudAnswer::NoAnswer => f.write_str("no answer"),
        }
    }
}

impl Serialize for CloudAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The ports `/info/device`'s decrypted `Info` names. The salt itself is
/// never reported, only whether there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePorts {
    pub http: Option<u16>,
    pub rtsp: Option<u16>,
    /// DVRIP (37777).
    pub private: Option<u16>,
    pub tls_private: Option<u16>,
    pub salt: bool,
}

impl ServicePorts {
    pub fn from_info(info: &DeviceInfo) -> ServicePorts {
        ServicePorts {
            http: info.httpport,
            rtsp: info.rtspport,
            private: info.privport,
            tls_private: info.tlsprivport,
            salt: !info.salt().is_empty(),
        }
    }

    /// `rtsp 554, http 80` for a table cell.
    pub fn summary(&self) -> String {
        let named = [
            ("rtsp", self.rtsp),
            ("http", self.http),
            ("dvrip", self.private),
            ("tls", self.tls_private),
        ];
        let parts: Vec<String> = named
            .iter()
            .filter_map(|(name, port)| port.map(|p| format!("{name} {p}")))
            .collect();
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The `--deep` handshake's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeepReport {
    /// `direct-lan`, `direct-public`, `relay`, or null when no path worked.
    pub path: Option<String>,
    /// The cloud asked for device authentication (403 `DevPwd_InvalidSalt`).
    pub auth_required: bool,
    /// Credentials were given and accepted (null when none were needed or
    /// the handshake failed before the device answered).
    pub auth_accepted: Option<bool>,
    #[serde(rename = "time_to_ready_ms", serialize_with = "millis")]
    pub time_to_ready: Option<Duration>,
    pub error: Option<String>,
}

/// Everything found about one serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub serial: String,
    pub verdict: Verdict,
    /// The cloud that knows the serial.
    pub cloud: Option<String>,
    /// Each cloud asked, in order, and its answer.
    #[serde(serialize_with = "cloud_list")]
    pub clouds: Vec<(String, CloudAnswer)>,
    pub p2psrv: Option<SocketAddr>,
    /// `DevVersion`.
    pub firmware: Option<String>,
    pub ports: Option<ServicePorts>,
    pub deep: Option<DeepReport>,
    /// Why the verdict is `failed`.
    pub error: Option<String>,
    /// Something missing that did not change the verdict.
    pub note: Option<String>,
    /// Requests sent, resends included.
    pub requests: u32,
    /// Datagrams received that answered nothing.
    pub skipped: u32,
    /// From the start to the last answer.
    #[serde(rename = "elapsed_ms", serialize_with = "millis_plain")]
    pub elapsed: Duration,
}

impl ProbeReport {
    pub fn new(serial: &str) -> ProbeReport {
        ProbeReport {
            serial: serial.to_owned(),
            verdict: Verdict::Failed,
            cloud: None,
            clouds: Vec::new(),
            p2psrv: None,
            firmware: None,
            ports: None,
            deep: None,
            error: None,
            note: None,
            requests: 0,
            skipped: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// A serial that was never asked about (invalid), or whose probe broke.
    pub fn failed(serial: &str, error: String) -> ProbeReport {
        ProbeReport {
            error: Some(error),
            ..ProbeReport::new(serial)
        }
    }
}

fn cloud_list<S: serde::Serializer>(
    list: &[(String, CloudAnswer)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(list.len()))?;
    for (name, answer) in list {
        seq.serialize_element(&serde_json::json!({ "cloud": name, "answer": answer.to_string() }))?;
    }
    seq.end()
}

fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

fn millis_plain<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}
