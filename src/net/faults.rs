//! Seeded fault injection for one direction of a leg: `--loss PCT --dup PCT
//! --reorder PCT --delay MS --seed N`.
//!
//! [`FaultLink`] is sans-IO: datagrams go in with `push(now, item)` and come
//! out of `poll(now)` once their release time has come, so the same link
//! drives both the tokio sockets ([`FaultySender`]) and simulated links in
//! tests, and a seed reproduces a run exactly.
//!
//! Semantics, per datagram pushed:
//! - **loss**: dropped with probability `loss_pct`; nothing else happens.
//! - **delay**: released `delay` after it was pushed.
//! - **reorder**: with probability `reorder_pct`, held back a further random
//!   time in (0, hold], hold = `delay`, or 20 ms when `delay` is 0, so later
//!   datagrams overtake it.
//! - **dup**: with probability `dup_pct` an extra copy is queued; the copy
//!   gets the delay and its own reorder roll, so it may arrive apart from the
//!   original.
//!
//! The queue is bounded ([`DEFAULT_QUEUE_CAP`]): a datagram that would exceed
//! it is dropped and counted as `overflow`, so a huge `--delay` under load
//! cannot exhaust memory.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::record::Recorder;

/// How long `--reorder` holds a datagram back when `--delay` is 0.
pub const DEFAULT_REORDER_HOLD: Duration = Duration::from_millis(20);

/// Most datagrams one link holds at once; beyond it they count as `overflow`.
pub const DEFAULT_QUEUE_CAP: usize = 100_000;

/// Longest `--delay` accepted: longer is surely a typo, and keeps `Instant`
/// arithmetic far from overflow.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The faults the user asked for. All zero means a transparent link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// `--loss`: percentage of datagrams dropped, 0..=100.
    pub loss_pct: f64,
    /// `--dup`: percentage of datagrams sent twice, 0..=100.
    pub dup_pct: f64,
    /// `--reorder`: percentage of datagrams held back so later ones overtake them.
    pub reorder_pct: f64,
    /// `--delay`: added to every datagram.
    pub delay: Duration,
    /// `--seed`: makes a run reproducible.
    pub seed: u64,
}

/// A `FaultConfig` the user cannot have meant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    #[error("{flag} must be a percentage from 0 to 100, got {value}")]
    PercentOutOfRange { flag: &'static str, value: f64 },
    #[error("--delay must be at most {max_ms} ms, got {got_ms} ms")]
    DelayTooLong { got_ms: u128, max_ms: u128 },
}

impl FaultConfig {
    /// A link that passes everything at once, in order.
    pub fn none() -> Self {
        FaultConfig::default()
    }

    /// True when no fault is configured (the seed alone changes nothing).
    pub fn is_none(&self) -> bool {
        self.loss_pct == 0.0
            && self.dup_pct == 0.0
            && self.reorder_pct == 0.0
            && self.delay.is_zero()
    }

    /// Checks the values the user typed; the error names the flag.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        for (flag, value) in [
            ("--loss", self.loss_pct),
            ("--dup", self.dup_pct),
            ("--reorder", self.reorder_pct),
        ] {
            // `contains` is false for NaN, so NaN is rejected too.
            if !(0.0..=100.0).contains(&value) {
                return Err(FaultConfigError::PercentOutOfRange { flag, value });
            }
        }
        if self.delay > MAX_DELAY {
            return Err(FaultConfigError::DelayTooLong {
                got_ms: self.delay.as_millis(),
                max_ms: MAX_DELAY.as_millis(),
            });
        }
        Ok(())
    }

    /// How long a reordered datagram may be held back (beyond `delay`).
    pub fn reorder_hold(&self) -> Duration {
        if self.delay.is_zero() {
            DEFAULT_REORDER_HOLD
        } else {
            self.delay
        }
    }

    /// The same values forced into range, so a link never misbehaves on a
    /// config that skipped `validate`.
    fn clamped(&self) -> FaultConfig {
        let pct = |v: f64| if v.is_nan() { 0.0 } else { v.clamp(0.0, 100.0) };
        FaultConfig {
            loss_pct: pct(self.loss_pct),
            dup_pct: pct(self.dup_pct),
            reorder_pct: pct(self.reorder_pct),
            delay: self.delay.min(MAX_DELAY),
            seed: self.seed,
        }
    }
}

/// What a link did so far. Invariant:
/// `pushed + duplicated == passed + dropped + overflow + queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Datagrams given to `push`.
    pub pushed: u64,
    /// Datagrams handed out by `poll` (copies included).
    pub passed: u64,
    /// Datagrams dropped by `--loss`.
    pub dropped: u64,
    /// Extra copies made by `--dup`.
    pub duplicated: u64,
    /// Datagrams (or copies) held back by `--reorder`.
    pub reordered: u64,
    /// Datagrams (or copies) given the `--delay`.
    pub delayed: u64,
    /// Datagrams (or copies) dropped because the queue was full.
    pub overflow: u64,
}

/// A queued item; the heap is a min-heap on (release, seq).
struct Pending<T> {
    release: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        self.release == other.release && self.seq == other.seq
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap pops the greatest, we want the earliest.
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

/// One direction of a faulty link, sans-IO. See the module docs.
pub struct FaultLink<T> {
    config: FaultConfig,
    rng: SmallRng,
    queue: BinaryHeap<Pending<T>>,
    next_seq: u64,
    capacity: usize,
    stats: FaultStats,
}

impl<T: Clone> FaultLink<T> {
    /// A link for one direction. `stream` tells the directions (or legs) built
    /// from one config apart, so each gets its own random stream.
    pub fn new(config: &FaultConfig, stream: u64) -> Self {
        Self::with_capacity(config, stream, DEFAULT_QUEUE_CAP)
    }

    /// Like [`FaultLink::new`] with a queue bound other than the default.
    pub fn with_capacity(config: &FaultConfig, stream: u64, capacity: usize) -> Self {
        // The golden-ratio multiplier spreads small stream numbers, so
        // (seed 1, stream 0) and (seed 0, stream 1) differ.
        let seed = config.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        FaultLink {
            config: config.clamped(),
            rng: SmallRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            next_seq: 0,
            capacity,
            stats: FaultStats::default(),
        }
    }

    /// Offers a datagram at `now`; it comes out of `poll` when due, or never.
    pub fn push(&mut self, now: Instant, item: T) {
        self.stats.pushed += 1;
        if self.config.is_none() {
            self.enqueue(now, item);
            return;
        }
        if self.roll(self.config.loss_pct) {
            self.stats.dropped += 1;
            return;
        }
        if self.roll(self.config.dup_pct) {
            self.stats.duplicated += 1;
            let copy = item.clone();
            self.schedule(now, item);
            self.schedule(now, copy);
        } else {
            self.schedule(now, item);
        }
    }
}

impl<T> FaultLink<T> {
    /// The next item whose release time is at or before `now`, in release
    /// order (FIFO among equal release times).
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        if self.queue.peek()?.release > now {
            return None;
        }
        let pending = self.queue.pop()?;
        self.stats.passed += 1;
        Some(pending.item)
    }

    /// When the earliest queued item is due; `None` when the queue is empty.
    pub fn next_release(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.release)
    }

    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Items queued and not yet released.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// True with probability `pct` percent. `gen::<f64>()` is in [0, 1), so
    /// 0 never hits and 100 always does.
    fn roll(&mut self, pct: f64) -> bool {
        pct > 0.0 && self.rng.gen::<f64>() * 100.0 < pct
    }

    /// Applies delay and reorder to one datagram (or copy) and queues it.
    fn schedule(&mut self, now: Instant, item: T) {
        let mut release = now;
        if !self.config.delay.is_zero() {
            self.stats.delayed += 1;
            release = add_or_saturate(release, self.config.delay);
        }
        if self.roll(self.config.reorder_pct) {
            self.stats.reordered += 1;
            let hold_us = u64::try_from(self.config.reorder_hold().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let hold = Duration::from_micros(self.rng.gen_range(1..=hold_us));
            release = add_or_saturate(release, hold);
        }
        self.enqueue(release, item);
    }

    fn enqueue(&mut self, release: Instant, item: T) {
        if self.queue.len() >= self.capacity {
            self.stats.overflow += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.queue.push(Pending { release, seq, item });
    }
}

/// `at + by`, or `at` itself in the (unreachable after clamping) case that
/// the sum does not fit an `Instant`.
fn add_or_saturate(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or(at)
}

/// The state the sender and its release task share.
struct SenderShared {
    link: Mutex<FaultLink<(Vec<u8>, SocketAddr)>>,
    wake: Notify,
    closing: AtomicBool,
}

impl SenderShared {
    fn link(&self) -> MutexGuard<'_, FaultLink<(Vec<u8>, SocketAddr)>> {
        // A panic while holding the lock leaves the queue consistent (every
        // method leaves it a valid heap), so a poisoned lock is still usable.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side of a UDP socket with faults in front of it.
///
/// `send_to` queues into a [`FaultLink`]; a background task releases due
/// datagrams onto the socket and records exactly those with the
/// [`Recorder`]. Datagrams the faults drop are counted in [`FaultStats`] and
/// never recorded, so a capture shows what really went on the wire. With no
/// faults configured it sends directly, with no task and no queue.
///
/// The receiving direction of a leg applies its own `FaultLink` (built with a
/// different `stream`) in the receive loop: push on `recv_from`, poll when
/// `next_release` is due.
pub struct FaultySender {
    socket: Arc<UdpSocket>,
    recorder: Recorder,
    local: SocketAddr,
    shared: Option<Arc<SenderShared>>,
    task: Option<JoinHandle<()>>,
}

impl FaultySender {
    /// Wraps `socket`. Must be called inside a tokio runtime when `config`
    /// has faults (it spawns the release task).
    pub fn new(
        socket: Arc<UdpSocket>,
        config: &FaultConfig,
        stream: u64,
        recorder: Recorder,
    ) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        if config.is_none() {
            return Ok(FaultySender {
                socket,
                recorder,
                local,
                shared: None,
                task: None,
            });
        }
        let shared = Arc::new(SenderShared {
            link: Mutex::new(FaultLink::new(config, stream)),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
        });
        let task = tokio::spawn(release_loop(
            shared.clone(),
            socket.clone(),
            recorder.clone(),
            local,
        ));
        Ok(FaultySender {
            socket,
            recorder,
            local,
            shared: Some(shared),
            task: Some(task),
        })
    }

    /// Sends `bytes` to `target` through the faults. Without faults the
    /// socket's error is returned; with faults the datagram is queued and
    /// send errors are only logged, as for a datagram lost on the way.
    pub async fn send_to(&self, bytes: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        match &self.shared {
            None => {
                let sent = self.socket.send_to(bytes, target).await?;
                self.recorder.record_any(self.local, target, bytes);
                Ok(sent)
            }
            Some(shared) => {
                shared.link().push(Instant::now(), (bytes.to_vec(), target));
                shared.wake.notify_one();
                Ok(bytes.len())
            }
        }
    }

    /// What the faults did so far (all zero without faults).
    pub fn stats(&self) -> FaultStats {
        self.shared
            .as_ref()
            .map(|s| s.link().stats())
            .unwrap_or_default()
    }

    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// Whether datagrams go through faults (else they may be sent on the
    /// socket directly, batched with others).
    pub fn has_faults(&self) -> bool {
        self.shared.is_some()
    }

    /// Lets every queued datagram go out at its release time, then stops the
    /// release task. Dropping the sender instead discards the queue.
    pub async fn close(mut self) {
        if let (Some(shared), Some(task)) = (&self.shared, self.task.take()) {
            shared.closing.store(true, AtomicOrdering::Release);
            shared.wake.notify_one();
            if let Err(e) = task.await {
                tracing::warn!("fault release task ended abnormally: {e}");
            }
        }
    }
}

impl Drop for FaultySender {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Releases due datagrams onto the socket until closed and drained.
async fn release_loop(
    shared: Arc<SenderShared>,
    socket: Arc<UdpSocket>,
    recorder: Recorder,
    local: SocketAddr,
) {
    let mut due = Vec::new();
    loop {
        let next = {
            let mut link = shared.link();
            let now = Instant::now();
            while let Some(item) = link.poll(now) {
                due.push(item);
            }
            link.next_release()
        };
        for (bytes, target) in due.drain(..) {
            match socket.send_to(&bytes, target).await {
                Ok(_) => recorder.record_any(local, target, &bytes),
                Err(e) => tracing::debug!("send to {target} failed: {e}"),
            }
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            None if shared.closing.load(AtomicOrdering::Acquire) => return,
            None => shared.wake.notified().await,
        }
    }
}
