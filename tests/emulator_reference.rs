//! The literal reference-style client (tools/reference-client.py, DH-P2P §3.1
//! in Python order, legacy dialect, unconnected sockets) completes the whole
//! handshake against the emulator and carries a request through a realm.

mod common;

use std::process::Command;
use std::time::Duration;

use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};

fn run_reference_client(
    config: EmulatorConfig,
    send: &str,
) -> (std::process::Output, driver::Finished) {
    run_reference_client_with(config, send, &[])
}

fn run_reference_client_with(
    config: EmulatorConfig,
    send: &str,
    extra: &[&str],
) -> (std::process::Output, driver::Finished) {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let python = common::require_program("python3", "python3");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(driver::start(config, DriverOptions::default()))
        .unwrap();
    let cloud = emu.addrs.cloud;
    let script = common::repo_root().join("tools/reference-client.py");
    let send = send.to_string();
    let out = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .args(["--cloud", &cloud.to_string(), "--serial", "demo00000000001"])
                .args(["--send", &send])
                .args(&extra)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    });
    // Let the DISC arrive before stopping.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    let finished = rt.block_on(emu.stop());
    (out, finished)
}

#[test]
fn reference_client_echo_through_a_realm() {
    let mut config = EmulatorConfig::default();
    config.services.insert(554, Service::Echo);
    let (out, finished) = run_reference_client(config, "PING 1\\r\\n\\r\\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reference client failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PING 1\r\n\r\n");
    assert_eq!(finished.stats.sessions, 1);
    assert_eq!(finished.stats.realms_opened, 1);
    let realm = &finished.realms[0];
    assert_eq!((realm.bytes_in, realm.bytes_out), (10, 10));
    assert_eq!(realm.status, "closed by client");
}

/// The acceptance case: RTSP OPTIONS through a realm to the built-in
/// Dahua-like RTSP service.
#[test]
fn reference_client_rtsp_options_to_the_builtin_service() {
    let (out, finished) = run_reference_client(
        EmulatorConfig::default(),
        "OPTIONS rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0 RTSP/1.0\\r\\nCSeq: 1\\r\\n\\r\\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reference client failed: {stderr}");
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(reply.starts_with("RTSP/1.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("CSeq: 1\r\n"), "{reply}");
    assert!(reply.contains("Public: OPTIONS, DESCRIBE"), "{reply}");
    assert!(reply.contains("Server: Rtsp Server/3.0"), "{reply}");
    assert_eq!(finished.realms.len(), 1);
}

/// The Rust port's style: Rust step order, no Content-* headers, connected
/// sockets (device datagrams before the re-connect would be lost), the
/// inverted STUN address, no ACK after the sign.
#[test]
fn reference_client_rust_style_connected_sockets() {
    let mut config = EmulatorConfig::default();
    config.services.insert(554, Service::Echo);
    let (out, _) = run_reference_client_with(config, "PING rs\\r\\n\\r\\n", &["--style", "rs"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reference client failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PING rs\r\n\r\n");
}
