//! serve's file: `[http]`, `[defaults]` and `[[camera]]` tables. Each
//! camera is a [`CameraConfig`] (the tunnel's own type, defaults and
//! validation included) with `[defaults]` merged under it; on top, serve
//! requires a unique name and no port shared between cameras. Errors name
//! the file, line, column and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::mqtt::MqttConfig;
use crate::tunnel::config::CameraConfig;

/// The HTTP status server's address unless the file gives one.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9300";

/// `[http]`: absent means no HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

fn default_listen() -> SocketAddr {
    DEFAULT_HTTP_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9300)))
}

/// A whole, valid serve file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    /// In file order; every one has a `name`.
    #[serde(rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    /// `[mqtt]` (src/serve/mqtt): absent means no MQTT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConfig>,
}

/// Why a serve file is unusable: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is the file itself.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ServeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ServeConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    http: Option<HttpConfig>,
    #[serde(default)]
    defaults: Option<toml::Spanned<toml::Table>>,
    #[serde(default)]
    camera: Vec<toml::Spanned<toml::Table>>,
    #[serde(default)]
    mqtt: Option<toml::Spanned<MqttConfig>>,
}

/// Reads and checks a serve file.
pub fn load(path: &Path) -> Result<ServeConfig, ServeConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServeConfigError {
        file: path.to_owned(),
        position: None,
        message: format!("cannot read it: {e}"),
    })?;
    parse(path, &text)
}

/// Checks the text of a serve file (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<ServeConfig, ServeConfigError> {
    let at = |offset: Option<usize>, message: String| ServeConfigError {
        file: path.to_owned(),
        position: offset.map(|o| line_col(text, o)),
        message,
    };
    let raw: RawFile =
        toml::from_str(text).map_err(|e| at(e.span().map(|s| s.start), e.message().to_owned()))?;
    let defaults = raw.defaults.as_ref();
    let mut cameras = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, table) in raw.camera.iter().enumerate() {
        let span = table.span();
        let mut merged = defaults.map(|d| d.get_ref().clone()).unwrap_or_default();
        merged.extend(table.get_ref().clone());
        // Where a complaint about `key` points: this camera's line for
        // it, else the defaults', else the camera's header.
        let find = |key: Option<&str>| {
            key.and_then(|k| {
                locate_key(text, span.clone(), k)
                    .or_else(|| defaults.and_then(|d| locate_key(text, d.span(), k)))
            })
            .unwrap_or(span.start)
        };
        let label = match table.get_ref().get("name").and_then(|n| n.as_str()) {
            Some(n) => format!("camera {n:?}"),
            None => format!("camera {}", i + 1),
        };
        let camera: CameraConfig = toml::Value::Table(merged).try_into().map_err(|e| {
            let msg = toml::de::Error::message(&e).to_owned();
            at(
                Some(find(backquoted(&msg).as_deref())),
                format!("{label}: {msg}"),
            )
        })?;
        camera
            .validate()
            .map_err(|e| at(Some(find(None)), format!("{label}: {e}")))?;
        let Some(name) = camera.name.clone() else {
            return Err(at(
                Some(span.start),
                format!("{label}: missing key `name` (each camera needs a unique name)"),
            ));
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(at(
                Some(find(Some("name"))),
                format!("{label}: `name` may hold only A-Z, a-z, 0-9, - and _"),
            ));
        }
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(at(
                Some(find(Some("name"))),
                format!("duplicate camera name {name:?} (also camera {})", first + 1),
            ));
        }
        if let Some(other) = port_conflict(&cameras, &camera) {
            return Err(at(Some(find(Some("ports"))), format!("{label}: {other}")));
        }
        cameras.push(camera);
    }
    if let Some(mqtt) = &raw.mqtt {
        mqtt.get_ref()
            .validate()
            .map_err(|e| at(Some(mqtt.span().start), e))?;
    }
    Ok(ServeConfig {
        http: raw.http,
        cameras,
        mqtt: raw.mqtt.map(toml::Spanned::into_inner),
    })
}

/// A local port of `camera` some earlier enabled camera already listens on.
fn port_conflict(earlier: &[CameraConfig], camera: &CameraConfig) -> Option<String> {
    if !camera.enabled {
        return None;
    }
    for other in earlier.iter().filter(|c| c.enabled) {
        for mine in &camera.ports {
            for theirs in &other.ports {
                let overlap = mine.bind == theirs.bind
                    || mine.bind.is_unspecified()
                    || theirs.bind.is_unspecified();
                if mine.local != 0 && mine.local == theirs.local && overlap {
                    return Some(format!(
                        "port {mine} conflicts with camera {:?}'s {theirs}",
                        other.name.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
    }
    None
}

/// The first `word` between backquotes in a serde message.
fn backquoted(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

/// The offset of the line assigning `key` in the table whose header starts
/// `span` (up to the next table header).
fn locate_key(text: &str, span: Range<usize>, key: &str) -> Option<usize> {
    let region = text.get(span.start..)?;
    let mut offset = span.start;
    for (i, line) in region.split_inclusive('\n').enumerate() {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start();
        if i > 0 && rest.starts_with('[') {
            return None;
        }
        let rest = rest
            .strip_prefix(key)
            .or_else(|| rest.strip_prefix(&format!("\"{key}\"")));
        if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some(offset + indent);
        }
        offset += line.len();
    }
    None
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

impl ServeConfig {
    /// Every camera's password source that cannot be read (files and
    /// variables), as errors naming the camera and the file or variable.
    pub fn unreadable_secrets(&self, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mqtt = self.mqtt.as_ref().and_then(|m| m.credential_source());
        let mqtt = mqtt.and_then(|s| s.read(&env).err().map(|e| format!("mqtt: {e}")));
        self.cameras
            .iter()
            .filter(|c| c.enabled)
            .filter_map(|c| {
                let source = c.credential_source()?;
                source
                    .read(&env)
                    .err()
                    .map(|e| format!("camera {:?}: {e}", c.name.as_deref().unwrap_or("?")))
            })
            .chain(mqtt)
            .collect()
    }

    /// The effective configuration as TOML, passwords left out.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<ServeConfig, ServeConfigError> {
        parse(Path::new("t.toml"), text)
    }

    #[test]
    fn a_typo_names_its_line_and_column() {
        let e =
            check("[[camera]]\nname = \"a\"\nserial = \"ABC\"\n  usrename = \"x\"\n").unwrap_err();
        assert_eq!(e.position, Some((4, 3)), "{e}");
        assert!(e.to_string().contains("usrename"), "{e}");
    }

    #[test]
    fn defaults_merge_and_names_and_ports_must_be_unique() {
        let ok = "[defaults]\nusername = \"admin\"\npassword_env = \"P\"\n\
                  [[camera]]\nname = \"a\"\nserial = \"A1\"\nports = [\"8554:rtsp\"]\n\
                  [[camera]]\nname = \"b\"\nserial = \"B1\"\nports = [\"8555:rtsp\"]\n";
        let cfg = check(ok).unwrap();
        assert_eq!(cfg.cameras[1].username.as_deref(), Some("admin"));
        let dup = ok.replace("name = \"b\"", "name = \"a\"");
        let e = check(&dup).unwrap_err();
        assert!(e.message.contains("duplicate camera name"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(9));
        let port = ok.replace("8555", "8554");
        let e = check(&port).unwrap_err();
        assert!(e.message.contains("conflicts"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(11));
    }

    #[test]
    fn a_missing_serial_points_at_its_camera() {
        let e = check("[[camera]]\nname = \"a\"\n\n[[camera]]\nname = \"b\"\n").unwrap_err();
        assert!(e.message.contains("serial"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(1));
    }
}
