//! The emulator under pressure and when it cannot do what it was asked: a
//! service that stops reading, a busy `--expose` port, a recording whose disk
//! is full. Each says what happened and keeps its memory and its report.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::client::DeviceLink;
use common::media::{run_with_timeout, Background};
use dhp2p::codec::ptcp::Body;
use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};

/// A TCP server that accepts and then never reads, with a small receive
/// buffer so the kernel holds little.
async fn stalled_service() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_stops_reading_closes_the_window_instead_of_queueing() {
    let (stalled, _task) = stalled_service().await;
    let mut config = EmulatorConfig::default();
    config
        .services
        .insert(9, Service::Forward(stalled.to_string()));
    let emu = driver::start(config, DriverOptions::default())
        .await
        .unwrap();
    let mut link = DeviceLink::open(emu.addrs, "DEMO00000000001").await;
    link.bind(1, 9).await;
    // Offer 48 MB; the device may take only what its service's socket
    // buffers and its backlog limit hold.
    let offered = 48 * 1024 * 1024;
    let chunk = vec![0x5a; 1280];
    let mut queued = 0usize;
    let mut last_progress = Instant::now();
    let mut last_acked = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        while queued < offered && link.session.send_capacity() > 2048 {
            link.session.send(&Body::Data {
                realm: 1,
                payload: &chunk,
            });
            queued += chunk.len();
        }
        while let Some(out) = link.session.poll_transmit(Instant::now()) {
            link.sock.send_raw(link.device, &out).await;
        }
        while link.session.poll_event().is_some() {}
        if let Some((p, _)) = link.sock.recv_within(Duration::from_millis(5)).await {
            link.session.handle_datagram(Instant::now(), &p);
        }
        link.session.handle_timeout(Instant::now());
        let acked = link.session.sent().wrapping_sub(link.session.unacked());
        if acked != last_acked {
            last_acked = acked;
            last_progress = Instant::now();
        }
        let stalled_for = last_progress.elapsed();
        if acked as usize >= offered || stalled_for > Duration::from_secs(3) {
            break;
        }
        assert!(Instant::now() < deadline, "no verdict within 60 s");
    }
    // Bytes the device acknowledged are bytes it holds for a service that
    // reads nothing: kernel buffers (a few MB) plus the 1 MiB backlog limit.
    assert!(
        (last_acked as usize) < 12 * 1024 * 1024,
        "the device took {last_acked} bytes for a service that reads nothing"
    );
    let finished = emu.stop().await;
    assert!(finished.stats.data_deferred > 0, "{:?}", finished.stats);
}

#[test]
fn expose_on_a_busy_port_names_that_port() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = run_with_timeout(
        common::dhp2p().args([
            "emulate-device",
            "--cloud-port",
            "0",
            "--expose",
            &format!("554=127.0.0.1:{port}"),
        ]),
        20,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("TCP 127.0.0.1:{port}")) && stderr.contains("--expose 554"),
        "{stderr}"
    );
    assert!(!stderr.contains("--cloud-port 0"), "{stderr}");
}

#[test]
fn a_busy_cloud_port_names_it_and_hints_at_port_0() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = run_with_timeout(
        common::dhp2p().args(["emulate-device", "--cloud-port", &port]),
        20,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("UDP 127.0.0.1:{port} (main cloud)"))
            && stderr.contains("--cloud-port 0"),
        "{stderr}"
    );
}

#[test]
fn record_to_dev_full_names_the_file() {
    let out = run_with_timeout(
        common::dhp2p().args([
            "emulate-device",
            "--cloud-port",
            "0",
            "--record",
            "/dev/full",
        ]),
        20,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/dev/full"), "{stderr}");
}

#[test]
fn a_full_disk_stops_the_recording_but_not_the_report() {
    let dir = common::scratch_dir("emulator_full_disk");
    let pcap = dir.join("emu.pcap");
    // A file size limit of 2 KiB stands in for a full disk: writes beyond it
    // fail with EFBIG (the shell ignores SIGXFSZ, and so does its exec).
    let script = format!(
        "trap '' XFSZ; ulimit -f 2; exec {} emulate-device --cloud-port 0 --record {}",
        env!("CARGO_BIN_EXE_dhp2p"),
        pcap.display()
    );
    let mut emu = Background::spawn(Command::new("sh").args(["-c", &script]));
    let ready = emu.wait_line("ready ", Duration::from_secs(20));
    let cloud: SocketAddr = common::media::ready_field(&ready, "cloud").parse().unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..40 {
        // Garbage is dropped, but recorded first: 40 × 200 bytes fill 2 KiB.
        sock.send_to(&[b'x'; 200], cloud).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = emu.interrupt();
    assert!(stderr.contains("ERROR"), "{stderr}");
    let totals = stderr
        .lines()
        .find(|l| l.contains("\"datagrams_in\""))
        .unwrap_or_else(|| panic!("no totals line after a full disk: {stderr}"));
    let totals: serde_json::Value = serde_json::from_str(totals).expect("JSON totals");
    assert!(totals["datagrams_in"].as_u64() >= Some(40), "{totals}");
    assert!(!status.success(), "a failed recording must not exit 0");
    assert!(stderr.contains("emu.pcap"), "{stderr}");
}
