//! `dhp2p serve` against one fleet emulator, seen the way users see it:
//! ffprobe through each camera's port, /healthz and /api/cameras, /metrics
//! through promtool and a real Prometheus, reloads under a streaming
//! ffmpeg, 32 cameras' cost, `--check` on broken files, and the systemd
//! unit through `systemd-analyze verify`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::media::{ffprobe_stream, ready_field, rtsp_url, Background, StreamInfo};
use serde_json::Value;

const DIRECT_A: &str = "SERVEDIRECT0001";
const DIRECT_B: &str = "SERVEDIRECT0002";
const RELAY: &str = "SERVERELAY00003";
const AUTH: &str = "SERVEAUTH000004";
const OFFLINE: &str = "SERVEOFFLINE005";
const LOSSY: &str = "SERVELOSSY00006";

/// `dhp2p emulate-device` with `devices` (`SERIAL[,key=value…]`); its cloud.
fn emulator(devices: &[String]) -> (Background, SocketAddr) {
    let mut process = Background::spawn(
        common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0"])
            .args(devices.iter().flat_map(|d| ["--device", d.as_str()])),
    );
    let ready = process.wait_line("ready ", Duration::from_secs(20));
    let cloud = ready_field(&ready, "cloud").parse().expect("cloud address");
    (process, cloud)
}

/// A serve file: `[http]` on a free loopback port, `[defaults]` aimed at
/// the emulator, then `cameras` (TOML text) as given.
fn config_text(cloud: SocketAddr, cameras: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[defaults]\ncloud = \"{cloud}\"\nusername = \"admin\"\n\
         udp_bind = \"127.0.0.1\"\nports = [\"127.0.0.1:0:rtsp\"]\n\n{cameras}"
    )
}

/// A `[[camera]]`; the emulator's password unless `extra` gives a source.
fn camera(name: &str, serial: &str, extra: &str) -> String {
    let password = if extra.contains("password") {
        ""
    } else {
        "password = \"admin\"\n"
    };
    format!("[[camera]]\nname = \"{name}\"\nserial = \"{serial}\"\n{password}{extra}\n")
}

struct Serve {
    process: Background,
    http: SocketAddr,
}

impl Serve {
    fn start(config: &Path) -> Serve {
        let mut process =
            Background::spawn(common::dhp2p().args(["serve", "--config"]).arg(config));
        let line = process.wait_line("http ", Duration::from_secs(20));
        let http = line[5..].trim().parse().expect("http ADDR");
        Serve { process, http }
    }

    fn cameras(&self) -> Vec<Value> {
        let (code, body) = http(self.http, "GET", "/api/cameras");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .expect("JSON")
            .as_array()
            .expect("an array")
            .clone()
    }

    fn camera(&self, name: &str) -> Value {
        self.cameras()
            .into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no camera {name} in /api/cameras"))
    }

    /// Polls /api/cameras until `done` holds; fails with the last answer.
    fn wait_until(&self, within: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let cams = self.cameras();
            if done(&cams) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "not {what} within {within:?}: {cams:#?}\nstderr:\n{}",
                    self.process.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The camera's RTSP listening address.
    fn rtsp(&self, name: &str) -> String {
        self.camera(name)["listening"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not listening"))
            .to_owned()
    }
}

/// One HTTP/1.1 request; the status code and body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to serve's HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_owned())
}

fn state(cams: &[Value], name: &str) -> String {
    cams.iter()
        .find(|c| c["name"] == name)
        .map(|c| c["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn a_fleet_of_six_and_a_wrong_password_each_get_their_own_state() {
    let (_emu, cloud) = emulator(&[
        DIRECT_A.to_owned(),
        DIRECT_B.to_owned(),
        format!("{RELAY},mode=relay-only"),
        format!("{AUTH},auth=required,password=s3cret"),
        format!("{OFFLINE},mode=offline"),
        format!("{LOSSY},loss=5,reorder=5"),
    ]);
    let dir = common::scratch_dir("serve_fleet");
    let pass = dir.join("auth.pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cameras = [
        camera("direct-a", DIRECT_A, ""),
        camera("direct-b", DIRECT_B, ""),
        camera("relay", RELAY, "mode = \"relay\""),
        camera(
            "auth",
            AUTH,
            &format!("password_file = {:?}", pass.display().to_string()),
        ),
        camera("offline", OFFLINE, ""),
        camera("lossy", LOSSY, ""),
        camera("wrong", AUTH, "password = \"not-it\""),
    ]
    .concat();
    let config = dir.join("dhp2p.toml");
    std::fs::write(&config, config_text(cloud, &cameras)).unwrap();
    let started = Instant::now();
    let serve = Serve::start(&config);
    serve.wait_until(
        Duration::from_secs(15),
        "4 ready, 1 failed, offline lost",
        |c| {
            ["direct-a", "direct-b", "relay", "auth", "lossy"]
                .iter()
                .filter(|n| state(c, n) == "ready")
                .count()
                >= 4
                && state(c, "wrong") == "failed"
                && matches!(state(c, "offline").as_str(), "lost" | "connecting")
        },
    );
    let reachable = ["direct-a", "direct-b", "relay", "auth"];
    for name in reachable {
        let pass = if name == "auth" { "s3cret" } else { "admin" };
        let url = rtsp_url(serve.rtsp(name), Some(("admin", pass)));
        assert_eq!(
            ffprobe_stream(&url),
            StreamInfo::h264(640, 360, "25/1"),
            "{name}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15) + Duration::from_secs(10),
        "too slow"
    );
    for (name, path) in [
        ("direct-a", "direct"),
        ("direct-b", "direct"),
        ("relay", "relay"),
    ] {
        let c = serve.camera(name);
        assert_eq!(c["state"], "ready", "{c:#}");
        assert_eq!(c["path"], path, "{c:#}");
        assert!(c["bytes_from_device"].as_u64().unwrap() > 0, "{c:#}");
        assert_eq!(c["serial"].as_str().unwrap().len(), 15);
        assert!(c["serial"].as_str().unwrap().starts_with("***********"));
    }
    let offline = serve.camera("offline");
    assert!(
        offline["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("offline"),
        "{offline:#}"
    );
    let wrong = serve.camera("wrong");
    assert_eq!(wrong["state"], "failed");
    assert!(
        wrong["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("authentication"),
        "{wrong:#}"
    );
    let (code, body) = http(serve.http, "GET", "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.lines().any(|l| l.starts_with("offline: ")), "{body}");
    assert!(
        body.lines().any(|l| l.starts_with("wrong: failed")),
        "{body}"
    );
    assert!(body.contains("direct-a: ready (direct)"), "{body}");
    // Every log line of a camera carries its name.
    let (status, stderr) = serve.process.interrupt();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("camera{camera=relay}"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "a password was logged");
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let promtool = common::require_program("promtool", "prometheus");
    let prometheus = common::require_program("prometheus", "prometheus");
    let (_emu, cloud) = emulator(&[DIRECT_A.to_owned()]);
    let dir = common::scratch_dir("serve_metrics");
    let config = dir.join("dhp2p.toml");
    std::fs::write(&config, config_text(cloud, &camera("front", DIRECT_A, ""))).unwrap();
    let serve = Serve::start(&config);
    serve.wait_until(Duration::from_secs(15), "ready", |c| {
        state(c, "front") == "ready"
    });
    let (code, metrics) = http(serve.http, "GET", "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("dhp2p_camera_ready{camera=\"front\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dhp2p_handshake_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert!(metrics.contains("path=\"direct\""), "{metrics}");
    assert!(
        metrics.contains("dhp2p_camera_received_bytes_total"),
        "{metrics}"
    );
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A real Prometheus scraping serve every second.
    let port = free_port();
    let prom_config = dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dhp2p\n    \
             static_configs:\n      - targets: ['{}']\n",
            serve.http
        ),
    )
    .unwrap();
    let _prom = Background::spawn(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
    );
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = |q: &str| -> Option<String> {
        let (code, body) =
            std::panic::catch_unwind(|| http(api, "GET", &format!("/api/v1/query?query={q}")))
                .ok()?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = query("up%7Bjob%3D%22dhp2p%22%7D");
        let ready = query("dhp2p_camera_ready%7Bcamera%3D%22front%22%7D");
        if up.as_deref() == Some("1") && ready.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus: up={up:?} dhp2p_camera_ready={ready:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Frames ffmpeg has decoded so far, from its `-progress` output.
fn frames_so_far(progress: &Path) -> u64 {
    std::fs::read_to_string(progress)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[test]
fn reload_adds_and_removes_cameras_without_touching_the_others() {
    let (_emu, cloud) = emulator(&[
        DIRECT_A.to_owned(),
        DIRECT_B.to_owned(),
        format!("{RELAY},mode=relay-only"),
    ]);
    let dir = common::scratch_dir("serve_reload");
    let config = dir.join("dhp2p.toml");
    let a = camera("a", DIRECT_A, "");
    let b = camera("b", DIRECT_B, "");
    let c = camera("c", RELAY, "mode = \"relay\"");
    std::fs::write(&config, config_text(cloud, &[a.clone(), b].concat())).unwrap();
    let serve = Serve::start(&config);
    serve.wait_until(Duration::from_secs(15), "a and b ready", |cams| {
        state(cams, "a") == "ready" && state(cams, "b") == "ready"
    });
    let b_addr = serve.rtsp("b");
    let progress = dir.join("progress.txt");
    let mut ffmpeg = Command::new(common::require_program("ffmpeg", "ffmpeg"))
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
        ])
        .arg(rtsp_url(serve.rtsp("a"), Some(("admin", "admin"))))
        .args(["-f", "null", "-progress"])
        .arg(&progress)
        .arg("-")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    let deadline = Instant::now() + Duration::from_secs(10);
    while frames_so_far(&progress) < 10 {
        assert!(Instant::now() < deadline, "ffmpeg decodes no frames of a");
        std::thread::sleep(Duration::from_millis(100));
    }
    // An invalid file first: nothing changes, the error names line and column.
    let invalid = config_text(cloud, &[a.clone(), "bogus = 1\n".into()].concat());
    let bogus_line = invalid
        .lines()
        .position(|l| l.starts_with("bogus"))
        .unwrap()
        + 1;
    std::fs::write(&config, &invalid).unwrap();
    kill("-HUP", serve.process.pid());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        serve.process.stderr().contains("reload refused"),
        "{}",
        serve.process.stderr()
    );
    let err_line = serve
        .process
        .stderr()
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap()
        .to_owned();
    assert!(
        err_line.contains(&format!("dhp2p.toml:{bogus_line}:1:")) && err_line.contains("bogus"),
        "{err_line}"
    );
    assert_eq!(state(&serve.cameras(), "b"), "ready");
    // Now remove b and add c.
    let before = frames_so_far(&progress);
    std::fs::write(&config, config_text(cloud, &[a, c].concat())).unwrap();
    kill("-HUP", serve.process.pid());
    serve.wait_until(Duration::from_secs(15), "c ready, b gone", |cams| {
        state(cams, "c") == "ready" && state(cams, "b").is_empty()
    });
    let url = rtsp_url(serve.rtsp("c"), Some(("admin", "admin")));
    assert_eq!(ffprobe_stream(&url), StreamInfo::h264(640, 360, "25/1"));
    assert!(
        TcpStream::connect(&b_addr).is_err(),
        "b's port {b_addr} is still open"
    );
    // a's ffmpeg kept going: still running, frames still counting at 25/s.
    std::thread::sleep(Duration::from_secs(1));
    let after = frames_so_far(&progress);
    assert!(ffmpeg.try_wait().unwrap().is_none(), "ffmpeg of a stopped");
    assert!(after > before + 25, "a's frames went {before} → {after}");
    assert_eq!(serve.camera("a")["reconnects"], 0);
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    // POST /api/reload of the same file touches nothing.
    let (code, body) = http(serve.http, "POST", "/api/reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("unchanged a,c"), "{body}");
    assert_eq!(serve.camera("a")["reconnects"], 0);
    // SIGINT: every camera stops within 2 s.
    let t = Instant::now();
    let (status, stderr) = serve.process.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

fn kill(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn thirty_two_cameras_come_up_and_cost_little_when_idle() {
    let serials: Vec<String> = (0..32).map(|i| format!("SERVEMANY{i:06}")).collect();
    let (_emu, cloud) = emulator(&serials);
    let cameras: String = serials
        .iter()
        .enumerate()
        .map(|(i, s)| camera(&format!("cam{i}"), s, ""))
        .collect();
    let dir = common::scratch_dir("serve_many");
    let config = dir.join("dhp2p.toml");
    std::fs::write(&config, config_text(cloud, &cameras)).unwrap();
    let serve = Serve::start(&config);
    serve.wait_until(Duration::from_secs(30), "32 ready", |c| {
        c.len() == 32 && c.iter().all(|c| c["state"] == "ready")
    });
    let pid = serve.process.pid();
    std::thread::sleep(Duration::from_secs(1));
    let ticks = cpu_ticks(pid);
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - ticks;
    // 100 ticks a second on Linux.
    let percent = used as f64 / window.as_secs_f64();
    let rss = rss_kib(pid);
    eprintln!(
        "32 cameras: RSS {} MiB, idle CPU {percent:.2}% of a core",
        rss / 1024
    );
    assert!(percent < 2.0, "idle CPU {percent:.2}% of a core");
    assert!(rss < 100 * 1024, "RSS {rss} KiB");
}

/// `serve --check` on `text`: exit code and stderr.
fn check(dir: &Path, name: &str, text: &str) -> (i32, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = common::dhp2p()
        .args(["serve", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_the_line_and_column_of_each_broken_file() {
    let dir = common::scratch_dir("serve_check");
    let base = "[defaults]\nusername = \"admin\"\n\n";
    let cases = [
        (
            "unknown-key.toml",
            format!("{base}[[camera]]\nname = \"a\"\nserial = \"A1\"\nusrename = \"x\"\n"),
            ":7:1:",
            "usrename",
        ),
        (
            "duplicate-name.toml",
            format!(
                "{base}[[camera]]\nname = \"a\"\nserial = \"A1\"\nports = [\"8554:rtsp\"]\n\n\
                 [[camera]]\nname = \"a\"\nserial = \"B1\"\nports = [\"8555:rtsp\"]\n"
            ),
            ":10:1:",
            "duplicate camera name",
        ),
        (
            "duplicate-port.toml",
            format!(
                "{base}[[camera]]\nname = \"a\"\nserial = \"A1\"\nports = [\"8554:rtsp\"]\n\n\
                 [[camera]]\nname = \"b\"\nserial = \"B1\"\nports = [\"0.0.0.0:8554:80\"]\n"
            ),
            ":12:1:",
            "conflicts",
        ),
        (
            "missing-serial.toml",
            format!("{base}[[camera]]\nname = \"a\"\n"),
            ":4:",
            "serial",
        ),
        (
            "unreadable-password.toml",
            format!(
                "{base}[[camera]]\nname = \"a\"\nserial = \"A1\"\npassword_file = \"{}\"\n",
                dir.join("missing.pass").display()
            ),
            "missing.pass",
            "cannot read the password file",
        ),
    ];
    for (name, text, place, what) in cases {
        let (code, stderr) = check(&dir, name, &text);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains(name), "{name} not named: {stderr}");
        assert!(stderr.contains(place), "{name}: no {place:?} in {stderr}");
        assert!(stderr.contains(what), "{name}: no {what:?} in {stderr}");
    }
}

#[test]
fn the_example_file_is_valid_and_check_prints_no_secrets() {
    let example = common::repo_root().join("examples/dhp2p.toml");
    let out = common::dhp2p()
        .args(["serve", "--check", "--config"])
        .arg(&example)
        .env("GARAGE_PASSWORD", "hunter2-garage")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The example's password_file does not exist here; everything else is valid.
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("/etc/dhp2p/front.pass"), "{stderr}");
    assert!(
        !stderr.contains(":1:") && !stderr.contains("unknown field"),
        "{stderr}"
    );
    // With the file-based camera's secret in a readable file, it passes.
    let dir = common::scratch_dir("serve_example");
    let pass = dir.join("front.pass");
    std::fs::write(&pass, "hunter2-file\n").unwrap();
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("/etc/dhp2p/front.pass", &pass.display().to_string());
    let copy = dir.join("dhp2p.toml");
    std::fs::write(&copy, text).unwrap();
    let out = common::dhp2p()
        .args(["serve", "--check", "--config"])
        .arg(&copy)
        .env("GARAGE_PASSWORD", "hunter2-garage")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("[[camera]]"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("inline-secret"),
        "{stdout}"
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let analyze = common::require_program("systemd-analyze", "systemd");
    let unit =
        std::fs::read_to_string(common::repo_root().join("contrib/systemd/dhp2p.service")).unwrap();
    for needed in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // Point ExecStart at the built binary so verify finds it.
    let dir = common::scratch_dir("serve_systemd");
    let text = unit.replace("/usr/local/bin/dhp2p", env!("CARGO_BIN_EXE_dhp2p"));
    let copy = dir.join("dhp2p.service");
    std::fs::write(&copy, text).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("dhp2p.service"))
        .collect();
    assert!(complaints.is_empty(), "{stderr}");
}
