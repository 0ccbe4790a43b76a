//! `[mqtt]` of serve's file: the broker, credentials, topics and how often
//! state is republished. Read at start (a reload keeps the running broker
//! connection).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::tunnel::config::CredentialSource;

/// The broker unless the file gives one.
pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
pub const DEFAULT_TOPIC_PREFIX: &str = "dhp2p";
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";
/// Seconds between state messages when nothing changes.
pub const DEFAULT_STATE_INTERVAL: u64 = 15;

/// `[mqtt]`: absent means no MQTT. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883, TLS).
    #[serde(default = "default_broker")]
    pub broker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Inline password (never written back out); prefer `password_file`.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Default `dhp2p-HOSTNAME`; two serve processes on one broker need
    /// different ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Home Assistant's discovery prefix; empty disables discovery.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Most seconds between two state messages of a camera.
    #[serde(default = "default_state_interval")]
    pub state_interval: u64,
    /// Accept `PREFIX/CAMERA/set` commands (`restart`).
    #[serde(default)]
    pub commands: bool,
    /// PEM file of the CA that signed an `mqtts://` broker's certificate
    /// (default: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("broker", &self.broker)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("discovery_prefix", &self.discovery_prefix)
            .field("state_interval", &self.state_interval)
            .field("commands", &self.commands)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn default_broker() -> String {
    DEFAULT_BROKER.to_owned()
}
fn default_topic_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.to_owned()
}
fn default_discovery_prefix() -> String {
    DEFAULT_DISCOVERY_PREFIX.to_owned()
}
fn default_state_interval() -> u64 {
    DEFAULT_STATE_INTERVAL
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`, IPv6 in brackets.
pub fn parse_broker(url: &str) -> Result<Broker, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!(
            "broker {url:?}: want mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("broker {url:?}: unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("broker {url:?}: unexpected {after:?}")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
        return Err(format!("broker {url:?}: want mqtt://HOST[:PORT]"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("broker {url:?}: {p:?} is not a port"))?,
        None => default_port,
    };
    Ok(Broker {
        tls,
        host: host.to_owned(),
        port,
    })
}

/// A topic level string: no wildcards, no empty levels.
fn check_prefix(key: &str, value: &str, may_be_empty: bool) -> Result<(), String> {
    if value.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(format!("mqtt: `{key}` may not be empty"))
        };
    }
    if value.contains(['+', '#', '\0']) || value.split('/').any(str::is_empty) {
        return Err(format!(
            "mqtt: `{key}` {value:?} must be topic levels without +, # or empty levels"
        ));
    }
    Ok(())
}

impl MqttConfig {
    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), String> {
        parse_broker(&self.broker).map_err(|e| format!("mqtt: {e}"))?;
        check_prefix("topic_prefix", &self.topic_prefix, false)?;
        check_prefix("discovery_prefix", &self.discovery_prefix, true)?;
        if self.state_interval == 0 {
            return Err("mqtt: `state_interval` must be at least 1 (seconds)".to_owned());
        }
        let sources = [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_env.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(
                "mqtt: give one password source (password, password_file or password_env)"
                    .to_owned(),
            );
        }
        if sources.iter().any(|s| *s) && self.username.is_none() {
            return Err("mqtt: a password needs `username`".to_owned());
        }
        if self.client_id.as_deref() == Some("") {
            return Err("mqtt: `client_id` may not be empty".to_owned());
        }
        if self.ca_file.is_some() && !parse_broker(&self.broker).is_ok_and(|b| b.tls) {
            return Err("mqtt: `ca_file` needs an mqtts:// broker".to_owned());
        }
        Ok(())
    }

    /// Where the password comes from, if any (never a prompt: serve runs
    /// unattended).
    pub fn credential_source(&self) -> Option<CredentialSource> {
        if let Some(p) = &self.password {
            Some(CredentialSource::Inline(p.clone()))
        } else if let Some(path) = &self.password_file {
            Some(CredentialSource::File(path.clone()))
        } else {
            self.password_env.clone().map(CredentialSource::Env)
        }
    }

    /// The configured client id, or `dhp2p-HOSTNAME`.
    pub fn effective_client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("dhp2p-{}", hostname()))
    }
}

/// This machine's name (Linux), else `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<MqttConfig, String> {
        let c: MqttConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn brokers_parse_with_default_ports() {
        assert_eq!(
            parse_broker("mqtt://127.0.0.1").unwrap(),
            Broker {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        let b = parse_broker("mqtts://broker.lan:8884").unwrap();
        assert_eq!((b.tls, b.port), (true, 8884));
        assert_eq!(parse_broker("mqtt://[::1]:1884").unwrap().host, "::1");
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:port",
            "mqtt://u@h",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_checks() {
        let c = config("").unwrap();
        assert_eq!(c.broker, DEFAULT_BROKER);
        assert_eq!(c.topic_prefix, "dhp2p");
        assert_eq!(c.discovery_prefix, "homeassistant");
        assert!(!c.commands);
        assert!(c.effective_client_id().starts_with("dhp2p-"));
        assert!(config("discovery_prefix = \"\"").is_ok());
        assert!(config("topic_prefix = \"a/#\"").is_err());
        assert!(config("topic_prefix = \"a//b\"").is_err());
        assert!(config("state_interval = 0").is_err());
        assert!(
            config("password_env = \"X\"").is_err(),
            "password without username"
        );
        assert!(config("usernme = \"x\"").is_err());
        assert!(
            config("ca_file = \"/x.pem\"").is_err(),
            "ca_file on plain mqtt"
        );
    }

    #[test]
    fn the_serve_file_checks_mqtt_with_line_numbers_and_prints_no_password() {
        let path = std::path::Path::new("t.toml");
        let parse = |text: &str| crate::serve::config::parse(path, text);
        let e = parse("[mqtt]\nbroker = \"tcp://x\"\n").unwrap_err();
        assert!(e.message.contains("broker"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
        let e = parse("\n[mqtt]\nbrokr = \"mqtt://x\"\n").unwrap_err();
        assert!(e.to_string().contains("brokr"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        let ok = parse("[mqtt]\nusername = \"u\"\npassword = \"hunter2\"\n").unwrap();
        let printed = ok.to_redacted_toml();
        assert!(
            printed.contains("[mqtt]") && printed.contains("username"),
            "{printed}"
        );
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!format!("{ok:?}").contains("hunter2"));
    }
}
