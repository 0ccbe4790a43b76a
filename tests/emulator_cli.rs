//! `dhp2p emulate-device` as a user runs it: the ready line, ffprobe and
//! ffmpeg on the built-in RTSP service through `--expose`, `--record`, and a
//! clean exit on SIGINT with the per-realm report.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Emulator {
    child: Child,
    ready: String,
}

impl Emulator {
    fn start(args: &[&str]) -> Emulator {
        let mut child = common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no ready line within 20 s");
        assert!(ready.starts_with("ready cloud=127.0.0.1:"), "{ready}");
        Emulator { child, ready }
    }

    fn field(&self, key: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {}", self.ready))
            .to_string()
    }

    /// SIGINT, then the exit status and stderr.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (self.child.wait().unwrap(), stderr)
    }
}

fn url(addr: &str, user: &str, pass: &str) -> String {
    format!("rtsp://{user}:{pass}@{addr}/cam/realmonitor?channel=1&subtype=0")
}

fn run_with_timeout(cmd: &mut Command, secs: u64) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = stdout.read_to_end(&mut o);
        let _ = stderr.read_to_end(&mut e);
        let _ = tx.send((o, e));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok((stdout, stderr)) => std::process::Output {
            status: child.wait().unwrap(),
            stdout,
            stderr,
        },
        Err(_) => {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {secs} s");
        }
    }
}

#[test]
fn ffprobe_reads_the_builtin_rtsp_service_through_expose() {
    let ffprobe = common::require_program("ffprobe", "ffmpeg");
    let emu = Emulator::start(&["--expose", "554=127.0.0.1:0"]);
    let svc = emu.field("svc554");
    let out = run_with_timeout(
        Command::new(&ffprobe)
            .args([
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-show_streams",
                "-of",
                "json",
            ])
            .arg(url(&svc, "admin", "admin")),
        30,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let video = &json["streams"][0];
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_i64(), video["height"].as_i64()),
        (Some(640), Some(360))
    );
    assert_eq!(video["r_frame_rate"], "25/1");
    // Wrong credentials: 401.
    let out = run_with_timeout(
        Command::new(&ffprobe)
            .args(["-v", "error", "-rtsp_transport", "tcp", "-show_streams"])
            .arg(url(&svc, "admin", "wrong")),
        30,
    );
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
    let ffmpeg = common::require_program("ffmpeg", "ffmpeg");
    let emu = Emulator::start(&["--expose", "554=127.0.0.1:0", "--clip-once"]);
    let svc = emu.field("svc554");
    let hashes = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
            .collect()
    };
    let received = run_with_timeout(
        Command::new(&ffmpeg)
            .args(["-v", "error", "-rtsp_transport", "tcp", "-i"])
            .arg(url(&svc, "admin", "admin"))
            .args(["-f", "framemd5", "-"]),
        60,
    );
    assert!(
        received.status.success(),
        "{}",
        String::from_utf8_lossy(&received.stderr)
    );
    let clip = run_with_timeout(
        Command::new(&ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(common::repo_root().join("assets/clip.h264"))
            .args(["-f", "framemd5", "-"]),
        60,
    );
    assert_eq!(hashes(&clip).len(), 50);
    assert_eq!(hashes(&received), hashes(&clip));
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
