//! `dhp2p probe`'s tokio driver: many serials, a bounded number at a time,
//! each through the sans-IO [`Probe`](crate::session::probe::Probe) (and,
//! with `--deep`, a [`Handshake`](crate::session::handshake::Handshake)) on
//! its own UDP socket, every cloud request waiting for its turn at that
//! cloud's [`RateLimiter`]. It moves bytes and sleeps; every protocol
//! decision is the state machines'.

mod deep;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::session::probe::{Probe, ProbeCloud, ProbeConfig, ProbeReport, RateLimiter};

/// How a run probes.
#[derive(Clone)]
pub struct ProbeOptions {
    /// Asked in this order, resolved.
    pub clouds: Vec<ProbeCloud>,
    /// Serials probed at once.
    pub jobs: usize,
    /// Requests per second per cloud.
    pub rate: f64,
    /// The whole probe of one serial (the deep handshake has its own cap).
    pub timeout: Duration,
    /// Sends of one request before it counts as unanswered.
    pub attempts: u32,
    /// Local address of the probes' UDP sockets.
    pub udp_bind: IpAddr,
    /// A full handshake with every online device.
    pub deep: bool,
    /// Device user and password for `--deep`.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for ProbeOptions {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("clouds", &self.clouds)
            .field("jobs", &self.jobs)
            .field("rate", &self.rate)
            .field("timeout", &self.timeout)
            .field("deep", &self.deep)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

type Limiter = Arc<Mutex<RateLimiter>>;

/// Probes every serial (each at most once at a time: callers pass each
/// device once) and returns the reports in the order given. `on_done` sees
/// each report as it finishes (progress).
pub async fn probe_all(
    serials: Vec<String>,
    opts: ProbeOptions,
    on_done: impl Fn(&ProbeReport) + Send + Sync + 'static,
) -> Vec<ProbeReport> {
    let opts = Arc::new(opts);
    let limiter: Limiter = Arc::new(Mutex::new(RateLimiter::new(opts.rate)));
    let permits = Arc::new(Semaphore::new(opts.jobs.max(1)));
    let on_done = Arc::new(on_done);
    let mut tasks = Vec::new();
    for (i, serial) in serials.iter().enumerate() {
        let (opts, limiter, permits, on_done) = (
            opts.clone(),
            limiter.clone(),
            permits.clone(),
            on_done.clone(),
        );
        let serial = serial.clone();
        let seed = rand::random::<u64>() ^ i as u64;
        tasks.push(tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return ProbeReport::failed(&serial, "the run was stopped".to_owned());
            };
            let report = probe_serial(&serial, &opts, &limiter, seed).await;
            on_done(&report);
            report
        }));
    }
    let mut reports = Vec::new();
    for (task, serial) in tasks.into_iter().zip(serials) {
        reports.push(match task.await {
            Ok(report) => report,
            Err(e) => ProbeReport::failed(&serial, format!("the probe task ended: {e}")),
        });
    }
    reports
}

/// The probe of one serial, then the deep handshake when asked for and the
/// device is online.
async fn probe_serial(
    serial: &str,
    opts: &ProbeOptions,
    limiter: &Limiter,
    seed: u64,
) -> ProbeReport {
    let mut report = match lookup(serial, opts, limiter, seed).await {
        Ok(report) => report,
        Err(e) => return ProbeReport::failed(serial, e),
    };
    if opts.deep && report.verdict == crate::session::probe::Verdict::Online {
        let cloud = opts
            .clouds
            .iter()
            .find(|c| Some(&c.profile.name) == report.cloud.as_ref())
            .cloned();
        if let Some(cloud) = cloud {
            report.deep = Some(deep::run(serial, &cloud, opts, limiter, seed).await);
        }
    }
    report
}

/// Runs the sans-IO [`Probe`] on one socket.
async fn lookup(
    serial: &str,
    opts: &ProbeOptions,
    limiter: &Limiter,
    seed: u64,
) -> Result<ProbeReport, String> {
    let sock = UdpSocket::bind(SocketAddr::new(opts.udp_bind, 0))
        .await
        .map_err(|e| format!("cannot open a UDP socket on {}: {e}", opts.udp_bind))?;
    let mut config = ProbeConfig::new(serial, opts.clouds.clone());
    config.timeout = opts.timeout;
    config.attempts = opts.attempts.max(1);
    let mut probe = Probe::new(config, Instant::now().into_std(), seed);
    let mut buf = vec![0u8; 65536];
    while !probe.is_done() {
        if let Some(bucket) = probe.wants_to_send().map(str::to_owned) {
            wait_turn(limiter, &bucket).await;
            let now = Instant::now().into_std();
            probe.handle_timeout(now);
            if let Some(t) = probe.poll_transmit(now, unix_now()) {
                tracing::debug!("probe {serial}: request to {} ({})", t.to, t.bucket);
                // A failed send is a lost datagram: the resend timer covers it.
                let _ = sock.send_to(&t.payload, t.to).await;
            }
            continue;
        }
        let Some(wake) = probe.next_timeout() else {
            break;
        };
        tokio::select! {
            received = sock.recv_from(&mut buf) => match received {
                Ok((n, from)) => probe.handle_datagram(Instant::now().into_std(), unix_now(), from, &buf[..n]),
                // An ICMP error from an earlier send (FIELD-NOTES §4.4): not fatal.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        probe.handle_timeout(Instant::now().into_std());
    }
    Ok(probe.into_report())
}

/// Sleeps until this request's slot at `cloud`.
async fn wait_turn(limiter: &Limiter, cloud: &str) {
    let now = Instant::now().into_std();
    let slot = match limiter.lock() {
        Ok(mut limit) => limit.reserve(cloud, now),
        // A poisoned lock means a panic elsewhere; go on without a slot.
        Err(_) => now,
    };
    tokio::time::sleep_until(slot.into()).await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
