//! `--deep`: a full handshake with one device, as the tunnel does it, then a
//! clean end (the relay lease unbound; no realm was opened, so there is
//! nothing to DISC). First without credentials, which tells whether the
//! device demands authentication; then, when it does and credentials were
//! given, with them, which tells whether they are accepted. The two runs
//! follow each other: never two sessions with one device at once. Each
//! takes its share of the cloud's rate limit before it starts
//! ([`HANDSHAKE_REQUESTS`] slots), then runs at the handshake's own pace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::session::handshake::{
    unbind_request, Candidate, EstablishedPath, Handshake, HandshakeConfig, HandshakeError,
    HandshakeEvent, Sock, Stage,
};
use crate::session::probe::{DeepReport, ProbeCloud};

use super::{unix_now, Limiter, ProbeOptions};

/// Cloud requests a handshake sends when nothing is lost (warm-up, look-up,
/// relay lease and start, the two channels, unbind): the slots it takes at
/// the cloud's rate limit before it starts. Spacing them out instead would
/// stretch the handshake past its own deadlines.
const HANDSHAKE_REQUESTS: u32 = 10;

/// A handshake that reached Ready.
struct Ready {
    path: String,
    time_to_ready: Duration,
}

enum Failure {
    Handshake(HandshakeError),
    Io(String),
}

impl Failure {
    fn text(&self) -> String {
        match self {
            Failure::Handshake(e) => e.to_string(),
            Failure::Io(e) => e.clone(),
        }
    }
}

/// Both handshakes as needed, summed up.
pub(super) async fn run(
    serial: &str,
    cloud: &ProbeCloud,
    opts: &ProbeOptions,
    limiter: &Limiter,
    seed: u64,
) -> DeepReport {
    let report =
        |ready: Option<Ready>, auth_required, auth_accepted, error: Option<String>| DeepReport {
            path: ready.as_ref().map(|r| r.path.clone()),
            auth_required,
            auth_accepted,
            time_to_ready: ready.map(|r| r.time_to_ready),
            error,
        };
    match handshake(serial, cloud, None, limiter, seed).await {
        Ok(ready) => report(Some(ready), false, None, None),
        Err(Failure::Handshake(HandshakeError::AuthRequired { .. })) => {
            let Some(credentials) = opts.credentials.clone() else {
                let hint = "the device requires authentication: give --username and --password";
                return report(None, true, None, Some(hint.to_owned()));
            };
            match handshake(serial, cloud, Some(credentials), limiter, seed ^ 1).await {
                Ok(ready) => report(Some(ready), true, Some(true), None),
                Err(f @ Failure::Handshake(HandshakeError::BadCredentials { .. })) => {
                    report(None, true, Some(false), Some(f.text()))
                }
                Err(f) => report(None, true, None, Some(f.text())),
            }
        }
        Err(f) => report(None, false, None, Some(f.text())),
    }
}

/// One handshake on two fresh sockets, to Ready or failure; the lease (if
/// any) is released before returning.
async fn handshake(
    serial: &str,
    cloud: &ProbeCloud,
    credentials: Option<(String, String)>,
    limiter: &Limiter,
    seed: u64,
) -> Result<Ready, Failure> {
    let now = Instant::now().into_std();
    let start_at = match limiter.lock() {
        Ok(mut limit) => limit.reserve_burst(&cloud.profile.name, now, HANDSHAKE_REQUESTS),
        Err(_) => now,
    };
    tokio::time::sleep_until(start_at.into()).await;
    let bind = SocketAddr::new(local_ip(cloud.addr), 0);
    let open = || async {
        UdpSocket::bind(bind)
            .await
            .map(Arc::new)
            .map_err(|e| Failure::Io(format!("cannot open a UDP socket on {bind}: {e}")))
    };
    let socks = [open().await?, open().await?];
    let port = |i: usize| socks[i].local_addr().map_or(0, |a| a.port());
    let mut config = HandshakeConfig::new(serial, cloud.addr, cloud.profile.clone());
    config.credentials = credentials;
    let start = Instant::now();
    let mut hs = Handshake::new(config, port(0), port(1), start.into_std(), unix_now(), seed);
    let (mut b0, mut b1) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        while let Some(t) = hs.poll_transmit(Instant::now().into_std()) {
            let _ = socks[sock_index(t.sock)].send_to(&t.payload, t.to).await;
        }
        while let Some(event) = hs.poll_event() {
            match event {
                HandshakeEvent::Stage {
                    stage,
                    elapsed,
                    detail,
                } => {
                    tracing::debug!("probe {serial}: {stage} after {elapsed:?}: {detail}");
                }
                HandshakeEvent::Established(e) => {
                    let time_to_ready = e
                        .timings
                        .iter()
                        .find(|(stage, _)| *stage == Stage::Ready)
                        .map_or_else(|| start.elapsed(), |(_, t)| *t);
                    let path = match e.path {
                        EstablishedPath::Direct {
                            via: Candidate::Lan,
                            ..
                        } => "direct-lan",
                        EstablishedPath::Direct {
                            via: Candidate::Public,
                            ..
                        } => "direct-public",
                        EstablishedPath::Relay { .. } => "relay",
                    };
                    if let Some(lease) = &e.lease {
                        let t = unbind_request(&cloud.profile, lease, unix_now(), rand::random());
                        let _ = socks[sock_index(t.sock)].send_to(&t.payload, t.to).await;
                    }
                    return Ok(Ready {
                        path: path.to_owned(),
                        time_to_ready,
                    });
                }
                HandshakeEvent::Failed(e) => return Err(Failure::Handshake(e)),
            }
        }
        let wake = hs.next_timeout().map_or_else(
            || Instant::now() + Duration::from_secs(1),
            Instant::from_std,
        );
        tokio::select! {
            r = socks[0].recv_from(&mut b0) => received(&mut hs, Sock::Device, r, &b0).await,
            r = socks[1].recv_from(&mut b1) => received(&mut hs, Sock::Relay, r, &b1).await,
            () = tokio::time::sleep_until(wake) => {}
        }
        hs.handle_timeout(Instant::now().into_std(), unix_now());
    }
}

async fn received(
    hs: &mut Handshake,
    sock: Sock,
    result: std::io::Result<(usize, SocketAddr)>,
    buf: &[u8],
) {
    match result {
        Ok((n, from)) => {
            let bytes = buf.get(..n).unwrap_or_default();
            hs.handle_datagram(Instant::now().into_std(), unix_now(), sock, from, bytes);
        }
        // An ICMP error from an earlier send (FIELD-NOTES §4.4): not fatal.
        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
    }
}

fn sock_index(sock: Sock) -> usize {
    match sock {
        Sock::Device => 0,
        Sock::Relay => 1,
    }
}

/// Loopback for a cloud on loopback (the emulator), any address otherwise.
fn local_ip(cloud: SocketAddr) -> std::net::IpAddr {
    if cloud.ip().is_loopback() {
        cloud.ip()
    } else {
        std::net::IpAddr::from([0, 0, 0, 0])
    }
}
