//! Hostile clients cannot take the emulator down or cost an honest client a
//! byte; `--record` writes every datagram, countable with tshark.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::client::DeviceLink;
use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};
use dhp2p::net::faults::FaultConfig;
use dhp2p::net::record::Recorder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const SN: &str = "DEMO00000000001";

fn echo_config() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.services.insert(7, Service::Echo);
    config
}

/// Junk of every kind: garbage, truncated and huge datagrams, lying PTCP
/// lengths, replayed cloud requests with a wrong token or serial.
fn hostile_datagram(rng: &mut SmallRng, replay: &[u8]) -> Vec<u8> {
    match rng.gen_range(0..7) {
        0 => (0..rng.gen_range(0..1500)).map(|_| rng.gen()).collect(),
        1 => {
            let mut v = b"PTCP".to_vec();
            v.extend((0..rng.gen_range(0..60)).map(|_| rng.gen::<u8>()));
            v
        }
        2 => vec![0xff; rng.gen_range(20..65000)],
        3 => replay.to_vec(),
        4 => b"DHPOST /relay/start/ffffffffffffffff HTTP/1.1\r\nCSeq: 1\r\n\r\n<body><Client>:0</Client></body>".to_vec(),
        5 => b"DHGET /online/p2psrv/WRONGSERIAL HTTP/1.1\r\nCSeq: 2\r\n\r\n".to_vec(),
        _ => {
            let mut v = b"DHGET /".to_vec();
            v.extend(std::iter::repeat_n(b'a', rng.gen_range(0..5000)));
            v
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_flood_costs_an_honest_realm_nothing() {
    let emu = driver::start(echo_config(), DriverOptions::default())
        .await
        .unwrap();
    let addrs = emu.addrs;
    let mut link = DeviceLink::open(addrs, SN).await;
    link.bind(0x0101_0101, 7).await;
    // 10k datagrams/s at every role for 1.5 s, from one socket.
    let flood = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let targets = [
            addrs.cloud,
            addrs.p2psrv,
            addrs.relay,
            addrs.agent,
            addrs.device,
        ];
        let replay = b"DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 1\r\n\r\n".to_vec();
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_millis(1500) {
            for _ in 0..100 {
                let d = hostile_datagram(&mut rng, &replay);
                let _ = sock.send_to(&d, targets[rng.gen_range(0..5)]).await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    });
    let data: Vec<u8> = (0..512 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let back = link.echo(0x0101_0101, &data).await;
    let sent = flood.await.unwrap();
    assert!(sent > 10_000, "flood sent {sent}");
    assert_eq!(
        Sha256::digest(&back),
        Sha256::digest(&data),
        "honest realm lost or reordered data"
    );
    // Still answering afterwards.
    let mut c = common::client::CloudClient::new().await;
    assert_eq!(c.ask(addrs.cloud, "/probe/p2psrv", "").await.code, 200);
    let finished = emu.stop().await;
    assert!(finished.stats.dropped_binary + finished.stats.dropped_text > 1000);
    let realm = finished.realms.iter().find(|r| r.port == 7).unwrap();
    assert_eq!(realm.bytes_in, data.len() as u64);
    assert_eq!(realm.sha256_out, hex::encode(Sha256::digest(&data)));
}

#[tokio::test]
async fn lossy_legs_still_deliver_exact_bytes() {
    let options = DriverOptions {
        faults: FaultConfig {
            loss_pct: 5.0,
            dup_pct: 2.0,
            reorder_pct: 5.0,
            delay: Duration::from_millis(2),
            seed: 42,
        },
        ..DriverOptions::default()
    };
    let emu = driver::start(echo_config(), options).await.unwrap();
    let mut link = DeviceLink::open(emu.addrs, SN).await;
    link.bind(9, 7).await;
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 253) as u8).collect();
    let back = link.echo(9, &data).await;
    assert_eq!(back, data);
    let finished = emu.stop().await;
    assert!(finished.faults_out.dropped > 0 && finished.faults_in.dropped > 0);
}

#[tokio::test]
async fn record_has_exactly_the_datagrams_the_emulator_counted() {
    let tshark = common::require_program("tshark", "tshark");
    let dir = common::scratch_dir("emulator-record");
    let path = dir.join("emu.pcap");
    let (recorder, _) = Recorder::start(Some(path.clone()), None).await.unwrap();
    let options = DriverOptions {
        recorder: recorder.clone(),
        ..DriverOptions::default()
    };
    let emu = driver::start(echo_config(), options).await.unwrap();
    let mut link = DeviceLink::open(emu.addrs, SN).await;
    link.bind(5, 7).await;
    let back = link.echo(5, b"recorded bytes").await;
    assert_eq!(back, b"recorded bytes");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let finished = emu.stop().await;
    recorder.finish().await.unwrap();
    let counted = finished.stats.datagrams_in + finished.stats.datagrams_out;
    let out = Command::new(tshark)
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
    assert_eq!(frames, counted, "tshark frames vs emulator count");
    assert_eq!(frames, recorder.frames_written());
    assert!(frames > 20);
}

/// `--vanish-after 1 --vanish-for 2`: the device falls silent (the cloud
/// answers 404), then comes back and a new session works.
#[tokio::test]
async fn device_vanishes_and_returns() {
    let mut config = echo_config();
    config.vanish_after = Some(Duration::from_millis(1200));
    config.vanish_for = Some(Duration::from_millis(1500));
    let emu = driver::start(config, DriverOptions::default())
        .await
        .unwrap();
    let addrs = emu.addrs;
    let mut link = DeviceLink::open(addrs, SN).await;
    link.bind(1, 7).await;
    assert_eq!(link.echo(1, b"before").await, b"before");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut c = common::client::CloudClient::new().await;
    let r = c
        .ask(addrs.cloud, &format!("/online/p2psrv/{SN}"), "")
        .await;
    assert_eq!(r.code, 404, "a vanished device is offline");
    // The old session gets nothing back.
    link.session.send(&dhp2p::codec::ptcp::Body::Heartbeat);
    while let Some(d) = link.session.poll_transmit(Instant::now()) {
        link.sock.send_raw(link.device, &d).await;
    }
    assert!(link.sock.silent_for(Duration::from_millis(400)).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = c
        .ask(addrs.cloud, &format!("/online/p2psrv/{SN}"), "")
        .await;
    assert_eq!(r.code, 200, "back online");
    let mut again = DeviceLink::open(addrs, SN).await;
    again.bind(2, 7).await;
    assert_eq!(again.echo(2, b"after").await, b"after");
    emu.stop().await;
}
