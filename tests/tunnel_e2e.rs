//! `dhp2p tunnel` end to end, as users run it: the real binary against the
//! real emulator binary, played by ffprobe/ffmpeg. Real-time tests; they run
//! one at a time (a lock) with generous timeouts.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::media::{
    ffprobe_stream, frame_hashes, framemd5, ready_field, rtsp_url, run_with_timeout, Background,
    GstRtspServer, StreamInfo,
};
use sha2::{Digest, Sha256};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SN: &str = "DEMO00000000001";

fn emulator(args: &[&str]) -> (Background, String) {
    let mut emu = Background::spawn(
        common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0"])
            .args(args),
    );
    let ready = emu.wait_line("ready ", Duration::from_secs(20));
    let cloud = ready_field(&ready, "cloud");
    (emu, cloud)
}

/// Starts `dhp2p tunnel` against `cloud`; returns it and its first
/// listening address once a session is ready.
fn tunnel(cloud: &str, args: &[&str]) -> (Background, String) {
    let mut t = Background::spawn(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", cloud, "--udp-bind", "127.0.0.1"])
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

fn clip_hashes() -> Vec<String> {
    framemd5([
        "-i",
        common::repo_root()
            .join("assets/clip.h264")
            .to_str()
            .unwrap(),
    ])
}

fn play_once_through_tunnel(emu_args: &[&str], tunnel_args: &[&str]) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec!["--clip-once"];
    args.extend_from_slice(emu_args);
    let (emu, cloud) = emulator(&args);
    let mut targs = vec![
        "-p",
        "127.0.0.1:0:RTSP",
        "--username",
        "admin",
        "--password",
        "admin",
    ];
    targs.extend_from_slice(tunnel_args);
    let (t, addr) = tunnel(&cloud, &targs);
    let url = rtsp_url(&addr, Some(("admin", "admin")));
    assert_eq!(ffprobe_stream(&url), StreamInfo::h264(640, 360, "25/1"));
    let received = framemd5(["-rtsp_transport", "tcp", "-i", &url]);
    assert_eq!(
        received,
        clip_hashes(),
        "frames through the tunnel differ from the clip"
    );
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "tunnel exit {status}: {stderr}");
    drop(emu);
}

#[test]
fn direct_mode_plays_the_clip_frame_exact() {
    play_once_through_tunnel(&[], &["--mode", "direct"]);
}

#[test]
fn relay_mode_plays_the_clip_frame_exact() {
    play_once_through_tunnel(&["--mode", "relay-only"], &["--mode", "relay"]);
}

#[test]
fn auth_required_plays_with_credentials() {
    play_once_through_tunnel(&["--auth", "required"], &[]);
}

#[test]
fn lossy_network_plays_the_clip_frame_exact() {
    play_once_through_tunnel(
        &["--loss", "5", "--reorder", "5", "--dup", "2", "--seed", "3"],
        &[],
    );
}

#[test]
fn auth_required_without_credentials_says_what_to_add() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (emu, cloud) = emulator(&["--auth", "required"]);
    let out = run_with_timeout(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", &cloud, "--udp-bind", "127.0.0.1"])
            .args(["-p", "127.0.0.1:0:RTSP"]),
        30,
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--username") && stderr.contains("--password"),
        "{stderr}"
    );
    drop(emu);
}

#[test]
fn unknown_serial_exits_3() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (emu, cloud) = emulator(&["--serial", "SOMEOTHER"]);
    let out = run_with_timeout(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", &cloud, "--udp-bind", "127.0.0.1"])
            .args(["-p", "127.0.0.1:0:RTSP"]),
        30,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(emu);
}

#[test]
fn third_party_rtsp_server_behind_the_device() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let gst = GstRtspServer::start();
    let service = format!("554={}", gst.addr);
    let (emu, cloud) = emulator(&["--service", &service]);
    let (t, addr) = tunnel(&cloud, &["-p", "127.0.0.1:0:554"]);
    assert_eq!(
        ffprobe_stream(&rtsp_url(&addr, None)),
        StreamInfo::h264(320, 240, "15/1")
    );
    let (status, _) = t.interrupt();
    assert!(status.success());
    drop(emu);
}

#[test]
fn sixteen_concurrent_players_each_get_the_stream() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (emu, cloud) = emulator(&[]);
    let (t, addr) = tunnel(&cloud, &["-p", "127.0.0.1:0:RTSP"]);
    let url = rtsp_url(&addr, Some(("admin", "admin")));
    let ffmpeg = common::require_program("ffmpeg", "ffmpeg");
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (ffmpeg, url) = (ffmpeg.clone(), url.clone());
            std::thread::spawn(move || {
                run_with_timeout(
                    std::process::Command::new(ffmpeg)
                        .args(["-v", "error", "-rtsp_transport", "tcp", "-i", &url])
                        .args(["-frames:v", "25", "-f", "framemd5", "-"]),
                    90,
                )
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "player {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(frame_hashes(&out.stdout).len(), 25, "player {i}");
    }
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
    drop(emu);
}

/// 16 MB each way through one realm to an echo service, compared by SHA-256
/// with the emulator's own per-realm report.
fn sixteen_mb_each_way(emu_args: &[&str]) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec!["--service", "7=echo"];
    args.extend_from_slice(emu_args);
    let (emu, cloud) = emulator(&args);
    let (t, addr) = tunnel(&cloud, &["-p", "127.0.0.1:0:7"]);
    let data: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let writer = {
        let mut w = stream.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            w.write_all(&data).unwrap();
        })
    };
    let mut back = vec![0u8; data.len()];
    use std::io::Read;
    stream.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "echoed bytes differ");
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = t.interrupt();
    assert!(status.success());
    let (_, emu_stderr) = emu.interrupt();
    let want = hex::encode(Sha256::digest(&data));
    let realm: serde_json::Value = emu_stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["port"] == 7)
        .unwrap_or_else(|| panic!("no realm report in {emu_stderr}"));
    assert_eq!(realm["sha256_in"], want.as_str(), "client → service");
    assert_eq!(realm["sha256_out"], want.as_str(), "service → client");
    assert_eq!(realm["bytes_in"], data.len());
}

#[test]
fn sixteen_mb_each_way_byte_exact() {
    sixteen_mb_each_way(&[]);
}

#[test]
fn sixteen_mb_each_way_byte_exact_under_loss() {
    sixteen_mb_each_way(&["--loss", "2", "--reorder", "2", "--dup", "1"]);
}

#[test]
fn device_vanishes_and_the_tunnel_reconnects() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (emu, cloud) = emulator(&["--vanish-after", "3", "--vanish-for", "5"]);
    let (mut t, addr) = tunnel(
        &cloud,
        &[
            "-p",
            "127.0.0.1:0:RTSP",
            "--idle-timeout",
            "3",
            "--heartbeat",
            "1",
        ],
    );
    let url = rtsp_url(&addr, Some(("admin", "admin")));
    assert_eq!(ffprobe_stream(&url), StreamInfo::h264(640, 360, "25/1"));
    // The loss is reported, then the session comes back by itself.
    t.wait_line("lost ", Duration::from_secs(20));
    t.wait_line("ready ", Duration::from_secs(40));
    assert_eq!(ffprobe_stream(&url), StreamInfo::h264(640, 360, "25/1"));
    let (status, _) = t.interrupt();
    assert!(status.success());
    drop(emu);
}
