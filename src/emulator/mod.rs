//! `dhp2p emulate-device`: a fake Easy4IPCloud (main cloud, P2P server,
//! relay, agent) and Dahua device on loopback, faithful to the protocol
//! references, so everything else runs offline. See docs/EMULATOR.md.
//!
//! `core` holds every role's state and decisions without I/O (with `cloud`,
//! `agent` and `device` adding the per-role behaviour); `driver` is the thin
//! tokio loop around it.

mod agent;
pub mod clip;
mod cloud;
pub mod config;
pub mod core;
mod device;
pub mod driver;
pub mod report;
pub mod rtsp;

pub use config::{
    AuthPolicy, CloudDialect, DeviceSpec, DeviceUnit, EmulatorConfig, FleetFile, Mode, RefuseBind,
    RoleAddrs, Service,
};
pub use core::{
    ConnId, Emulator, EmulatorStats, FleetAddrs, RealmReport, Role, TcpCommand, Transmit,
};
