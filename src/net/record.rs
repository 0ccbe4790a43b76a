//! `--record FILE.pcap` and `--tap ADDR`: every datagram a role sends or
//! receives, as a pcap file and as a live pcap stream over TCP.
//!
//! **Captures contain authentication material** (WSSE digests, device keys,
//! PTCP auth exchanges, the media itself). That is why the CLI binds the tap
//! to loopback unless told otherwise, and why a capture file should be
//! handled like a password file.
//!
//! A [`Recorder`] is a cheap cloneable handle; [`Recorder::disabled`] makes
//! `record` a single branch. Frames are encoded once by
//! [`capture::UdpPcapWriter`](crate::capture::UdpPcapWriter) and the same
//! bytes go to the file and to each tap client:
//! - the file is written frame by frame with no user-space buffering, so a
//!   crash still leaves a readable capture;
//! - each tap client gets the pcap global header, then every frame recorded
//!   after it joined, through a bounded queue ([`TAP_QUEUE_FRAMES`]). A
//!   client that falls that far behind is dropped: a slow reader must never
//!   slow the datagram path.
//!
//! This module is the only place in the drivers that reads the system clock
//! (for the capture timestamps).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::capture::UdpPcapWriter;

/// Frames queued per tap client before it is considered too slow and dropped.
pub const TAP_QUEUE_FRAMES: usize = 10_000;

/// How long `finish` waits for tap clients to receive their queued frames.
pub const TAP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes a tap writer gathers from its queue into one socket write.
const TAP_WRITE_BATCH: usize = 64 * 1024;

/// A handle every socket loop calls for each datagram sent or received.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("enabled", &self.is_enabled())
            .field("frames_written", &self.frames_written())
            .field("tap_clients", &self.tap_clients())
            .finish()
    }
}

struct Inner {
    /// The `--record` file, named again when it is closed.
    record_path: Option<PathBuf>,
    state: Mutex<State>,
    frames: AtomicU64,
    listener: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    /// Encodes into `staging`, from where each frame's bytes are taken.
    encoder: UdpPcapWriter<Staging>,
    staging: Arc<Mutex<Vec<u8>>>,
    /// The pcap global header, sent first to each tap client.
    header: Arc<[u8]>,
    file: Option<File>,
    /// The first write error on the file, reported by `finish`.
    file_error: Option<io::Error>,
    clients: Vec<TapClient>,
    finished: bool,
}

struct TapClient {
    peer: SocketAddr,
    queue: mpsc::Sender<Arc<[u8]>>,
    task: JoinHandle<()>,
}

/// The `io::Write` that `UdpPcapWriter` encodes into. `UdpPcapWriter` only
/// gives its writer back by value, so the bytes are shared instead; the lock
/// is only ever taken under the state lock, so it is never contended.
struct Staging(Arc<Mutex<Vec<u8>>>);

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Locks, ignoring poisoning: every critical section here leaves the state
/// valid at each step, so a panic elsewhere must not stop the recording.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    /// A recorder that records nothing, at the cost of one branch per call.
    pub fn disabled() -> Self {
        Recorder { inner: None }
    }

    /// Opens (truncates) `record` and listens for tap clients on exactly
    /// `tap`. Returns the tap's actual address (useful with port 0). With
    /// neither, returns [`Recorder::disabled`]. Must run inside a tokio
    /// runtime when `tap` is given.
    pub async fn start(
        record: Option<PathBuf>,
        tap: Option<SocketAddr>,
    ) -> io::Result<(Recorder, Option<SocketAddr>)> {
        if record.is_none() && tap.is_none() {
            return Ok((Recorder::disabled(), None));
        }
        let staging = Arc::new(Mutex::new(Vec::new()));
        let encoder = UdpPcapWriter::new(Staging(staging.clone()))?;
        let header: Arc<[u8]> = std::mem::take(&mut *lock(&staging)).into();

        let record_path = record.clone();
        let file = match record {
            Some(path) => {
                let mut file = File::create(&path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create capture file {}: {e}", path.display()),
                    )
                })?;
                file.write_all(&header).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot write capture file {}: {e}", path.display()),
                    )
                })?;
                Some(file)
            }
            None => None,
        };
        let listener = match tap {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen for tap clients on {addr}: {e}"),
                )
            })?),
            None => None,
        };
        let tap_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let inner = Arc::new(Inner {
            record_path,
            state: Mutex::new(State {
                encoder,
                staging,
                header,
                file,
                file_error: None,
                clients: Vec::new(),
                finished: false,
            }),
            frames: AtomicU64::new(0),
            listener: Mutex::new(None),
        });
        if let Some(listener) = listener {
            let task = tokio::spawn(accept_tap_clients(listener, Arc::downgrade(&inner)));
            *lock(&inner.listener) = Some(task);
        }
        if let Some(addr) = tap_addr {
            tracing::info!("pcap tap listening on {addr} (captures contain auth material)");
            crate::net::listen::warn_if_exposed(
                addr,
                "a live capture holding authentication material (logins, digests, DevAuth)",
            );
        }
        Ok((Recorder { inner: Some(inner) }, tap_addr))
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records one datagram as seen on the wire at this moment. Errors are
    /// logged, never returned: recording must not disturb the datagram path.
    pub fn record(&self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        if let Some(inner) = &self.inner {
            inner.record(src, dst, payload);
        }
    }

    /// [`Recorder::record`] for socket addresses as tokio returns them;
    /// IPv4-mapped IPv6 addresses are recorded as IPv4, other IPv6 traffic
    /// is skipped (the pcap writer only builds IPv4 frames).
    pub fn record_any(&self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let Some(inner) = &self.inner else { return };
        match (as_v4(src), as_v4(dst)) {
            (Some(src), Some(dst)) => inner.record(src, dst, payload),
            _ => tracing::debug!("not recording IPv6 datagram {src} -> {dst}"),
        }
    }

    /// Datagrams recorded so far (whether or not a tap client was watching).
    pub fn frames_written(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.frames.load(Ordering::Relaxed))
    }

    /// Tap clients currently connected and being fed.
    pub fn tap_clients(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| {
            lock(&i.state)
                .clients
                .iter()
                .filter(|c| !c.queue.is_closed())
                .count()
        })
    }

    /// Stops recording for every clone: closes the file, stops accepting tap
    /// clients and gives connected ones up to [`TAP_DRAIN_TIMEOUT`] to
    /// receive their queued frames before closing their connections. Returns
    /// the first error writing the file, if any. Idempotent.
    pub async fn finish(&self) -> io::Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        if let Some(listener) = lock(&inner.listener).take() {
            listener.abort();
        }
        let (writers, result) = {
            let mut state = lock(&inner.state);
            if let (Some(path), false) = (&inner.record_path, state.finished) {
                tracing::info!(
                    "wrote {p}; it holds serials, credentials and addresses: \
                     `dhp2p redact {p} -o public.pcap` makes a copy to share",
                    p = path.display()
                );
            }
            state.finished = true;
            // Dropping the file closes it; every frame is already written.
            state.file = None;
            let result = state.file_error.take().map_or(Ok(()), Err);
            // Dropping each queue sender lets its writer drain and hang up.
            let writers: Vec<_> = state.clients.drain(..).map(|c| c.task).collect();
            (writers, result)
        };
        let deadline = tokio::time::Instant::now() + TAP_DRAIN_TIMEOUT;
        for mut writer in writers {
            if tokio::time::timeout_at(deadline, &mut writer)
                .await
                .is_err()
            {
                tracing::warn!("tap client did not take its last frames in time; closing it");
                writer.abort();
            }
        }
        result
    }
}

fn as_v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, addr.port())),
        IpAddr::V6(_) => None,
    }
}

impl Inner {
    fn record(&self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let mut state = lock(&self.state);
        if state.finished {
            return;
        }
        if state.file.is_none() && state.clients.is_empty() {
            // A tap nobody watches: nothing to encode.
            self.frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Read under the lock, so timestamps never go backwards in the file.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let encoded = state.encoder.write_udp(since_epoch, src, dst, payload);
        let frame = std::mem::take(&mut *lock(&state.staging));
        if let Err(e) = encoded {
            tracing::warn!(
                "cannot record {}-byte datagram {src} -> {dst}: {e}",
                payload.len()
            );
            return;
        }
        if let Some(file) = &mut state.file {
            // One unbuffered write per frame: readable after every datagram.
            if let Err(e) = file.write_all(&frame) {
                tracing::error!("capture file write failed, recording to it stops: {e}");
                state.file = None;
                state.file_error = Some(e);
            }
        }
        if !state.clients.is_empty() {
            let frame: Arc<[u8]> = frame.into();
            state
                .clients
                .retain(|client| match client.queue.try_send(frame.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            "tap client {} fell {TAP_QUEUE_FRAMES} frames behind; disconnecting it",
                            client.peer
                        );
                        client.task.abort();
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
        }
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    fn add_tap_client(&self, stream: TcpStream, peer: SocketAddr) {
        let mut state = lock(&self.state);
        if state.finished {
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("tap client {peer}: cannot set TCP_NODELAY: {e}");
        }
        // One slot more than the frame budget, for the global header.
        let (queue, frames) = mpsc::channel(TAP_QUEUE_FRAMES + 1);
        if queue.try_send(state.header.clone()).is_err() {
            return;
        }
        let task = tokio::spawn(feed_tap_client(stream, frames, peer));
        tracing::info!("tap client {peer} connected");
        state.clients.push(TapClient { peer, queue, task });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.listener).take() {
            listener.abort();
        }
        // The file closes on drop; tap writers drain and end once their
        // queue senders, dropped with the state, are gone.
    }
}

/// Accepts tap clients until the recorder is gone or finished.
async fn accept_tap_clients(listener: TcpListener, recorder: Weak<Inner>) {
    loop {
        let accepted = listener.accept().await;
        let Some(inner) = recorder.upgrade() else {
            return;
        };
        match accepted {
            Ok((stream, peer)) => inner.add_tap_client(stream, peer),
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("tap accept failed: {e}");
                drop(inner);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Writes the queued pcap bytes to one tap client until the queue closes or
/// the client hangs up.
async fn feed_tap_client(
    stream: TcpStream,
    mut frames: mpsc::Receiver<Arc<[u8]>>,
    peer: SocketAddr,
) {
    let (mut from_client, mut to_client) = stream.into_split();
    let mut batch = Vec::new();
    let mut ignored = [0u8; 256];
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                batch.clear();
                batch.extend_from_slice(&frame);
                while batch.len() < TAP_WRITE_BATCH {
                    match frames.try_recv() {
                        Ok(frame) => batch.extend_from_slice(&frame),
                        Err(_) => break,
                    }
                }
                if let Err(e) = to_client.write_all(&batch).await {
                    tracing::info!("tap client {peer} left: {e}");
                    return;
                }
            }
            // Tap clients send nothing; a read only tells us they hung up.
            read = from_client.read(&mut ignored) => {
                if matches!(read, Ok(0) | Err(_)) {
                    tracing::info!("tap client {peer} disconnected");
                    return;
                }
            }
        }
    }
    if let Err(e) = to_client.shutdown().await {
        tracing::debug!("tap client {peer}: shutdown failed: {e}");
    }
}
