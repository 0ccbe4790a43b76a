//! `net::record`: `--record FILE.pcap` and `--tap ADDR`, read back by a real
//! tshark and by `pcap-file`.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dhp2p::net::record::{Recorder, TAP_QUEUE_FRAMES};
use pcap_file::pcap::PcapReader;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const CLIENT: &str = "192.0.2.10:50000";
const DEVICE: &str = "203.0.113.10:40000";
const CLOUD: &str = "198.51.100.1:8800";

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// (src, dst, payload) of datagram `i` of a small three-party exchange.
fn datagram(i: usize) -> (SocketAddrV4, SocketAddrV4, Vec<u8>) {
    let (src, dst) = match i % 4 {
        0 => (CLIENT, CLOUD),
        1 => (CLOUD, CLIENT),
        2 => (CLIENT, DEVICE),
        _ => (DEVICE, CLIENT),
    };
    let payload = (0..(i * 7) % 1400 + 1).map(|b| (b + i) as u8).collect();
    (addr(src), addr(dst), payload)
}

fn tshark(pcap: &Path, extra: &[&str]) -> Vec<Vec<String>> {
    let tshark = common::require_program("tshark", "tshark");
    let out = Command::new(tshark)
        .args(["-n", "-o", "udp.check_checksum:TRUE", "-r"])
        .arg(pcap)
        .args(extra)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// frame.number, udp.srcport, udp.dstport, data.len of every frame.
fn tshark_frames(pcap: &Path) -> Vec<Vec<String>> {
    tshark(
        pcap,
        &[
            // Keep the UDP payload as plain data whatever port heuristics say.
            "-d",
            "udp.port==8800,data",
            "-d",
            "udp.port==40000,data",
            "-d",
            "udp.port==50000,data",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "data.len",
        ],
    )
}

fn assert_no_bad_checksums(pcap: &Path) {
    let bad = tshark(
        pcap,
        &[
            "-o",
            "ip.check_checksum:TRUE",
            "-Y",
            "udp.checksum.status == \"Bad\" || ip.checksum.status == \"Bad\"",
        ],
    );
    assert!(bad.is_empty(), "frames with bad checksums: {bad:?}");
}

/// The UDP payloads of a pcap, via pcap-file and etherparse.
fn payloads(bytes: &[u8]) -> Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)> {
    let mut reader = PcapReader::new(bytes).expect("pcap global header");
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("pcap record");
        let sliced = etherparse::SlicedPacket::from_ethernet(&packet.data).expect("ethernet frame");
        let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
            panic!("not IPv4")
        };
        let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
            panic!("not UDP")
        };
        out.push((
            SocketAddrV4::new(ip.header().source_addr(), udp.source_port()),
            SocketAddrV4::new(ip.header().destination_addr(), udp.destination_port()),
            udp.payload().to_vec(),
        ));
    }
    out
}

fn loopback_tap() -> Option<SocketAddr> {
    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

async fn wait_for_clients(recorder: &Recorder, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder.tap_clients() != n {
        assert!(
            Instant::now() < deadline,
            "tap clients stayed at {}, expected {n}",
            recorder.tap_clients()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn recorded_file_reads_back_in_tshark() {
    let dir = common::scratch_dir("net_record_file");
    let path = dir.join("run.pcap");
    let (recorder, tap) = Recorder::start(Some(path.clone()), None).await.unwrap();
    assert_eq!(tap, None);
    const N: usize = 200;
    for i in 0..N {
        let (src, dst, payload) = datagram(i);
        recorder.record(src, dst, &payload);
    }
    assert_eq!(recorder.frames_written(), N as u64);
    recorder.finish().await.unwrap();
    // After finish nothing more is recorded, by any clone.
    let (src, dst, payload) = datagram(0);
    recorder.clone().record(src, dst, &payload);
    assert_eq!(recorder.frames_written(), N as u64);

    let rows = tshark_frames(&path);
    assert_eq!(rows.len(), N, "{rows:?}");
    for (i, row) in rows.iter().enumerate() {
        let (src, dst, payload) = datagram(i);
        let expected = [
            (i + 1).to_string(),
            src.port().to_string(),
            dst.port().to_string(),
            payload.len().to_string(),
        ];
        assert_eq!(row, &expected, "frame {}", i + 1);
    }
    assert_no_bad_checksums(&path);

    let read_back = payloads(&std::fs::read(&path).unwrap());
    assert_eq!(read_back, (0..N).map(datagram).collect::<Vec<_>>());
}

#[tokio::test]
async fn file_is_readable_after_every_datagram() {
    let dir = common::scratch_dir("net_record_flush");
    let path = dir.join("live.pcap");
    let (recorder, _) = Recorder::start(Some(path.clone()), None).await.unwrap();
    assert!(payloads(&std::fs::read(&path).unwrap()).is_empty());
    for i in 0..20 {
        let (src, dst, payload) = datagram(i);
        recorder.record(src, dst, &payload);
        let seen = payloads(&std::fs::read(&path).unwrap());
        assert_eq!(seen.len(), i + 1, "after datagram {i}");
        assert_eq!(seen[i].2, payload);
    }
    // tshark agrees while the recorder is still open.
    assert_eq!(tshark_frames(&path).len(), 20);
    drop(recorder);
}

#[tokio::test]
async fn tap_client_joining_mid_run_gets_a_valid_stream_of_later_frames() {
    let dir = common::scratch_dir("net_record_tap");
    let (recorder, tap) = Recorder::start(None, loopback_tap()).await.unwrap();
    let tap = tap.expect("tap address");
    assert!(tap.ip().is_loopback());
    assert_ne!(tap.port(), 0);

    for i in 0..50 {
        let (src, dst, payload) = datagram(i);
        recorder.record(src, dst, &payload);
    }
    let mut client = TcpStream::connect(tap).await.unwrap();
    wait_for_clients(&recorder, 1).await;
    let reader = tokio::spawn(async move {
        let mut stream = Vec::new();
        client.read_to_end(&mut stream).await.unwrap();
        stream
    });
    for i in 50..300 {
        let (src, dst, payload) = datagram(i);
        recorder.record(src, dst, &payload);
    }
    recorder.finish().await.unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("tap stream did not end after finish")
        .unwrap();

    let got = payloads(&stream);
    assert_eq!(got, (50..300).map(datagram).collect::<Vec<_>>());
    let saved = dir.join("tap.pcap");
    std::fs::write(&saved, &stream).unwrap();
    let rows = tshark_frames(&saved);
    assert_eq!(rows.len(), 250);
    assert_eq!(rows[0][1], datagram(50).0.port().to_string());
    assert_no_bad_checksums(&saved);
    assert_eq!(recorder.tap_clients(), 0);
}

#[tokio::test]
async fn tap_clients_come_and_go() {
    let (recorder, tap) = Recorder::start(None, loopback_tap()).await.unwrap();
    let tap = tap.unwrap();
    let first = TcpStream::connect(tap).await.unwrap();
    let mut second = TcpStream::connect(tap).await.unwrap();
    wait_for_clients(&recorder, 2).await;
    drop(first);
    // Noticed without any datagram being recorded.
    wait_for_clients(&recorder, 1).await;
    let (src, dst, payload) = datagram(3);
    recorder.record(src, dst, &payload);
    let mut header_and_frame = vec![0u8; 24 + 16 + 42 + payload.len()];
    tokio::time::timeout(
        Duration::from_secs(5),
        second.read_exact(&mut header_and_frame),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        payloads(&header_and_frame),
        vec![(src, dst, payload.clone())]
    );
    drop(second);
    wait_for_clients(&recorder, 0).await;
    recorder.finish().await.unwrap();
    // The listener closes: connecting is refused soon after finish.
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(tap).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still accepting clients after finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_client_that_never_reads_does_not_stall_recording() {
    let dir = common::scratch_dir("net_record_slow_tap");
    let path = dir.join("busy.pcap");
    let (recorder, tap) = Recorder::start(Some(path.clone()), loopback_tap())
        .await
        .unwrap();
    let _sleeper = TcpStream::connect(tap.unwrap()).await.unwrap();
    wait_for_clients(&recorder, 1).await;

    const N: usize = 50_000;
    let payload = vec![0x5a; 1000];
    let (src, dst) = (addr(CLIENT), addr(DEVICE));
    let start = Instant::now();
    for _ in 0..N {
        recorder.record(src, dst, &payload);
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "recording stalled: {elapsed:?}"
    );
    assert_eq!(recorder.frames_written(), N as u64);
    // 50k frames of 1 KB is far more than the queue plus socket buffers.
    const { assert!(N > TAP_QUEUE_FRAMES * 2) };
    assert_eq!(recorder.tap_clients(), 0, "stuck client was not dropped");

    let finish_start = Instant::now();
    recorder.finish().await.unwrap();
    assert!(finish_start.elapsed() < Duration::from_secs(5));
    let mut file = Vec::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut file)
        .unwrap();
    assert_eq!(payloads(&file).len(), N);
}

#[tokio::test]
async fn disabled_recorder_records_nothing() {
    let (recorder, tap) = Recorder::start(None, None).await.unwrap();
    assert_eq!(tap, None);
    assert!(!recorder.is_enabled());
    let (src, dst, payload) = datagram(1);
    recorder.record(src, dst, &payload);
    assert_eq!(recorder.frames_written(), 0);
    assert_eq!(recorder.tap_clients(), 0);
    recorder.finish().await.unwrap();
    assert!(!Recorder::disabled().is_enabled());
}

#[tokio::test]
async fn record_any_maps_v4_in_v6_and_skips_v6() {
    let dir = common::scratch_dir("net_record_any");
    let path = dir.join("any.pcap");
    let (recorder, _) = Recorder::start(Some(path.clone()), None).await.unwrap();
    let mapped: SocketAddr = "[::ffff:192.0.2.10]:50000".parse().unwrap();
    let v4: SocketAddr = DEVICE.parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
    recorder.record_any(mapped, v4, b"abc");
    recorder.record_any(v6, v4, b"skipped");
    recorder.finish().await.unwrap();
    assert_eq!(
        payloads(&std::fs::read(&path).unwrap()),
        vec![(addr(CLIENT), addr(DEVICE), b"abc".to_vec())]
    );
}

#[tokio::test]
async fn oversized_datagram_is_skipped_not_fatal() {
    let dir = common::scratch_dir("net_record_oversize");
    let path = dir.join("big.pcap");
    let (recorder, _) = Recorder::start(Some(path.clone()), None).await.unwrap();
    let (src, dst) = (addr(CLIENT), addr(DEVICE));
    recorder.record(src, dst, &vec![0; 70_000]);
    recorder.record(src, dst, b"after");
    assert_eq!(recorder.frames_written(), 1);
    recorder.finish().await.unwrap();
    assert_eq!(
        payloads(&std::fs::read(&path).unwrap()),
        vec![(src, dst, b"after".to_vec())]
    );
}

#[tokio::test]
async fn start_errors_name_the_path_and_address() {
    let err = Recorder::start(Some("/nonexistent-dir/x.pcap".into()), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent-dir/x.pcap"), "{err}");
    let (_held, tap) = Recorder::start(None, loopback_tap()).await.unwrap();
    let err = Recorder::start(None, tap).await.unwrap_err();
    assert!(err.to_string().contains(&tap.unwrap().to_string()), "{err}");
}
