//! `dhp2p probe` against one emulator hosting a fleet of 50 devices: online
//! (direct), relay-only, auth-required, offline, and registered with another
//! cloud. Every serial's verdict, in the table and in `--json`; the request
//! rate the emulator saw; and `--deep` on three devices.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::media::{ready_field, run_with_timeout, Background};

/// What a device of the fleet is, and so what the probe must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    RelayOnly,
    Auth,
    Offline,
    /// Known to the cloud, away at the P2P server (`offline-known`).
    Asleep,
    Amcrest,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Direct => "DIRECT",
            Kind::RelayOnly => "RELAY",
            Kind::Auth => "AUTH",
            Kind::Offline => "OFFLINE",
            Kind::Asleep => "ASLEEP",
            Kind::Amcrest => "AMCREST",
        }
    }

    fn toml_keys(self) -> &'static str {
        match self {
            Kind::Direct => "",
            Kind::RelayOnly => "mode = \"relay-only\"\n",
            Kind::Auth => "auth = \"required\"\npassword = \"s3cret\"\n",
            Kind::Offline => "mode = \"offline\"\n",
            Kind::Asleep => "mode = \"offline-known\"\n",
            Kind::Amcrest => "cloud = \"amcrest\"\n",
        }
    }
}

/// 50 devices: 20 direct, 8 of each other kind, interleaved.
fn fleet() -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    let kinds = [Kind::RelayOnly, Kind::Auth, Kind::Offline, Kind::Amcrest];
    for i in 0..50 {
        let kind = if i % 5 == 0 || i >= 40 {
            Kind::Direct
        } else if i % 10 == 3 {
            // Half of the offline devices are still known to the cloud.
            Kind::Asleep
        } else {
            kinds[(i % 5) - 1]
        };
        out.push((format!("PRB{}{i:02}", kind.tag()), kind));
    }
    out
}

struct Emulator {
    process: Background,
    ready: String,
}

impl Emulator {
    fn start(dir: &Path, devices: &[(String, Kind)]) -> Emulator {
        let mut toml = String::new();
        for (serial, kind) in devices {
            toml.push_str(&format!(
                "[[device]]\nserial = \"{serial}\"\n{}\n",
                kind.toml_keys()
            ));
        }
        let file = dir.join("fleet.toml");
        std::fs::write(&file, toml).expect("write the fleet file");
        let mut process = Background::spawn(
            common::dhp2p()
                .env("RUST_LOG", "dhp2p=debug")
                .arg("emulate-device")
                .args(["--cloud-port", "0", "--fleet"])
                .arg(&file),
        );
        let ready = process.wait_line("ready ", Duration::from_secs(20));
        Emulator { process, ready }
    }

    fn addr(&self, key: &str) -> SocketAddr {
        ready_field(&self.ready, key).parse().expect("an address")
    }

    /// Stops the emulator; the time (seconds since its start) of every
    /// request it logged.
    fn request_times(self) -> Vec<f64> {
        let (status, stderr) = self.process.interrupt();
        assert!(status.success(), "{stderr}");
        stderr
            .lines()
            .filter_map(|l| l.split("request t=").nth(1))
            .filter_map(|rest| rest.split('s').next()?.parse().ok())
            .collect()
    }
}

fn probe(args: &[String], serials: &[(String, Kind)], dir: &Path) -> std::process::Output {
    let list: String = serials.iter().map(|(s, _)| format!("{s}\n")).collect();
    let file = dir.join("serials.txt");
    std::fs::write(&file, format!("# the fleet\n{list}")).expect("write the serial list");
    run_with_timeout(
        common::dhp2p()
            .arg("probe")
            .arg("--file")
            .arg(&file)
            .args(["--udp-bind", "127.0.0.1"])
            .args(args),
        120,
    )
}

/// SERIAL → VERDICT from the table's rows.
fn table_verdicts(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.split_whitespace();
            Some((cells.next()?.to_owned(), cells.next()?.to_owned()))
        })
        .filter(|(serial, _)| serial.starts_with("PRB"))
        .collect()
}

#[test]
fn every_serial_gets_its_verdict_and_the_rate_limit_holds() {
    let dir = common::scratch_dir("probe_fleet_rate");
    let devices = fleet();
    let emu = Emulator::start(&dir, &devices);
    let cloud = emu.addr("cloud");
    let rate = 25.0;
    let out = probe(
        &[
            format!("--cloud=easy4ip={cloud}"),
            format!("--rate={rate}"),
            "--jobs=8".to_owned(),
        ],
        &devices,
        &dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Offline devices are offline or unknown, amcrest ones unknown: exit 1.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let verdicts = table_verdicts(&stdout);
    assert_eq!(verdicts.len(), 50, "{stdout}");
    for (serial, kind) in &devices {
        let want = match kind {
            Kind::Direct | Kind::RelayOnly | Kind::Auth => "online",
            // A 404 at /online/p2psrv means "not here or away": unknown.
            Kind::Offline | Kind::Amcrest => "unknown",
            // The cloud knows it, /probe/device says 404: offline.
            Kind::Asleep => "offline",
        };
        assert_eq!(verdicts[serial], want, "{serial}\n{stdout}");
    }
    assert!(
        stdout.contains("50 serials: 34 online, 4 offline, 12 unknown, 0 failed"),
        "{stdout}"
    );
    // Online rows name the cloud, firmware and the ports from Info.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("PRBDIRECT00 "))
        .expect("a row");
    assert!(row.contains("easy4ip") && row.contains("rtsp 554"), "{row}");

    let mut times = emu.request_times();
    times.sort_by(f64::total_cmp);
    // Three requests per online serial, two per offline, one per unknown.
    assert_eq!(times.len(), 34 * 3 + 4 * 2 + 12, "{times:?}");
    // Never more than `rate` requests in any one-second window (a little
    // slack for the emulator's own scheduling).
    let per_window = rate as usize;
    for w in times.windows(per_window + 1) {
        let span = w[per_window] - w[0];
        assert!(
            span >= 0.95,
            "{} requests within {span:.3} s",
            per_window + 1
        );
    }
    // And the limit is a rate, not a stall.
    let total = times.last().unwrap() - times.first().unwrap();
    assert!(total < 122.0 / rate + 3.0, "took {total:.1} s");
}

#[test]
fn json_reports_the_cloud_that_knows_each_serial() {
    let dir = common::scratch_dir("probe_fleet_json");
    let devices = fleet();
    let emu = Emulator::start(&dir, &devices);
    let cloud = emu.addr("cloud");
    let amcrest = emu.addr("cloud.amcrest");
    let out = probe(
        &[
            format!("--cloud=easy4ip={cloud}"),
            format!("--cloud=amcrest={amcrest}"),
            "--rate=100".to_owned(),
            "--json".to_owned(),
        ],
        &devices,
        &dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("50 serials: 42 online, 4 offline, 4 unknown, 0 failed"),
        "{stderr}"
    );
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 50);
    for ((serial, kind), o) in devices.iter().zip(&objects) {
        assert_eq!(o["serial"], serial.as_str(), "in the order given");
        let (verdict, cloud) = match kind {
            Kind::Direct | Kind::RelayOnly | Kind::Auth => ("online", "easy4ip"),
            Kind::Amcrest => ("online", "amcrest"),
            Kind::Offline => ("unknown", ""),
            Kind::Asleep => ("offline", "easy4ip"),
        };
        assert_eq!(o["verdict"], verdict, "{o}");
        if verdict == "online" {
            assert_eq!(o["cloud"], cloud, "{o}");
            assert!(o["firmware"].as_str().is_some_and(|f| !f.is_empty()), "{o}");
            assert_eq!(o["ports"]["rtsp"], 554, "{o}");
            assert!(o["p2psrv"].is_string(), "{o}");
        } else if verdict == "offline" {
            // Known, so the cloud is named; away, so no firmware.
            assert_eq!(o["cloud"], cloud, "{o}");
        } else {
            assert!(o["cloud"].is_null(), "{o}");
            let answers: Vec<&str> = o["clouds"]
                .as_array()
                .expect("clouds")
                .iter()
                .filter_map(|c| c["answer"].as_str())
                .collect();
            assert_eq!(answers, ["404", "404"], "{o}");
        }
        // Never the salt or the password.
        assert!(!o.to_string().contains("s3cret"));
    }
    drop(emu);
}

#[test]
fn deep_reports_the_path_and_the_auth_verdict() {
    let dir = common::scratch_dir("probe_deep");
    let devices = vec![
        ("PRBDEEPDIRECT1".to_owned(), Kind::Direct),
        ("PRBDEEPRELAY2".to_owned(), Kind::RelayOnly),
        ("PRBDEEPAUTH3".to_owned(), Kind::Auth),
    ];
    let emu = Emulator::start(&dir, &devices);
    let cloud = emu.addr("cloud");
    let out = probe(
        &[
            format!("--cloud=easy4ip={cloud}"),
            "--deep".to_owned(),
            "--json".to_owned(),
            "--username=admin".to_owned(),
            "--password=s3cret".to_owned(),
        ],
        &devices,
        &dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let deep = |i: usize| objects[i]["deep"].clone();
    let direct = deep(0);
    assert!(
        direct["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("direct-")),
        "{direct}"
    );
    assert_eq!(direct["auth_required"], false, "{direct}");
    let relay = deep(1);
    assert_eq!(relay["path"], "relay", "{relay}");
    let auth = deep(2);
    assert_eq!(auth["auth_required"], true, "{auth}");
    assert_eq!(auth["auth_accepted"], true, "{auth}");
    assert!(
        auth["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("direct-")),
        "{auth}"
    );
    for d in [&direct, &relay, &auth] {
        assert!(d["time_to_ready_ms"].as_u64().is_some(), "{d}");
        assert!(d["error"].is_null(), "{d}");
    }
    // The relay lease was released.
    let (status, emu_stderr) = emu.process.interrupt();
    assert!(status.success());
    assert!(emu_stderr.contains("/relay/unbind"), "{emu_stderr}");
}

#[test]
fn an_invalid_serial_is_a_usage_error() {
    let out = run_with_timeout(
        common::dhp2p().args([
            "probe",
            "GOOD123",
            "BAD\r\nSERIAL",
            "--cloud",
            "127.0.0.1:9",
        ]),
        20,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only letters"), "{stderr}");
}
