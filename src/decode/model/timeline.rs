//! The handshake timeline the inspector shows: each step of each session
//! (a cloud request, a punch, SYN, SIGN, AUTH, a BIND) with when its answer
//! came and what it was.
//!
//! Fed by the model's handlers as they interpret each datagram; cloud
//! answers are paired with their request by the model's own CSeq pairing
//! ([`super::cloud`]), the other steps by what answers them. Bounded: at most
//! [`MAX_TIMELINE`] entries (the oldest goes first) and [`MAX_PENDING`] open
//! steps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::sent::Way;
use crate::decode::record::SessionKey;

/// Timeline entries kept before the oldest is forgotten.
pub const MAX_TIMELINE: usize = 1000;
/// Open steps remembered for pairing with their answer.
const MAX_PENDING: usize = 4096;

/// One step of a handshake and how long its answer took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub session: SessionKey,
    /// `DHPOST /device/SN/p2p-channel`, `punch`, `PTCP SYN`, `AUTH`, …
    pub name: String,
    pub started: Duration,
    /// When the answer arrived (`None` while unanswered).
    pub answered: Option<Duration>,
    /// The answer (`200 OK`, `SYN`, `CONN`…), empty while unanswered.
    pub result: String,
    /// Stable identity of the entry, for answering it later.
    id: u64,
}

impl Stage {
    pub fn took(&self) -> Option<Duration> {
        self.answered
            .map(|at| at.checked_sub(self.started).unwrap_or_default())
    }
}

/// What an open step waits for (cloud requests are paired by CSeq in the
/// model and answered by id instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Awaiting {
    /// A Binding Success Response.
    Punch,
    /// A SYN from the other side.
    Syn,
    /// AUTH-REPLY (0x1A) to AUTH (0x19).
    Auth,
    /// SIGN (0x18) to SIGN-REQUEST (0x17).
    Sign,
    /// STATUS for this realm after its BIND.
    Bind(u32),
}

/// Timeline entries in the order they started.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    stages: VecDeque<Stage>,
    next_id: u64,
    /// Open steps: (session, what answers it) → (who asked, entry id).
    open: HashMap<(SessionKey, Awaiting), (Way, u64)>,
    /// Steps already started per session, so each shows once per session
    /// (a retransmitted request does not restart its step).
    started: HashSet<(SessionKey, String)>,
}

impl Timeline {
    pub(crate) fn stages(&self) -> impl ExactSizeIterator<Item = &Stage> + '_ {
        self.stages.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.stages.len()
    }

    /// Starts a step unless one of that name already started in the
    /// session; returns its id.
    pub(crate) fn start(
        &mut self,
        session: SessionKey,
        name: String,
        now: Duration,
    ) -> Option<u64> {
        let once = (session, name);
        if self.started.contains(&once) {
            return None;
        }
        if self.open.len() >= MAX_PENDING || self.started.len() >= MAX_PENDING * 4 {
            self.open.clear();
            self.started.clear();
        }
        let name = once.1.clone();
        self.started.insert(once);
        if self.stages.len() >= MAX_TIMELINE {
            self.stages.pop_front();
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.stages.push_back(Stage {
            session,
            name,
            started: now,
            answered: None,
            result: String::new(),
            id,
        });
        Some(id)
    }

    /// Starts a step that the other side answers with `awaiting`.
    pub(crate) fn start_awaiting(
        &mut self,
        session: SessionKey,
        awaiting: Awaiting,
        from: Way,
        name: String,
        now: Duration,
    ) {
        if let Some(id) = self.start(session, name, now) {
            self.open.insert((session, awaiting), (from, id));
        }
    }

    /// Answers the open step `awaiting`, if the other side asked it.
    pub(crate) fn answer_awaiting(
        &mut self,
        session: SessionKey,
        awaiting: Awaiting,
        from: Way,
        result: String,
        now: Duration,
    ) {
        let key = (session, awaiting);
        // Only the other side answers a step.
        match self.open.get(&key) {
            Some(&(asker, id)) if asker != from => {
                self.open.remove(&key);
                self.answer(id, result, now);
            }
            Some(_) | None => {}
        }
    }

    /// Records the answer of step `id` (the first answer counts).
    pub(crate) fn answer(&mut self, id: u64, result: String, now: Duration) {
        if let Some(stage) = self
            .stages
            .iter_mut()
            .rev()
            .find(|s| s.id == id && s.answered.is_none())
        {
            stage.answered = Some(now);
            stage.result = result;
        }
    }
}
