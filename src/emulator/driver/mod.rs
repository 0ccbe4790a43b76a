//! The tokio driver of the emulator: binds one UDP socket per role, runs the
//! TCP services behind the device, and moves bytes between them and the
//! sans-IO [`Emulator`] core. No protocol decisions are made here.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::emulator::config::{DeviceUnit, EmulatorConfig, RoleAddrs, Service};
use crate::emulator::core::{
    ConnId, Emulator, EmulatorStats, FleetAddrs, RealmReport, Role, TcpCommand,
};
use crate::emulator::rtsp::{self, RtspConfig};
use crate::net::faults::{FaultConfig, FaultStats};
use crate::net::record::Recorder;
use crate::net::udp::{BatchSocket, RecvBuffers};
use legs::{on_faulty_leg, Legs, Outgoing};

mod legs;

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
    /// Requests per `socket endpoint` (e.g. `cloud.amcrest /online/p2psrv`).
    pub requests: BTreeMap<String, u64>,
}

/// One device of the running emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningDevice {
    pub serials: Vec<String>,
    /// Its own UDP socket (`PubAddr`, punches).
    pub addr: SocketAddr,
    /// Device port → where that service listens (on loopback).
    pub services: BTreeMap<u16, SocketAddr>,
}

/// A running emulator: its addresses and a way to stop it.
pub struct RunningEmulator {
    pub addrs: RoleAddrs,
    /// Device port → where the first device's service listens (on loopback).
    pub services: BTreeMap<u16, SocketAddr>,
    /// `--expose` listeners actually bound (to the first device's services).
    pub exposed: Vec<(u16, SocketAddr)>,
    /// Every device, in the order of [`EmulatorConfig::units`].
    pub devices: Vec<RunningDevice>,
    /// The extra clouds (profile name, socket), besides the main one.
    pub clouds: Vec<(String, SocketAddr)>,
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
                requests: BTreeMap::new(),
            },
        }
    }
}

/// A socket the emulator could not open: which one, where, and why.
#[derive(Debug)]
pub struct BindError {
    /// What the socket is for ("main cloud", "cloud amcrest", "device X",
    /// "--expose 554").
    pub what: String,
    pub proto: &'static str,
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot listen on {} {} ({}): {}",
            self.proto, self.addr, self.what, self.source
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn bind_error(what: String, proto: &'static str, addr: SocketAddr, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        BindError {
            what,
            proto,
            addr,
            source,
        },
    )
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
async fn spawn_expose(port: u16, addr: SocketAddr, target: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(format!("--expose {port}"), "TCP", addr, e))?;
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

/// The services of one device: echo and forwards shared, a built-in RTSP
/// server with that device's credentials.
async fn start_services(
    config: &EmulatorConfig,
    unit: &DeviceUnit,
    shared: &mut BTreeMap<u16, SocketAddr>,
    clip_once: bool,
) -> io::Result<BTreeMap<u16, SocketAddr>> {
    let mut services = BTreeMap::new();
    for (port, service) in &config.services {
        let addr = match service {
            Service::BuiltinRtsp => {
                let serial = unit.serials.first().cloned().unwrap_or_default();
                let mut rtsp = RtspConfig::new(
                    config.username.clone(),
                    unit.password.clone(),
                    format!("Login to {serial}"),
                );
                rtsp.clip_once = clip_once;
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                rtsp::spawn_listener(loopback, Arc::new(rtsp)).await?.0
            }
            _ if shared.contains_key(port) => shared[port],
            Service::Echo => spawn_echo().await?,
            Service::Forward(target) => tokio::net::lookup_host(target.as_str())
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {target}"))
                })?,
        };
        if *service != Service::BuiltinRtsp {
            shared.insert(*port, addr);
        }
        services.insert(*port, addr);
    }
    Ok(services)
}

/// One of the emulator's UDP sockets.
struct Slot {
    role: Role,
    index: usize,
    socket: Arc<BatchSocket>,
    local: SocketAddr,
}

async fn bind_udp(ip: IpAddr, port: u16, what: String) -> io::Result<Arc<BatchSocket>> {
    let addr = SocketAddr::new(ip, port);
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|e| bind_error(what.clone(), "UDP", addr, e))?;
    crate::net::enlarge_buffers(&socket);
    let socket = BatchSocket::new(socket).map_err(|e| bind_error(what, "UDP", addr, e))?;
    Ok(Arc::new(socket))
}

/// Binds every role, starts the services and runs the core until stopped.
pub async fn start(config: EmulatorConfig, options: DriverOptions) -> io::Result<RunningEmulator> {
    let units = config.units();
    if units.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no device to emulate: give --serial or --device",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for serial in units.iter().flat_map(|u| &u.serials) {
        if !seen.insert(serial.to_ascii_uppercase()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("device {serial} is given twice (serials match in any case)"),
            ));
        }
    }
    let extra_clouds = config.extra_clouds();
    let ip = options.listen;
    let mut slots = Vec::new();
    let mut add = |role, index, socket: Arc<BatchSocket>| -> io::Result<()> {
        let local = socket.local_addr()?;
        slots.push(Slot {
            role,
            index,
            socket,
            local,
        });
        Ok(())
    };
    add(
        Role::Cloud,
        0,
        bind_udp(ip, options.cloud_port, "main cloud".into()).await?,
    )?;
    add(Role::P2pSrv, 0, bind_udp(ip, 0, "P2P server".into()).await?)?;
    add(Role::Relay, 0, bind_udp(ip, 0, "relay".into()).await?)?;
    add(Role::Agent, 0, bind_udp(ip, 0, "agent".into()).await?)?;
    for (i, unit) in units.iter().enumerate() {
        let what = format!("device {}", unit.serials.join(","));
        add(Role::Device, i, bind_udp(ip, 0, what).await?)?;
    }
    for (i, name) in extra_clouds.iter().enumerate() {
        add(
            Role::Cloud,
            i + 1,
            bind_udp(ip, 0, format!("cloud {name}")).await?,
        )?;
    }
    let local_of = |role: Role, index: usize| {
        slots
            .iter()
            .find(|s| s.role == role && s.index == index)
            .map(|s| s.local)
            .unwrap_or_else(|| SocketAddr::new(ip, 0))
    };
    let addrs = RoleAddrs {
        cloud: local_of(Role::Cloud, 0),
        p2psrv: local_of(Role::P2pSrv, 0),
        relay: local_of(Role::Relay, 0),
        agent: local_of(Role::Agent, 0),
        device: local_of(Role::Device, 0),
    };
    let fleet = FleetAddrs {
        devices: (1..units.len())
            .map(|i| local_of(Role::Device, i))
            .collect(),
        clouds: (1..=extra_clouds.len())
            .map(|i| local_of(Role::Cloud, i))
            .collect(),
    };
    let mut shared = BTreeMap::new();
    let mut devices = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        devices.push(RunningDevice {
            serials: unit.serials.clone(),
            addr: local_of(Role::Device, i),
            services: start_services(&config, unit, &mut shared, options.clip_once).await?,
        });
    }
    let services = devices[0].services.clone();
    let mut exposed = Vec::new();
    for (port, addr) in &options.expose {
        let target = services.get(port).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--expose {port}: no service on device port {port}"),
            )
        })?;
        exposed.push((*port, spawn_expose(*port, *addr, target).await?));
    }
    let clouds = extra_clouds
        .iter()
        .cloned()
        .zip(fleet.clouds.iter().copied())
        .collect();
    let (stop_tx, stop_rx) = oneshot::channel();
    let legs = Legs::new(&units, &slots, &options)?;
    let core = Emulator::with_fleet(config, addrs, fleet, Instant::now(), unix_now());
    let service_maps = devices.iter().map(|d| d.services.clone()).collect();
    let task = tokio::spawn(run(core, slots, legs, service_maps, stop_rx));
    Ok(RunningEmulator {
        addrs,
        services,
        exposed,
        devices,
        clouds,
        stop: Some(stop_tx),
        task,
    })
}

/// Reads one socket into the core's queue; ICMP errors from earlier sends
/// surface as receive errors and are not fatal.
fn spawn_reader(
    slot: usize,
    socket: Arc<BatchSocket>,
    tx: mpsc::Sender<(usize, Vec<(SocketAddr, Bytes)>)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut bufs = RecvBuffers::new();
        loop {
            let mut datagrams = Vec::new();
            match socket.recv_batch(&mut bufs, &mut datagrams).await {
                Ok(_) => {
                    if tx.send((slot, datagrams)).await.is_err() {
                        return;
                    }
                }
                // An ICMP error from an earlier send: not fatal, but never
                // a busy loop if the socket keeps failing.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
}

/// Datagrams handled per loop pass before it flushes (one receive message
/// may carry up to 512, so a pass handles under twice this); TCP events
/// are taken up to [`MAX_TCP_EVENTS`] a pass.
const MAX_BATCH: usize = 512;
const MAX_TCP_EVENTS: usize = 64;

/// Bytes for a service merged into one write.
const MAX_SERVICE_WRITE: usize = 64 * 1024;

async fn run(
    mut core: Emulator,
    slots: Vec<Slot>,
    mut legs: Legs,
    services: Vec<BTreeMap<u16, SocketAddr>>,
    mut stop: oneshot::Receiver<()>,
) -> Finished {
    // Each message is one receive call (up to 512 datagrams, 512 KiB):
    // 64 of them bound the memory a flood can take; beyond, the kernel drops.
    let (udp_tx, mut udp_rx) = mpsc::channel(64);
    let readers: Vec<JoinHandle<()>> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| spawn_reader(i, s.socket.clone(), udp_tx.clone()))
        .collect();
    drop(udp_tx);
    let (tcp_tx, mut tcp_rx) = mpsc::unbounded_channel::<TcpEvent>();
    let mut conns: BTreeMap<ConnId, Conn> = BTreeMap::new();
    let mut outgoing = Outgoing::default();
    let local_of = |role: Role, index: usize| {
        slots
            .iter()
            .find(|s| s.role == role && s.index == index)
            .map(|s| s.local)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    loop {
        let now = Instant::now();
        let sleep_until = core
            .next_timeout()
            .into_iter()
            .chain(legs.next_release())
            .min()
            .unwrap_or(now + Duration::from_secs(3600));
        let mut received = Vec::new();
        tokio::select! {
            _ = &mut stop => break,
            Some(datagram) = udp_rx.recv() => received.push(datagram),
            Some(ev) = tcp_rx.recv() => {
                handle_tcp_event(&mut core, &mut conns, &tcp_tx, ev);
            }
            _ = tokio::time::sleep_until(sleep_until.into()) => {},
        };
        // Whatever else is ready joins this pass: one flush per batch, so
        // ACKs coalesce and the loop's fixed cost is shared (the bound is
        // the ACK delay bound, docs/PERFORMANCE.md).
        let mut datagrams: usize = received.iter().map(|(_, d)| d.len()).sum();
        while datagrams < MAX_BATCH {
            let Ok(batch) = udp_rx.try_recv() else {
                break;
            };
            datagrams += batch.1.len().max(1);
            received.push(batch);
        }
        for _ in 0..MAX_TCP_EVENTS {
            let Ok(ev) = tcp_rx.try_recv() else { break };
            handle_tcp_event(&mut core, &mut conns, &tcp_tx, ev);
        }
        let now = Instant::now();
        for (slot, datagrams) in received {
            let Slot {
                role, index, local, ..
            } = slots[slot];
            for (from, payload) in datagrams {
                let leg = legs.leg(core.leg_of(role, index, from));
                match legs.inbound[leg].as_mut() {
                    Some(link) if on_faulty_leg(role, &payload) => {
                        link.push(now, (role, index, from, payload));
                    }
                    _ => {
                        legs.recorder.record_any(from, local, &payload);
                        core.handle_datagram_on(now, unix_now(), role, index, from, &payload);
                    }
                }
            }
        }
        for link in legs.inbound.iter_mut().flatten() {
            while let Some((role, index, from, payload)) = link.poll(now) {
                legs.recorder
                    .record_any(from, local_of(role, index), &payload);
                core.handle_datagram_on(now, unix_now(), role, index, from, &payload);
            }
        }
        core.handle_timeout(now, unix_now());
        flush(
            &mut core,
            &slots,
            &legs,
            &mut conns,
            &services,
            &tcp_tx,
            &mut outgoing,
        )
        .await;
    }
    for reader in readers {
        reader.abort();
    }
    for (_, conn) in conns {
        conn.reader.abort();
    }
    Finished {
        stats: core.stats(),
        realms: core.realm_reports(),
        faults_out: legs.stats_out(),
        faults_in: legs.stats_in(),
        requests: core.request_counts().clone(),
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
                let mut merged = Vec::with_capacity(MAX_SERVICE_WRITE);
                let mut open = true;
                while open {
                    let Some(Some(first)) = writes.recv().await else {
                        break;
                    };
                    // What queued meanwhile goes out in one write, in order.
                    merged.clear();
                    merged.extend_from_slice(&first);
                    while merged.len() < MAX_SERVICE_WRITE {
                        match writes.try_recv() {
                            Ok(Some(b)) => merged.extend_from_slice(&b),
                            Ok(None) => {
                                open = false;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if write.write_all(&merged).await.is_err() {
                        break;
                    }
                    let _ = tx.send(TcpEvent::Written(conn, merged.len()));
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

#[allow(clippy::too_many_arguments)]
async fn flush(
    core: &mut Emulator,
    slots: &[Slot],
    legs: &Legs,
    conns: &mut BTreeMap<ConnId, Conn>,
    services: &[BTreeMap<u16, SocketAddr>],
    tcp_tx: &mpsc::UnboundedSender<TcpEvent>,
    out: &mut Outgoing,
) {
    while let Some(t) = core.poll_transmit() {
        if on_faulty_leg(t.from, &t.payload) {
            let sender = match t.from {
                Role::Device => legs.device.get(t.index),
                _ => legs.agent.get(legs.leg(t.leg)),
            };
            if let Some(sender) = sender.filter(|s| s.has_faults()) {
                // In order: what was gathered goes before this one.
                out.send(slots).await;
                let _ = sender.send_to(&t.payload, t.to).await;
                continue;
            }
        }
        let Some(slot) = out.slot_of(slots, t.from, t.index) else {
            continue;
        };
        legs.recorder
            .record_any(slots[slot].local, t.to, &t.payload);
        out.push(slots, slot, t.to, &t.payload).await;
    }
    out.send(slots).await;
    while let Some(cmd) = core.poll_tcp() {
        match cmd {
            TcpCommand::Connect { conn, port, device } => {
                let target = services.get(device).and_then(|s| s.get(&port)).copied();
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
    while let Some(line) = core.poll_request_log() {
        tracing::debug!("{line}");
    }
}
