//! `tools/bench`: throughput and latency of the tunnel against the emulator
//! on loopback, each figure next to a baseline measured in the same run.
//!
//!   cargo run --release --example bench [-- --mb 64]
//!
//! Prints a table; docs/PERFORMANCE.md records the figures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};
use dhp2p::net::faults::FaultConfig;
use dhp2p::tunnel::config::loopback_options;
use dhp2p::tunnel::{self, RemotePort, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const SN: &str = "DEMO00000000001";

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Writes `bytes` and reads them back through `addr` (an echo path).
async fn echo_transfer(addr: SocketAddr, bytes: usize) -> Duration {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let (mut r, mut w) = stream.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).await.expect("write");
            left -= n;
        }
        w
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed after {got} of {bytes} bytes");
        got += n;
    }
    let took = start.elapsed();
    drop(writer.await);
    took
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

struct Tunnel {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    emu: driver::RunningEmulator,
    started: Instant,
    ready_after: Duration,
}

async fn start_tunnel(service: Service, remote: RemotePort, faults: FaultConfig) -> Tunnel {
    let started = Instant::now();
    let mut config = EmulatorConfig::default();
    config.services.insert(7, service);
    let emu = driver::start(
        config,
        DriverOptions {
            faults,
            ..DriverOptions::default()
        },
    )
    .await
    .expect("emulator");
    let opts = loopback_options(
        emu.addrs.cloud,
        SN,
        Some(("admin".into(), "admin".into())),
        0,
        remote,
    )
    .expect("options");
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tunnel::run(
        opts,
        async move { drop(stopped.await) },
        status_tx,
    ));
    let mut addr = None;
    let ready_after = loop {
        match status_rx.recv().await.expect("tunnel status") {
            Status::Listening(a) => addr = a.first().copied(),
            Status::Ready { .. } => break started.elapsed(),
            Status::Lost { .. } => {}
        }
    };
    Tunnel {
        addr: addr.expect("listening"),
        stop,
        emu,
        started,
        ready_after,
    }
}

impl Tunnel {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.emu.stop().await;
    }
}

/// Time from connecting to the first byte of the RTSP answer.
async fn first_rtsp_byte(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"OPTIONS rtsp://127.0.0.1/cam/realmonitor?channel=1&subtype=0 RTSP/1.0\r\nCSeq: 1\r\n\r\n",
    )
    .await
    .expect("write");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("read");
    start.elapsed()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let mb: usize = std::env::args()
        .skip_while(|a| a != "--mb")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let bytes = mb * 1024 * 1024;
    let small = (bytes / 4).max(1024 * 1024);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        println!(
            "dhp2p bench: echo transfers of {mb} MiB each way on loopback (lossy runs: {} MiB)",
            small >> 20
        );
        println!();
        // Baseline: a direct TCP echo, no tunnel.
        let direct = echo_server().await;
        let base = echo_transfer(direct, bytes).await;
        let base_rate = mbps(bytes, base);
        println!(
            "{:<44} {:>10.1} MB/s  (baseline)",
            "direct TCP echo", base_rate
        );

        let t = start_tunnel(Service::Echo, RemotePort::Port(7), FaultConfig::none()).await;
        let cpu0 = cpu_seconds();
        let took = echo_transfer(t.addr, bytes).await;
        let cpu = cpu_seconds() - cpu0;
        let rate = mbps(bytes, took);
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel → emulator echo",
            rate,
            rate / base_rate
        );
        // Each byte crosses the tunnel twice (there and back): 2 × bytes moved.
        let gb = 2.0 * bytes as f64 / 1e9;
        println!(
            "{:<44} {:>10.2} CPU s/GB (tunnel + emulator, both directions)",
            "CPU per GB",
            cpu / gb
        );
        t.stop().await;

        let lossy = |loss: f64, delay_ms: u64, seed: u64| FaultConfig {
            loss_pct: loss,
            dup_pct: 0.0,
            reorder_pct: 0.0,
            delay: Duration::from_millis(delay_ms),
            seed,
        };
        let base_small = echo_transfer(direct, small).await;
        let t = start_tunnel(Service::Echo, RemotePort::Port(7), lossy(1.0, 0, 1)).await;
        let took = echo_transfer(t.addr, small).await;
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel, 1% loss each way",
            mbps(small, took),
            mbps(small, took) / mbps(small, base_small)
        );
        t.stop().await;
        let t = start_tunnel(Service::Echo, RemotePort::Port(7), lossy(1.0, 25, 2)).await;
        let took = echo_transfer(t.addr, small).await;
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel, 50 ms RTT + 1% loss each way",
            mbps(small, took),
            mbps(small, took) / mbps(small, base_small)
        );
        t.stop().await;

        // Latency: from start to the first RTSP byte, and on a warm tunnel.
        let start = Instant::now();
        let t = start_tunnel(Service::BuiltinRtsp, RemotePort::Rtsp, FaultConfig::none()).await;
        let cold = start.elapsed() + first_rtsp_byte(t.addr).await;
        let mut warm: Vec<Duration> = Vec::new();
        for _ in 0..20 {
            warm.push(first_rtsp_byte(t.addr).await);
        }
        warm.sort();
        let direct_rtsp = first_rtsp_byte(t.emu.services[&554]).await;
        println!();
        println!(
            "{:<44} {:>10.1} ms  (session ready after {:.1} ms)",
            "start → first RTSP byte",
            cold.as_secs_f64() * 1e3,
            t.ready_after.as_secs_f64() * 1e3
        );
        println!(
            "{:<44} {:>10.2} ms  median of 20, max {:.2} ms; direct to the service {:.2} ms",
            "new client on a warm tunnel → first byte",
            warm[10].as_secs_f64() * 1e3,
            warm[19].as_secs_f64() * 1e3,
            direct_rtsp.as_secs_f64() * 1e3
        );
        let _ = t.started;
        t.stop().await;
    });
}
