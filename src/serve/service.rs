//! The service loop: load the file, start the cameras and the HTTP server,
//! reload on SIGHUP or `POST /api/reload`, stop on the shutdown future.

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, watch};

use super::config::{self, ServeConfig, ServeConfigError};
use super::http::{self, ReloadRequest};
use super::metrics::Metrics;
use super::mqtt;
use super::supervisor::{ApplySummary, Supervisor};
use crate::tunnel::config::CameraConfig;

/// Why serve could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] ServeConfigError),
    #[error("cannot listen on {addr} for HTTP: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the cameras of `path` until `shutdown` resolves; `reloads` yields
/// once per SIGHUP.
pub async fn run(
    path: PathBuf,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<()>,
) -> Result<(), ServeError> {
    let config = config::load(&path)?;
    let mut supervisor = Supervisor::new();
    let metrics = Metrics::new(supervisor.cameras());
    supervisor.set_metrics(metrics.clone());
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = match &config.http {
        Some(h) => {
            let listener = http::bind(h.listen)
                .await
                .map_err(|source| ServeError::Http {
                    addr: h.listen,
                    source,
                })?;
            let bound = listener.local_addr().unwrap_or(h.listen);
            tracing::info!("HTTP status on http://{bound}/ (healthz, api/cameras, metrics)");
            // Scripts and tests wait for this line.
            println!("http {bound}");
            let cameras = supervisor.cameras();
            Some(tokio::spawn(http::serve(
                listener,
                cameras,
                metrics.clone(),
                reload_tx,
                async {
                    let _ = http_stopped.await;
                },
            )))
        }
        None => None,
    };
    // MQTT reads each camera's ports (its URLs) from here.
    let (configs, configs_rx) = watch::channel(config.cameras.clone());
    let mut mqtt_task = config
        .mqtt
        .clone()
        .map(|m| mqtt::spawn(m, supervisor.cameras(), configs_rx));
    let summary = supervisor.apply(&config.cameras).await;
    tracing::info!("started {} cameras", summary.added.len());
    println!("cameras {}", summary.added.join(" "));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = reloads.recv() => {
                let _ = reload(&path, &mut supervisor, &configs).await;
            }
            Some(reply) = reload_rx.recv() => {
                let result = reload(&path, &mut supervisor, &configs).await;
                let _ = reply.send(result.map(|s| describe(&s)).map_err(|e| e.to_string()));
            }
        }
    }
    tracing::info!("stopping every camera");
    if let Some(m) = &mut mqtt_task {
        m.begin_stop();
    }
    supervisor.shutdown().await;
    if let Some(m) = mqtt_task {
        m.finish().await;
    }
    let _ = http_stop.send(());
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), t).await;
    }
    Ok(())
}

/// Re-reads the file and applies it; an invalid file changes nothing.
async fn reload(
    path: &Path,
    supervisor: &mut Supervisor,
    configs: &watch::Sender<Vec<CameraConfig>>,
) -> Result<ApplySummary, ServeConfigError> {
    let config: ServeConfig = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, the running cameras stay as they are: {e}");
            return Err(e);
        }
    };
    configs.send_replace(config.cameras.clone());
    let summary = supervisor.apply(&config.cameras).await;
    tracing::info!("reloaded: {}", describe(&summary));
    Ok(summary)
}

fn describe(s: &ApplySummary) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(",")
        }
    };
    format!(
        "added {} removed {} restarted {} unchanged {}",
        list(&s.added),
        list(&s.removed),
        list(&s.restarted),
        list(&s.unchanged)
    )
}
