//! `dhp2p serve` on MQTT against a real broker (mosquitto) watched by a real
//! subscriber (mosquitto_sub): Home Assistant discovery, availability of a
//! reachable, an offline and a vanishing camera, the last will, and a
//! broker that goes away while a camera streams.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::media::{ready_field, Background};
use serde_json::Value;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const REACHABLE: &str = "MQTTDIRECT00001";
const OFFLINE: &str = "MQTTOFFLINE0002";
const VANISHING: &str = "MQTTVANISH00003";

/// A mosquitto on a loopback port of its own; killed on drop.
struct Broker {
    process: Option<Background>,
    port: u16,
    config: PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        assert!(
            Path::new(MOSQUITTO).is_file(),
            "{MOSQUITTO} is not installed: install the Debian package `mosquitto` (tools/test does)"
        );
        common::require_program("mosquitto_sub", "mosquitto-clients");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write mosquitto.conf");
        let mut broker = Broker {
            process: None,
            port,
            config,
        };
        broker.restart();
        broker
    }

    /// Starts (again) on the same port; waits until it accepts connections.
    fn restart(&mut self) {
        self.process = Some(Background::spawn(
            Command::new(MOSQUITTO).arg("-c").arg(&self.config),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        drop(self.process.take());
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

/// `mosquitto_sub -v` on everything, with the retained messages first.
/// Every message is kept: waits look from the last [`Subscriber::mark`].
struct Subscriber {
    process: Background,
    seen: Vec<(String, String)>,
    from: usize,
}

impl Subscriber {
    fn start(broker: &Broker) -> Subscriber {
        let port = broker.port.to_string();
        Subscriber {
            process: Background::spawn(Command::new("mosquitto_sub").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-v",
                "-t",
                "#",
            ])),
            seen: Vec::new(),
            from: 0,
        }
    }

    /// Later waits look only at messages from now on.
    fn mark(&mut self) {
        self.from = self.seen.len();
    }

    /// The payload of the first message on `topic` since the mark for
    /// which `want` holds; fails the test after `timeout`.
    fn wait(&mut self, topic: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut next = self.from;
        loop {
            while let Some((t, payload)) = self.seen.get(next) {
                if t == topic && want(payload) {
                    return payload.clone();
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no wanted message on {topic} within {timeout:?}; saw {:#?}",
                &self.seen[self.from..]
            );
            let line = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.process.next_line(left)
            }))
            .unwrap_or_else(|_| {
                panic!(
                    "no wanted message on {topic} within {timeout:?}; saw {:#?}",
                    &self.seen[self.from..]
                )
            });
            let (t, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            self.seen.push((t.to_owned(), payload.to_owned()));
        }
    }

    fn json(&mut self, topic: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let payload = self.wait(topic, timeout, |p| {
            serde_json::from_str::<Value>(p).is_ok_and(|v| want(&v))
        });
        serde_json::from_str(&payload).expect("JSON")
    }
}

/// One emulator with `devices` (`--device` values).
fn fleet(devices: &[String]) -> (Background, SocketAddr) {
    let mut cmd = common::dhp2p();
    cmd.args(["emulate-device", "--cloud-port", "0"]);
    for d in devices {
        cmd.args(["--device", d]);
    }
    let mut process = Background::spawn(&mut cmd);
    let ready = process.wait_line("ready ", Duration::from_secs(20));
    let cloud = ready_field(&ready, "cloud").parse().expect("cloud address");
    (process, cloud)
}

/// serve with one `[[camera]]` per `(name, serial)` and `[mqtt]` on `broker`.
fn serve(dir: &Path, cloud: SocketAddr, broker: &Broker, cameras: &[(&str, &str)]) -> Background {
    let path = write_config(dir, cloud, broker, cameras);
    let mut serve = Background::spawn(common::dhp2p().arg("serve").arg("--config").arg(&path));
    serve.wait_line("cameras ", Duration::from_secs(20));
    serve
}

/// serve's file (`dir/dhp2p.toml`), written anew.
fn write_config(
    dir: &Path,
    cloud: SocketAddr,
    broker: &Broker,
    cameras: &[(&str, &str)],
) -> PathBuf {
    let mut text = format!(
        "[defaults]\ncloud = \"{cloud}\"\nudp_bind = \"127.0.0.1\"\nusername = \"admin\"\n\
         password = \"admin\"\nheartbeat = 1\nidle_timeout = 4\n\n\
         [mqtt]\nbroker = \"{}\"\nclient_id = \"dhp2p-test-{}\"\nstate_interval = 2\ncommands = true\n",
        broker.url(),
        broker.port
    );
    for (name, serial) in cameras {
        text += &format!(
            "\n[[camera]]\nname = \"{name}\"\nserial = \"{serial}\"\nports = [\"127.0.0.1:0:rtsp\"]\n"
        );
    }
    let path = dir.join("dhp2p.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

fn signal(process: &Background, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &process.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name}");
}

fn is_ready_direct(v: &Value) -> bool {
    v["state"] == "ready" && v["path"] == "direct"
}

#[test]
fn discovery_availability_and_the_last_will() {
    let dir = common::scratch_dir("serve_mqtt_discovery");
    let broker = Broker::start(&dir);
    let (_fleet, cloud) = fleet(&[REACHABLE.into(), format!("{OFFLINE},mode=offline")]);
    let serve = serve(
        &dir,
        cloud,
        &broker,
        &[("front", REACHABLE), ("back", OFFLINE)],
    );
    let mut sub = Subscriber::start(&broker);
    let wait = Duration::from_secs(30);
    sub.wait("dhp2p/status", wait, |p| p == "online");
    for camera in ["front", "back"] {
        for (component, object) in [
            ("binary_sensor", "connectivity"),
            ("sensor", "path"),
            ("sensor", "throughput"),
        ] {
            let topic = format!("homeassistant/{component}/dhp2p/{camera}_{object}/config");
            let config = sub.json(&topic, wait, |_| true);
            for key in ["name", "unique_id", "state_topic", "availability", "device"] {
                assert!(config.get(key).is_some(), "{topic}: no {key} in {config}");
            }
            assert_eq!(config["state_topic"], format!("dhp2p/{camera}/state"));
            assert_eq!(config["device"]["model"], "Dahua P2P via dhp2p");
            let serial = config["device"]["serial_number"].as_str().unwrap_or("");
            assert!(
                serial.starts_with("****") && !serial.contains("MQTT"),
                "{serial}"
            );
        }
    }
    sub.wait("dhp2p/front/available", wait, |p| p == "online");
    let state = sub.json("dhp2p/front/state", wait, is_ready_direct);
    let url = state["rtsp_url"].as_str().unwrap_or("");
    assert!(url.starts_with("rtsp://127.0.0.1:"), "{state}");
    sub.wait("dhp2p/back/available", wait, |p| p == "offline");
    let back = sub.json("dhp2p/back/state", wait, |v| v["state"] != "ready");
    assert!(back["path"].is_null(), "{back}");

    // `restart` on PREFIX/CAMERA/set reconnects the camera.
    sub.mark();
    let published = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "dhp2p/front/set", "-m", "restart"])
        .status()
        .expect("run mosquitto_pub");
    assert!(published.success());
    sub.json("dhp2p/front/state", wait, |v| {
        is_ready_direct(v) && v["reconnects"].as_u64() >= Some(1)
    });

    // A reload without "back" removes its device from Home Assistant.
    sub.mark();
    write_config(&dir, cloud, &broker, &[("front", REACHABLE)]);
    signal(&serve, "HUP");
    for (component, object) in [
        ("binary_sensor", "connectivity"),
        ("sensor", "path"),
        ("sensor", "throughput"),
    ] {
        let topic = format!("homeassistant/{component}/dhp2p/back_{object}/config");
        // mosquitto_sub -v shows an empty payload as "(null)".
        sub.wait(&topic, wait, |p| p.is_empty() || p == "(null)");
    }
    sub.wait("dhp2p/back/available", wait, |p| p == "offline");

    // SIGKILL: no goodbye from serve; the broker publishes the will.
    sub.mark();
    signal(&serve, "KILL");
    sub.wait("dhp2p/status", Duration::from_secs(10), |p| p == "offline");
}

#[test]
fn a_vanishing_camera_goes_offline_within_the_idle_timeout_and_comes_back() {
    let dir = common::scratch_dir("serve_mqtt_vanish");
    let broker = Broker::start(&dir);
    let (_fleet, cloud) = fleet(&[format!("{VANISHING},vanish-after=8,vanish-for=8")]);
    let started = Instant::now();
    let mut sub = Subscriber::start(&broker);
    let _serve = serve(&dir, cloud, &broker, &[("door", VANISHING)]);
    sub.wait("dhp2p/door/available", Duration::from_secs(8), |p| {
        p == "online"
    });
    sub.mark();
    // Silent 8 s after the emulator started; idle_timeout is 4 s.
    sub.wait(
        "dhp2p/door/available",
        Duration::from_secs(8 + 4 + 3),
        |p| p == "offline",
    );
    let offline = started.elapsed();
    assert!(
        offline > Duration::from_secs(8) && offline < Duration::from_secs(8 + 4 + 3),
        "offline after {offline:?}, the device vanished after 8 s (idle timeout 4 s)"
    );
    sub.mark();
    sub.wait("dhp2p/door/available", Duration::from_secs(40), |p| {
        p == "online"
    });
}

#[test]
fn the_stream_survives_the_broker_and_state_is_republished_when_it_returns() {
    let dir = common::scratch_dir("serve_mqtt_broker_down");
    let mut broker = Broker::start(&dir);
    let (_fleet, cloud) = fleet(&[REACHABLE.into()]);
    let _serve = serve(&dir, cloud, &broker, &[("front", REACHABLE)]);
    let state = Subscriber::start(&broker).json(
        "dhp2p/front/state",
        Duration::from_secs(30),
        is_ready_direct,
    );
    let url =
        state["rtsp_url"]
            .as_str()
            .expect("rtsp_url")
            .replacen("rtsp://", "rtsp://admin:admin@", 1);
    common::require_program("ffmpeg", "ffmpeg");
    // -progress prints frame=N about twice a second.
    let mut ffmpeg = Background::spawn(Command::new("ffmpeg").args([
        "-loglevel",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-rtsp_transport",
        "tcp",
        "-i",
        &url,
        "-map",
        "0:v",
        "-c",
        "copy",
        "-f",
        "null",
        "-",
    ]));
    let mut count = 0u64;
    let mut frames = |n: u64| {
        let want = count + n;
        while count < want {
            let line = ffmpeg.next_line(Duration::from_secs(10));
            if let Some(Ok(f)) = line.strip_prefix("frame=").map(str::parse::<u64>) {
                count = f;
            }
        }
    };
    frames(10);
    broker.stop();
    // 4 s of 25 fps with the broker gone.
    frames(60);
    broker.restart();
    frames(10);
    // mosquitto kept nothing (persistence off): what a new subscriber gets
    // was published again after the reconnect.
    let mut sub = Subscriber::start(&broker);
    sub.wait("dhp2p/status", Duration::from_secs(25), |p| p == "online");
    sub.json(
        "dhp2p/front/state",
        Duration::from_secs(10),
        is_ready_direct,
    );
    sub.wait(
        "homeassistant/binary_sensor/dhp2p/front_connectivity/config",
        Duration::from_secs(10),
        |p| p.contains("unique_id"),
    );
}
