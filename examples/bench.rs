//! `tools/bench`: throughput, CPU and latency of the tunnel against the
//! emulator on loopback, each figure next to a baseline measured in the same
//! run.
//!
//!   cargo run --release --example bench [-- --mb 64]
//!
//! The tunnel, the emulator and the benchmark's own clients each run on their
//! own tokio runtime with named threads, so CPU time is read per component
//! from /proc/self/task/*/stat (as if they were separate processes). CPU
//! seconds are robust to other load on the machine; wall-clock rates are not.
//! Prints a table; docs/PERFORMANCE.md records the figures.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use dhp2p::codec::ptcp::FRAGMENT_SIZE;
use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::{EmulatorConfig, Service};
use dhp2p::net::faults::FaultConfig;
use dhp2p::tunnel::config::loopback_options;
use dhp2p::tunnel::{self, RemotePort, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};

const SN: &str = "DEMO00000000001";
/// Thread names of the three runtimes (at most 15 bytes: the kernel's comm).
const TUNNEL: &str = "bench-tunnel";
const EMULATOR: &str = "bench-emulator";

/// CPU seconds (user + system) per thread name of this process so far.
fn cpu_by_thread() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        let secs = (tick(11).unwrap_or(0.0) + tick(12).unwrap_or(0.0)) / 100.0;
        *out.entry(name).or_insert(0.0) += secs;
    }
    out
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    tunnel: f64,
    emulator: f64,
}

fn cpu_now() -> Cpu {
    let by = cpu_by_thread();
    let sum = |prefix: &str| {
        by.iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, s)| s)
            .sum()
    };
    Cpu {
        tunnel: sum(TUNNEL),
        emulator: sum(EMULATOR),
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            tunnel: self.tunnel - o.tunnel,
            emulator: self.emulator - o.emulator,
        }
    }
}

/// System-wide UDP counters from /proc/net/snmp (other processes on the
/// machine add to them: read with that in mind).
#[derive(Clone, Copy, Default)]
struct Udp {
    rcvbuf_errors: u64,
}

fn udp_counters() -> Udp {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return Udp::default();
    };
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Udp::default();
    };
    let field = |want: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == want)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    Udp {
        rcvbuf_errors: field("RcvbufErrors"),
    }
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
    read_exactly(&mut r, bytes).await;
    let took = start.elapsed();
    drop(writer.await);
    took
}

/// Connects and reads `bytes` the server sends on its own (a camera's
/// stream); the time runs from the first byte.
async fn download(addr: SocketAddr, bytes: usize) -> Duration {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.expect("first byte");
    let start = Instant::now();
    read_exactly(&mut s, bytes - 1).await;
    start.elapsed()
}

async fn read_exactly(r: &mut (impl AsyncReadExt + Unpin), bytes: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed after {got} of {bytes} bytes");
        got += n;
    }
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

/// A service that sends `bytes` to every connection, then closes it.
async fn source_server(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0xa5u8; 64 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

struct Runtimes {
    tunnel: Handle,
    emulator: Handle,
}

struct Tunnel {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    emu: driver::RunningEmulator,
    ready_after: Duration,
}

async fn start_tunnel(
    rts: &Runtimes,
    service: Service,
    remote: RemotePort,
    faults: FaultConfig,
) -> Tunnel {
    let started = Instant::now();
    let mut config = EmulatorConfig::default();
    let port = match remote {
        RemotePort::Port(p) => p,
        RemotePort::Rtsp => 554,
    };
    config.services.insert(port, service);
    let options = DriverOptions {
        faults,
        ..DriverOptions::default()
    };
    let emu = rts
        .emulator
        .spawn(driver::start(config, options))
        .await
        .expect("emulator task")
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
    rts.tunnel.spawn(tunnel::run(
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
        ready_after,
    }
}

impl Tunnel {
    async fn stop(self) -> driver::Finished {
        let _ = self.stop.send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.emu.stop().await
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

/// What a measured run cost: CPU per GB for each component, datagrams per
/// body (counted by the emulator, which sees every datagram of the session
/// both ways), receive-buffer drops (system-wide).
struct Cost {
    cpu: Cpu,
    udp: Udp,
}

fn begin() -> Cost {
    Cost {
        cpu: cpu_now(),
        udp: udp_counters(),
    }
}

/// Ends a run on its own tunnel: stops it and prints what the run cost.
async fn finish(label: &str, cost: Cost, moved: usize, t: Tunnel) {
    let cpu = cpu_now() - cost.cpu;
    let udp = udp_counters();
    let finished = t.stop().await;
    let gb = moved as f64 / 1e9;
    let bodies = moved as f64 / FRAGMENT_SIZE as f64;
    let datagrams = finished.stats.datagrams_in + finished.stats.datagrams_out;
    println!(
        "{:<44} {:>10.2} CPU s/GB tunnel, {:.2} emulator; {:.2} datagrams per body; {} RcvbufErrors",
        format!("  {label}"),
        cpu.tunnel / gb,
        cpu.emulator / gb,
        datagrams as f64 / bodies,
        udp.rcvbuf_errors.saturating_sub(cost.udp.rcvbuf_errors),
    );
}

/// CPU seconds of the calling thread so far.
fn thread_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    (tick(11).unwrap_or(0.0) + tick(12).unwrap_or(0.0)) / 100.0
}

/// The kernel's price of a datagram: a `sendto` loop of PTCP-sized
/// datagrams on loopback to a reader that drains them. Returns the sender's
/// CPU s per GB of body and its rate.
fn udp_ceiling(bytes: usize) -> (f64, f64) {
    let rx = StdUdp::bind("127.0.0.1:0").expect("udp");
    let to = rx.local_addr().expect("addr");
    let _ = socket2::SockRef::from(&rx).set_recv_buffer_size(4 << 20);
    rx.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while rx.recv(&mut buf).is_ok() {}
    });
    let sender = std::thread::spawn(move || {
        let tx = StdUdp::bind("127.0.0.1:0").expect("udp");
        let datagram = vec![0u8; FRAGMENT_SIZE + 16];
        let count = bytes / FRAGMENT_SIZE;
        let cpu0 = thread_cpu();
        let start = Instant::now();
        for _ in 0..count {
            let _ = tx.send_to(&datagram, to);
        }
        (thread_cpu() - cpu0, start.elapsed())
    });
    let (cpu, took) = sender.join().expect("sender");
    let _ = reader.join();
    (cpu / (bytes as f64 / 1e9), mbps(bytes, took))
}

/// `clients` echo transfers of `each` bytes at once; per-client rates.
async fn parallel_echo(addr: SocketAddr, clients: usize, each: usize) -> (Duration, Vec<f64>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(echo_transfer(addr, each)))
        .collect();
    let mut rates = Vec::new();
    for t in tasks {
        rates.push(mbps(each, t.await.expect("client")));
    }
    (start.elapsed(), rates)
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let mb: usize = std::env::args()
        .skip_while(|a| a != "--mb")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let bytes = mb * 1024 * 1024;
    let small = (bytes / 4).max(1024 * 1024);
    let tunnel_rt = runtime(TUNNEL);
    let emulator_rt = runtime(EMULATOR);
    let client_rt = runtime("bench-client");
    let rts = Runtimes {
        tunnel: tunnel_rt.handle().clone(),
        emulator: emulator_rt.handle().clone(),
    };
    client_rt.block_on(async {
        println!(
            "dhp2p bench: {mb} MiB transfers on loopback (lossy runs: {} MiB)",
            small >> 20
        );
        println!();
        let (udp_cpu, udp_rate) = udp_ceiling(bytes);
        println!(
            "{:<44} {:>10.1} MB/s  {:.2} CPU s/GB of body (sender; baseline)",
            "raw UDP sendto loop, 1296-byte datagrams", udp_rate, udp_cpu
        );
        // Baseline: a direct TCP echo, no tunnel.
        let direct = echo_server().await;
        let base_rate = mbps(bytes, echo_transfer(direct, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  (baseline)",
            "direct TCP echo", base_rate
        );

        let t = start_tunnel(
            &rts,
            Service::Echo,
            RemotePort::Port(7),
            FaultConfig::none(),
        )
        .await;
        let cost = begin();
        let rate = mbps(bytes, echo_transfer(t.addr, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel → emulator echo",
            rate,
            rate / base_rate
        );
        // Each byte crosses the tunnel twice (there and back).
        finish("echo", cost, 2 * bytes, t).await;

        let clients = 32;
        let t = start_tunnel(
            &rts,
            Service::Echo,
            RemotePort::Port(7),
            FaultConfig::none(),
        )
        .await;
        let each = bytes / clients;
        let cost = begin();
        let (took, rates) = parallel_echo(t.addr, clients, each).await;
        let aggregate = mbps(each * clients, took);
        let (min, max) = rates
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        println!(
            "{:<44} {:>10.1} MB/s  aggregate, {:.2} of one client; fairness min/max {:.2}",
            format!("{clients} clients echo at once"),
            aggregate,
            aggregate / rate,
            min / max
        );
        finish(
            &format!("echo, {clients} clients"),
            cost,
            2 * each * clients,
            t,
        )
        .await;

        // Download only: the device's service sends, the client only reads.
        let source = source_server(bytes).await;
        let base_down = mbps(bytes, download(source, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  (baseline)",
            "direct TCP download", base_down
        );
        let t = start_tunnel(
            &rts,
            Service::Forward(source.to_string()),
            RemotePort::Port(9),
            FaultConfig::none(),
        )
        .await;
        let cost = begin();
        let down = mbps(bytes, download(t.addr, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel ← emulator download",
            down,
            down / base_down
        );
        finish("download", cost, bytes, t).await;

        let lossy = |loss: f64, delay_ms: u64, seed: u64| FaultConfig {
            loss_pct: loss,
            dup_pct: 0.0,
            reorder_pct: 0.0,
            delay: Duration::from_millis(delay_ms),
            seed,
        };
        println!();
        let base_small = mbps(small, echo_transfer(direct, small).await);
        for (label, faults) in [
            ("tunnel, 1% loss each way", lossy(1.0, 0, 1)),
            ("tunnel, 50 ms RTT + 1% loss each way", lossy(1.0, 25, 2)),
        ] {
            let t = start_tunnel(&rts, Service::Echo, RemotePort::Port(7), faults).await;
            let r = mbps(small, echo_transfer(t.addr, small).await);
            println!(
                "{:<44} {:>10.1} MB/s  ratio {:.3}",
                label,
                r,
                r / base_small
            );
            let _ = t.stop().await;
        }

        // Latency: from start to the first RTSP byte, and on a warm tunnel.
        let start = Instant::now();
        let t = start_tunnel(
            &rts,
            Service::BuiltinRtsp,
            RemotePort::Rtsp,
            FaultConfig::none(),
        )
        .await;
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
        let _ = t.stop().await;
    });
    tunnel_rt.shutdown_timeout(Duration::from_millis(200));
    emulator_rt.shutdown_timeout(Duration::from_millis(200));
}
