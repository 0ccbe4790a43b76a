//! `tools/bench`: throughput, CPU and latency of the tunnel against the
//! emulator on loopback, each figure next to a baseline measured in the same
//! run.
//!
//!   cargo run --release --example bench [-- --mb 64] [--only clients,echo]
//!                                  (--only: raw, echo, clients, download,
//!                                  streams, loss, latency)
//!   ... --peer-window ignore       the tunnel does not read the device's
//!                                  window (the default pauses on zero)
//!   BENCH_VERBOSE=1 tools/bench    also: per client of the 32-client runs
//!                                  (session, first byte, start, end, bytes
//!                                  in the window), the tunnel's session
//!                                  log, shares per 500 ms, socket drops
//!
//! The tunnel, the emulator and the benchmark's own clients each run on their
//! own tokio runtime with named threads, so CPU time is read per component
//! from /proc/self/task/*/stat (as if they were separate processes). CPU
//! seconds are robust to other load on the machine; wall-clock rates are not.
//! Prints a table; docs/PERFORMANCE.md records the figures.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
use tokio::sync::{mpsc, oneshot, Barrier};

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
        // Nanoseconds on a CPU from schedstat; stat's 10 ms ticks would make
        // a 64 MiB run's figure jump in steps of 0.15 CPU s per GB.
        let ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
        let secs = ns.map(|ns| ns / 1e9).unwrap_or_else(|| {
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
            let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            (tick(11).unwrap_or(0.0) + tick(12).unwrap_or(0.0)) / 100.0
        });
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
    task: tokio::task::JoinHandle<Result<(), tunnel::TunnelError>>,
    counters: Arc<tunnel::TunnelCounters>,
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
    let mut opts = opts;
    if arg("--peer-window").as_deref() == Some("ignore") {
        opts.target.peer_window = dhp2p::session::ptcp::PeerWindow::Ignore;
    }
    let counters = opts.counters.clone();
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rts.tunnel.spawn(tunnel::run(
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
        task,
        counters,
        emu,
        ready_after,
    }
}

impl Tunnel {
    async fn stop(self) -> driver::Finished {
        // The tunnel closes its realms (the emulator still answers) and
        // ends before the next run starts, then the emulator stops.
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
        self.emu.stop().await
    }
}

/// A tunnel to the emulator's echo service (device port 7), no faults.
async fn echo_tunnel(rts: &Runtimes) -> Tunnel {
    start_tunnel(rts, Service::Echo, RemotePort::Port(7), FaultConfig::none()).await
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
    /// The tunnel's retransmissions before the run.
    resent: u64,
}

fn begin(t: &Tunnel) -> Cost {
    Cost {
        cpu: cpu_now(),
        udp: udp_counters(),
        resent: t.counters.retransmissions.load(Ordering::Relaxed),
    }
}

/// Ends a run on its own tunnel: stops it and prints what the run cost.
async fn finish(label: &str, cost: Cost, moved: usize, t: Tunnel) {
    let cpu = cpu_now() - cost.cpu;
    let udp = udp_counters();
    let resent = t.counters.retransmissions.load(Ordering::Relaxed);
    // Datagrams per body over the tunnel's whole life (the emulator counts
    // from its start): every byte the tunnel moved, warm-up included.
    let carried = t.counters.bytes_from_device.load(Ordering::Relaxed)
        + t.counters.bytes_to_device.load(Ordering::Relaxed);
    let finished = t.stop().await;
    let gb = moved as f64 / 1e9;
    let bodies = carried as f64 / FRAGMENT_SIZE as f64;
    let datagrams = finished.stats.datagrams_in + finished.stats.datagrams_out;
    println!(
        "{:<44} {:>10.2} CPU s/GB tunnel, {:.2} emulator; {:.2} datagrams per body; {} RcvbufErrors; {} resent by the tunnel, {} DATA deferred by the emulator",
        format!("  {label}"),
        cpu.tunnel / gb,
        cpu.emulator / gb,
        datagrams as f64 / bodies,
        udp.rcvbuf_errors.saturating_sub(cost.udp.rcvbuf_errors),
        resent.saturating_sub(cost.resent),
        finished.stats.data_deferred,
    );
}

/// [`finish`] for a parallel echo run: with `BENCH_VERBOSE=1`, first each
/// client's line and the socket drops since `drops` was read.
async fn finish_parallel(
    label: &str,
    (run, each, drops): (&ParallelRun, usize, &BTreeMap<u16, u64>),
    cost: Cost,
    moved: usize,
    t: Tunnel,
) {
    if verbose() {
        let log = take_log();
        print_clients(run, each, &log);
        print_drops(drops, &t.emu, &log.tunnel_ports);
    }
    finish(label, cost, moved, t).await;
}

/// CPU seconds of the calling thread so far: from schedstat (ns), else
/// from stat (10 ms ticks, too coarse for the short GSO run).
fn thread_cpu() -> f64 {
    if let Some(ns) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
    {
        return ns / 1e9;
    }
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    (tick(11).unwrap_or(0.0) + tick(12).unwrap_or(0.0)) / 100.0
}

/// Datagrams each UDP socket of this process dropped so far (receive
/// buffer full), by local port: the `drops` column of /proc/net/udp.
fn udp_drops() -> BTreeMap<u16, u64> {
    let mut ours = std::collections::HashSet::new();
    for fd in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.to_string_lossy();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'))
            {
                ours.insert(inode.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode), Some(drops)) = (f.get(1), f.get(9), f.get(12)) else {
            continue;
        };
        if !ours.contains(*inode) {
            continue;
        }
        let port = local
            .split_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if let (Some(port), Ok(drops)) = (port, drops.parse::<u64>()) {
            out.insert(port, drops);
        }
    }
    out
}

/// BENCH_VERBOSE: the sockets that dropped datagrams since `before`, named
/// when known (the emulator's device and agent; the tunnel's sockets by
/// the order the emulator saw their PTCP sessions).
fn print_drops(before: &BTreeMap<u16, u64>, emu: &driver::RunningEmulator, tunnel_ports: &[u16]) {
    let now = udp_drops();
    let mut any = false;
    for (port, drops) in &now {
        let new = drops - before.get(port).copied().unwrap_or(0);
        if new == 0 {
            continue;
        }
        any = true;
        let name = if emu.devices.iter().any(|d| d.addr.port() == *port) {
            "emulator: device socket (every session)".to_string()
        } else if emu.addrs.agent.port() == *port {
            "emulator: agent".to_string()
        } else if let Some(k) = tunnel_ports.iter().position(|p| p == port) {
            format!("tunnel: socket of the emulator's PTCP session #{}", k + 1)
        } else {
            "other".to_string()
        };
        println!("    {new:>6} datagrams dropped on port {port}: {name}");
    }
    if !any {
        println!("    no datagram dropped on this process's UDP sockets");
    }
}

/// What a UDP ceiling run measured: the sender's and the reader's CPU s per
/// GB of body, the sender's rate, and the share of datagrams the reader got.
struct Ceiling {
    sender: f64,
    reader: f64,
    rate: f64,
    delivered: f64,
}

/// A reader thread that drains `rx` until 200 ms of silence; returns the
/// datagrams it got and its CPU seconds. With `gro` the socket gets quinn-udp
/// state (UDP_GRO on) and is read with `recvmmsg`, a coalesced buffer
/// counting as `len / stride` datagrams; else one `recv` per datagram.
fn udp_reader(rx: StdUdp, gro: bool) -> std::thread::JoinHandle<(u64, f64)> {
    let _ = socket2::SockRef::from(&rx).set_recv_buffer_size(4 << 20);
    let state = gro.then(|| quinn_udp::UdpSocketState::new((&rx).into()).expect("udp state"));
    // UdpSocketState::new made it nonblocking: block again, with a timeout.
    rx.set_nonblocking(false).ok();
    rx.set_read_timeout(Some(Duration::from_millis(200))).ok();
    std::thread::spawn(move || {
        let cpu0 = thread_cpu();
        let mut got = 0u64;
        match state {
            Some(state) => {
                let mut bufs = vec![[0u8; 65536]; quinn_udp::BATCH_SIZE.min(8)];
                let mut meta = vec![quinn_udp::RecvMeta::default(); bufs.len()];
                loop {
                    let mut slices: Vec<std::io::IoSliceMut> = bufs
                        .iter_mut()
                        .map(|b| std::io::IoSliceMut::new(b))
                        .collect();
                    match state.recv((&rx).into(), &mut slices, &mut meta) {
                        Ok(n) => {
                            for m in &meta[..n] {
                                got += m.len.div_ceil(m.stride.max(1)) as u64;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            None => {
                let mut buf = [0u8; 2048];
                while rx.recv(&mut buf).is_ok() {
                    got += 1;
                }
            }
        }
        (got, thread_cpu() - cpu0)
    })
}

/// The kernel's price of a datagram: a `sendto` loop of PTCP-sized
/// datagrams on loopback to a reader that drains them.
fn udp_ceiling(bytes: usize) -> Ceiling {
    let rx = StdUdp::bind("127.0.0.1:0").expect("udp");
    let to = rx.local_addr().expect("addr");
    let reader = udp_reader(rx, false);
    let count = bytes / FRAGMENT_SIZE;
    let sender = std::thread::spawn(move || {
        let tx = StdUdp::bind("127.0.0.1:0").expect("udp");
        let datagram = vec![0u8; FRAGMENT_SIZE + 16];
        let cpu0 = thread_cpu();
        let start = Instant::now();
        for _ in 0..count {
            let _ = tx.send_to(&datagram, to);
        }
        (thread_cpu() - cpu0, start.elapsed())
    });
    let (cpu, took) = sender.join().expect("sender");
    let (got, reader_cpu) = reader.join().expect("reader");
    let gb = bytes as f64 / 1e9;
    Ceiling {
        sender: cpu / gb,
        reader: reader_cpu / gb,
        rate: mbps(bytes, took),
        delivered: got as f64 / count as f64,
    }
}

/// The same datagrams sent in batches with quinn-udp: one `sendmsg` with
/// UDP_SEGMENT (GSO) per `max_gso_segments()` datagrams (at most 65000
/// bytes a send). The reader drains with GRO and `recvmmsg`. Also returns
/// the segments per send.
fn udp_gso_ceiling(bytes: usize) -> (Ceiling, usize) {
    let rx = StdUdp::bind("127.0.0.1:0").expect("udp");
    let to = rx.local_addr().expect("addr");
    let reader = udp_reader(rx, true);
    let count = bytes / FRAGMENT_SIZE;
    let seg = FRAGMENT_SIZE + 16;
    let sender = std::thread::spawn(move || {
        let tx = StdUdp::bind("127.0.0.1:0").expect("udp");
        let state = quinn_udp::UdpSocketState::new((&tx).into()).expect("udp state");
        // Blocking again: a full send buffer waits instead of WouldBlock.
        tx.set_nonblocking(false).ok();
        let segs = state.max_gso_segments().clamp(1, 65000 / seg);
        let batch = vec![0u8; seg * segs];
        let cpu0 = thread_cpu();
        let start = Instant::now();
        let mut left = count;
        while left > 0 {
            let n = left.min(segs);
            let t = quinn_udp::Transmit {
                destination: to,
                ecn: None,
                contents: &batch[..n * seg],
                segment_size: Some(seg),
                src_ip: None,
            };
            match state.try_send((&tx).into(), &t) {
                Ok(()) => left -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                // Dropped like a failed sendto in the other loop.
                Err(_) => left -= n,
            }
        }
        (thread_cpu() - cpu0, start.elapsed(), segs)
    });
    let (cpu, took, segs) = sender.join().expect("sender");
    let (got, reader_cpu) = reader.join().expect("reader");
    let gb = bytes as f64 / 1e9;
    (
        Ceiling {
            sender: cpu / gb,
            reader: reader_cpu / gb,
            rate: mbps(bytes, took),
            delivered: got as f64 / count as f64,
        },
        segs,
    )
}

/// One client of a parallel echo run; times from the run's start.
struct EchoTrace {
    /// The client's own address (the tunnel logs it on accept).
    local: SocketAddr,
    connected: Duration,
    /// Its first echoed byte.
    first_byte: Duration,
    /// The measured transfer began: on connect, or at the common start.
    started: Duration,
    done: Duration,
}

/// Every client's measured bytes at one moment.
#[derive(Clone)]
struct Snapshot {
    at: Instant,
    got: Vec<u64>,
}

/// Shared by the clients of a run: measured bytes each got back so far,
/// and snapshots of all counters when the last client started and when
/// the first one finished.
struct Progress {
    got: Vec<AtomicU64>,
    started: AtomicUsize,
    finished: AtomicUsize,
    all_started: OnceLock<Snapshot>,
    /// A quarter of all bytes arrived: the pipeline's fill, which a client
    /// starting a few ms before the others wins while it is alone, is over.
    settled: OnceLock<Snapshot>,
    total: AtomicU64,
    first_done: OnceLock<Snapshot>,
}

impl Progress {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            got: self.got.iter().map(|g| g.load(Ordering::Relaxed)).collect(),
        }
    }
}

/// Client `i` of a parallel run: echoes `bytes`. With a `gate` it first
/// echoes one byte (connect, realm, session all warm) and waits there for
/// every other client, so the measured transfers start together.
async fn echo_client(
    i: usize,
    addr: SocketAddr,
    bytes: usize,
    t0: Instant,
    gate: Option<Arc<Barrier>>,
    progress: Arc<Progress>,
) -> EchoTrace {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).ok();
    let local = stream.local_addr().expect("local addr");
    let connected = t0.elapsed();
    let (mut r, mut w) = stream.into_split();
    let mut first_byte = None;
    if let Some(gate) = gate {
        w.write_all(&[0x5a]).await.expect("write");
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await.expect("warm-up byte");
        first_byte = Some(t0.elapsed());
        gate.wait().await;
    }
    let started = t0.elapsed();
    if progress.started.fetch_add(1, Ordering::Relaxed) + 1 == progress.got.len() {
        progress.all_started.get_or_init(|| progress.snapshot());
    }
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
        first_byte.get_or_insert_with(|| t0.elapsed());
        got += n;
        progress.got[i].fetch_add(n as u64, Ordering::Relaxed);
        let total = progress.total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total >= (bytes * progress.got.len() / 4) as u64 && progress.all_started.get().is_some()
        {
            progress.settled.get_or_init(|| progress.snapshot());
        }
    }
    let done = t0.elapsed();
    progress.first_done.get_or_init(|| progress.snapshot());
    progress.finished.fetch_add(1, Ordering::Relaxed);
    drop(writer.await);
    EchoTrace {
        local,
        connected,
        first_byte: first_byte.unwrap_or_default(),
        started,
        done,
    }
}

struct ParallelRun {
    t0: Instant,
    traces: Vec<EchoTrace>,
    /// From the start of the measured transfers to the last one's end.
    took: Duration,
    /// From the moment every client had started and a quarter of all bytes
    /// had arrived to the first client's end, and what each got in between.
    window: Duration,
    in_window: Vec<u64>,
    /// Every client's count every 500 ms.
    samples: Vec<Snapshot>,
}

/// `clients` echo transfers of `each` bytes at once. `warm`: each client
/// first gets one byte echoed, and the transfers start together.
async fn parallel_echo(addr: SocketAddr, clients: usize, each: usize, warm: bool) -> ParallelRun {
    let progress = Arc::new(Progress {
        got: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        started: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        all_started: OnceLock::new(),
        settled: OnceLock::new(),
        total: AtomicU64::new(0),
        first_done: OnceLock::new(),
    });
    let gate = warm.then(|| Arc::new(Barrier::new(clients)));
    let t0 = Instant::now();
    let sampler = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut samples = vec![progress.snapshot()];
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.tick().await;
            while progress.finished.load(Ordering::Relaxed) < clients {
                tick.tick().await;
                samples.push(progress.snapshot());
            }
            samples
        })
    };
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let run = echo_client(i, addr, each, t0, gate.clone(), progress.clone());
            tokio::spawn(run)
        })
        .collect();
    let mut traces = Vec::new();
    for t in tasks {
        traces.push(t.await.expect("client"));
    }
    let samples = sampler.await.expect("sampler");
    let start = traces.iter().map(|t| t.started).min().unwrap_or_default();
    let end = traces.iter().map(|t| t.done).max().unwrap_or_default();
    let (from, to) = match (progress.settled.get(), progress.first_done.get()) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => (progress.snapshot(), progress.snapshot()),
    };
    ParallelRun {
        t0,
        traces,
        took: end - start,
        window: to.at.saturating_duration_since(from.at),
        in_window: to
            .got
            .iter()
            .zip(&from.got)
            .map(|(b, a)| b.saturating_sub(*a))
            .collect(),
        samples,
    }
}

/// `clients` readers of endless streams through `t`: once every one has
/// its first bytes and 300 ms more have passed, counts what each reads in
/// `window`. Returns the counts, the real window, and the cost from its start.
async fn parallel_streams(
    t: &Tunnel,
    clients: usize,
    window: Duration,
    echo: bool,
) -> (Vec<u64>, Duration, Cost) {
    let got: Arc<Vec<AtomicU64>> = Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..clients)
        .map(|i| {
            let (got, stop, addr) = (got.clone(), stop.clone(), t.addr);
            tokio::spawn(async move {
                let s = TcpStream::connect(addr).await.expect("connect");
                let (mut r, mut w) = s.into_split();
                // Echo: the client also writes without end (what it reads
                // back is what it is counted for). Otherwise its write half
                // stays open: dropping it would send FIN and end the realm.
                let mut idle_half = None;
                let writer = if echo {
                    Some(tokio::spawn(async move {
                        let chunk = vec![0x5au8; 64 * 1024];
                        while w.write_all(&chunk).await.is_ok() {}
                    }))
                } else {
                    idle_half = Some(w);
                    None
                };
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got[i].fetch_add(n as u64, Ordering::Relaxed),
                    };
                }
                if let Some(w) = writer {
                    w.abort();
                }
                drop(idle_half);
            })
        })
        .collect();
    while got.iter().any(|g| g.load(Ordering::Relaxed) == 0) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap =
        |got: &[AtomicU64]| -> Vec<u64> { got.iter().map(|g| g.load(Ordering::Relaxed)).collect() };
    let cost = begin(t);
    let (at, before) = (Instant::now(), snap(&got));
    tokio::time::sleep(window).await;
    let (took, after) = (at.elapsed(), snap(&got));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.abort();
    }
    let shares = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    (shares, took, cost)
}

/// One second of `clients` endless streams through `t` (echo: each client
/// also writes), printed with its fairness and cost; stops `t`.
async fn steady_streams(t: Tunnel, clients: usize, echo: bool) {
    let (shares, window, cost) = parallel_streams(&t, clients, Duration::from_secs(1), echo).await;
    let moved: u64 = shares.iter().sum();
    let (lo, hi) = min_max(shares.iter().map(|&b| b as f64));
    let (what, each_way) = if echo {
        ("echo", " (each way)")
    } else {
        ("download", "")
    };
    println!(
        "{:<44} {:>10.1} MB/s  aggregate{each_way}; fairness min/max {:.2} over {:.1} s of steady state",
        format!("{clients} clients {what} streams at once"),
        mbps(moved as usize, window),
        lo / hi,
        window.as_secs_f64()
    );
    // An echo moves each byte twice through the tunnel.
    let moved = if echo { 2 * moved } else { moved };
    finish(
        &format!("{what}, {clients} streams"),
        cost,
        moved as usize,
        t,
    )
    .await;
}

fn min_max(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    v.into_iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the tunnel logged during a run, when BENCH_VERBOSE is set (its
/// info lines only): which device session each client's realm is on.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().expect("log").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log's clock: milliseconds since the subscriber started.
static LOG_START: OnceLock<Instant> = OnceLock::new();

struct SinceStart;

impl tracing_subscriber::fmt::time::FormatTime for SinceStart {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{:.1}",
            ms(LOG_START.get_or_init(Instant::now).elapsed())
        )
    }
}

fn verbose() -> bool {
    std::env::var_os("BENCH_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// What the captured log of a run says.
#[derive(Default)]
struct Captured {
    /// Client address → the tunnel session its realm opened on ("client N
    /// connected from ADDR", "session S: realm … open for client N").
    sessions: HashMap<SocketAddr, u64>,
    /// The tunnel's session lines (connecting, stages, ready…), with their
    /// time in ms since the log started.
    lines: Vec<(f64, String)>,
    /// The tunnel's socket of each PTCP session, in the order the emulator
    /// saw them ("…: PTCP session with ADDR").
    tunnel_ports: Vec<u16>,
}

/// Takes (and clears) the captured log.
fn take_log() -> Captured {
    let log = String::from_utf8_lossy(&std::mem::take(&mut *LOG.lock().expect("log"))).into_owned();
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let mut peer_of = HashMap::new();
    let mut session_of = HashMap::new();
    let mut session_lines = Vec::new();
    let mut tunnel_ports = Vec::new();
    for line in log.lines() {
        // "<ms> <LEVEL> <message>"
        let (time, rest) = line.trim_start().split_once(' ').unwrap_or(("", ""));
        let time = time.parse::<f64>().ok();
        let text = rest
            .trim_start()
            .split_once(' ')
            .map_or("", |(_, t)| t.trim_start());
        if let (Some(time), true) = (
            time,
            text.starts_with("session ") && !text.contains("realm"),
        ) {
            session_lines.push((time, text.to_string()));
        }
        if let Some((_, peer)) = line.split_once(": PTCP session with ") {
            if let Ok(peer) = peer.trim().parse::<SocketAddr>() {
                tunnel_ports.push(peer.port());
            }
        } else if let Some((head, peer)) = line.split_once(" connected from ") {
            let id = head.split_whitespace().last().and_then(number);
            if let (Some(id), Ok(peer)) = (id, peer.trim().parse::<SocketAddr>()) {
                peer_of.insert(id, peer);
            }
        } else if let Some((head, id)) = line.split_once(" open for client ") {
            let sid = head
                .split_once("session ")
                .and_then(|(_, r)| r.split(':').next())
                .and_then(number);
            if let (Some(sid), Some(id)) = (sid, number(id)) {
                session_of.insert(id, sid);
            }
        }
    }
    let sessions = peer_of
        .into_iter()
        .filter_map(|(id, peer)| Some((peer, *session_of.get(&id)?)))
        .collect();
    Captured {
        sessions,
        lines: session_lines,
        tunnel_ports,
    }
}

/// BENCH_VERBOSE: one line per client in the order they finished, then
/// one per tunnel session.
fn print_clients(run: &ParallelRun, each: usize, log: &Captured) {
    let sessions = &log.sessions;
    let t0 = LOG_START
        .get()
        .map_or(0.0, |s| ms(run.t0.saturating_duration_since(*s)));
    for (time, text) in &log.lines {
        println!("    {:>8.1} ms  {text}", time - t0);
    }
    let mut order: Vec<usize> = (0..run.traces.len()).collect();
    order.sort_by_key(|&i| run.traces[i].done);
    println!(
        "    {:>4} {:>6} {:>7} {:>10} {:>10} {:>10} {:>9} {:>8} {:>12}",
        "done",
        "client",
        "session",
        "connect ms",
        "1st byte",
        "start ms",
        "transfer",
        "MB/s",
        "MiB in win"
    );
    for (rank, &i) in order.iter().enumerate() {
        let t = &run.traces[i];
        let transfer = t.done - t.started;
        println!(
            "    {:>4} {:>6} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>8.2}s {:>8.2} {:>12.2}",
            rank + 1,
            i,
            sessions.get(&t.local).map_or("?".into(), |s| s.to_string()),
            ms(t.connected),
            ms(t.first_byte),
            ms(t.started),
            transfer.as_secs_f64(),
            mbps(each, transfer),
            run.in_window.get(i).copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        );
    }
    let mut by_session: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, t) in run.traces.iter().enumerate() {
        let sid = sessions.get(&t.local).copied().unwrap_or(0);
        by_session.entry(sid).or_default().push(i);
    }
    for (sid, members) in by_session {
        let n = members.len() as f64;
        let mean = |f: &dyn Fn(&EchoTrace) -> f64| {
            members.iter().map(|&i| f(&run.traces[i])).sum::<f64>() / n
        };
        let at_first: f64 = members
            .iter()
            .map(|&i| run.in_window.get(i).copied().unwrap_or(0) as f64)
            .sum::<f64>()
            / n
            / (1 << 20) as f64;
        println!(
            "    session {sid}: {} clients; mean first byte {:.1} ms, done {:.2} s, transfer {:.2} s; MiB in the window {:.2}",
            members.len(),
            mean(&|t| ms(t.first_byte)),
            mean(&|t| t.done.as_secs_f64()),
            mean(&|t| (t.done - t.started).as_secs_f64()),
            at_first,
        );
    }
    // Shares over time: per 500 ms, among the clients active all through it.
    for w in run.samples.windows(2) {
        let (from, to) = (w[0].at - run.t0, w[1].at - run.t0);
        let active: Vec<(usize, u64)> = run
            .traces
            .iter()
            .enumerate()
            .filter(|(_, t)| t.started <= from && t.done >= to)
            .map(|(i, _)| (i, w[1].got[i] - w[0].got[i]))
            .collect();
        let (Some(slow), Some(fast)) = (
            active.iter().min_by_key(|(_, b)| *b),
            active.iter().max_by_key(|(_, b)| *b),
        ) else {
            continue;
        };
        println!(
            "    {:.1}..{:.1} s: {:>2} active, min/max {:.2} (slowest client {} {:.0} KiB, fastest {} {:.0} KiB)",
            from.as_secs_f64(),
            to.as_secs_f64(),
            active.len(),
            slow.1 as f64 / fast.1.max(1) as f64,
            slow.0,
            slow.1 as f64 / 1024.0,
            fast.0,
            fast.1 as f64 / 1024.0
        );
    }
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Names of the runs `--only` may pick.
const RUNS: [&str; 7] = [
    "raw", "echo", "clients", "download", "streams", "loss", "latency",
];

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != flag).nth(1)
}

fn main() {
    let mb: usize = arg("--mb").and_then(|v| v.parse().ok()).unwrap_or(64);
    let only: Vec<String> = arg("--only")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(bad) = only.iter().find(|o| !RUNS.contains(&o.as_str())) {
        eprintln!(
            "bench: unknown run {bad:?} for --only; runs: {}",
            RUNS.join(",")
        );
        std::process::exit(2);
    }
    let want = |run: &str| only.is_empty() || only.iter().any(|o| o == run);
    let bytes = mb * 1024 * 1024;
    if verbose() {
        LOG_START.get_or_init(Instant::now);
        // Only info lines of the tunnel (clients, realms, sessions) and
        // the emulator (its PTCP sessions): which session each client's
        // realm is on, and which socket is which.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "dhp2p::tunnel=info,dhp2p::emulator=info",
            ))
            .with_writer(|| LogSink)
            .with_timer(SinceStart)
            .with_ansi(false)
            .with_target(false)
            .init();
    }
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
        if want("raw") {
        let plain = udp_ceiling(bytes);
        println!(
            "{:<44} {:>10.1} MB/s  {:.2} CPU s/GB of body (sender; baseline); reader (recv) {:.2}, got {:.0}%",
            "raw UDP sendto loop, 1296-byte datagrams",
            plain.rate,
            plain.sender,
            plain.reader,
            plain.delivered * 100.0
        );
        let (gso, segs) = udp_gso_ceiling(bytes);
        println!(
            "{:<44} {:>10.1} MB/s  {:.2} CPU s/GB of body (sender), {:.2}× sendto's CPU, {:.1}× its rate; reader (recvmmsg+GRO) {:.2}, got {:.0}%",
            format!("raw UDP GSO, {segs} × 1296 B a sendmsg"),
            gso.rate,
            gso.sender,
            gso.sender / plain.sender,
            gso.rate / plain.rate,
            gso.reader,
            gso.delivered * 100.0
        );
        }
        // Baseline: a direct TCP echo, no tunnel.
        let direct = echo_server().await;
        let base_rate = mbps(bytes, echo_transfer(direct, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  (baseline)",
            "direct TCP echo", base_rate
        );

        // The one-client echo is also the 32-client runs' reference.
        let clients = 32;
        let mut rate = f64::NAN;
        if want("echo") || want("clients") {
        let t = echo_tunnel(&rts).await;
        let cost = begin(&t);
        rate = mbps(bytes, echo_transfer(t.addr, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel → emulator echo",
            rate,
            rate / base_rate
        );
        // Each byte crosses the tunnel twice (there and back).
        finish("echo", cost, 2 * bytes, t).await;
        }

        let each = bytes / clients;
        if want("clients") {
        // As before: every client from its own connect to its last byte
        // (a later session's handshake, and the bandwidth left by clients
        // that finished, are in these rates).
        take_log();
        let t = echo_tunnel(&rts).await;
        let drops = udp_drops();
        let cost = begin(&t);
        let run = parallel_echo(t.addr, clients, each, false).await;
        let aggregate = mbps(each * clients, run.took);
        let (min, max) = min_max(
            run.traces
                .iter()
                .map(|c| mbps(each, c.done - c.connected)),
        );
        println!(
            "{:<44} {:>10.1} MB/s  aggregate, {:.2} of one client; min/max of rates from connect {:.2} (not fairness: see below)",
            format!("{clients} clients echo at once"),
            aggregate,
            aggregate / rate,
            min / max
        );
        let (first_lo, first_hi) = min_max(run.traces.iter().map(|c| ms(c.first_byte - c.connected)));
        let (done_lo, done_hi) = min_max(run.traces.iter().map(|c| c.done.as_secs_f64()));
        println!(
            "{:<44} {:>10} ms  min..max; last byte {:.2}..{:.2} s after connect",
            "  its clients' first echo byte after connect",
            format!("{first_lo:.0}..{first_hi:.0}"),
            done_lo,
            done_hi
        );
        finish_parallel(
            &format!("echo, {clients} clients"),
            (&run, each, &drops),
            cost,
            2 * each * clients,
            t,
        )
        .await;

        // Fairness: every client warm (one byte echoed: connected, realm
        // open, its session up) before a common start; then the bytes each
        // got while all were active, from the moment a quarter of all bytes
        // had arrived to the moment the first one finished. The start
        // spread is the client runtime waking 32 tasks: later starters end
        // up with less (BENCH_VERBOSE=1 shows it per client).
        take_log();
        let t = echo_tunnel(&rts).await;
        let drops = udp_drops();
        let cost = begin(&t);
        let run = parallel_echo(t.addr, clients, each, true).await;
        let in_window: u64 = run.in_window.iter().sum();
        let (lo, hi) = min_max(run.in_window.iter().map(|&b| b as f64));
        let (done_lo, done_hi) = min_max(run.traces.iter().map(|c| (c.done - c.started).as_secs_f64()));
        let (start_lo, start_hi) = min_max(run.traces.iter().map(|c| ms(c.started)));
        println!(
            "{:<44} {:>10.1} MB/s  in the common window ({:.0} ms); fairness min/max {:.2} (bytes while all active, after the first quarter); starts spread {:.0} ms, transfers {:.2}..{:.2} s",
            format!("{clients} clients echo, warm, common start"),
            mbps(in_window as usize, run.window),
            ms(run.window),
            lo / hi,
            start_hi - start_lo,
            done_lo,
            done_hi
        );
        finish_parallel(
            &format!("echo, {clients} clients, common start"),
            (&run, each, &drops),
            cost,
            2 * (each + 1) * clients,
            t,
        )
        .await;

        // Fairness in steady state, as for the download streams below: 32
        // clients echo without end; each one's share over one second,
        // after every client has its first bytes back.
        let t = echo_tunnel(&rts).await;
        steady_streams(t, clients, true).await;
        }

        // Download only: the device's service sends, the client only reads.
        if want("download") {
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
        let cost = begin(&t);
        let down = mbps(bytes, download(t.addr, bytes).await);
        println!(
            "{:<44} {:>10.1} MB/s  ratio {:.3}",
            "tunnel ← emulator download",
            down,
            down / base_down
        );
        finish("download", cost, bytes, t).await;
        }

        // Many cameras' worth of streams at once: 32 clients each read a
        // stream without end; the shares are counted over one second of
        // steady state, after every client has its first bytes.
        if want("streams") {
        let stream = source_server(usize::MAX).await;
        let t = start_tunnel(
            &rts,
            Service::Forward(stream.to_string()),
            RemotePort::Port(9),
            FaultConfig::none(),
        )
        .await;
        steady_streams(t, clients, false).await;
        }

        if want("loss") {
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
        // The camera's case: one way, device to client, over the same link.
        let source = source_server(small).await;
        for (label, faults) in [
            ("tunnel download, 1% loss each way", lossy(1.0, 0, 3)),
            ("tunnel download, 50 ms RTT + 1% loss", lossy(1.0, 25, 4)),
        ] {
            let t = start_tunnel(
                &rts,
                Service::Forward(source.to_string()),
                RemotePort::Port(9),
                faults,
            )
            .await;
            let r = mbps(small, download(t.addr, small).await);
            println!("{:<44} {:>10.1} MB/s", label, r);
            let _ = t.stop().await;
        }
        }

        // Latency: from start to the first RTSP byte, and on a warm tunnel.
        if want("latency") {
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
        }
    });
    tunnel_rt.shutdown_timeout(Duration::from_millis(200));
    emulator_rt.shutdown_timeout(Duration::from_millis(200));
}
