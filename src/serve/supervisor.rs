//! One task per camera running the tunnel driver in a loop (capped backoff
//! with jitter, the reason kept), and the running set: apply a new
//! configuration (added start, removed stop, changed restart, unchanged
//! untouched) and stop everything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::metrics::Metrics;
use super::state::{CameraCommand, CameraHandle, CameraState, CameraStatus, PathKind};
use crate::net::record::Recorder;
use crate::session::handshake::HandshakeError;
use crate::tunnel::config::{resolve_clouds, tunnel_options, CameraConfig};
use crate::tunnel::{self, Status, TunnelCounters, TunnelError};

/// First wait after a camera is lost; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Wait after a failure that needs the user (authentication, a port in use).
pub const FAILED_RETRY: Duration = Duration::from_secs(120);
/// How long stopping may take before tasks are aborted.
pub const STOP_GRACE: Duration = Duration::from_millis(1800);

struct Running {
    config: CameraConfig,
    handle: Arc<CameraHandle>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What [`Supervisor::apply`] did, by camera name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The running cameras.
pub struct Supervisor {
    running: BTreeMap<String, Running>,
    set: watch::Sender<Vec<Arc<CameraHandle>>>,
    metrics: Option<Arc<Metrics>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            running: BTreeMap::new(),
            set: watch::channel(Vec::new()).0,
            metrics: None,
        }
    }

    /// Handshake durations go to `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }

    /// The running set, in name order; changes on every apply.
    pub fn cameras(&self) -> watch::Receiver<Vec<Arc<CameraHandle>>> {
        self.set.subscribe()
    }

    /// Makes `cameras` the running set.
    pub async fn apply(&mut self, cameras: &[CameraConfig]) -> ApplySummary {
        let mut summary = ApplySummary::default();
        let wanted: BTreeMap<String, &CameraConfig> = cameras
            .iter()
            .filter_map(|c| Some((c.name.clone()?, c)))
            .collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| {
                wanted
                    .get(*n)
                    .is_none_or(|c| **c != self.running[*n].config)
            })
            .cloned()
            .collect();
        let mut stopping = Vec::new();
        for name in &gone {
            if let Some(r) = self.running.remove(name) {
                if wanted.contains_key(name) {
                    summary.restarted.push(name.clone());
                } else {
                    summary.removed.push(name.clone());
                }
                stopping.push(r);
            }
        }
        // Removed and changed cameras release their ports before the new
        // ones bind them.
        stop_all(stopping).await;
        for (name, config) in wanted {
            if self.running.contains_key(&name) {
                summary.unchanged.push(name);
                continue;
            }
            if !summary.restarted.contains(&name) {
                summary.added.push(name.clone());
            }
            let running = self.start(name.clone(), config.clone());
            self.running.insert(name, running);
        }
        self.publish();
        summary
    }

    /// Stops every camera (DISC, unbind) within [`STOP_GRACE`].
    pub async fn shutdown(&mut self) {
        let all = std::mem::take(&mut self.running).into_values().collect();
        stop_all(all).await;
        self.publish();
    }

    fn publish(&self) {
        let set = self.running.values().map(|r| r.handle.clone()).collect();
        self.set.send_replace(set);
    }

    fn start(&self, name: String, config: CameraConfig) -> Running {
        let initial = if config.enabled {
            CameraState::Starting
        } else {
            CameraState::Disabled
        };
        let (status_tx, status_rx) = watch::channel(CameraStatus::new(initial));
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = Arc::new(CameraHandle {
            name: name.clone(),
            serial: config.serial.clone(),
            status: status_rx,
            counters: Arc::new(TunnelCounters::default()),
            reconnects: Arc::new(AtomicU64::new(0)),
            commands: commands_tx,
        });
        let camera = CameraTask {
            config: config.clone(),
            status: status_tx,
            counters: handle.counters.clone(),
            reconnects: handle.reconnects.clone(),
            commands: commands_rx,
            stop: stop_rx,
            metrics: self.metrics.clone(),
        };
        let span = tracing::info_span!("camera", camera = %name);
        let task = tokio::spawn(camera.run().instrument(span));
        Running {
            config,
            handle,
            stop: stop_tx,
            task,
        }
    }
}

async fn stop_all(cameras: Vec<Running>) {
    for r in &cameras {
        let _ = r.stop.send(true);
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for mut r in cameras {
        if tokio::time::timeout_at(deadline, &mut r.task)
            .await
            .is_err()
        {
            tracing::warn!(camera = %r.handle.name, "did not stop in time; aborted");
            r.task.abort();
        }
    }
}

/// How one run of the driver ended.
enum Ended {
    Stop,
    Restart,
    Error(RunError),
}

/// Why a run could not start or stopped.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Tunnel(#[from] TunnelError),
    /// The password source or the cloud names: needs the user.
    #[error("{0}")]
    Setup(String),
}

struct CameraTask {
    config: CameraConfig,
    status: watch::Sender<CameraStatus>,
    counters: Arc<TunnelCounters>,
    reconnects: Arc<AtomicU64>,
    commands: mpsc::UnboundedReceiver<CameraCommand>,
    stop: watch::Receiver<bool>,
    metrics: Option<Arc<Metrics>>,
}

impl CameraTask {
    fn set_state(&self, state: CameraState) {
        set_state(&self.status, state);
    }

    async fn run(mut self) {
        if !self.config.enabled {
            tracing::info!("disabled in the configuration");
            let _ = self.stop.wait_for(|s| *s).await;
            return;
        }
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        loop {
            if !first {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            self.set_state(CameraState::Connecting);
            let started = Instant::now();
            let ended = self.run_once().await;
            self.status.send_modify(|s| s.listening.clear());
            let wait = match ended {
                Ended::Stop => break,
                Ended::Restart => {
                    tracing::info!("restarting on request");
                    continue;
                }
                Ended::Error(e) => {
                    // A tunnel that worked a while starts the backoff over.
                    if started.elapsed() > MAX_BACKOFF * 2 {
                        backoff = FIRST_BACKOFF;
                    }
                    let needs_user = needs_the_user(&e);
                    let wait = jitter(if needs_user { FAILED_RETRY } else { backoff });
                    if !needs_user {
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    let next_retry = Some(SystemTime::now() + wait);
                    let reason = describe(&e);
                    tracing::warn!("{reason}; retrying in {} s", wait.as_secs());
                    self.set_state(if needs_user {
                        CameraState::Failed { reason, next_retry }
                    } else {
                        CameraState::Lost { reason, next_retry }
                    });
                    wait
                }
            };
            tokio::select! {
                _ = self.stop.wait_for(|s| *s) => break,
                Some(CameraCommand::Restart) = self.commands.recv() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.set_state(CameraState::Stopped);
    }

    /// One run of the driver, its status turned into camera states.
    async fn run_once(&mut self) -> Ended {
        let password = match self.config.credential_source() {
            Some(source) => match source.read(|k| std::env::var(k).ok()) {
                Ok(p) => p,
                Err(e) => return Ended::Error(RunError::Setup(e.to_string())),
            },
            None => None,
        };
        let clouds = tokio::select! {
            _ = self.stop.wait_for(|s| *s) => return Ended::Stop,
            c = resolve_clouds(&self.config.cloud, self.config.dialect, |k| std::env::var(k).ok()) => c,
        };
        let clouds = match clouds {
            Ok(c) => c,
            Err(e) => return Ended::Error(RunError::Setup(format!("{e:#}"))),
        };
        let mut opts = tunnel_options(&self.config, password, clouds, Recorder::disabled());
        opts.counters = self.counters.clone();
        let (end_tx, mut end_rx) = watch::channel(false);
        let (status_tx, mut status_rx) = mpsc::unbounded_channel();
        let shutdown = async move {
            let _ = end_rx.wait_for(|e| *e).await;
        };
        let driver = tunnel::run(opts, shutdown, status_tx);
        tokio::pin!(driver);
        let mut why = None;
        loop {
            tokio::select! {
                result = &mut driver => {
                    return match (result, why) {
                        (Err(e), _) => Ended::Error(e.into()),
                        (Ok(()), Some(end)) => end,
                        (Ok(()), None) => Ended::Stop,
                    };
                }
                Some(status) = status_rx.recv() => {
                    on_status(&self.config, &self.status, &self.counters, self.metrics.as_deref(), status)
                }
                _ = self.stop.wait_for(|s| *s), if why.is_none() => {
                    why = Some(Ended::Stop);
                    let _ = end_tx.send(true);
                }
                Some(CameraCommand::Restart) = self.commands.recv(), if why.is_none() => {
                    why = Some(Ended::Restart);
                    let _ = end_tx.send(true);
                }
            }
        }
    }
}

/// A driver status turned into the camera's state.
fn on_status(
    config: &CameraConfig,
    camera: &watch::Sender<CameraStatus>,
    counters: &TunnelCounters,
    metrics: Option<&Metrics>,
    status: Status,
) {
    match status {
        Status::Listening(addrs) => camera.send_modify(|s| s.listening = addrs),
        Status::Ready { path, .. } => {
            let kind = PathKind::from_status(&path);
            if let Some(m) = metrics {
                let ms = counters.last_handshake_ms.load(Ordering::Relaxed);
                let name = config.name.as_deref().unwrap_or("");
                m.observe_handshake(name, kind, ms as f64 / 1000.0);
            }
            set_state(camera, CameraState::Ready { path: kind });
        }
        Status::Lost { reason } => {
            // The driver reconnects by itself.
            set_state(
                camera,
                CameraState::Lost {
                    reason: format!("lost the device ({reason}); reconnecting"),
                    next_retry: None,
                },
            );
        }
    }
}

fn set_state(camera: &watch::Sender<CameraStatus>, state: CameraState) {
    camera.send_modify(|s| {
        if let CameraState::Lost { reason, .. } | CameraState::Failed { reason, .. } = &state {
            s.last_error = Some(reason.clone());
        }
        if s.state.name() != state.name() {
            s.since = SystemTime::now();
        }
        s.state = state;
    });
}

/// Errors retrying cannot fix without the user.
fn needs_the_user(e: &RunError) -> bool {
    matches!(
        e,
        RunError::Tunnel(TunnelError::Handshake(
            HandshakeError::AuthRequired { .. } | HandshakeError::BadCredentials { .. }
        )) | RunError::Tunnel(TunnelError::Listen { .. })
            | RunError::Setup(_)
    )
}

fn describe(e: &RunError) -> String {
    match e {
        RunError::Tunnel(TunnelError::Handshake(
            HandshakeError::AuthRequired { .. } | HandshakeError::BadCredentials { .. },
        )) => format!("authentication failed: {e}"),
        other => other.to_string(),
    }
}

/// ±20 %, so cameras that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}
