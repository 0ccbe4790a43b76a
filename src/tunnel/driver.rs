//! The tokio driver of `dhp2p tunnel`: TCP listeners, one task per TCP
//! client, two UDP sockets per device session, and one loop that moves bytes
//! between them and the sans-IO [`Handshake`] and [`TunnelSession`] state
//! machines. It decides only I/O matters: when to start a session, when to
//! give up on a held client, how long to back off.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::codec::identity::CloudProfile;
use crate::net::record::Recorder;
use crate::session::handshake::{
    next_cloud, unbind_request, Established, EstablishedPath, Handshake, HandshakeConfig,
    HandshakeError, HandshakeEvent, Lease, PathMode, Sock,
};
use crate::session::ptcp::{DeadReason, PtcpConfig};
use crate::session::tunnel::{BindFailure, ClientId, TunnelConfig, TunnelEvent, TunnelSession};

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

/// Messages handled per loop pass before the pass flushes. It bounds the
/// ACK delay: a body's ACK waits at most for the rest of its batch (tens of
/// microseconds of work at this size; see docs/PERFORMANCE.md).
const MAX_BATCH: usize = 64;

/// Bodies waiting for a client are merged into writes of up to this size.
const MAX_CLIENT_WRITE: usize = 64 * 1024;

enum Msg {
    Accepted(usize, TcpStream, SocketAddr),
    ClientBytes(ClientId, Vec<u8>),
    ClientEof(ClientId),
    ClientWritten(ClientId, usize),
    ClientGone(ClientId),
    Udp(SessionId, Sock, SocketAddr, Vec<u8>),
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
    socks: [Arc<UdpSocket>; 2],
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
        opts,
    };
    tokio::pin!(shutdown);
    driver.maintain(Instant::now()).await;
    driver.flush(Instant::now()).await;
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
        tokio::select! {
            _ = &mut shutdown => break,
            Some(msg) = rx.recv() => {
                driver.on_msg(msg).await;
                // Everything else already waiting joins this pass: one
                // flush per batch, so ACKs coalesce (one cumulative ACK per
                // session per batch) and the loop's fixed cost is shared.
                for _ in 1..MAX_BATCH {
                    let Ok(msg) = rx.try_recv() else { break };
                    driver.on_msg(msg).await;
                }
            }
            _ = &mut timer => {}
        }
        let now = Instant::now();
        driver.on_timers(now);
        driver.maintain(now).await;
        driver.flush(now).await;
        // A session that just became ready takes its held clients at once.
        driver.maintain(now).await;
        driver.flush(now).await;
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
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        for s in self.sessions.values() {
            let t = match &s.state {
                SessionState::Handshaking(h) => h.next_timeout(),
                SessionState::Ready { tunnel, .. } => tunnel.next_timeout(),
            };
            if let Some(t) = t {
                wake = wake.min(t);
            }
        }
        if self.clients.values().any(|c| c.state == ClientState::Held) {
            wake = wake.min(now + Duration::from_millis(50));
        }
        wake.max(now)
    }

    async fn on_msg(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Accepted(listener, stream, peer) => self.accept(now, listener, stream, peer),
            Msg::ClientBytes(id, bytes) => {
                let Some(c) = self.clients.get_mut(&id) else {
                    return;
                };
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
                            tunnel.client_data(id, &bytes);
                        }
                    }
                    _ => c.early.extend_from_slice(&bytes),
                }
            }
            Msg::ClientEof(id) | Msg::ClientGone(id) => self.client_finished(now, id),
            Msg::ClientWritten(id, n) => {
                if let Some(ClientState::Open(sid)) = self.clients.get(&id).map(|c| c.state) {
                    if let Some(SessionState::Ready { tunnel, .. }) =
                        self.sessions.get_mut(&sid).map(|s| &mut s.state)
                    {
                        tunnel.client_consumed(n);
                    }
                }
            }
            Msg::Udp(sid, sock, from, bytes) => {
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return;
                };
                let local = s.local[sock_index(sock)];
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
                            tunnel.handle_owned(now, bytes::Bytes::from(bytes));
                        }
                    }
                }
            }
        }
    }

    fn accept(&mut self, now: Instant, listener: usize, stream: TcpStream, peer: SocketAddr) {
        let id = self.next_client;
        self.next_client += 1;
        let (mut read, mut write) = stream.into_split();
        let (writer, mut writes) = mpsc::channel::<WriteMsg>(4096);
        let credits = Arc::new(Semaphore::new(0));
        let tx = self.tx.clone();
        let write_task = tokio::spawn(async move {
            let mut merged = Vec::with_capacity(MAX_CLIENT_WRITE);
            let mut open = true;
            while open {
                let Some(WriteMsg::Bytes(first)) = writes.recv().await else {
                    break;
                };
                // Bodies queued meanwhile go out in one write (in order);
                // a body alone is written as it is, without a copy.
                merged.clear();
                while merged.len().max(first.len()) < MAX_CLIENT_WRITE {
                    match writes.try_recv() {
                        Ok(WriteMsg::Bytes(b)) => {
                            if merged.is_empty() {
                                merged.extend_from_slice(&first);
                            }
                            merged.extend_from_slice(&b);
                        }
                        Ok(WriteMsg::Close) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let out: &[u8] = if merged.is_empty() { &first } else { &merged };
                if write.write_all(out).await.is_err() {
                    let _ = tx.send(Msg::ClientGone(id));
                    return;
                }
                let _ = tx.send(Msg::ClientWritten(id, out.len()));
            }
            let _ = write.shutdown().await;
        });
        let tx = self.tx.clone();
        let sem = credits.clone();
        let read_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                // Read only what the realm can take (per-realm flow control).
                let Ok(permit) = sem.acquire_many(1).await else {
                    return;
                };
                permit.forget();
                let allowed = 1 + sem.available_permits().min(buf.len() - 1);
                if let Ok(p) = sem.acquire_many((allowed - 1) as u32).await {
                    p.forget();
                }
                match read.read(&mut buf[..allowed]).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Msg::ClientEof(id));
                        return;
                    }
                    Ok(n) => {
                        sem.add_permits(allowed - n);
                        if tx.send(Msg::ClientBytes(id, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        tracing::info!("client {id} connected from {peer}");
        self.opts
            .counters
            .clients_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.clients.insert(
            id,
            Client {
                listener,
                state: ClientState::Held,
                accepted: now,
                early: Vec::new(),
                avoid: Vec::new(),
                eof: false,
                given: 0,
                consumed: 0,
                credits,
                writer,
                tasks: [read_task, write_task],
            },
        );
        self.regrant(id);
    }

    /// Hands the client's reader as many permits as its realm has room.
    fn regrant(&mut self, id: ClientId) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let room = match c.state {
            ClientState::Open(sid) => match self.sessions.get(&sid).map(|s| &s.state) {
                Some(SessionState::Ready { tunnel, .. }) => tunnel.client_capacity(id),
                _ => 0,
            },
            _ => self.opts.tunnel.realm_queue.saturating_sub(c.early.len()),
        };
        let in_flight = c.given.saturating_sub(c.consumed);
        let want = room as u64;
        if want > in_flight {
            let add = (want - in_flight) as usize;
            c.credits.add_permits(add);
            if let Some(c) = self.clients.get_mut(&id) {
                c.given += add as u64;
            }
        }
    }

    fn client_finished(&mut self, now: Instant, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.eof = true;
        match c.state {
            ClientState::Open(sid) | ClientState::Binding(sid) => {
                if let Some(SessionState::Ready { tunnel, .. }) =
                    self.sessions.get_mut(&sid).map(|s| &mut s.state)
                {
                    tunnel.client_closed(now, id);
                }
                self.drop_client(id, false);
            }
            ClientState::Held => {
                if c.early.is_empty() {
                    // Closed before sending anything: no realm, nothing left behind.
                    self.drop_client(id, false);
                }
            }
        }
    }

    /// A client's BIND did not give it a realm on session `sid`.
    fn bind_failed(&mut self, now: Instant, sid: SessionId, id: ClientId, reason: BindFailure) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let port = self.remote_port(c.listener);
        let within_hold = now < c.accepted + self.opts.hold_timeout;
        match reason {
            BindFailure::Refused => {
                // The device's answer for that port: retrying elsewhere
                // would get the same answer. The session stays up.
                tracing::warn!(
                    "session {sid}: client {id}: device port {port} refused the connection (DISC); closing the client"
                );
                self.drop_client(id, true);
            }
            BindFailure::TimedOut | BindFailure::SessionEnded if within_hold => {
                // Another session (or a new one) gets a try within the
                // client's hold time; this one is not asked again.
                tracing::info!(
                    "session {sid}: client {id}: no realm for port {port} ({reason:?}); trying another session"
                );
                if let Some(c) = self.clients.get_mut(&id) {
                    c.state = ClientState::Held;
                    c.avoid.push(sid);
                }
            }
            _ => {
                tracing::warn!(
                    "session {sid}: client {id}: the device did not open a realm for port {port} ({reason:?}) within {:?}; closing the client",
                    self.opts.hold_timeout
                );
                self.drop_client(id, true);
            }
        }
    }

    fn drop_client(&mut self, id: ClientId, abort: bool) {
        if let Some(c) = self.clients.remove(&id) {
            let _ = c.writer.try_send(WriteMsg::Close);
            c.tasks[0].abort();
            if abort {
                c.tasks[1].abort();
            }
        }
    }

    fn remote_port(&self, listener: usize) -> u16 {
        match self.opts.ports.get(listener).map(|p| p.remote) {
            Some(RemotePort::Port(p)) => p,
            _ => self.remote_rtsp,
        }
    }

    fn on_timers(&mut self, now: Instant) {
        let unix = unix_now();
        for s in self.sessions.values_mut() {
            match &mut s.state {
                SessionState::Handshaking(h) => h.handle_timeout(now, unix),
                SessionState::Ready { tunnel, .. } => tunnel.handle_timeout(now),
            }
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

    /// Why a held client found no realm within its hold time, as the
    /// case is: every slot busy, the device lost, or no session came up.
    fn why_no_room(&self) -> String {
        let hold = self.opts.hold_timeout;
        let ready = self
            .sessions
            .values()
            .filter(|s| matches!(s.state, SessionState::Ready { .. }))
            .count();
        let full = self.sessions.values().all(|s| match &s.state {
            SessionState::Ready { tunnel, .. } => !tunnel.can_open(),
            SessionState::Handshaking(_) => false,
        });
        if ready > 0 && full && self.sessions.len() >= self.opts.max_sessions {
            return format!(
                "all {} sessions × {} realms are busy (raise --max-sessions or --max-realms)",
                self.opts.max_sessions, self.opts.tunnel.max_realms
            );
        }
        if ready == 0 {
            if let Some(reason) = &self.last_loss {
                return format!(
                    "the device was lost ({reason}) and no new session came up within {hold:?}"
                );
            }
            if let Some(failure) = &self.last_failure {
                return format!("no device session within {hold:?} (last attempt: {failure})");
            }
        }
        format!("no device session within {hold:?}")
    }

    /// Closes ready sessions that have carried no realm for
    /// [`IDLE_SESSION_GRACE`], keeping one warm: clients that came and went
    /// must not leave device sessions (and their fds) behind.
    async fn close_idle_sessions(&mut self, now: Instant) {
        let binding: Vec<SessionId> = self
            .clients
            .values()
            .filter_map(|c| match c.state {
                ClientState::Binding(sid) | ClientState::Open(sid) => Some(sid),
                ClientState::Held => None,
            })
            .collect();
        let mut ready = 0;
        let mut idle = Vec::new();
        for (sid, s) in self.sessions.iter_mut() {
            let SessionState::Ready { tunnel, .. } = &s.state else {
                continue;
            };
            ready += 1;
            if tunnel.realms() > 0 || binding.contains(sid) {
                s.idle_since = None;
                continue;
            }
            let since = *s.idle_since.get_or_insert(now);
            if now >= since + IDLE_SESSION_GRACE {
                idle.push(*sid);
            }
        }
        let held = self.clients.values().any(|c| c.state == ClientState::Held);
        if held || idle.is_empty() {
            return;
        }
        // The oldest idle session stays when it would be the last one.
        if self.opts.keep_warm && idle.len() >= ready {
            idle.remove(0);
        }
        for sid in idle {
            let Some(s) = self.sessions.remove(&sid) else {
                continue;
            };
            tracing::info!(
                "session {sid}: no client for {} s; closing it ({} device sessions left)",
                IDLE_SESSION_GRACE.as_secs(),
                self.sessions.len()
            );
            for t in &s.recv_tasks {
                t.abort();
            }
            self.unbind(&s).await;
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
            }
        }
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

    async fn start_session(&mut self, now: Instant) {
        let bind = self.opts.udp_bind;
        let mut socks = Vec::new();
        for _ in 0..2 {
            match UdpSocket::bind(SocketAddr::new(bind, 0)).await {
                Ok(s) => {
                    crate::net::enlarge_buffers(&s);
                    socks.push(Arc::new(s))
                }
                Err(source) => {
                    self.fatal = Some(TunnelError::Udp { addr: bind, source });
                    return;
                }
            }
        }
        let local = [
            socks[0].local_addr().unwrap_or(SocketAddr::new(bind, 0)),
            socks[1].local_addr().unwrap_or(SocketAddr::new(bind, 0)),
        ];
        let sid = self.next_session;
        self.next_session += 1;
        let Some(cloud) = self.opts.clouds.get(self.cloud).cloned() else {
            return;
        };
        let config = self.opts.target.handshake(&cloud);
        let handshake = Handshake::new(
            config,
            local[0].port(),
            local[1].port(),
            now,
            unix_now(),
            self.rng.gen(),
        );
        let spawn_recv = |sock: Sock, s: Arc<UdpSocket>, tx: mpsc::UnboundedSender<Msg>| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.recv_from(&mut buf).await {
                        Ok((n, from)) => {
                            if tx
                                .send(Msg::Udp(sid, sock, from, buf[..n].to_vec()))
                                .is_err()
                            {
                                return;
                            }
                        }
                        // An ICMP error from an earlier send: not fatal (FIELD-NOTES §4.4).
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        };
        let recv_tasks = [
            spawn_recv(Sock::Device, socks[0].clone(), self.tx.clone()),
            spawn_recv(Sock::Relay, socks[1].clone(), self.tx.clone()),
        ];
        tracing::info!(
            "session {sid}: connecting to {} through the {} cloud ({})",
            self.opts.target.serial,
            cloud.profile.name,
            cloud.addr
        );
        self.sessions.insert(
            sid,
            Session {
                socks: [socks[0].clone(), socks[1].clone()],
                local,
                state: SessionState::Handshaking(Box::new(handshake)),
                lease: None,
                started: now,
                cloud: self.cloud,
                recv_tasks,
                idle_since: None,
                retransmits_counted: 0,
            },
        );
    }

    /// Sends what every state machine wants sent and handles their events.
    async fn flush(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in ids {
            self.flush_session(now, sid).await;
        }
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            self.regrant(id);
        }
        self.publish_gauges();
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

    async fn flush_session(&mut self, now: Instant, sid: SessionId) {
        let Some(mut s) = self.sessions.remove(&sid) else {
            return;
        };
        let mut keep = true;
        match &mut s.state {
            SessionState::Handshaking(h) => {
                while let Some(t) = h.poll_transmit(now) {
                    let i = sock_index(t.sock);
                    if s.socks[i].send_to(&t.payload, t.to).await.is_ok() {
                        self.opts.recorder.record_any(s.local[i], t.to, &t.payload);
                    }
                }
                let mut established = None;
                let mut failed = None;
                while let Some(ev) = h.poll_event() {
                    match ev {
                        HandshakeEvent::Stage {
                            stage,
                            elapsed,
                            detail,
                        } => {
                            tracing::info!(
                                "session {sid}: {} after {} ms: {detail}",
                                stage.name(),
                                elapsed.as_millis()
                            );
                        }
                        HandshakeEvent::Established(e) => established = Some(*e),
                        HandshakeEvent::Failed(err) => {
                            keep = false;
                            failed = Some(err);
                        }
                    }
                }
                if let Some(err) = failed {
                    self.handshake_failed(now, sid, s.cloud, err);
                } else if let Some(e) = established {
                    self.established(now, sid, &mut s, e);
                }
            }
            SessionState::Ready { tunnel, sock, peer } => {
                let i = sock_index(*sock);
                // Events first (they queue data: an opened realm's early
                // bytes), then everything they queued goes out now.
                while let Some(ev) = tunnel.poll_event() {
                    match ev {
                        TunnelEvent::Opened { client, realm } => {
                            let early = self.clients.get_mut(&client).map(|c| {
                                c.state = ClientState::Open(sid);
                                std::mem::take(&mut c.early)
                            });
                            if let Some(early) = early {
                                tracing::info!(
                                    "session {sid}: realm 0x{realm:08x} open for client {client}"
                                );
                                tunnel.client_data(client, &early);
                                if self.clients.get(&client).is_some_and(|c| c.eof) {
                                    tunnel.client_closed(now, client);
                                }
                            } else {
                                tunnel.client_closed(now, client);
                            }
                        }
                        TunnelEvent::BindFailed { client, reason } => {
                            self.bind_failed(now, sid, client, reason);
                        }
                        TunnelEvent::Data { client, bytes } => {
                            let Some(c) = self.clients.get(&client) else {
                                continue;
                            };
                            self.opts
                                .counters
                                .bytes_from_device
                                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            match c.writer.try_send(WriteMsg::Bytes(bytes)) {
                                Ok(()) => {}
                                // Its writer ended: the client left (ClientGone follows).
                                Err(mpsc::error::TrySendError::Closed(_)) => {
                                    tunnel.client_closed(now, client);
                                    self.drop_client(client, true);
                                }
                                // A client that already closed its side is stopping, not stuck.
                                Err(mpsc::error::TrySendError::Full(_)) if c.eof => {
                                    tracing::info!("session {sid}: client {client} closed; dropping what it did not read");
                                    tunnel.client_closed(now, client);
                                    self.drop_client(client, true);
                                }
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    // One slow client must not stall the others (FIELD-NOTES §4.5).
                                    tracing::warn!("session {sid}: client {client} is not reading; closing its realm");
                                    tunnel.client_closed(now, client);
                                    self.drop_client(client, true);
                                }
                            }
                        }
                        TunnelEvent::Closed {
                            client,
                            bytes_in,
                            bytes_out,
                        } => {
                            tracing::info!(
                                "session {sid}: realm of client {client} closed by the device ({bytes_in} B sent, {bytes_out} B received)"
                            );
                            self.drop_client(client, false);
                        }
                        TunnelEvent::Retired => {
                            tracing::warn!("session {sid}: the device stopped granting realms; retiring this session");
                        }
                        TunnelEvent::Dead(reason) => {
                            keep = false;
                            self.session_died(now, sid, reason, tunnel);
                        }
                    }
                }
                while let Some(d) = tunnel.poll_transmit(now) {
                    if s.socks[i].send_to(&d, *peer).await.is_ok() {
                        self.opts.recorder.record_any(s.local[i], *peer, &d);
                    }
                }
                let resent = tunnel.ptcp_stats().retransmits;
                self.opts.counters.retransmissions.fetch_add(
                    resent.saturating_sub(s.retransmits_counted),
                    Ordering::Relaxed,
                );
                s.retransmits_counted = s.retransmits_counted.max(resent);
                // A retired session without realms has nothing left to do.
                if tunnel.is_retired() && tunnel.realms() == 0 {
                    keep = false;
                }
            }
        }
        if keep {
            self.sessions.insert(sid, s);
        } else {
            for t in &s.recv_tasks {
                t.abort();
            }
            self.unbind(&s).await;
        }
    }

    fn established(&mut self, now: Instant, sid: SessionId, s: &mut Session, e: Established) {
        let peer = e.peer;
        let path = match e.path {
            EstablishedPath::Direct { device, via } => format!("direct {device} ({via})"),
            EstablishedPath::Relay { agent } => format!("relay {agent}"),
        };
        if let Some(port) = e.device_info.as_ref().and_then(|i| i.rtspport) {
            self.remote_rtsp = port;
        }
        let took = now.saturating_duration_since(s.started);
        tracing::info!("session {sid}: ready, {path}, in {} ms", took.as_millis());
        self.opts
            .counters
            .last_handshake_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        if !self.ever_ready {
            let cloud = &self.opts.clouds[s.cloud];
            if s.cloud != 0 {
                tracing::info!(
                    "the {} cloud knows {}",
                    cloud.profile.name,
                    self.opts.target.serial
                );
            }
        }
        self.ever_ready = true;
        self.last_failure = None;
        self.last_loss = None;
        self.backoff = Duration::from_secs(1);
        s.lease = e.lease;
        let tunnel = TunnelSession::new(self.opts.tunnel.clone(), e.session, self.rng.gen());
        s.state = SessionState::Ready {
            tunnel: Box::new(tunnel),
            sock: e.sock,
            peer,
        };
        let _ = self.status.send(Status::Ready {
            path,
            remote_rtsp: self.remote_rtsp,
        });
    }

    fn handshake_failed(
        &mut self,
        now: Instant,
        sid: SessionId,
        cloud: usize,
        err: HandshakeError,
    ) {
        if let Some(next) = next_cloud(&err, cloud, self.opts.clouds.len(), self.ever_ready) {
            self.cloud = next;
            tracing::warn!(
                "session {sid}: {err}; trying the {} cloud",
                self.opts.clouds[self.cloud].profile.name
            );
            self.next_attempt = now;
            return;
        }
        if !self.ever_ready {
            // Before the tunnel ever worked, say why at once and stop: the
            // user is watching, and retrying cannot fix a wrong serial,
            // missing credentials or an unreachable cloud.
            self.fatal = Some(TunnelError::Handshake(err));
            return;
        }
        tracing::warn!(
            "session {sid}: {err}; retrying in {} s",
            self.backoff.as_secs()
        );
        self.last_failure = Some(err.to_string());
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
        let _ = sid;
    }

    fn session_died(
        &mut self,
        now: Instant,
        sid: SessionId,
        reason: DeadReason,
        tunnel: &TunnelSession,
    ) {
        let stats = tunnel.ptcp_stats();
        tracing::warn!(
            "session {sid}: lost the device ({reason:?}; {} datagrams in, {} out, {} resent); reconnecting",
            stats.datagrams_in,
            stats.datagrams_out,
            stats.retransmits
        );
        self.last_loss = Some(format!("{reason:?}"));
        let _ = self.status.send(Status::Lost {
            reason: format!("{reason:?}"),
        });
        // Its clients are closed cleanly: their device side is gone.
        let orphaned: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.state, ClientState::Open(s) if s == sid))
            .map(|(id, _)| *id)
            .collect();
        for id in orphaned {
            self.drop_client(id, false);
        }
        // After a silent death the device still holds the old session;
        // give it a moment before competing with it (FIELD-NOTES §4.6).
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
    }

    /// Releases the session's relay lease, if any (FIELD-NOTES C12); the
    /// request is built by the session layer.
    async fn unbind(&mut self, s: &Session) {
        let (Some(lease), Some(cloud)) = (&s.lease, self.opts.clouds.get(s.cloud)) else {
            return;
        };
        let t = unbind_request(&cloud.profile, lease, unix_now(), self.rng.gen());
        let i = sock_index(t.sock);
        if s.socks[i].send_to(&t.payload, t.to).await.is_ok() {
            self.opts.recorder.record_any(s.local[i], t.to, &t.payload);
        }
    }

    /// DISC every realm, wait briefly for the acknowledgements, unbind.
    async fn shutdown(&mut self) {
        tracing::info!("stopping: closing every realm");
        let now = Instant::now();
        for s in self.sessions.values_mut() {
            if let SessionState::Ready { tunnel, .. } = &mut s.state {
                tunnel.close_all(now);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(800);
        loop {
            self.flush(Instant::now()).await;
            let quiet = self.sessions.values().all(|s| match &s.state {
                SessionState::Ready { tunnel, .. } => tunnel.is_quiet(),
                _ => true,
            });
            if quiet || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sessions = std::mem::take(&mut self.sessions);
        for (sid, s) in sessions {
            if let SessionState::Ready { tunnel, .. } = &s.state {
                let st = tunnel.ptcp_stats();
                tracing::info!(
                    "session {sid}: {} datagrams in, {} out, {} bodies in, {} out, {} resent, {} duplicates, {} out of order",
                    st.datagrams_in, st.datagrams_out, st.bodies_in, st.bodies_out, st.retransmits, st.duplicates_in, st.out_of_order_in
                );
            }
            self.unbind(&s).await;
            for t in &s.recv_tasks {
                t.abort();
            }
        }
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            self.drop_client(id, false);
        }
    }
}
