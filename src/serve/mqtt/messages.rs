//! What serve publishes on MQTT, decided without I/O: given the cameras'
//! snapshots and the time, which retained messages go to which topic.
//! The driver ([`super::client`]) only carries them to the broker.
//!
//! Topics: `PREFIX/status` (`online`/`offline`, the last will),
//! `PREFIX/CAMERA/state` (JSON), `PREFIX/CAMERA/available` (`online` when
//! the camera is ready), and Home Assistant discovery configs under
//! `DISCOVERY/<component>/<node>/<camera>_<object>/config`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Value};

use crate::serve::state::{CameraCommand, CameraSnapshot};
use crate::tunnel::driver::{PortSpec, RemotePort};

/// The Dahua stream path every client asks for.
const RTSP_PATH: &str = "/cam/realmonitor?channel=1&subtype=0";

/// One MQTT publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    /// Empty with `retain` clears a retained message.
    pub payload: String,
    pub retain: bool,
}

impl Message {
    fn retained(topic: String, payload: impl Into<String>) -> Message {
        Message {
            topic,
            payload: payload.into(),
            retain: true,
        }
    }
}

/// A camera as MQTT shows it: its snapshot and the URLs users open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraView {
    pub snapshot: CameraSnapshot,
    /// `rtsp://ADDR:PORT/cam/realmonitor?…` of its RTSP listener.
    pub rtsp_url: Option<String>,
    /// `http://ADDR:PORT/` when a port forwards the device's web page (80).
    pub web_url: Option<String>,
}

/// Builds a view: the listener addresses (in `ports` order, port 0
/// resolved) when listening, else the configured ones. A wildcard bind is
/// shown as `host`.
pub fn camera_view(
    snapshot: CameraSnapshot,
    ports: &[PortSpec],
    listening: &[SocketAddr],
    host: &str,
) -> CameraView {
    let address = |i: usize, spec: &PortSpec| -> Option<String> {
        let addr = listening
            .get(i)
            .copied()
            .or_else(|| (spec.local != 0).then(|| SocketAddr::new(spec.bind, spec.local)))?;
        Some(if addr.ip().is_unspecified() {
            format!("{host}:{}", addr.port())
        } else {
            addr.to_string()
        })
    };
    let find = |want: fn(&RemotePort) -> bool| {
        ports
            .iter()
            .enumerate()
            .find(|(_, p)| want(&p.remote))
            .and_then(|(i, p)| address(i, p))
    };
    CameraView {
        rtsp_url: find(|r| matches!(r, RemotePort::Rtsp | RemotePort::Port(554)))
            .map(|a| format!("rtsp://{a}{RTSP_PATH}")),
        web_url: find(|r| matches!(r, RemotePort::Port(80))).map(|a| format!("http://{a}/")),
        snapshot,
    }
}

/// Bytes per second from the device, sampled at each periodic publish.
#[derive(Debug, Default, Clone)]
struct Throughput {
    last: Option<(Instant, u64)>,
    rate: u64,
}

impl Throughput {
    fn sample(&mut self, now: Instant, bytes: u64) {
        if let Some((then, before)) = self.last {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                self.rate = (bytes.saturating_sub(before) as f64 / secs).round() as u64;
            }
        }
        self.last = Some((now, bytes));
    }
}

#[derive(Debug, Default)]
struct Known {
    available: Option<bool>,
    discovery: Option<Vec<Message>>,
    throughput: Throughput,
}

/// What has been published, and what to publish next.
#[derive(Debug)]
pub struct Publisher {
    prefix: String,
    /// Empty: no discovery.
    discovery_prefix: String,
    /// The discovery node id: the prefix made id-safe.
    node: String,
    known: BTreeMap<String, Known>,
    /// Cameras removed while running: their clears are repeated after
    /// each reconnect (a broker that was away may still hold them).
    removed: BTreeSet<String>,
}

impl Publisher {
    pub fn new(prefix: &str, discovery_prefix: &str) -> Publisher {
        Publisher {
            prefix: prefix.to_owned(),
            discovery_prefix: discovery_prefix.to_owned(),
            node: prefix
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
            known: BTreeMap::new(),
            removed: BTreeSet::new(),
        }
    }

    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The last will: `offline` on `PREFIX/status`, retained.
    pub fn will(&self) -> Message {
        Message::retained(self.status_topic(), "offline")
    }

    /// The command subscription (`PREFIX/+/set`).
    pub fn command_filter(&self) -> String {
        format!("{}/+/set", self.prefix)
    }

    /// A command on `PREFIX/CAMERA/set`: the camera and what to do.
    pub fn parse_command(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<(String, CameraCommand), String> {
        let name = topic
            .strip_prefix(&self.prefix)
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_suffix("/set"))
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("not a command topic: {topic:?}"))?;
        let text = String::from_utf8_lossy(payload);
        match text.trim().to_ascii_lowercase().as_str() {
            "restart" => Ok((name.to_owned(), CameraCommand::Restart)),
            other => Err(format!(
                "camera {name:?}: unknown command {other:?} (want restart)"
            )),
        }
    }

    /// Everything, after a (re)connect: status, clears of removed cameras,
    /// each camera's discovery, state and availability.
    pub fn connected(&mut self, cameras: &[CameraView]) -> Vec<Message> {
        let mut out = vec![Message::retained(self.status_topic(), "online")];
        for camera in cameras {
            self.removed.remove(&camera.snapshot.name);
        }
        for name in self.removed.clone() {
            out.extend(self.clear(&name));
        }
        for known in self.known.values_mut() {
            known.available = None;
            known.discovery = None;
        }
        out.extend(self.cameras_changed(cameras));
        out
    }

    /// The running set changed: removed cameras are cleared, new ones
    /// announced, every camera's state published.
    pub fn cameras_changed(&mut self, cameras: &[CameraView]) -> Vec<Message> {
        let names: BTreeSet<&str> = cameras.iter().map(|c| c.snapshot.name.as_str()).collect();
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for name in gone {
            self.known.remove(&name);
            out.extend(self.clear(&name));
            self.removed.insert(name);
        }
        for camera in cameras {
            self.removed.remove(&camera.snapshot.name);
            let discovery = self.discovery(camera);
            let known = self.known.entry(camera.snapshot.name.clone()).or_default();
            if known.discovery.as_ref() != Some(&discovery) {
                out.extend(discovery.iter().cloned());
                known.discovery = Some(discovery);
            }
            out.extend(self.camera_changed(camera));
        }
        out
    }

    /// One camera's state changed: its state, and its availability if
    /// that changed.
    pub fn camera_changed(&mut self, camera: &CameraView) -> Vec<Message> {
        let name = &camera.snapshot.name;
        let known = self.known.entry(name.clone()).or_default();
        let ready = camera.snapshot.state == "ready";
        let rate = if ready { known.throughput.rate } else { 0 };
        let mut out = vec![state_message(&self.prefix, camera, rate)];
        if known.available != Some(ready) {
            known.available = Some(ready);
            out.push(Message::retained(
                format!("{}/{name}/available", self.prefix),
                if ready { "online" } else { "offline" },
            ));
        }
        out
    }

    /// The periodic publish: throughput sampled, every camera's state.
    pub fn tick(&mut self, cameras: &[CameraView], now: Instant) -> Vec<Message> {
        let mut out = Vec::new();
        for camera in cameras {
            let known = self.known.entry(camera.snapshot.name.clone()).or_default();
            known
                .throughput
                .sample(now, camera.snapshot.bytes_from_device);
            out.extend(self.camera_changed(camera));
        }
        out
    }

    /// On a clean stop: every camera offline, then the process.
    pub fn stopping(&self) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .known
            .keys()
            .map(|name| Message::retained(format!("{}/{name}/available", self.prefix), "offline"))
            .collect();
        out.push(self.will());
        out
    }

    /// A removed camera: discovery and state cleared, available offline.
    fn clear(&self, name: &str) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .discovery_topics(name)
            .into_iter()
            .map(|(topic, _)| Message::retained(topic, ""))
            .collect();
        out.push(Message::retained(
            format!("{}/{name}/state", self.prefix),
            "",
        ));
        out.push(Message::retained(
            format!("{}/{name}/available", self.prefix),
            "offline",
        ));
        out
    }

    /// `(topic, component)` of each discovery config of a camera.
    fn discovery_topics(&self, name: &str) -> Vec<(String, &'static str)> {
        if self.discovery_prefix.is_empty() {
            return Vec::new();
        }
        [
            ("binary_sensor", "connectivity"),
            ("sensor", "path"),
            ("sensor", "throughput"),
        ]
        .into_iter()
        .map(|(component, object)| {
            (
                format!(
                    "{}/{component}/{}/{name}_{object}/config",
                    self.discovery_prefix, self.node
                ),
                object,
            )
        })
        .collect()
    }

    /// Home Assistant discovery configs of a camera: one device, three
    /// entities.
    fn discovery(&self, camera: &CameraView) -> Vec<Message> {
        let name = &camera.snapshot.name;
        let id = format!("{}_{name}", self.node);
        let state_topic = format!("{}/{name}/state", self.prefix);
        let mut device = json!({
            "identifiers": [id],
            "name": name,
            "manufacturer": "Dahua (via dhp2p)",
            "model": "Dahua P2P via dhp2p",
            "serial_number": camera.snapshot.serial,
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(url) = &camera.web_url {
            device["configuration_url"] = json!(url);
        }
        let process = json!({"topic": self.status_topic()});
        let camera_available = json!({"topic": format!("{}/{name}/available", self.prefix)});
        let origin = json!({"name": "dhp2p", "sw_version": env!("CARGO_PKG_VERSION")});
        self.discovery_topics(name)
            .into_iter()
            .map(|(topic, object)| {
                let mut config = json!({
                    "unique_id": format!("{id}_{object}"),
                    "state_topic": state_topic,
                    "json_attributes_topic": state_topic,
                    "device": device,
                    "origin": origin,
                });
                let fields = match object {
                    // The connectivity sensor must say "disconnected", not
                    // "unavailable", when the camera is down: it follows the
                    // process alone.
                    "connectivity" => json!({
                        "name": "Connected",
                        "device_class": "connectivity",
                        "value_template": "{{ 'ON' if value_json.state == 'ready' else 'OFF' }}",
                        "availability": [process],
                    }),
                    "path" => json!({
                        "name": "Path",
                        "icon": "mdi:transit-connection-variant",
                        "value_template": "{{ value_json.path or 'none' }}",
                        "availability": [process, camera_available],
                        "availability_mode": "all",
                    }),
                    _ => json!({
                        "name": "Throughput",
                        "device_class": "data_rate",
                        "state_class": "measurement",
                        "unit_of_measurement": "B/s",
                        "value_template": "{{ value_json.throughput_bytes_per_second }}",
                        "availability": [process, camera_available],
                        "availability_mode": "all",
                    }),
                };
                merge(&mut config, fields);
                Message::retained(topic, config.to_string())
            })
            .collect()
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// `PREFIX/CAMERA/state`: the `/api/cameras` object plus the RTSP URL and
/// throughput.
fn state_message(prefix: &str, camera: &CameraView, rate: u64) -> Message {
    let mut state = serde_json::to_value(&camera.snapshot).unwrap_or_else(|_| json!({}));
    merge(
        &mut state,
        json!({
            "rtsp_url": camera.rtsp_url,
            "throughput_bytes_per_second": rate,
        }),
    );
    Message::retained(
        format!("{prefix}/{}/state", camera.snapshot.name),
        state.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::state::PathKind;
    use std::time::Duration;

    fn view(name: &str, state: &'static str, bytes: u64) -> CameraView {
        let ports: Vec<PortSpec> = vec!["127.0.0.1:0:rtsp".parse().unwrap()];
        let listening = vec!["127.0.0.1:8554".parse().unwrap()];
        let snapshot = CameraSnapshot {
            name: name.into(),
            serial: "***********9XYZ".into(),
            state,
            path: (state == "ready").then_some(PathKind::Direct),
            since: "2026-01-01T00:00:00Z".into(),
            next_retry: None,
            last_error: None,
            listening: vec![],
            sessions: 0,
            realms: 0,
            clients: 0,
            clients_accepted: 0,
            bytes_from_device: bytes,
            bytes_to_device: 0,
            retransmissions: 0,
            reconnects: 0,
        };
        camera_view(snapshot, &ports, &listening, "host")
    }

    fn topics(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.topic.as_str()).collect()
    }

    #[test]
    fn a_connect_announces_status_discovery_state_and_availability() {
        let mut p = Publisher::new("dhp2p", "homeassistant");
        let out = p.connected(&[view("front", "ready", 0), view("back", "lost", 0)]);
        assert_eq!(out[0], Message::retained("dhp2p/status".into(), "online"));
        let t = topics(&out);
        assert!(t.contains(&"homeassistant/binary_sensor/dhp2p/front_connectivity/config"));
        assert!(t.contains(&"homeassistant/sensor/dhp2p/back_throughput/config"));
        let available = |name: &str| {
            out.iter()
                .find(|m| m.topic == format!("dhp2p/{name}/available"))
                .map(|m| m.payload.clone())
        };
        assert_eq!(available("front").as_deref(), Some("online"));
        assert_eq!(available("back").as_deref(), Some("offline"));
        let state = out.iter().find(|m| m.topic == "dhp2p/front/state").unwrap();
        let json: Value = serde_json::from_str(&state.payload).unwrap();
        assert_eq!(json["path"], "direct");
        assert_eq!(
            json["rtsp_url"],
            "rtsp://127.0.0.1:8554/cam/realmonitor?channel=1&subtype=0"
        );
        for m in out.iter().filter(|m| m.topic.ends_with("/config")) {
            let c: Value = serde_json::from_str(&m.payload).unwrap();
            for key in ["name", "unique_id", "state_topic", "availability", "device"] {
                assert!(c.get(key).is_some(), "{key} missing in {}", m.payload);
            }
            assert_eq!(c["device"]["model"], "Dahua P2P via dhp2p");
        }
    }

    #[test]
    fn availability_is_published_only_when_it_changes_and_removal_clears() {
        let mut p = Publisher::new("dhp2p", "homeassistant");
        p.connected(&[view("front", "ready", 0)]);
        let again = p.camera_changed(&view("front", "ready", 0));
        assert_eq!(topics(&again), ["dhp2p/front/state"]);
        let lost = p.camera_changed(&view("front", "lost", 0));
        assert_eq!(lost[1].payload, "offline");
        let out = p.cameras_changed(&[]);
        let cleared: Vec<&Message> = out.iter().filter(|m| m.payload.is_empty()).collect();
        assert_eq!(cleared.len(), 4, "{out:?}");
        // A reconnect repeats the clears; a camera back is no longer cleared.
        let out = p.connected(&[]);
        assert!(topics(&out).contains(&"homeassistant/sensor/dhp2p/front_path/config"));
        let out = p.connected(&[view("front", "ready", 0)]);
        assert!(out.iter().all(|m| !m.payload.is_empty()), "{out:?}");
    }

    #[test]
    fn throughput_is_bytes_per_second_between_ticks() {
        let mut p = Publisher::new("dhp2p", "");
        let t0 = Instant::now();
        let out = p.tick(&[view("front", "ready", 1000)], t0);
        assert!(
            !topics(&out).iter().any(|t| t.ends_with("/config")),
            "discovery off"
        );
        let out = p.tick(
            &[view("front", "ready", 21_000)],
            t0 + Duration::from_secs(2),
        );
        let json: Value = serde_json::from_str(&out[0].payload).unwrap();
        assert_eq!(json["throughput_bytes_per_second"], 10_000);
    }

    #[test]
    fn commands_name_their_camera() {
        let p = Publisher::new("home/dhp2p", "homeassistant");
        assert_eq!(p.command_filter(), "home/dhp2p/+/set");
        assert_eq!(
            p.parse_command("home/dhp2p/front/set", b"restart\n"),
            Ok(("front".into(), CameraCommand::Restart))
        );
        assert!(p.parse_command("home/dhp2p/front/set", b"explode").is_err());
        assert!(p.parse_command("home/dhp2p/a/b/set", b"restart").is_err());
        assert_eq!(p.will().payload, "offline");
    }
}
