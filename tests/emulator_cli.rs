//! `dhp2p emulate-device` as a user runs it: the ready line, ffprobe and
//! ffmpeg on the built-in RTSP service through `--expose`, `--record`, and a
//! clean exit on SIGINT with the per-realm report.

mod common;

use std::process::Command;
use std::time::Duration;

use common::media::{
    ffprobe_command, framemd5, ready_field, rtsp_url, run_with_timeout, stream_info, Background,
    StreamInfo,
};

struct Emulator {
    process: Background,
    ready: String,
}

impl Emulator {
    fn start(args: &[&str]) -> Emulator {
        let mut process = Background::spawn(
            common::dhp2p()
                .arg("emulate-device")
                .args(["--cloud-port", "0"])
                .args(args),
        );
        let ready = process.next_line(Duration::from_secs(20));
        assert!(ready.starts_with("ready cloud=127.0.0.1:"), "{ready}");
        Emulator { process, ready }
    }

    fn field(&self, key: &str) -> String {
        ready_field(&self.ready, key)
    }

    /// SIGINT, then the exit status and stderr.
    fn interrupt(self) -> (std::process::ExitStatus, String) {
        self.process.interrupt()
    }
}

fn url(addr: &str, user: &str, pass: &str) -> String {
    rtsp_url(addr, Some((user, pass)))
}

#[test]
fn ffprobe_reads_the_builtin_rtsp_service_through_expose() {
    let emu = Emulator::start(&["--expose", "554=127.0.0.1:0"]);
    let svc = emu.field("svc554");
    let out = run_with_timeout(&mut ffprobe_command(&url(&svc, "admin", "admin")), 30);
    assert_eq!(stream_info(&out), StreamInfo::h264(640, 360, "25/1"));
    // Wrong credentials: 401.
    let out = run_with_timeout(&mut ffprobe_command(&url(&svc, "admin", "wrong")), 30);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("Unauthorized"),
        "{stderr}"
    );
    let (status, stderr) = emu.interrupt();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(stderr.contains("\"datagrams_in\""), "{stderr}");
}

#[test]
fn clip_once_framemd5_equals_the_clip() {
    let emu = Emulator::start(&["--expose", "554=127.0.0.1:0", "--clip-once"]);
    let svc = emu.field("svc554");
    let received = framemd5(["-rtsp_transport", "tcp", "-i", &url(&svc, "admin", "admin")]);
    let clip_path = common::repo_root().join("assets/clip.h264");
    let clip = framemd5(["-i".as_ref(), clip_path.as_os_str()]);
    assert_eq!(clip.len(), 50);
    assert_eq!(received, clip);
    let (status, _) = emu.interrupt();
    assert!(status.success());
}

#[test]
fn record_then_sigint_leaves_a_pcap_tshark_opens() {
    let tshark = common::require_program("tshark", "tshark");
    let python = common::require_program("python3", "python3");
    let dir = common::scratch_dir("emulator-cli-record");
    let pcap = dir.join("run.pcap");
    let emu = Emulator::start(&["--record", pcap.to_str().unwrap(), "--service", "554=echo"]);
    let cloud = emu.field("cloud");
    let out = run_with_timeout(
        Command::new(python)
            .arg(common::repo_root().join("tools/reference-client.py"))
            .args([
                "--cloud",
                &cloud,
                "--serial",
                "DEMO00000000001",
                "--send",
                "HELLO\\r\\n\\r\\n",
            ]),
        30,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(200));
    let (status, stderr) = emu.interrupt();
    assert!(status.success(), "{stderr}");
    // One JSON line per realm, then the totals line.
    let realm: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("realm").is_some())
        .expect("a realm report line");
    assert_eq!(realm["bytes_in"], 9);
    assert_eq!(realm["port"], 554);
    let totals: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("recorded").is_some())
        .expect("a totals line");
    let out = Command::new(tshark)
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let frames = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
    assert_eq!(Some(frames), totals["recorded"].as_u64());
    assert_eq!(
        Some(frames),
        totals["datagrams_in"]
            .as_u64()
            .zip(totals["datagrams_out"].as_u64())
            .map(|(a, b)| a + b)
    );
}
