//! What the tunnel driver is told: ports as users write them, the clouds
//! to try (resolved), and ready-made options for a cloud on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use super::driver::{CloudCandidate, PortSpec, RemotePort, TunnelOptions};
use crate::codec::cloud::Dialect;
use crate::codec::identity::{self, CloudProfile};
use crate::net::record::Recorder;
use crate::session::handshake::HandshakeConfig;
use crate::session::tunnel::TunnelConfig;

/// `[bind_addr:]local_port:remote_port`; remote `RTSP` means the device's
/// rtspport from /info/device (554 when unknown).
impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (head, remote) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected [BIND_ADDR:]LOCAL_PORT:REMOTE_PORT"))?;
        let remote = if remote.eq_ignore_ascii_case("rtsp") {
            RemotePort::Rtsp
        } else {
            RemotePort::Port(
                remote
                    .parse()
                    .map_err(|_| format!("{s:?}: remote port {remote:?} is not a port or RTSP"))?,
            )
        };
        let (bind, local) = match head.rsplit_once(':') {
            Some((addr, port)) => (
                addr.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?,
                port,
            ),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), head),
        };
        let local = local
            .parse()
            .map_err(|_| format!("{s:?}: local port {local:?} is not a port number"))?;
        Ok(PortSpec {
            bind,
            local,
            remote,
        })
    }
}

/// The clouds to try, resolved, in order.
pub async fn resolve_clouds(
    spec: Option<&str>,
    dialect: Option<Dialect>,
) -> anyhow::Result<Vec<CloudCandidate>> {
    let env = |k: &str| std::env::var(k).ok();
    let profiles: Vec<CloudProfile> = match spec {
        Some(s) => vec![identity::resolve(s)?],
        None => {
            let mut all = identity::profiles();
            // The retired pair draws 401/403 nowadays (FIELD-NOTES C7): last.
            all.sort_by_key(|p| p.name == "easy4ip-retired");
            all
        }
    };
    let mut out = Vec::new();
    for profile in profiles {
        let mut profile = profile.with_overrides(env)?;
        if let Some(d) = dialect {
            profile.dialect = d;
        }
        let target = profile.address();
        let resolved = tokio::net::lookup_host(target.as_str())
            .await
            .map(|addrs| addrs.filter(SocketAddr::is_ipv4).collect::<Vec<_>>());
        match resolved {
            Ok(addrs) => {
                if let Some(addr) = addrs.first().copied() {
                    out.push(CloudCandidate { profile, addr });
                }
            }
            Err(e) => tracing::warn!("cannot resolve the {} cloud ({target}): {e}", profile.name),
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no cloud address could be resolved: check the network or --cloud"
    );
    Ok(out)
}

/// Options for a tunnel to a cloud on loopback (the emulator): `demo`,
/// `tools/bench` and tests. One listener on 127.0.0.1:`local_port`.
pub fn loopback_options(
    cloud: SocketAddr,
    serial: &str,
    credentials: Option<(String, String)>,
    local_port: u16,
    remote: RemotePort,
) -> anyhow::Result<TunnelOptions> {
    let profile = identity::resolve(&cloud.to_string())?;
    let mut handshake = HandshakeConfig::new(serial.to_string(), cloud, profile.clone());
    handshake.credentials = credentials;
    Ok(TunnelOptions {
        serial: serial.to_string(),
        clouds: vec![CloudCandidate {
            profile,
            addr: cloud,
        }],
        handshake,
        tunnel: TunnelConfig::default(),
        ports: vec![PortSpec {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local: local_port,
            remote,
        }],
        udp_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        hold_timeout: Duration::from_secs(15),
        bind_delay: Duration::from_millis(300),
        max_sessions: 8,
        keep_warm: true,
        max_backoff: Duration::from_secs(5),
        recorder: Recorder::disabled(),
    })
}
