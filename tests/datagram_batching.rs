//! The batched datagram path (issue 10): what a loop pass that handles many
//! datagrams before one flush must still guarantee. Sans-IO parts run in
//! simulated time; the byte-order test runs the tunnel and emulator drivers
//! in process on loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dhp2p::codec::ptcp::{Body, Packet, Status, FRAGMENT_SIZE};
use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};
use dhp2p::session::ptcp::{Event, PtcpConfig, PtcpSession};
use dhp2p::session::tunnel::{TunnelConfig, TunnelEvent, TunnelSession};
use dhp2p::tunnel::config::loopback_options;
use dhp2p::tunnel::{self, RemotePort, Status as TunnelStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Two sessions as if the SYN exchange had happened (counters at 4).
fn pair(now: Instant) -> (PtcpSession, PtcpSession) {
    (
        PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4),
        PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4),
    )
}

fn data(realm: u32, i: usize) -> Vec<u8> {
    let mut b = Vec::new();
    Body::Data {
        realm,
        payload: &vec![i as u8; 1000],
    }
    .encode(&mut b);
    b
}

#[test]
fn a_batch_of_bodies_is_answered_by_one_cumulative_ack() {
    let now = Instant::now();
    let (mut sender, mut receiver) = pair(now);
    for i in 0..16 {
        sender.send(&Body::decode(&data(1, i)).unwrap());
    }
    let datagrams: Vec<Vec<u8>> = std::iter::from_fn(|| sender.poll_transmit(now)).collect();
    assert_eq!(datagrams.len(), 16);
    // The driver's batch: every ready datagram first, then one flush.
    for d in &datagrams {
        receiver.handle_datagram(now, d);
    }
    let answers: Vec<Vec<u8>> = std::iter::from_fn(|| receiver.poll_transmit(now)).collect();
    assert_eq!(answers.len(), 1, "one ACK for the whole batch");
    let ack = Packet::decode(&answers[0]).unwrap();
    assert!(ack.body.is_empty());
    assert_eq!(ack.header.recv, receiver.recv());
    assert_eq!(receiver.recv(), 4 + 16 * data(1, 0).len() as u32);
    // It acknowledges everything: nothing is left for the sender to resend.
    sender.handle_datagram(now, &answers[0]);
    assert_eq!(sender.unacked(), 0);
    let bodies = std::iter::from_fn(|| receiver.poll_event())
        .filter(|e| matches!(e, Event::Body(_)))
        .count();
    assert_eq!(bodies, 16);
}

#[test]
fn a_batch_ack_never_waits_past_the_flush() {
    // The bound on the ACK delay is the batch: at the flush that ends it,
    // every body handled in it is acknowledged, with no timer involved.
    let now = Instant::now();
    let (mut sender, mut receiver) = pair(now);
    sender.send(&Body::decode(&data(1, 0)).unwrap());
    let d = sender.poll_transmit(now).unwrap();
    receiver.handle_datagram(now, &d);
    assert!(receiver.next_timeout().unwrap() <= now, "ACK due at once");
    let ack = receiver.poll_transmit(now).expect("ACK at the flush");
    assert_eq!(Packet::decode(&ack).unwrap().header.recv, receiver.recv());
    assert!(receiver.poll_transmit(now).is_none());
}

/// A tunnel session with `n` open realms, the device end scripted.
struct Realms {
    now: Instant,
    client: TunnelSession,
    device: PtcpSession,
    ids: Vec<u32>,
}

impl Realms {
    fn new(n: usize, send_window: u32) -> Realms {
        let now = Instant::now();
        let config = PtcpConfig {
            send_window,
            ..PtcpConfig::default()
        };
        let c = PtcpSession::with_counters(config, now, 4, 4);
        let d = PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4);
        let tunnel = TunnelConfig {
            max_realms: n,
            ..TunnelConfig::default()
        };
        let mut r = Realms {
            now,
            client: TunnelSession::new(tunnel, c, 7),
            device: d,
            ids: Vec::new(),
        };
        for client in 0..n as u64 {
            let id = r.client.open(now, client, 554);
            r.ids.push(id);
        }
        r.exchange();
        for id in r.ids.clone() {
            r.device.send(&Body::status(id, Status::Conn));
        }
        r.exchange();
        r
    }

    /// One round trip of batches: everything the client has, then
    /// everything the device has. Returns realm IDs of DATA the device got.
    fn exchange(&mut self) -> Vec<u32> {
        let mut realms = Vec::new();
        let out: Vec<Vec<u8>> =
            std::iter::from_fn(|| self.client.poll_transmit(self.now)).collect();
        for d in &out {
            self.device.handle_datagram(self.now, d);
        }
        while let Some(ev) = self.device.poll_event() {
            if let Event::Body(b) = ev {
                if let Ok(Body::Data { realm, .. }) = Body::decode(&b) {
                    realms.push(realm);
                }
            }
        }
        let back: Vec<Vec<u8>> =
            std::iter::from_fn(|| self.device.poll_transmit(self.now)).collect();
        for d in &back {
            self.client.handle_datagram(self.now, d);
        }
        while self.client.poll_event().is_some() {}
        self.now += Duration::from_millis(1);
        realms
    }
}

#[test]
fn thirty_two_clients_share_the_window_within_ten_percent() {
    // A window of 40 bodies for 32 clients, each with 128 KiB to send:
    // every round trip must spread the window evenly, whoever wrote first.
    let n = 32;
    let mut r = Realms::new(n, 40 * (FRAGMENT_SIZE as u32 + 12));
    for client in 0..n as u64 {
        r.client.client_data(client, vec![client as u8; 128 * 1024]);
    }
    let mut sent = vec![0usize; n];
    // Half the transfer: nobody has finished, everybody has been waiting.
    let total_bodies = n * 128 * 1024 / FRAGMENT_SIZE;
    let mut bodies = 0;
    while bodies < total_bodies / 2 {
        let realms = r.exchange();
        assert!(!realms.is_empty(), "the window stalled");
        for realm in realms {
            let i = r.ids.iter().position(|id| *id == realm).unwrap();
            sent[i] += 1;
            bodies += 1;
        }
    }
    let min = *sent.iter().min().unwrap() as f64;
    let max = *sent.iter().max().unwrap() as f64;
    assert!(min / max >= 0.9, "bodies per client {sent:?}");
}

/// A service that sends `bytes` of a counting pattern, then closes.
async fn pattern_source(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let all: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
                // Odd-sized writes, so bodies do not line up with them.
                for chunk in all.chunks(3001) {
                    if s.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// The emulator with `service` on device port 9 and a tunnel to it, ready.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<Result<(), tunnel::TunnelError>>,
    emu: driver::RunningEmulator,
}

async fn tunnel_to(service: Service) -> Running {
    let mut config = EmulatorConfig::default();
    config.services.insert(9, service);
    let emu = driver::start(config, DriverOptions::default())
        .await
        .expect("emulator");
    let opts = loopback_options(
        emu.addrs.cloud,
        "DEMO00000000001",
        Some(("admin".into(), "admin".into())),
        0,
        RemotePort::Port(9),
    )
    .expect("options");
    let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(tunnel::run(
        opts,
        async move { drop(stopped.await) },
        status_tx,
    ));
    let mut addr = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), status_rx.recv()).await {
            Ok(Some(TunnelStatus::Listening(a))) => addr = a.first().copied(),
            Ok(Some(TunnelStatus::Ready { .. })) => break,
            Ok(Some(TunnelStatus::Lost { .. })) => {}
            other => panic!("tunnel not ready: {other:?}"),
        }
    }
    Running {
        addr: addr.expect("listening"),
        stop,
        run,
        emu,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.run).await;
        self.emu.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_client_writes_keep_byte_order() {
    let bytes = 8 * 1024 * 1024;
    let source = pattern_source(bytes).await;
    let t = tunnel_to(Service::Forward(source.to_string())).await;
    let mut client = TcpStream::connect(t.addr).await.unwrap();
    // Read late, so bodies queue up for the client and go out merged.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::with_capacity(bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let reading = async {
        while got.len() < bytes {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {} of {bytes} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the download finished");
    let first_wrong = got
        .iter()
        .enumerate()
        .position(|(i, b)| *b != (i % 251) as u8);
    assert_eq!(first_wrong, None, "bytes out of order or corrupted");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_on_a_quiet_session_closes_its_service_at_once() {
    // The device's service: answers one line, then waits for the close.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<Instant>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(Instant::now());
    });
    let t = tunnel_to(Service::Forward(service.to_string())).await;
    let mut client = TcpStream::connect(t.addr).await.unwrap();
    client.write_all(b"hello\n").await.unwrap();
    let mut echo = [0u8; 6];
    client.read_exact(&mut echo).await.unwrap();
    // Every ACK settled: nothing else will touch the session for a while
    // (the next heartbeat is seconds away).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = Instant::now();
    drop(client);
    let seen = tokio::time::timeout(Duration::from_secs(10), closed_rx)
        .await
        .expect("the service saw the close")
        .expect("service task");
    let took = seen.saturating_duration_since(closed);
    assert!(
        took < Duration::from_millis(500),
        "the DISC waited {took:?} for something else to flush the session"
    );
    t.stop().await;
}

#[test]
fn tunnel_events_carry_device_bytes_in_order() {
    // Bodies handled in one batch come out as Data events in sequence order.
    let mut r = Realms::new(1, 1024 * 1024);
    for i in 0..20u8 {
        r.device.send(&Body::Data {
            realm: r.ids[0],
            payload: &[i; 700],
        });
    }
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| r.device.poll_transmit(r.now)).collect();
    for d in out.iter().rev().chain(out.iter()) {
        // Reversed first: every body but the first waits in the reorder buffer.
        r.client.handle_datagram(r.now, d);
    }
    let mut order = Vec::new();
    while let Some(ev) = r.client.poll_event() {
        if let TunnelEvent::Data { bytes, .. } = ev {
            order.push(bytes[0]);
        }
    }
    assert_eq!(order, (0..20).collect::<Vec<u8>>());
}
