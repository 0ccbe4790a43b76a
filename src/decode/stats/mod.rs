//! `dhp2p decode --stats`: what happened in each UDP session of a capture,
//! told as a story: the handshake timeline, the path the data took, bytes and
//! losses inferred from the PTCP counters, realms, and a verdict naming the
//! FIELD-NOTES §7 failure a session resembles.
//!
//! The meaning of the capture is computed by the conversation model
//! ([`crate::decode::model::Conversation`]); this module only judges it
//! ([`findings`]) and renders it ([`text`], [`json`]).

mod findings;
mod json;
mod text;

use std::time::Duration;

pub use self::findings::{Finding, Severity};
use crate::decode::model::Conversation;
pub use crate::decode::model::{Arrival, SentTracker, Way, OUTBOUND_STALL};
use crate::decode::record::SessionKey;

/// The `--stats` collector is the conversation model itself.
pub type StatsCollector = Conversation;

/// Quiet time after which a session counts as silent: BJ's
/// `deadTunnelSilence` (FIELD-NOTES §4.4), and above PR's 10 s heartbeat so
/// a healthy tunnel on that cadence is not flagged.
pub const SILENCE: Duration = Duration::from_secs(12);
/// A BIND not answered (CONN or DISC) within this time is unanswered
/// (one BIND attempt of BJ's budget, FIELD-NOTES §4.5).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(2);

/// The verdict on one session, as computed for the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionVerdict {
    pub session: SessionKey,
    pub healthy: bool,
    pub findings: Vec<Finding>,
}

impl Conversation {
    /// The verdict on every session, in order of first datagram.
    pub fn verdicts(&self) -> Vec<SessionVerdict> {
        self.sessions
            .iter()
            .map(|s| {
                let findings = self.findings(s);
                SessionVerdict {
                    session: s.key,
                    healthy: findings.iter().all(|f| f.severity != Severity::Failure),
                    findings,
                }
            })
            .collect()
    }
}
