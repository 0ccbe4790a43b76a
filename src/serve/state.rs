//! A camera's state as users (HTTP, metrics, MQTT) read it: what the
//! supervisor last decided ([`CameraStatus`], one `watch` channel per
//! camera) plus the tunnel's live counters, combined on read into a
//! [`CameraSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::tunnel::TunnelCounters;

/// How a ready camera is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Direct,
    Relay,
}

impl PathKind {
    /// From the driver's path text ("direct 1.2.3.4:5 (…)", "relay …").
    pub fn from_status(path: &str) -> PathKind {
        if path.starts_with("relay") {
            PathKind::Relay
        } else {
            PathKind::Direct
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
        }
    }
}

/// Where a camera is in its life. `Failed` needs the user (a wrong
/// password, a port in use) and is retried slowly; `Lost` is retried with
/// the normal backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraState {
    /// Configured, its task not yet running the tunnel.
    Starting,
    /// Listening; a device session is being built.
    Connecting,
    Ready {
        path: PathKind,
    },
    Lost {
        reason: String,
        next_retry: Option<SystemTime>,
    },
    Failed {
        reason: String,
        next_retry: Option<SystemTime>,
    },
    /// `enabled = false` in the file.
    Disabled,
    /// Removed or shutting down.
    Stopped,
}

impl CameraState {
    /// The lowercase name used in JSON, metrics and MQTT.
    pub fn name(&self) -> &'static str {
        match self {
            CameraState::Starting => "starting",
            CameraState::Connecting => "connecting",
            CameraState::Ready { .. } => "ready",
            CameraState::Lost { .. } => "lost",
            CameraState::Failed { .. } => "failed",
            CameraState::Disabled => "disabled",
            CameraState::Stopped => "stopped",
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, CameraState::Ready { .. })
    }
}

/// What the supervisor publishes on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraStatus {
    pub state: CameraState,
    /// When `state` was entered.
    pub since: SystemTime,
    /// The last reason the camera was not ready (kept once ready again).
    pub last_error: Option<String>,
    /// The local addresses clients connect to (empty while not listening).
    pub listening: Vec<std::net::SocketAddr>,
}

impl CameraStatus {
    pub fn new(state: CameraState) -> CameraStatus {
        CameraStatus {
            state,
            since: SystemTime::now(),
            last_error: None,
            listening: Vec::new(),
        }
    }
}

/// A command for one camera's supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraCommand {
    /// Drop the tunnel and reconnect now (MQTT `restart`).
    Restart,
}

/// One camera as everyone outside its supervisor sees it. Cheap to clone
/// (`Arc` it); lives as long as the camera is in the running set.
#[derive(Debug)]
pub struct CameraHandle {
    pub name: String,
    pub serial: String,
    pub status: watch::Receiver<CameraStatus>,
    pub counters: Arc<TunnelCounters>,
    /// Tunnel restarts after the first start (errors, restarts, losses).
    pub reconnects: Arc<AtomicU64>,
    pub(crate) commands: mpsc::UnboundedSender<CameraCommand>,
}

impl CameraHandle {
    /// A receiver that wakes on every state change (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<CameraStatus> {
        self.status.clone()
    }

    /// Asks the supervisor to drop the tunnel and reconnect at once.
    pub fn command(&self, command: CameraCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    /// State and counters now.
    pub fn snapshot(&self) -> CameraSnapshot {
        let status = self.status.borrow().clone();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (path, next_retry) = match &status.state {
            CameraState::Ready { path } => (Some(*path), None),
            CameraState::Lost { next_retry, .. } | CameraState::Failed { next_retry, .. } => {
                (None, *next_retry)
            }
            _ => (None, None),
        };
        let live = status.state.is_ready();
        CameraSnapshot {
            name: self.name.clone(),
            serial: mask_serial(&self.serial),
            state: status.state.name(),
            path,
            since: rfc3339(status.since),
            next_retry: next_retry.map(rfc3339),
            last_error: status.last_error.clone(),
            listening: status.listening.iter().map(|a| a.to_string()).collect(),
            sessions: if live { get(&c.sessions) } else { 0 },
            realms: if live { get(&c.realms) } else { 0 },
            clients: get(&c.clients),
            clients_accepted: get(&c.clients_accepted),
            bytes_from_device: get(&c.bytes_from_device),
            bytes_to_device: get(&c.bytes_to_device),
            retransmissions: get(&c.retransmissions),
            reconnects: get(&self.reconnects),
        }
    }
}

/// A camera at one instant: the JSON of `/api/cameras` (and MQTT's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraSnapshot {
    pub name: String,
    /// All but the last 4 characters masked.
    pub serial: String,
    pub state: &'static str,
    pub path: Option<PathKind>,
    /// RFC 3339, UTC: when `state` was entered.
    pub since: String,
    pub next_retry: Option<String>,
    pub last_error: Option<String>,
    pub listening: Vec<String>,
    pub sessions: u64,
    pub realms: u64,
    pub clients: u64,
    pub clients_accepted: u64,
    pub bytes_from_device: u64,
    pub bytes_to_device: u64,
    pub retransmissions: u64,
    pub reconnects: u64,
}

/// `ABC123456789XYZ` → `***********9XYZ`.
pub fn mask_serial(serial: &str) -> String {
    let n = serial.chars().count();
    serial
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_keep_only_their_last_four() {
        assert_eq!(mask_serial("ABC123456789XYZ"), "***********9XYZ");
        assert_eq!(mask_serial("XYZ"), "XYZ");
    }

    #[test]
    fn a_snapshot_hides_sessions_unless_ready() {
        let (tx, rx) = watch::channel(CameraStatus::new(CameraState::Connecting));
        let (commands, _) = mpsc::unbounded_channel();
        let handle = CameraHandle {
            name: "door".into(),
            serial: "ABC123456789XYZ".into(),
            status: rx,
            counters: Arc::default(),
            reconnects: Arc::default(),
            commands,
        };
        handle.counters.sessions.store(1, Ordering::Relaxed);
        assert_eq!(handle.snapshot().sessions, 0);
        assert_eq!(handle.snapshot().state, "connecting");
        tx.send_modify(|s| {
            s.state = CameraState::Ready {
                path: PathKind::Relay,
            }
        });
        let snap = handle.snapshot();
        assert_eq!(
            (snap.state, snap.path, snap.sessions),
            ("ready", Some(PathKind::Relay), 1)
        );
    }
}
