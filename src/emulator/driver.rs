//! The tokio driver of the emulator: binds one UDP socket per role, runs the
//! TCP services behind the device, and moves bytes between them and the
//! sans-IO [`Emulator`] core. No protocol decisions are made here.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::config::{EmulatorConfig, RoleAddrs, Service};
use super::core::{ConnId, Emulator, EmulatorStats, RealmReport, Role, TcpCommand};
use super::rtsp::{self, RtspConfig};
use crate::codec::classify::{kind_of, Kind};
use crate::net::faults::{FaultConfig, FaultLink, FaultStats, FaultySender};
use crate::net::record::Recorder;

/// How the driver runs the core (things that are not protocol behaviour).
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// IP all roles listen on.
    pub listen: IpAddr,
    /// UDP port of the main cloud (0 = any free port).
    pub cloud_port: u16,
    /// Device port → plain TCP address that reaches the same service
    /// without the tunnel (`--expose`).
    pub expose: Vec<(u16, SocketAddr)>,
    /// Faults on the device and agent legs (PTCP and punch datagrams only,
    /// both directions).
    pub faults: FaultConfig,
    /// Where every datagram actually sent or received goes (`--record`/`--tap`).
    pub recorder: Recorder,
    /// The built-in RTSP service plays its clip once and ends the stream.
    pub clip_once: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            listen: IpAddr::from([127, 0, 0, 1]),
            cloud_port: 0,
            expose: Vec::new(),
            faults: FaultConfig::none(),
            recorder: Recorder::disabled(),
            clip_once: false,
        }
    }
}

/// What a finished emulator reports.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stats: EmulatorStats,
    pub realms: Vec<RealmReport>,
    /// Injected faults: outbound (device, agent legs) and inbound.
    pub faults_out: FaultStats,
    pub faults_in: FaultStats,
}

/// A running emulator: its addresses and a way to stop it.
pub struct RunningEmulator {
    pub addrs: RoleAddrs,
    /// Device port → where that service listens (on loopback).
    pub services: BTreeMap<u16, SocketAddr>,
    /// `--expose` listeners actually bound.
    pub exposed: Vec<(u16, SocketAddr)>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Finished>,
}

impl RunningEmulator {
    /// Stops every role and returns the final figures.
    pub async fn stop(mut self) -> Finished {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(f) => f,
            Err(_) => Finished {
                stats: EmulatorStats::default(),
                realms: Vec::new(),
                faults_out: FaultStats::default(),
                faults_in: FaultStats::default(),
            },
        }
    }
}

enum TcpEvent {
    Connected(ConnId, Option<TcpStream>),
    Data(ConnId, Vec<u8>),
    Written(ConnId, usize),
    Closed(ConnId),
}

struct Conn {
    writer: mpsc::UnboundedSender<Option<Vec<u8>>>,
    credits: Arc<Semaphore>,
    reader: JoinHandle<()>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Starts an echo service on loopback (the `echo` service).
async fn spawn_echo() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Listens on `addr` and pipes each connection to `target`.
async fn spawn_expose(addr: SocketAddr, target: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(bound)
}

/// Binds every role, starts the services and runs the core until stopped.
pub async fn start(config: EmulatorConfig, options: DriverOptions) -> io::Result<RunningEmulator> {
    let bind = |port: u16| UdpSocket::bind(SocketAddr::new(options.listen, port));
    let sockets = [
        bind(options.cloud_port).await?,
        bind(0).await?,
        bind(0).await?,
        bind(0).await?,
        bind(0).await?,
    ];
    for s in &sockets {
        crate::net::enlarge_buffers(s);
    }
    let addrs = RoleAddrs {
        cloud: sockets[0].local_addr()?,
        p2psrv: sockets[1].local_addr()?,
        relay: sockets[2].local_addr()?,
        agent: sockets[3].local_addr()?,
        device: sockets[4].local_addr()?,
    };
    let mut services = BTreeMap::new();
    for (port, service) in &config.services {
        let addr = match service {
            Service::Echo => spawn_echo().await?,
            Service::BuiltinRtsp => {
                let serial = config.serials.first().cloned().unwrap_or_default();
                let mut rtsp = RtspConfig::new(
                    config.username.clone(),
                    config.password.clone(),
                    format!("Login to {serial}"),
                );
                rtsp.clip_once = options.clip_once;
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                rtsp::spawn_listener(loopback, Arc::new(rtsp)).await?.0
            }
            Service::Forward(target) => tokio::net::lookup_host(target.as_str())
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {target}"))
                })?,
        };
        services.insert(*port, addr);
    }
    let mut exposed = Vec::new();
    for (port, addr) in &options.expose {
        let target = services.get(port).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--expose {port}: no service on device port {port}"),
            )
        })?;
        exposed.push((*port, spawn_expose(*addr, target).await?));
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let core = Emulator::new(config, addrs, Instant::now(), unix_now());
    let sockets = sockets.map(Arc::new);
    let legs = Legs {
        device: FaultySender::new(
            sockets[4].clone(),
            &options.faults,
            1,
            options.recorder.clone(),
        )?,
        agent: FaultySender::new(
            sockets[3].clone(),
            &options.faults,
            2,
            options.recorder.clone(),
        )?,
        inbound: (!options.faults.is_none()).then(|| FaultLink::new(&options.faults, 3)),
        recorder: options.recorder.clone(),
    };
    let task = tokio::spawn(run(core, sockets, legs, services.clone(), stop_rx));
    Ok(RunningEmulator {
        addrs,
        services,
        exposed,
        stop: Some(stop_tx),
        task,
    })
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Cloud => 0,
        Role::P2pSrv => 1,
        Role::Relay => 2,
        Role::Agent => 3,
        Role::Device => 4,
    }
}

async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> (usize, Option<SocketAddr>) {
    match socket.recv_from(buf).await {
        Ok((n, from)) => (n, Some(from)),
        // ICMP errors from earlier sends surface here; they are not fatal.
        Err(_) => (0, None),
    }
}

/// The faulty legs and the recorder.
struct Legs {
    device: FaultySender,
    agent: FaultySender,
    /// Inbound faults for datagrams reaching the device and agent.
    inbound: Option<FaultLink<(Role, SocketAddr, Vec<u8>)>>,
    recorder: Recorder,
}

/// Whether a datagram to or from `role` travels a faulty leg.
fn on_faulty_leg(role: Role, payload: &[u8]) -> bool {
    matches!(role, Role::Device | Role::Agent)
        && matches!(kind_of(payload), Kind::Ptcp | Kind::Punch)
}

async fn run(
    mut core: Emulator,
    sockets: [Arc<UdpSocket>; 5],
    mut legs: Legs,
    services: BTreeMap<u16, SocketAddr>,
    mut stop: oneshot::Receiver<()>,
) -> Finished {
    let local: Vec<SocketAddr> = sockets
        .iter()
        .map(|s| {
            s.local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
        })
        .collect();
    let (tcp_tx, mut tcp_rx) = mpsc::unbounded_channel::<TcpEvent>();
    let mut conns: BTreeMap<ConnId, Conn> = BTreeMap::new();
    let mut bufs = [[0u8; 65536]; 5].map(Box::new);
    let roles = Role::all();
    loop {
        let now = Instant::now();
        let release = legs.inbound.as_ref().and_then(FaultLink::next_release);
        let sleep_until = core
            .next_timeout()
            .into_iter()
            .chain(release)
            .min()
            .unwrap_or(now + Duration::from_secs(3600));
        let [b0, b1, b2, b3, b4] = &mut bufs;
        let received = tokio::select! {
            _ = &mut stop => break,
            r = recv(&sockets[0], &mut b0[..]) => Some((roles[0], r, &b0[..])),
            r = recv(&sockets[1], &mut b1[..]) => Some((roles[1], r, &b1[..])),
            r = recv(&sockets[2], &mut b2[..]) => Some((roles[2], r, &b2[..])),
            r = recv(&sockets[3], &mut b3[..]) => Some((roles[3], r, &b3[..])),
            r = recv(&sockets[4], &mut b4[..]) => Some((roles[4], r, &b4[..])),
            Some(ev) = tcp_rx.recv() => {
                handle_tcp_event(&mut core, &mut conns, &tcp_tx, ev);
                None
            }
            _ = tokio::time::sleep_until(sleep_until.into()) => None,
        };
        let now = Instant::now();
        if let Some((role, (n, Some(from)), buf)) = received {
            let payload = &buf[..n];
            match legs.inbound.as_mut() {
                Some(link) if on_faulty_leg(role, payload) => {
                    link.push(now, (role, from, payload.to_vec()));
                }
                _ => {
                    legs.recorder
                        .record_any(from, local[role_index(role)], payload);
                    core.handle_datagram(now, unix_now(), role, from, payload);
                }
            }
        }
        if let Some(link) = legs.inbound.as_mut() {
            while let Some((role, from, payload)) = link.poll(now) {
                legs.recorder
                    .record_any(from, local[role_index(role)], &payload);
                core.handle_datagram(now, unix_now(), role, from, &payload);
            }
        }
        core.handle_timeout(now, unix_now());
        flush(
            &mut core, &sockets, &legs, &local, &mut conns, &services, &tcp_tx,
        )
        .await;
    }
    for (_, conn) in conns {
        conn.reader.abort();
    }
    Finished {
        stats: core.stats(),
        realms: core.realm_reports(),
        faults_out: add_stats(legs.device.stats(), legs.agent.stats()),
        faults_in: legs
            .inbound
            .as_ref()
            .map(FaultLink::stats)
            .unwrap_or_default(),
    }
}

fn add_stats(a: FaultStats, b: FaultStats) -> FaultStats {
    FaultStats {
        pushed: a.pushed + b.pushed,
        passed: a.passed + b.passed,
        dropped: a.dropped + b.dropped,
        duplicated: a.duplicated + b.duplicated,
        reordered: a.reordered + b.reordered,
        delayed: a.delayed + b.delayed,
        overflow: a.overflow + b.overflow,
    }
}

fn handle_tcp_event(
    core: &mut Emulator,
    conns: &mut BTreeMap<ConnId, Conn>,
    tcp_tx: &mpsc::UnboundedSender<TcpEvent>,
    event: TcpEvent,
) {
    let now = Instant::now();
    match event {
        TcpEvent::Connected(conn, Some(stream)) => {
            let (mut read, mut write) = stream.into_split();
            let (writer, mut writes) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
            let credits = Arc::new(Semaphore::new(0));
            let tx = tcp_tx.clone();
            tokio::spawn(async move {
                while let Some(Some(bytes)) = writes.recv().await {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                    let _ = tx.send(TcpEvent::Written(conn, bytes.len()));
                }
                let _ = write.shutdown().await;
            });
            let tx = tcp_tx.clone();
            let sem = credits.clone();
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let Ok(permit) = sem.acquire_many(buf.len() as u32).await else {
                        break;
                    };
                    let n = match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    permit.forget();
                    sem.add_permits(buf.len() - n);
                    if tx.send(TcpEvent::Data(conn, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                let _ = tx.send(TcpEvent::Closed(conn));
            });
            conns.insert(
                conn,
                Conn {
                    writer,
                    credits,
                    reader,
                },
            );
            core.tcp_connected(now, conn, true);
        }
        TcpEvent::Connected(conn, None) => core.tcp_connected(now, conn, false),
        TcpEvent::Data(conn, bytes) => core.tcp_data(now, conn, &bytes),
        TcpEvent::Written(conn, n) => core.tcp_written(now, conn, n),
        TcpEvent::Closed(conn) => {
            if let Some(c) = conns.remove(&conn) {
                let _ = c.writer.send(None);
            }
            core.tcp_closed(now, conn);
        }
    }
}

async fn flush(
    core: &mut Emulator,
    sockets: &[Arc<UdpSocket>; 5],
    legs: &Legs,
    local: &[SocketAddr],
    conns: &mut BTreeMap<ConnId, Conn>,
    services: &BTreeMap<u16, SocketAddr>,
    tcp_tx: &mpsc::UnboundedSender<TcpEvent>,
) {
    while let Some(t) = core.poll_transmit() {
        if on_faulty_leg(t.from, &t.payload) {
            let leg = if t.from == Role::Device {
                &legs.device
            } else {
                &legs.agent
            };
            let _ = leg.send_to(&t.payload, t.to).await;
        } else if sockets[role_index(t.from)]
            .send_to(&t.payload, t.to)
            .await
            .is_ok()
        {
            legs.recorder
                .record_any(local[role_index(t.from)], t.to, &t.payload);
        }
    }
    while let Some(cmd) = core.poll_tcp() {
        match cmd {
            TcpCommand::Connect { conn, port } => {
                let target = services.get(&port).copied();
                let tx = tcp_tx.clone();
                tokio::spawn(async move {
                    let stream = match target {
                        Some(t) => {
                            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(t))
                                .await
                                .ok()
                                .and_then(Result::ok)
                        }
                        None => None,
                    };
                    if let Some(s) = &stream {
                        let _ = s.set_nodelay(true);
                    }
                    let _ = tx.send(TcpEvent::Connected(conn, stream));
                });
            }
            TcpCommand::Write { conn, bytes } => {
                if let Some(c) = conns.get(&conn) {
                    let _ = c.writer.send(Some(bytes));
                }
            }
            TcpCommand::Credit { conn, bytes } => {
                if let Some(c) = conns.get(&conn) {
                    c.credits.add_permits(bytes);
                }
            }
            TcpCommand::Close { conn } => {
                if let Some(c) = conns.remove(&conn) {
                    let _ = c.writer.send(None);
                    c.reader.abort();
                }
            }
        }
    }
    while let Some(line) = core.poll_log() {
        tracing::info!("{line}");
    }
}
