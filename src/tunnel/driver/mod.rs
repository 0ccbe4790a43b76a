//! The tokio driver of `dhp2p tunnel`: TCP listeners, one task per TCP
//! client, two UDP sockets per device session, and one loop that moves bytes
//! between them and the sans-IO [`Handshake`] and [`TunnelSession`] state
//! machines. It decides only I/O matters: when to start a session, when to
//! give up on a held client, how long to back off.
//!
//! This file holds the types, the run loop and the timers; `clients` is
//! the TCP side, `sessions` the device sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::codec::identity::CloudProfile;
use crate::net::record::Recorder;
use crate::net::udp::{BatchSocket, Datagrams};
use crate::session::handshake::{
    Handshake, HandshakeConfig, HandshakeError, Lease, PathMode, Sock,
};
use crate::session::ptcp::{PeerWindow, PtcpConfig};
use crate::session::tunnel::{ClientId, TunnelConfig, TunnelSession};

mod clients;
mod sessions;

/// Which device port a listener leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemotePort {
    /// The device's RTSP port from /info/device (554 when unknown).
    Rtsp,
    Port(u16),
}

/// One `-p [bind_addr:]local_port:remote_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub bind: IpAddr,
    pub local: u16,
    pub remote: RemotePort,
}

/// A cloud to try, resolved.
#[derive(Debug, Clone)]
pub struct CloudCandidate {
    pub profile: CloudProfile,
    pub addr: SocketAddr,
}

/// Who the tunnel reaches and how: each attempt's [`HandshakeConfig`] is
/// built from this and the cloud it asks.
#[derive(Clone)]
pub struct Target {
    pub serial: String,
    /// Device user and password, for devices that demand authentication.
    pub credentials: Option<(String, String)>,
    pub mode: PathMode,
    /// The sign exchange (relay lease → 0x17 → 0x19).
    pub use_sign: bool,
    /// What the device's advertised window means to our sender.
    pub peer_window: PeerWindow,
    /// Silence from the device before a session is declared lost.
    pub idle_timeout: Duration,
    pub heartbeat: Duration,
}

impl Target {
    /// The handshake of one attempt through `cloud`.
    pub fn handshake(&self, cloud: &CloudCandidate) -> HandshakeConfig {
        let defaults = HandshakeConfig::new(self.serial.clone(), cloud.addr, cloud.profile.clone());
        HandshakeConfig {
            credentials: self.credentials.clone(),
            mode: self.mode,
            use_sign: self.use_sign,
            ptcp: PtcpConfig {
                idle_timeout: self.idle_timeout,
                heartbeat: Some(self.heartbeat),
                peer_window: self.peer_window,
                ..defaults.ptcp.clone()
            },
            ..defaults
        }
    }
}

impl std::fmt::Debug for Target {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("serial", &self.serial)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("mode", &self.mode)
            .field("use_sign", &self.use_sign)
            .field("peer_window", &self.peer_window)
            .field("idle_timeout", &self.idle_timeout)
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

/// Everything the driver needs.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    pub target: Target,
    /// Clouds in the order to try; the user pinned one when there is one.
    pub clouds: Vec<CloudCandidate>,
    pub tunnel: TunnelConfig,
    pub ports: Vec<PortSpec>,
    /// Local address of the UDP sockets (0.0.0.0 normally).
    pub udp_bind: IpAddr,
    /// How long a client may wait for a session.
    pub hold_timeout: Duration,
    /// A client that sends nothing gets its realm after this long anyway
    /// (protocols where the server speaks first).
    pub bind_delay: Duration,
    /// Most device sessions at once.
    pub max_sessions: usize,
    /// Keep one session up even without clients, so new ones start fast.
    pub keep_warm: bool,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    pub recorder: Recorder,
    /// Live counters for whoever watches the tunnel (serve's status and
    /// metrics); the driver only adds to them.
    pub counters: Arc<TunnelCounters>,
}

/// What a running tunnel has done so far, readable at any time from
/// another task. Counters only grow; gauges are the current value.
#[derive(Debug, Default)]
pub struct TunnelCounters {
    /// Bytes delivered from the device to local clients.
    pub bytes_from_device: AtomicU64,
    /// Bytes read from local clients for the device.
    pub bytes_to_device: AtomicU64,
    /// PTCP retransmissions of every session.
    pub retransmissions: AtomicU64,
    /// Gauge: device sessions ready now.
    pub sessions: AtomicU64,
    /// Gauge: realms open now.
    pub realms: AtomicU64,
    /// Gauge: local TCP clients now.
    pub clients: AtomicU64,
    /// Local TCP clients accepted, ever.
    pub clients_accepted: AtomicU64,
    /// Milliseconds the last established handshake took.
    pub last_handshake_ms: AtomicU64,
}

/// Why the tunnel stopped for good (before ever working).
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open a UDP socket on {addr}: {source}")]
    Udp {
        addr: IpAddr,
        source: std::io::Error,
    },
}

/// What a running tunnel tells whoever started it.
#[derive(Debug, Clone)]
pub enum Status {
    /// The listeners are open (actual addresses, in `ports` order).
    Listening(Vec<SocketAddr>),
    /// A session is up; `remote_rtsp` is the device's RTSP port.
    Ready { path: String, remote_rtsp: u16 },
    /// A session lost the device; the tunnel reconnects by itself.
    Lost { reason: String },
}

type SessionId = u64;

/// Work units (a datagram, or any other message) handled per loop pass
/// before the pass flushes. It bounds the ACK delay: a body's ACK waits at
/// most for the rest of its batch, under 2 × 512 datagrams of work since
/// one receive message carries up to 512 (about a millisecond here; see
/// docs/PERFORMANCE.md).
const MAX_BATCH: usize = 512;

/// Receive messages (up to 512 datagrams each) a session's sockets may
/// have waiting for the loop before they stop reading.
const MAX_QUEUED_RECEIVES: usize = 64;

/// Bodies waiting for a client are merged into writes of up to this size.
const MAX_CLIENT_WRITE: usize = 64 * 1024;

/// The most one read of a client takes (less when its realm has less room).
const CLIENT_READ: usize = 64 * 1024;

enum Msg {
    Accepted(usize, TcpStream, SocketAddr),
    /// What one read of a client returned (its own buffer, sent on as is).
    ClientBytes(ClientId, bytes::Bytes),
    ClientEof(ClientId),
    ClientWritten(ClientId, usize),
    ClientGone(ClientId),
    /// What one receive call returned (up to a few hundred datagrams), and
    /// its place among the session's waiting receives (freed when dropped).
    Udp(
        SessionId,
        Sock,
        Vec<(SocketAddr, bytes::Bytes)>,
        tokio::sync::OwnedSemaphorePermit,
    ),
}

enum WriteMsg {
    Bytes(bytes::Bytes),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Waiting for a first byte (or the bind delay) and a session.
    Held,
    /// Realm requested on a session.
    Binding(SessionId),
    Open(SessionId),
}

struct Client {
    listener: usize,
    state: ClientState,
    accepted: Instant,
    /// Bytes read before the realm opened.
    early: Vec<u8>,
    /// Sessions whose BIND for this client timed out: not asked again.
    avoid: Vec<SessionId>,
    eof: bool,
    /// Total permits handed to the reader, and bytes it delivered.
    given: u64,
    consumed: u64,
    credits: Arc<Semaphore>,
    writer: mpsc::Sender<WriteMsg>,
    tasks: [JoinHandle<()>; 2],
}

enum SessionState {
    Handshaking(Box<Handshake>),
    Ready {
        tunnel: Box<TunnelSession>,
        sock: Sock,
        peer: SocketAddr,
    },
}

struct Session {
    socks: [Arc<BatchSocket>; 2],
    local: [SocketAddr; 2],
    state: SessionState,
    lease: Option<Lease>,
    started: Instant,
    cloud: usize,
    recv_tasks: [JoinHandle<()>; 2],
    /// Since when a ready session has had no realm (None while in use).
    idle_since: Option<Instant>,
    /// PTCP retransmissions already added to the counters.
    retransmits_counted: u64,
}

/// How long an extra session may sit without realms before it is closed
/// (one stays warm when `keep_warm`).
const IDLE_SESSION_GRACE: Duration = Duration::from_secs(3);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sock_index(sock: Sock) -> usize {
    match sock {
        Sock::Device => 0,
        Sock::Relay => 1,
    }
}

struct Driver {
    opts: TunnelOptions,
    tx: mpsc::UnboundedSender<Msg>,
    clients: BTreeMap<ClientId, Client>,
    sessions: BTreeMap<SessionId, Session>,
    next_client: ClientId,
    next_session: SessionId,
    /// Index into `opts.clouds` of the cloud that knows the device.
    cloud: usize,
    ever_ready: bool,
    backoff: Duration,
    next_attempt: Instant,
    remote_rtsp: u16,
    status: mpsc::UnboundedSender<Status>,
    fatal: Option<TunnelError>,
    /// Why a session lost the device, until another is ready (for held
    /// clients' messages).
    last_loss: Option<String>,
    /// The last failed handshake since the tunnel worked, for the same.
    last_failure: Option<String>,
    /// The one source of randomness: seeds for the state machines and
    /// nonces, drawn here and passed in.
    rng: SmallRng,
    /// A session's datagrams of one flush, written end to end where they
    /// are sent from (kept between flushes).
    outgoing: Datagrams,
    /// Sessions and clients touched since the last flush: only they are
    /// flushed and regranted, so a batch costs the same with one client or
    /// a hundred.
    dirty_sessions: BTreeSet<SessionId>,
    dirty_clients: BTreeSet<ClientId>,
    /// Every session's next deadline, earliest first (one timer table for
    /// all state machines), and each session's entry in it.
    timers: BTreeSet<(Instant, SessionId)>,
    deadlines: BTreeMap<SessionId, Instant>,
    /// Something other than bytes moved (a client came, went or was
    /// refused; a session started, became ready, opened or lost a realm):
    /// placement, session starts and gauges run again.
    changed: bool,
    /// A client is held (known after each `maintain`).
    any_held: bool,
}

/// Runs the tunnel until `shutdown` resolves (exit 0) or the first session
/// fails for a reason retrying cannot fix (an error).
pub async fn run(
    opts: TunnelOptions,
    shutdown: impl Future<Output = ()>,
    status: mpsc::UnboundedSender<Status>,
) -> Result<(), TunnelError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut listening = Vec::new();
    let mut accept_tasks = Vec::new();
    for (i, spec) in opts.ports.iter().enumerate() {
        let addr = SocketAddr::new(spec.bind, spec.local);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TunnelError::Listen { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(
            "listening on {bound} → device port {}",
            describe_remote(spec.remote)
        );
        crate::net::listen::warn_if_exposed(
            bound,
            &format!(
                "the device's port {} (the tunnel adds no authentication)",
                describe_remote(spec.remote)
            ),
        );
        listening.push(bound);
        let tx = tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                if tx.send(Msg::Accepted(i, stream, peer)).is_err() {
                    break;
                }
            }
        }));
    }
    let _ = status.send(Status::Listening(listening));
    let mut driver = Driver {
        tx,
        clients: BTreeMap::new(),
        sessions: BTreeMap::new(),
        next_client: 1,
        next_session: 1,
        cloud: 0,
        ever_ready: false,
        backoff: Duration::from_secs(1),
        next_attempt: Instant::now(),
        remote_rtsp: 554,
        status,
        fatal: None,
        last_loss: None,
        last_failure: None,
        rng: SmallRng::from_entropy(),
        outgoing: Datagrams::new(),
        dirty_sessions: BTreeSet::new(),
        dirty_clients: BTreeSet::new(),
        timers: BTreeSet::new(),
        deadlines: BTreeMap::new(),
        changed: true,
        any_held: false,
        opts,
    };
    tokio::pin!(shutdown);
    driver.step(Instant::now(), true).await;
    // One timer, re-armed only when a deadline comes earlier than the one
    // armed (or that one passed): a later deadline just means one spare wake.
    let mut armed = Instant::now();
    let timer = tokio::time::sleep_until(armed.into());
    tokio::pin!(timer);
    loop {
        if let Some(err) = driver.fatal.take() {
            for t in accept_tasks {
                t.abort();
            }
            return Err(err);
        }
        let wake = driver.next_wake();
        if wake < armed || armed <= Instant::now() {
            armed = wake;
            timer.as_mut().reset(wake.into());
        }
        let mut fired = false;
        tokio::select! {
            _ = &mut shutdown => break,
            Some(msg) = rx.recv() => {
                let mut work = driver.on_msg(msg).await;
                // Everything else already waiting joins this pass: one
                // flush per batch, so ACKs coalesce (one cumulative ACK per
                // session per batch) and the loop's fixed cost is shared.
                while work < MAX_BATCH {
                    let Ok(msg) = rx.try_recv() else { break };
                    work += driver.on_msg(msg).await;
                }
            }
            _ = &mut timer => fired = true,
        }
        driver.step(Instant::now(), fired).await;
    }
    for t in accept_tasks {
        t.abort();
    }
    driver.shutdown().await;
    Ok(())
}

fn describe_remote(r: RemotePort) -> String {
    match r {
        RemotePort::Rtsp => "RTSP".to_string(),
        RemotePort::Port(p) => p.to_string(),
    }
}

impl Driver {
    /// What follows a batch of messages (or a timer): due timers, then
    /// placement and session starts if anything but bytes moved, then one
    /// flush of what was touched. A session that became ready in the flush
    /// takes its held clients in a second round at once.
    async fn step(&mut self, now: Instant, fired: bool) {
        self.on_timers(now, fired);
        for _ in 0..2 {
            if self.changed || fired {
                self.changed = false;
                self.maintain(now).await;
                self.publish_gauges();
            }
            self.flush(now).await;
            if !self.changed {
                break;
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        if self.changed || !self.dirty_sessions.is_empty() || !self.dirty_clients.is_empty() {
            return now;
        }
        let mut wake = now + Duration::from_secs(1);
        if let Some((t, _)) = self.timers.first() {
            wake = wake.min(*t);
        }
        if self.any_held {
            wake = wake.min(now + Duration::from_millis(50));
        }
        wake.max(now)
    }

    /// Enters `sid`'s next deadline in the timer table (or removes it when
    /// the session is gone).
    fn rearm(&mut self, sid: SessionId) {
        if let Some(old) = self.deadlines.remove(&sid) {
            self.timers.remove(&(old, sid));
        }
        let next = self.sessions.get(&sid).and_then(|s| match &s.state {
            SessionState::Handshaking(h) => h.next_timeout(),
            SessionState::Ready { tunnel, .. } => tunnel.next_timeout(),
        });
        if let Some(t) = next {
            self.timers.insert((t, sid));
            self.deadlines.insert(sid, t);
        }
    }

    /// Handles one message; returns its work units (datagrams, else 1).
    async fn on_msg(&mut self, msg: Msg) -> usize {
        let now = Instant::now();
        let work = match &msg {
            Msg::Udp(_, _, datagrams, _) => datagrams.len().max(1),
            _ => 1,
        };
        match msg {
            Msg::Accepted(listener, stream, peer) => {
                self.changed = true;
                self.accept(now, listener, stream, peer)
            }
            Msg::ClientBytes(id, bytes) => {
                let Some(c) = self.clients.get_mut(&id) else {
                    return work;
                };
                self.dirty_clients.insert(id);
                c.consumed += bytes.len() as u64;
                self.opts
                    .counters
                    .bytes_to_device
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                match c.state {
                    ClientState::Open(sid) => {
                        if let Some(SessionState::Ready { tunnel, .. }) =
                            self.sessions.get_mut(&sid).map(|s| &mut s.state)
                        {
                            tunnel.client_data(id, bytes);
                            self.dirty_sessions.insert(sid);
                        }
                    }
                    _ => {
                        // A held client that spoke now wants a realm.
                        self.changed |= c.early.is_empty();
                        c.early.extend_from_slice(&bytes)
                    }
                }
            }
            Msg::ClientEof(id) | Msg::ClientGone(id) => {
                self.changed = true;
                self.client_finished(now, id)
            }
            Msg::ClientWritten(id, n) => {
                self.dirty_clients.insert(id);
                if let Some(ClientState::Open(sid)) = self.clients.get(&id).map(|c| c.state) {
                    self.dirty_sessions.insert(sid);
                    if let Some(SessionState::Ready { tunnel, .. }) =
                        self.sessions.get_mut(&sid).map(|s| &mut s.state)
                    {
                        tunnel.client_consumed(n);
                    }
                }
            }
            Msg::Udp(sid, sock, datagrams, _permit) => {
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return work;
                };
                self.dirty_sessions.insert(sid);
                let local = s.local[sock_index(sock)];
                for (from, bytes) in datagrams {
                    self.opts.recorder.record_any(from, local, &bytes);
                    match &mut s.state {
                        SessionState::Handshaking(h) => {
                            h.handle_datagram(now, unix_now(), sock, from, &bytes)
                        }
                        SessionState::Ready {
                            tunnel,
                            sock: ready_sock,
                            peer,
                        } => {
                            if sock == *ready_sock && from == *peer {
                                tunnel.handle_owned(now, bytes);
                            }
                        }
                    }
                }
            }
        }
        work
    }

    fn remote_port(&self, listener: usize) -> u16 {
        match self.opts.ports.get(listener).map(|p| p.remote) {
            Some(RemotePort::Port(p)) => p,
            _ => self.remote_rtsp,
        }
    }

    /// Runs the state machines whose deadline passed (from the timer
    /// table: no pass over every session), and on a timer wake closes held
    /// clients that waited too long.
    fn on_timers(&mut self, now: Instant, fired: bool) {
        let unix = unix_now();
        while let Some(&(t, sid)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.deadlines.remove(&sid);
            if let Some(s) = self.sessions.get_mut(&sid) {
                match &mut s.state {
                    SessionState::Handshaking(h) => h.handle_timeout(now, unix),
                    SessionState::Ready { tunnel, .. } => tunnel.handle_timeout(now),
                }
                self.dirty_sessions.insert(sid);
            }
        }
        if !(fired && self.any_held) {
            return;
        }
        let expired: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.state == ClientState::Held && now >= c.accepted + self.opts.hold_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let why = self.why_no_room();
            tracing::warn!("client {id}: {why}; closing it");
            self.drop_client(id, true);
        }
    }

    /// A held client that has spoken, closed, or waited its bind delay.
    fn wants_realm(&self, now: Instant, c: &Client) -> bool {
        !c.early.is_empty() || c.eof || now >= c.accepted + self.opts.bind_delay
    }

    /// Starts sessions as clients need them, and places held clients.
    async fn maintain(&mut self, now: Instant) {
        // Place held clients that are ready to go on sessions with room.
        let held: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.state == ClientState::Held && self.wants_realm(now, c))
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            let Some(c) = self.clients.get(&id) else {
                continue;
            };
            let port = self.remote_port(c.listener);
            let avoid = c.avoid.clone();
            let slot = self
                .sessions
                .iter_mut()
                .filter(|(sid, _)| !avoid.contains(sid))
                .find_map(|(sid, s)| match &mut s.state {
                    SessionState::Ready { tunnel, .. } if tunnel.can_open() => Some((*sid, tunnel)),
                    _ => None,
                });
            if let Some((sid, tunnel)) = slot {
                let realm = tunnel.open(now, id, port);
                tracing::debug!("client {id}: BIND realm 0x{realm:08x} → port {port}");
                if let Some(c) = self.clients.get_mut(&id) {
                    c.state = ClientState::Binding(sid);
                }
                self.dirty_sessions.insert(sid);
            }
        }
        self.any_held = self.clients.values().any(|c| c.state == ClientState::Held);
        self.close_idle_sessions(now).await;
        // Start a session when clients wait without room, or to stay warm.
        // Only clients that want a realm now count: one that connected and
        // left (a health check, a port scan) never reaches its bind delay.
        let waiting = self
            .clients
            .values()
            .filter(|c| c.state == ClientState::Held && self.wants_realm(now, c))
            .count();
        let handshaking = self
            .sessions
            .values()
            .filter(|s| matches!(s.state, SessionState::Handshaking(_)))
            .count();
        let room: usize = self
            .sessions
            .values()
            .map(|s| match &s.state {
                SessionState::Ready { tunnel, .. } if tunnel.can_open() => {
                    self.opts.tunnel.max_realms.saturating_sub(tunnel.realms())
                }
                SessionState::Handshaking(_) => self.opts.tunnel.max_realms,
                _ => 0,
            })
            .sum();
        // Clients that every open session already failed to serve need a new one.
        let stranded = self.clients.values().any(|c| {
            c.state == ClientState::Held
                && !c.avoid.is_empty()
                && !self.sessions.iter().any(|(sid, s)| {
                    !c.avoid.contains(sid)
                        && match &s.state {
                            SessionState::Ready { tunnel, .. } => tunnel.can_open(),
                            SessionState::Handshaking(_) => true,
                        }
                })
        });
        let want_new =
            (waiting > room || stranded || (self.opts.keep_warm && self.sessions.is_empty()))
                && handshaking == 0
                && self.sessions.len() < self.opts.max_sessions
                && now >= self.next_attempt;
        if want_new {
            self.start_session(now).await;
        }
    }

    /// Sends what the touched state machines want sent, handles their
    /// events, and gives their clients read permits for the room they have.
    async fn flush(&mut self, now: Instant) {
        // Taken, not drained: whatever a flush touches again waits for the
        // next round (`next_wake` returns at once while anything is dirty).
        for sid in std::mem::take(&mut self.dirty_sessions) {
            self.flush_session(now, sid).await;
            self.rearm(sid);
        }
        for id in std::mem::take(&mut self.dirty_clients) {
            self.regrant(id);
        }
    }

    /// The current session, realm and client counts for the watchers.
    fn publish_gauges(&self) {
        let (mut ready, mut realms) = (0u64, 0u64);
        for s in self.sessions.values() {
            if let SessionState::Ready { tunnel, .. } = &s.state {
                ready += 1;
                realms += tunnel.realms() as u64;
            }
        }
        let c = &self.opts.counters;
        c.sessions.store(ready, Ordering::Relaxed);
        c.realms.store(realms, Ordering::Relaxed);
        c.clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
    }
}
