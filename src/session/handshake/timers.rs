//! Every deadline of the handshake in one table (quinn-proto's
//! `TimerTable`): [`Handshake::next_timeout`](super::Handshake::next_timeout)
//! is the table's minimum, and `handle_timeout` runs the expired entries in
//! the order of [`Timer`].

use std::time::Instant;

use super::request::Req;

/// One deadline. The order is the order expired timers run in: the stage
/// cap before resends, so that nothing is sent once the cap has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The early (cloud, relay, agent) flow is capped from the start.
    StageCap,
    /// The next send of one cloud request.
    Resend(Req),
    /// The agent PTCP session's own timer (resends, keep-alive).
    AgentSession,
    /// Punching gives up on direct.
    PunchDeadline,
    /// Binding requests are sent again.
    PunchResend,
    /// The device PTCP session's own timer.
    DeviceSession,
    /// The current device phase (SYN, 0x19, 0x1B) waited long enough.
    DevicePhase,
}

const FIXED: [Timer; 6] = [
    Timer::AgentSession,
    Timer::PunchDeadline,
    Timer::PunchResend,
    Timer::DeviceSession,
    Timer::DevicePhase,
    Timer::StageCap,
];
const SLOTS: usize = Req::ALL.len() + FIXED.len();

impl Timer {
    fn slot(self) -> usize {
        match self {
            Timer::Resend(req) => req as usize,
            Timer::AgentSession => Req::ALL.len(),
            Timer::PunchDeadline => Req::ALL.len() + 1,
            Timer::PunchResend => Req::ALL.len() + 2,
            Timer::DeviceSession => Req::ALL.len() + 3,
            Timer::DevicePhase => Req::ALL.len() + 4,
            Timer::StageCap => Req::ALL.len() + 5,
        }
    }

    /// Every timer, in the order expired ones run.
    fn in_order() -> impl Iterator<Item = Timer> {
        std::iter::once(Timer::StageCap)
            .chain(Req::ALL.into_iter().map(Timer::Resend))
            .chain(FIXED.into_iter().filter(|t| *t != Timer::StageCap))
    }
}

#[derive(Debug, Default)]
pub(super) struct TimerTable {
    slots: [Option<Instant>; SLOTS],
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.slot()] = Some(at);
    }

    /// Sets or stops `timer`.
    pub fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.slots[timer.slot()] = at;
    }

    pub fn stop(&mut self, timer: Timer) {
        self.slots[timer.slot()] = None;
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.slot()]
    }

    pub fn clear(&mut self) {
        self.slots = [None; SLOTS];
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// The timers due at `now`, in run order.
    pub fn expired(&self, now: Instant) -> Vec<Timer> {
        Timer::in_order()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_the_minimum_and_expired_runs_the_cap_first() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Resend(Req::P2pSrv), t0 + Duration::from_secs(2));
        table.set(Timer::DevicePhase, t0 + Duration::from_secs(1));
        table.set(Timer::StageCap, t0 + Duration::from_secs(2));
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            table.expired(t0 + Duration::from_secs(2)),
            [
                Timer::StageCap,
                Timer::Resend(Req::P2pSrv),
                Timer::DevicePhase
            ]
        );
        table.stop(Timer::DevicePhase);
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(2)));
        table.clear();
        assert_eq!(table.next(), None);
    }
}
