//! The tunnel: [`driver`] is the tokio loop of `dhp2p tunnel` (listeners,
//! TCP clients, UDP sockets per device session); [`config`] is what it is
//! told: the camera, the clouds to try, ports, timeouts and limits, built
//! the same way from command-line flags or a file.

pub mod config;
pub mod driver;

pub use driver::{
    run, CloudCandidate, PortSpec, RemotePort, Status, TunnelCounters, TunnelError, TunnelOptions,
};
