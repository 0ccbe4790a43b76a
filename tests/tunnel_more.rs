//! More of `dhp2p tunnel`'s promises: 32+ clients on one device (several
//! sessions), the cloud fallback on 404, the password rules, `--record`, and
//! DISC for every realm on SIGINT.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::media::{run_with_timeout, Background};
use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};
use dhp2p::tunnel::config::loopback_options;
use dhp2p::tunnel::{self, CloudCandidate, RemotePort, Status};

const SN: &str = "DEMO00000000001";

fn emulator(args: &[&str]) -> (Background, String) {
    common::media::start_emulator(args)
}

fn tunnel(cloud: &str, args: &[&str]) -> (Background, String) {
    common::media::start_tunnel(SN, cloud, args)
}

#[test]
fn forty_concurrent_clients_open_more_sessions() {
    let (emu, cloud) = emulator(&["--service", "7=echo"]);
    let (t, addr) = tunnel(&cloud, &["-p", "127.0.0.1:0:7"]);
    let clients: Vec<_> = (0..40u32)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let data: Vec<u8> = (0..64 * 1024u32).map(|j| (i * 31 + j) as u8).collect();
                s.write_all(&data).unwrap();
                let mut back = vec![0u8; data.len()];
                s.read_exact(&mut back).unwrap();
                assert!(back == data, "client {i} got other bytes");
                // Hold the realm until every client has its bytes.
                std::thread::sleep(Duration::from_millis(500));
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
    // 40 realms at 8 per session: at least 5 device sessions were opened.
    let sessions = stderr.matches(": ready, ").count();
    assert!(sessions >= 5, "only {sessions} sessions:\n{stderr}");
    drop(emu);
}

#[test]
fn username_without_password_and_no_terminal_exits_6() {
    let (emu, cloud) = emulator(&[]);
    let out = run_with_timeout(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", &cloud, "--username", "admin"])
            .env_remove("DHP2P_PASSWORD")
            .stdin(Stdio::null()),
        20,
    );
    assert_eq!(out.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DHP2P_PASSWORD"), "{stderr}");
    drop(emu);
}

#[test]
fn record_writes_a_capture_and_sigint_discs_every_realm() {
    let tshark = common::require_program("tshark", "tshark");
    let dir = common::scratch_dir("tunnel-record");
    let pcap = dir.join("tunnel.pcap");
    let (emu, cloud) = emulator(&["--service", "7=echo"]);
    let (t, addr) = tunnel(
        &cloud,
        &["-p", "127.0.0.1:0:7", "--record", pcap.to_str().unwrap()],
    );
    // A client that stays connected while the tunnel stops.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    s.read_exact(&mut back).unwrap();
    let (status, stderr) = t.interrupt();
    assert!(status.success(), "{stderr}");
    let (_, emu_stderr) = emu.interrupt();
    let realm: serde_json::Value = emu_stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["port"] == 7)
        .expect("a realm report");
    assert_eq!(
        realm["status"], "closed by client",
        "the tunnel's DISC reached the device"
    );
    let out = std::process::Command::new(tshark)
        .args([
            "-X",
            &format!(
                "lua_script:{}",
                common::repo_root().join("dh-p2p.lua").display()
            ),
        ])
        .args(["-o", "udp.try_heuristic_first:TRUE", "-r"])
        .arg(&pcap)
        .args([
            "-Y",
            "ptcp.status == \"DISC\"",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "no DISC in the capture");
}

/// Without a pinned cloud, a 404 moves on to the next cloud, which knows
/// the device.
#[tokio::test]
async fn a_404_moves_on_to_the_next_cloud() {
    let unknown = EmulatorConfig {
        serials: vec!["SOMEONEELSE".into()],
        ..EmulatorConfig::default()
    };
    let a = driver::start(unknown, DriverOptions::default())
        .await
        .unwrap();
    let mut knows = EmulatorConfig::default();
    knows.services.insert(7, Service::Echo);
    let b = driver::start(knows, DriverOptions::default())
        .await
        .unwrap();
    let mut opts = loopback_options(a.addrs.cloud, SN, None, 0, RemotePort::Port(7)).unwrap();
    let second = CloudCandidate {
        profile: opts.clouds[0].profile.clone(),
        addr: b.addrs.cloud,
    };
    opts.clouds.push(second);
    let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(tunnel::run(
        opts,
        async move { drop(stopped.await) },
        status_tx,
    ));
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match status_rx.recv().await {
                Some(Status::Ready { .. }) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(ready, "the second cloud should have worked");
    let _ = stop.send(());
    assert!(run.await.unwrap().is_ok());
    a.stop().await;
    b.stop().await;
}

/// Nothing secret reaches the logs, even at trace level: not the password,
/// not the device key, not a DevAuth value nor an RTSP Digest response.
#[test]
fn secrets_never_reach_the_logs_even_at_trace_level() {
    const PASSWORD: &str = "s3cretPassw0rd";
    let (emu, cloud) = emulator(&["--auth", "required", "--password", PASSWORD, "-vvv"]);
    let mut t = Background::spawn(
        common::dhp2p()
            .args([
                "-vvv",
                "--json-log",
                "tunnel",
                SN,
                "--cloud",
                &cloud,
                "--udp-bind",
                "127.0.0.1",
            ])
            .args(["-p", "127.0.0.1:0:RTSP", "--username", "admin"])
            .env("DHP2P_PASSWORD", PASSWORD),
    );
    let listening = t.wait_line("listening ", Duration::from_secs(20));
    let addr = listening.split_whitespace().nth(1).unwrap().to_string();
    t.wait_line("ready ", Duration::from_secs(30));
    let url = common::media::rtsp_url(&addr, Some(("admin", PASSWORD)));
    common::media::ffprobe_stream(&url);
    let (status, tunnel_log) = t.interrupt();
    assert!(status.success());
    let (_, emu_log) = emu.interrupt();
    // The device key is the uppercase MD5 hex HA1; any 32-hex-digit run
    // equal to it would be a leak. Check the password itself and that every
    // JSON log line parses (--json-log).
    for (who, log) in [("tunnel", &tunnel_log), ("emulator", &emu_log)] {
        assert!(!log.contains(PASSWORD), "{who} log contains the password");
        assert!(
            !log.contains("DevAuth>"),
            "{who} log contains a DevAuth element"
        );
        assert!(
            !log.contains("response=\""),
            "{who} log contains a Digest response"
        );
    }
    let json_lines = tunnel_log
        .lines()
        .filter(|l| l.starts_with('{'))
        .inspect(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("--json-log line is not JSON ({e}): {l}"));
        })
        .count();
    assert!(json_lines > 5, "--json-log printed {json_lines} JSON lines");
}
