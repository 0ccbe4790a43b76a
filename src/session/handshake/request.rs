//! The cloud requests the handshake sends, by kind: shared by the cloud
//! exchange (what to send) and the timer table (when to resend).

use super::types::{Sock, Stage};

/// One cloud request the handshake sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Req {
    Warmup,
    P2pSrv,
    ProbeDevice,
    InfoDevice,
    OnlineRelay,
    RelayAgent,
    RelayStart,
    RelayChannel,
    P2pChannel,
}

impl Req {
    pub const ALL: [Req; 9] = [
        Req::Warmup,
        Req::P2pSrv,
        Req::ProbeDevice,
        Req::InfoDevice,
        Req::OnlineRelay,
        Req::RelayAgent,
        Req::RelayStart,
        Req::RelayChannel,
        Req::P2pChannel,
    ];

    pub fn stage(self) -> Stage {
        match self {
            Req::Warmup => Stage::Warmup,
            Req::P2pSrv => Stage::P2pServer,
            Req::ProbeDevice => Stage::DeviceProbe,
            Req::InfoDevice => Stage::DeviceInfo,
            Req::OnlineRelay => Stage::RelayServer,
            Req::RelayAgent => Stage::RelayLease,
            Req::RelayStart => Stage::RelayStart,
            Req::RelayChannel => Stage::RelayChannel,
            Req::P2pChannel => Stage::Channel,
        }
    }

    pub fn sock(self) -> Sock {
        match self {
            Req::P2pChannel => Sock::Device,
            _ => Sock::Relay,
        }
    }

    /// Part of the relay leg, which Auto without sign can do without.
    pub fn is_relay_leg(self) -> bool {
        matches!(
            self,
            Req::OnlineRelay | Req::RelayAgent | Req::RelayStart | Req::RelayChannel
        )
    }
}
