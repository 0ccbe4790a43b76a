//! One `dhp2p emulate-device` hosting a fleet of devices that behave
//! differently (`--device`, `--fleet`): each is checked the way a user (the
//! tunnel, ffprobe) or a probing tool (cloud requests) would see it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{CloudClient, IDENTIFY};
use common::media::{
    ffprobe_stream, ready_field, rtsp_url, run_with_timeout, Background, StreamInfo,
};
use dhp2p::codec::cloud::{p2p_channel_body, Identify};
use dhp2p::codec::punch;

const DIRECT: &str = "FLEETDIRECT0001";
const RELAY: &str = "FLEETRELAY00002";
const OFFLINE: &str = "FLEETOFFLINE003";
const AUTH: &str = "FLEETAUTH000004";
const AMCREST: &str = "FLEETAMCREST005";
const LOSSY: &str = "FLEETLOSSY00006";

/// The fleet: direct, relay-only, offline, auth-required (own password),
/// registered with amcrest, and one whose every PTCP/punch datagram is lost.
fn fleet_args() -> Vec<String> {
    [
        DIRECT.to_string(),
        format!("{RELAY},mode=relay-only"),
        format!("{OFFLINE},mode=offline"),
        format!("{AUTH},auth=required,password=s3cret"),
        format!("{AMCREST},cloud=amcrest"),
        format!("{LOSSY},loss=100"),
    ]
    .into_iter()
    .flat_map(|d| ["--device".to_string(), d])
    .collect()
}

struct Fleet {
    process: Background,
    ready: String,
}

impl Fleet {
    fn start(extra: &[&str]) -> Fleet {
        let mut process = Background::spawn(
            common::dhp2p()
                .arg("emulate-device")
                .args(["--cloud-port", "0"])
                .args(fleet_args())
                .args(extra),
        );
        let ready = process.wait_line("ready ", Duration::from_secs(20));
        Fleet { process, ready }
    }

    fn addr(&self, key: &str) -> SocketAddr {
        ready_field(&self.ready, key).parse().expect("an address")
    }
}

/// `dhp2p tunnel SERIAL` against the fleet; the listening address once ready.
fn tunnel(cloud: SocketAddr, serial: &str, args: &[&str]) -> (Background, String) {
    let mut t = Background::spawn(
        common::dhp2p()
            .args(["tunnel", serial, "--cloud", &cloud.to_string()])
            .args(["--udp-bind", "127.0.0.1", "-p", "127.0.0.1:0:RTSP"])
            .args(args),
    );
    let listening = t.wait_line("listening ", Duration::from_secs(20));
    let addr = listening
        .split_whitespace()
        .nth(1)
        .expect("listening ADDR")
        .to_string();
    t.wait_line("ready ", Duration::from_secs(30));
    (t, addr)
}

async fn status_of(cloud: SocketAddr, path: &str) -> u16 {
    let mut c = CloudClient::new().await;
    c.ask(cloud, path, "").await.code
}

#[test]
fn ready_line_lists_every_device_and_cloud() {
    let fleet = Fleet::start(&[]);
    let serials = ready_field(&fleet.ready, "serial");
    assert_eq!(
        serials,
        [DIRECT, RELAY, OFFLINE, AUTH, AMCREST, LOSSY].join(","),
        "{}",
        fleet.ready
    );
    // Each device has its own socket.
    let mut sockets: Vec<SocketAddr> = [DIRECT, RELAY, OFFLINE, AUTH, AMCREST, LOSSY]
        .iter()
        .map(|s| fleet.addr(&format!("device.{s}")))
        .collect();
    sockets.sort();
    sockets.dedup();
    assert_eq!(sockets.len(), 6, "{}", fleet.ready);
    assert_ne!(fleet.addr("cloud.amcrest"), fleet.addr("cloud"));
}

#[test]
fn direct_and_relay_only_devices_play_rtsp_through_a_realm() {
    let fleet = Fleet::start(&[]);
    let cloud = fleet.addr("cloud");
    let (direct, direct_addr) = tunnel(cloud, DIRECT, &["--mode", "direct"]);
    let (relay, relay_addr) = tunnel(cloud, RELAY, &["--mode", "relay"]);
    for addr in [&direct_addr, &relay_addr] {
        let url = rtsp_url(addr, Some(("admin", "admin")));
        assert_eq!(ffprobe_stream(&url), StreamInfo::h264(640, 360, "25/1"));
    }
    // The relay-only device never answers a punch: direct mode cannot reach it.
    let out = run_with_timeout(
        common::dhp2p()
            .args(["tunnel", RELAY, "--cloud", &cloud.to_string()])
            .args(["--udp-bind", "127.0.0.1", "-p", "127.0.0.1:0:RTSP"])
            .args(["--mode", "direct"]),
        40,
    );
    assert!(
        !out.status.success(),
        "direct to a relay-only device worked"
    );
    let (status, stderr) = direct.interrupt();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = relay.interrupt();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = fleet.process.interrupt();
    assert!(status.success(), "{stderr}");
    for serial in [DIRECT, RELAY] {
        assert!(
            stderr.contains(&format!("\"serial\":\"{serial}\"")),
            "no realm of {serial} in {stderr}"
        );
    }
}

#[tokio::test]
async fn offline_device_is_404_on_probe_and_online_the_others_200() {
    let fleet = Fleet::start(&[]);
    let cloud = fleet.addr("cloud");
    let p2psrv = fleet.addr("p2psrv");
    assert_eq!(
        status_of(cloud, &format!("/online/p2psrv/{OFFLINE}")).await,
        404
    );
    assert_eq!(
        status_of(p2psrv, &format!("/probe/device/{OFFLINE}")).await,
        404
    );
    for serial in [DIRECT, RELAY, AUTH, LOSSY] {
        assert_eq!(
            status_of(cloud, &format!("/online/p2psrv/{serial}")).await,
            200,
            "{serial}"
        );
        assert_eq!(
            status_of(p2psrv, &format!("/probe/device/{serial}")).await,
            200,
            "{serial}"
        );
    }
    assert_eq!(status_of(cloud, "/online/p2psrv/NOSUCHDEVICE01").await, 404);
}

#[tokio::test]
async fn a_device_on_another_cloud_is_404_on_the_main_one_and_counted() {
    let fleet = Fleet::start(&[]);
    let main = fleet.addr("cloud");
    let amcrest = fleet.addr("cloud.amcrest");
    assert_eq!(
        status_of(main, &format!("/online/p2psrv/{AMCREST}")).await,
        404
    );
    assert_eq!(
        status_of(amcrest, &format!("/online/p2psrv/{AMCREST}")).await,
        200
    );
    assert_eq!(
        status_of(amcrest, &format!("/online/p2psrv/{DIRECT}")).await,
        404
    );
    // p2p-channel too: only its own cloud grants it.
    let mut c = CloudClient::new().await;
    let body = p2p_channel_body(&Identify(IDENTIFY), c.local_port());
    let path = format!("/device/{AMCREST}/p2p-channel");
    assert_eq!(c.ask(main, &path, &body).await.code, 404);
    assert_eq!(c.ask(amcrest, &path, &body).await.code, 100);
    let (status, stderr) = fleet.process.interrupt();
    assert!(status.success(), "{stderr}");
    let totals = stderr
        .lines()
        .find(|l| l.contains("\"datagrams_in\""))
        .unwrap_or_else(|| panic!("no totals line in {stderr}"));
    let totals: serde_json::Value = serde_json::from_str(totals).expect("JSON totals");
    let requests = &totals["requests"];
    assert_eq!(requests["cloud /online/p2psrv"], 1, "{totals}");
    assert_eq!(requests["cloud.amcrest /online/p2psrv"], 2, "{totals}");
    assert_eq!(requests["cloud p2p-channel"], 1, "{totals}");
    assert_eq!(requests["cloud.amcrest p2p-channel"], 1, "{totals}");
}

#[test]
fn auth_required_device_refuses_a_wrong_password_and_accepts_its_own() {
    let fleet = Fleet::start(&[]);
    let cloud = fleet.addr("cloud");
    let out = run_with_timeout(
        common::dhp2p()
            .args(["tunnel", AUTH, "--cloud", &cloud.to_string()])
            .args(["--udp-bind", "127.0.0.1", "-p", "127.0.0.1:0:RTSP"])
            .args(["--username", "admin", "--password", "admin"]),
        30,
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (t, addr) = tunnel(
        cloud,
        AUTH,
        &["--username", "admin", "--password", "s3cret"],
    );
    // The device's RTSP service knows its own password too.
    let url = rtsp_url(&addr, Some(("admin", "s3cret")));
    assert_eq!(ffprobe_stream(&url), StreamInfo::h264(640, 360, "25/1"));
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
    // The no-auth device of the same emulator needs no credentials.
    let (t, _) = tunnel(cloud, DIRECT, &[]);
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
}

/// Asks for a p2p-channel to `serial`, punches its `PubAddr`, and says
/// whether the device answered within a second.
async fn device_answers_punch(cloud: SocketAddr, serial: &str) -> bool {
    let mut c = CloudClient::new().await;
    let body = p2p_channel_body(&Identify(IDENTIFY), c.local_port());
    let path = format!("/device/{serial}/p2p-channel");
    assert_eq!(c.ask(cloud, &path, &body).await.code, 100);
    let answer = c.recv_response().await;
    assert_eq!(answer.code, 200);
    let device: SocketAddr = common::client::element(&answer, "PubAddr")
        .parse()
        .expect("PubAddr");
    let SocketAddr::V4(v4) = device else {
        panic!("IPv4 only")
    };
    let request = punch::binding_request(punch::MAGIC_COOKIE, [3; 12], IDENTIFY, v4);
    for _ in 0..3 {
        c.send_raw(device, &request.encode()).await;
        if let Some((bytes, from)) = c.recv_within(Duration::from_millis(400)).await {
            return from == device && punch::decode(&bytes).is_ok();
        }
    }
    false
}

#[tokio::test]
async fn loss_applies_to_one_device_only() {
    let fleet = Fleet::start(&[]);
    let cloud = fleet.addr("cloud");
    assert!(
        !device_answers_punch(cloud, LOSSY).await,
        "loss=100 device answered"
    );
    assert!(
        device_answers_punch(cloud, DIRECT).await,
        "the lossless device did not answer"
    );
    let (status, stderr) = fleet.process.interrupt();
    assert!(status.success(), "{stderr}");
    let totals = stderr
        .lines()
        .find(|l| l.contains("\"datagrams_in\""))
        .unwrap_or_else(|| panic!("no totals line in {stderr}"));
    let totals: serde_json::Value = serde_json::from_str(totals).expect("JSON totals");
    assert!(totals["injected"]["dropped"].as_u64() > Some(0), "{totals}");
}

#[test]
fn fleet_file_and_device_flags_combine_and_unknown_keys_are_errors() {
    let dir = common::scratch_dir("emulator_fleet_file");
    let file = dir.join("fleet.toml");
    std::fs::write(
        &file,
        "[[device]]\nserial = \"TOMLDEVICE00001\"\nmode = \"relay-only\"\n\n\
         [[device]]\nserial = \"TOMLDEVICE00002\"\ncloud = \"dmss\"\nvanish-after = 30\n",
    )
    .unwrap();
    let mut emu = Background::spawn(
        common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0", "--device", DIRECT, "--fleet"])
            .arg(&file),
    );
    let ready = emu.wait_line("ready ", Duration::from_secs(20));
    assert_eq!(
        ready_field(&ready, "serial"),
        format!("{DIRECT},TOMLDEVICE00001,TOMLDEVICE00002")
    );
    ready_field(&ready, "cloud.dmss");
    let (status, stderr) = emu.interrupt();
    assert!(status.success(), "{stderr}");

    std::fs::write(&file, "[[device]]\nserial = \"X1\"\nmdoe = \"offline\"\n").unwrap();
    let out = run_with_timeout(
        common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0", "--fleet"])
            .arg(&file),
        20,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fleet.toml") && stderr.contains("mdoe") && stderr.contains("line 3"),
        "{stderr}"
    );
    let out = run_with_timeout(
        common::dhp2p().arg("emulate-device").args([
            "--cloud-port",
            "0",
            "--device",
            "CAM1",
            "--device",
            "cam1,mode=offline",
        ]),
        20,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("given twice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_with_timeout(
        common::dhp2p().arg("emulate-device").args([
            "--cloud-port",
            "0",
            "--device",
            "X1,mode=sideways",
        ]),
        20,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sideways"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
