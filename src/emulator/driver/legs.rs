//! The emulator's outbound paths: the fault legs (global faults, and a leg
//! per device with faults of its own) and the batch of datagrams one flush
//! sends on one socket.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{DriverOptions, Slot};
use crate::codec::classify::{kind_of, Kind};
use crate::emulator::config::DeviceUnit;
use crate::emulator::core::Role;
use crate::net::faults::{FaultLink, FaultStats, FaultySender};
use crate::net::record::Recorder;
use crate::net::udp::Datagrams;

/// A received datagram waiting in an inbound fault link.
pub(super) type Inbound = (Role, usize, SocketAddr, Bytes);

/// The fault legs: leg 0 has the global faults; a device with faults of its
/// own gets its own leg. Each leg has an agent sender and an inbound link;
/// every device socket has its own sender with its device's faults.
pub(super) struct Legs {
    pub(super) device: Vec<FaultySender>,
    pub(super) agent: Vec<FaultySender>,
    pub(super) inbound: Vec<Option<FaultLink<Inbound>>>,
    /// Device index → leg.
    pub(super) leg_of_unit: Vec<usize>,
    pub(super) recorder: Recorder,
}

impl Legs {
    pub(super) fn new(
        units: &[DeviceUnit],
        slots: &[Slot],
        options: &DriverOptions,
    ) -> io::Result<Legs> {
        let socket = |role: Role, index: usize| {
            slots
                .iter()
                .find(|s| s.role == role && s.index == index)
                .map(|s| s.socket.socket().clone())
                .ok_or_else(|| io::Error::other("socket missing"))
        };
        let rec = || options.recorder.clone();
        let global = options.faults;
        let mut legs = Legs {
            device: Vec::new(),
            agent: vec![FaultySender::new(
                socket(Role::Agent, 0)?,
                &global,
                2,
                rec(),
            )?],
            inbound: vec![(!global.is_none()).then(|| FaultLink::new(&global, 3))],
            leg_of_unit: Vec::new(),
            recorder: rec(),
        };
        for (i, unit) in units.iter().enumerate() {
            let faults = unit.faults(&global);
            // Device 0 keeps today's random streams; others get their own.
            let stream = 1 + 16 * i as u64;
            legs.device.push(FaultySender::new(
                socket(Role::Device, i)?,
                &faults,
                stream,
                rec(),
            )?);
            if unit.has_own_faults() {
                legs.leg_of_unit.push(legs.agent.len());
                legs.agent.push(FaultySender::new(
                    socket(Role::Agent, 0)?,
                    &faults,
                    stream + 1,
                    rec(),
                )?);
                legs.inbound
                    .push((!faults.is_none()).then(|| FaultLink::new(&faults, stream + 2)));
            } else {
                legs.leg_of_unit.push(0);
            }
        }
        Ok(legs)
    }

    pub(super) fn leg(&self, unit: Option<usize>) -> usize {
        unit.and_then(|u| self.leg_of_unit.get(u).copied())
            .unwrap_or(0)
    }

    pub(super) fn next_release(&self) -> Option<Instant> {
        self.inbound
            .iter()
            .flatten()
            .filter_map(FaultLink::next_release)
            .min()
    }

    pub(super) fn stats_out(&self) -> FaultStats {
        self.device
            .iter()
            .chain(&self.agent)
            .map(FaultySender::stats)
            .fold(FaultStats::default(), add_stats)
    }

    pub(super) fn stats_in(&self) -> FaultStats {
        self.inbound
            .iter()
            .flatten()
            .map(FaultLink::stats)
            .fold(FaultStats::default(), add_stats)
    }
}

/// Whether a datagram to or from `role` travels a faulty leg.
pub(super) fn on_faulty_leg(role: Role, payload: &[u8]) -> bool {
    matches!(role, Role::Device | Role::Agent)
        && matches!(kind_of(payload), Kind::Ptcp | Kind::Punch)
}

pub(super) fn add_stats(a: FaultStats, b: FaultStats) -> FaultStats {
    FaultStats {
        pushed: a.pushed + b.pushed,
        passed: a.passed + b.passed,
        dropped: a.dropped + b.dropped,
        duplicated: a.duplicated + b.duplicated,
        reordered: a.reordered + b.reordered,
        delayed: a.delayed + b.delayed,
        overflow: a.overflow + b.overflow,
    }
}

/// Datagrams of one flush from one socket to one peer, sent together
/// (GSO trains for a burst of DATA).
#[derive(Default)]
pub(super) struct Outgoing {
    slot: usize,
    to: Option<SocketAddr>,
    datagrams: Datagrams,
}

impl Outgoing {
    /// Which of `slots` is the socket of `role`/`index`: a burst comes
    /// from one socket, so the last one is checked before the search.
    pub(super) fn slot_of(&self, slots: &[Slot], role: Role, index: usize) -> Option<usize> {
        match slots.get(self.slot) {
            Some(s) if s.role == role && s.index == index => Some(self.slot),
            _ => slots
                .iter()
                .position(|s| s.role == role && s.index == index),
        }
    }

    /// Adds a datagram from `slots[slot]` to `to`; what was gathered for
    /// another socket or peer goes out first, so the order holds.
    pub(super) async fn push(
        &mut self,
        slots: &[Slot],
        slot: usize,
        to: SocketAddr,
        datagram: &[u8],
    ) {
        if self.to != Some(to) || self.slot != slot {
            self.send(slots).await;
            self.slot = slot;
            self.to = Some(to);
        }
        self.datagrams.push(datagram);
    }

    pub(super) async fn send(&mut self, slots: &[Slot]) {
        if let (Some(to), Some(slot)) = (self.to.take(), slots.get(self.slot)) {
            if let Err(e) = slot.socket.send_all(&self.datagrams, to).await {
                tracing::trace!("send to {to}: {e}");
            }
        }
        self.datagrams.clear();
    }
}
