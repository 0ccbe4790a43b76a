//! `/metrics`: Prometheus text through `prometheus-client`. Per-camera
//! values are read from the running set at each scrape (a collector); the
//! handshake-duration histogram is fed by the supervisors.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::state::{CameraHandle, CameraSnapshot, PathKind};

type Labels = Vec<(&'static str, String)>;
/// Name, help and how to read one per-camera series.
type Series<T> = (&'static str, &'static str, fn(&T) -> u64);
type HandshakeFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn handshake_histogram() -> Histogram {
    // 50 ms … ~25 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 10))
}

/// The registry and what feeds it.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    handshake: HandshakeFamily,
}

/// Reads every camera's state and counters at scrape time.
#[derive(Debug)]
struct Cameras(watch::Receiver<Vec<Arc<CameraHandle>>>);

impl Metrics {
    /// Metrics over the running set `cameras` (the supervisor's).
    pub fn new(cameras: watch::Receiver<Vec<Arc<CameraHandle>>>) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let handshake = HandshakeFamily::new_with_constructor(handshake_histogram);
        registry.register(
            "dhp2p_handshake_duration_seconds",
            "Time from the first cloud request to a ready device session",
            handshake.clone(),
        );
        registry.register_collector(Box::new(Cameras(cameras)));
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            handshake,
        })
    }

    /// One device session became ready after `seconds`.
    pub fn observe_handshake(&self, camera: &str, path: PathKind, seconds: f64) {
        self.handshake
            .get_or_create(&vec![
                ("camera", camera.to_owned()),
                ("path", path.as_str().to_owned()),
            ])
            .observe(seconds);
    }

    /// The text exposition format (Prometheus 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        out
    }
}

impl Collector for Cameras {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cameras = self.0.borrow().clone();
        let snaps: Vec<_> = cameras.iter().map(|c| (c, c.snapshot())).collect();
        let label = |name: &str| vec![("camera", name.to_owned())];
        let gauges: [Series<CameraHandle>; 4] = [
            (
                "dhp2p_camera_ready",
                "1 when the camera's tunnel is ready",
                |c| c.status.borrow().state.is_ready() as u64,
            ),
            ("dhp2p_camera_sessions", "Device sessions ready now", |c| {
                c.counters.sessions.load(Ordering::Relaxed)
            }),
            (
                "dhp2p_camera_realms",
                "Realms (device connections) open now",
                |c| c.counters.realms.load(Ordering::Relaxed),
            ),
            (
                "dhp2p_camera_clients",
                "Local TCP clients connected now",
                |c| c.counters.clients.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in gauges {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (camera, snap) in &snaps {
                let labels = label(&snap.name);
                ConstGauge::new(read(camera) as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let counters: [Series<CameraSnapshot>; 5] = [
            (
                "dhp2p_camera_received_bytes",
                "Bytes from the device to local clients",
                |s| s.bytes_from_device,
            ),
            (
                "dhp2p_camera_sent_bytes",
                "Bytes from local clients to the device",
                |s| s.bytes_to_device,
            ),
            (
                "dhp2p_camera_retransmissions",
                "PTCP retransmissions",
                |s| s.retransmissions,
            ),
            (
                "dhp2p_camera_reconnects",
                "Tunnel restarts after the first start",
                |s| s.reconnects,
            ),
            (
                "dhp2p_camera_clients_accepted",
                "Local TCP clients accepted",
                |s| s.clients_accepted,
            ),
        ];
        for (name, help, read) in counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (_, snap) in &snaps {
                let labels = label(&snap.name);
                ConstCounter::new(read(snap)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
