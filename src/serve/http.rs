//! The status server (axum): `/healthz`, `/api/cameras`, `/metrics` and
//! `POST /api/reload`. It reads the running set and asks the service loop
//! to reload; it decides nothing itself.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::Metrics;
use super::state::{CameraHandle, CameraSnapshot, CameraState};

/// A reload asked over HTTP; the answer is the summary or the error.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

#[derive(Clone)]
struct App {
    cameras: watch::Receiver<Vec<Arc<CameraHandle>>>,
    metrics: Arc<Metrics>,
    reload: mpsc::Sender<ReloadRequest>,
}

/// Binds `addr` (a loud warning when not loopback) and serves until
/// `shutdown` resolves.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the HTTP status server listens on {addr}, not loopback: anyone who can reach it sees \
             the cameras and can trigger reloads; put it behind a firewall or use 127.0.0.1"
        );
    }
    TcpListener::bind(addr).await
}

pub async fn serve(
    listener: TcpListener,
    cameras: watch::Receiver<Vec<Arc<CameraHandle>>>,
    metrics: Arc<Metrics>,
    reload: mpsc::Sender<ReloadRequest>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/cameras", get(cameras_json))
        .route("/metrics", get(metrics_text))
        .route("/api/reload", post(reload_now))
        .with_state(App {
            cameras,
            metrics,
            reload,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn snapshots(app: &App) -> Vec<CameraSnapshot> {
    app.cameras.borrow().iter().map(|c| c.snapshot()).collect()
}

async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let cameras = app.cameras.borrow().clone();
    let mut healthy = true;
    let mut body = String::new();
    for camera in &cameras {
        let status = camera.status.borrow().clone();
        let line = match &status.state {
            CameraState::Disabled => format!("{}: disabled", camera.name),
            CameraState::Ready { path } => format!("{}: ready ({})", camera.name, path.as_str()),
            CameraState::Lost { reason, .. } | CameraState::Failed { reason, .. } => {
                healthy = false;
                format!("{}: {}: {reason}", camera.name, status.state.name())
            }
            other => {
                healthy = false;
                match &status.last_error {
                    Some(e) => format!("{}: {} (last error: {e})", camera.name, other.name()),
                    None => format!("{}: {}", camera.name, other.name()),
                }
            }
        };
        body.push_str(&line);
        body.push('\n');
    }
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

async fn cameras_json(State(app): State<App>) -> Json<Vec<CameraSnapshot>> {
    Json(snapshots(&app))
}

async fn metrics_text(State(app): State<App>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}

async fn reload_now(State(app): State<App>) -> impl IntoResponse {
    let (tx, rx) = oneshot::channel();
    if app.reload.send(tx).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        );
    }
    match rx.await {
        Ok(Ok(summary)) => (StatusCode::OK, summary + "\n"),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, e + "\n"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        ),
    }
}
