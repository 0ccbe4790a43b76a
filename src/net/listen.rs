//! Listen addresses as users type them.

use std::net::SocketAddr;
use std::str::FromStr;

/// A socket address for `--expose`/`--tap`; a bare port means 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(port) = s.parse::<u16>() {
            return Ok(ListenAddr(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        s.parse()
            .map(ListenAddr)
            .map_err(|_| format!("{s:?}: expected IP:PORT or PORT"))
    }
}

/// Warns when a listener is reachable from other machines, saying what
/// anyone who connects gets.
pub fn warn_if_exposed(addr: SocketAddr, what: &str) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "listening on {addr}, which other machines can reach: anyone who connects gets {what}"
        );
    }
}
