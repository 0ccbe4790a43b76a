//! The verdicts of `decode --stats`: which FIELD-NOTES §7 failure a session
//! resembles, with the frames that show it. Reads the conversation model only.

use super::{BIND_TIMEOUT, SILENCE};
use crate::codec::cloud::Endpoint;
use crate::decode::model::session::{endpoint_name, RealmStats, SessionStats};
use crate::decode::model::{Conversation, Way};

/// Whether a finding makes a session unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Failure,
    Note,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Failure => "failure",
            Severity::Note => "note",
        }
    }
}

/// One observation behind a verdict, with the frames that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable identifier (JSON `code`), e.g. `auth-required`.
    pub code: &'static str,
    pub severity: Severity,
    /// The FIELD-NOTES §7 wording plus the specifics.
    pub text: String,
    pub frames: Vec<u64>,
}

impl Finding {
    fn failure(code: &'static str, text: impl Into<String>, frames: Vec<u64>) -> Finding {
        Finding {
            code,
            severity: Severity::Failure,
            text: text.into(),
            frames,
        }
    }

    fn note(code: &'static str, text: impl Into<String>, frames: Vec<u64>) -> Finding {
        Finding {
            code,
            severity: Severity::Note,
            text: text.into(),
            frames,
        }
    }
}

impl Conversation {
    pub(crate) fn findings(&self, s: &SessionStats) -> Vec<Finding> {
        let mut out = Vec::new();
        let client = self.client_way(s);
        self.cloud_findings(s, &mut out);
        self.punch_findings(s, client, &mut out);
        if !s.has_ptcp() {
            return out;
        }
        let sign_refused = self.handshake_findings(s, client, &mut out);
        self.realm_findings(s, client, sign_refused, &mut out);
        self.stall_findings(s, client, &mut out);
        self.loss_findings(s, client, &mut out);
        out
    }

    /// Cloud answers: auth, policy and other errors.
    fn cloud_findings(&self, s: &SessionStats, out: &mut Vec<Finding>) {
        for (at, code, error, policy) in &s.errors {
            let frames = vec![at.frame];
            let policy = policy
                .as_deref()
                .map(|p| format!(", Policy {p}"))
                .unwrap_or_default();
            let finding = match (*code, error.as_str()) {
                (403, "DevPwd_InvalidSalt") => Finding::failure(
                    "auth-required",
                    format!("403 DevPwd_InvalidSalt: device needs auth (send DevAuth with the salt from /info/device{policy})"),
                    frames,
                ),
                (403, "DevPwd_InvalidDigest") => Finding::failure(
                    "invalid-digest",
                    format!("403 DevPwd_InvalidDigest: wrong credentials, or the legacy header layout on the DMSS cloud{policy}"),
                    frames,
                ),
                (404, _) => Finding::failure(
                    "not-found",
                    format!("404 on {error}: wrong cloud or offline"),
                    frames,
                ),
                (401 | 403, _) => Finding::failure(
                    "forbidden",
                    format!("{code} on {error}: retired app WSSE pair or clock skew"),
                    frames,
                ),
                _ => Finding::failure("cloud-error", format!("{code} on {error}"), frames),
            };
            out.push(finding);
        }
        for request in &s.requests {
            let frames = vec![request.at.frame];
            let name = endpoint_name(&request.endpoint);
            if request.answers.is_empty() {
                // Main never answers relay-channel (the agent notifies) and
                // unbind answers are only logged (FIELD-NOTES C12).
                match request.endpoint {
                    Endpoint::RelayChannel { .. } | Endpoint::RelayUnbind { .. } => {}
                    Endpoint::RelayAgent => out.push(Finding::failure(
                        "no-answer",
                        format!(
                            "/relay/agent never answers: dead relay candidate ({} tries)",
                            request.count
                        ),
                        frames,
                    )),
                    _ => out.push(Finding::failure(
                        "no-answer",
                        format!("{name} never answered ({} tries)", request.count),
                        frames,
                    )),
                }
            } else if !request.final_answer {
                let last = request.answers.last().map(|(at, _)| at.frame);
                out.push(Finding::failure(
                    "no-final-answer",
                    format!(
                        "{name}: {} but no final answer (device not reachable by the cloud)",
                        request
                            .answers
                            .iter()
                            .map(|(_, c)| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    frames.into_iter().chain(last).collect(),
                ));
            }
        }
    }

    /// Hole punching that got no answer.
    fn punch_findings(&self, s: &SessionStats, client: Option<Way>, out: &mut Vec<Finding>) {
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        // Hole punching.
        let punches_sent = s.punch_requests[c.index()];
        let punches_got = s.punch_requests[p.index()].saturating_add(s.punch_successes[p.index()]);
        if punches_sent > 0 && punches_got == 0 {
            let frames: Vec<u64> = s.first_punch.map(|(at, _)| at.frame).into_iter().collect();
            let other_answered = self.other_candidate_answered(s, c.from_addr(&s.key));
            if other_answered {
                out.push(Finding::note(
                    "punch-not-taken",
                    format!("punch to {} never answered ({punches_sent} requests); another candidate answered", p.from_addr(&s.key)),
                    frames,
                ));
            } else {
                out.push(Finding::failure(
                    "punch-unanswered",
                    format!("punch never answered: {punches_sent} Binding Requests to {}, nothing back (NAT, or LAN-only path not offered)", p.from_addr(&s.key)),
                    frames,
                ));
            }
        }
    }

    /// The PTCP handshake: SYN, SIGN, AUTH.
    /// Returns whether the device refused the sign (no 0x1A), which explains
    /// unanswered BINDs.
    fn handshake_findings(
        &self,
        s: &SessionStats,
        client: Option<Way>,
        out: &mut Vec<Finding>,
    ) -> bool {
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        let cd = &s.dirs[c.index()];
        let pd = &s.dirs[p.index()];
        // PTCP handshake.
        if let Some(syn) = cd.syn {
            if pd.syn.is_none() && pd.ptcp_packets == 0 {
                out.push(Finding::failure(
                    "syn-unanswered",
                    "PTCP SYN never answered",
                    vec![syn.frame],
                ));
            }
        }
        if let Some(at) = s.sign_request {
            if s.sign.is_none() {
                out.push(Finding::failure(
                    "sign-missing",
                    "0x17 sent, the agent never gave a sign",
                    vec![at.frame],
                ));
            }
        }
        let mut sign_refused = false;
        if let Some((at, _)) = s.auth {
            if s.auth_reply.is_none() {
                sign_refused = true;
                let mut frames = vec![at.frame];
                frames.extend(
                    s.realm_order
                        .iter()
                        .filter_map(|r| s.realms.get(r))
                        .filter(|r| !r.answered())
                        .filter_map(|r| r.bind.map(|b| b.at.frame))
                        .take(8),
                );
                out.push(Finding::failure(
                    "auth-reply-missing",
                    "0x1A never arrived (sign refused): the session is unauthenticated and BINDs time out in silence",
                    frames,
                ));
            }
        }
        sign_refused
    }

    /// Realms: unanswered BINDs, DISCs, silence.
    fn realm_findings(
        &self,
        s: &SessionStats,
        client: Option<Way>,
        sign_refused: bool,
        out: &mut Vec<Finding>,
    ) {
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        let pd = &s.dirs[p.index()];
        // Realms.
        let end = s.last.time;
        let unanswered: Vec<&RealmStats> = s
            .realm_order
            .iter()
            .filter_map(|r| s.realms.get(r))
            .filter(|r| !r.answered())
            .filter(|r| {
                r.bind
                    .is_some_and(|b| end.saturating_sub(b.at.time) >= BIND_TIMEOUT)
            })
            .collect();
        if !unanswered.is_empty() && !sign_refused {
            let frames: Vec<u64> = unanswered
                .iter()
                .filter_map(|r| r.bind.map(|b| b.at.frame))
                .take(16)
                .collect();
            let first_bind = unanswered
                .iter()
                .filter_map(|r| r.bind)
                .map(|b| b.at.time)
                .min()
                .unwrap_or_default();
            let alive_after = pd
                .last
                .filter(|l| l.time.saturating_sub(first_bind) >= BIND_TIMEOUT);
            let granted = s
                .realms
                .values()
                .filter(|r| r.bind.is_some() && r.answered())
                .count();
            match alive_after {
                Some(l) => out.push(Finding::failure(
                    "binds-refused",
                    format!(
                        "device refuses BINDs (out of realm slots): {} BIND(s) never answered while the peer kept sending ({} granted)",
                        unanswered.len(),
                        granted
                    ),
                    frames.into_iter().chain([l.frame]).collect(),
                )),
                None => out.push(Finding::failure(
                    "binds-unanswered",
                    format!("{} BIND(s) never answered and the peer went quiet", unanswered.len()),
                    frames,
                )),
            }
        }
        let orphans: Vec<u64> = s
            .realms
            .values()
            .filter(|r| r.bind.is_none() && r.conn.is_some())
            .filter_map(|r| r.conn.map(|(at, _)| at.frame))
            .collect();
        if !orphans.is_empty() {
            out.push(Finding::note(
                "orphan-conn",
                format!("{} CONN(s) for realms without a BIND in view (orphans, or the capture started late)", orphans.len()),
                orphans.into_iter().take(16).collect(),
            ));
        }
    }

    /// Outbound stalls.
    fn stall_findings(&self, s: &SessionStats, client: Option<Way>, out: &mut Vec<Finding>) {
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        let cd = &s.dirs[c.index()];
        let pd = &s.dirs[p.index()];
        // Stalls.
        for way in [c, p] {
            if let Some((since, seen, unacked)) = s.dirs[way.index()].stall {
                let who = if Some(way) == client {
                    "our"
                } else {
                    "the peer's"
                };
                out.push(Finding::failure(
                    "outbound-stall",
                    format!(
                        "outbound stall: {who} data unacknowledged for {:.0} s ({unacked} bytes) while realms kept writing",
                        seen.time.saturating_sub(since.time).as_secs_f64()
                    ),
                    vec![since.frame, seen.frame],
                ));
            }
        }
        if let Some(play) = cd.play {
            let last_data = pd
                .last_data
                .filter(|d| d.frame > play.frame)
                .unwrap_or(play);
            let after = cd
                .last_heartbeat
                .filter(|h| h.time.saturating_sub(last_data.time) >= SILENCE);
            let closed = s.realms.values().any(|r| {
                r.discs.iter().any(|(at, _)| {
                    at.frame > play.frame && at.time <= last_data.time.saturating_add(SILENCE)
                })
            });
            if let (Some(heartbeat), false) = (after, closed) {
                let relay = self.path(s).is_some_and(|(kind, _)| kind == "relay");
                let label = if relay { "relay stall" } else { "stream stall" };
                let answered = pd
                    .last
                    .is_some_and(|l| l.time > last_data.time.saturating_add(SILENCE));
                out.push(Finding::failure(
                    if relay { "relay-stall" } else { "stream-stall" },
                    format!(
                        "{label}: data stopped after PLAY while heartbeats continue ({:.1} s without peer DATA; heartbeats {})",
                        heartbeat.time.saturating_sub(last_data.time).as_secs_f64(),
                        if answered { "answered" } else { "unanswered" }
                    ),
                    vec![play.frame, last_data.frame, heartbeat.frame],
                ));
            }
        }
        for way in [p, c] {
            if let Some((quiet, from, to)) = s.dirs[way.index()].silence {
                if quiet >= SILENCE {
                    let who = if way == p { "peer" } else { "client" };
                    out.push(Finding::failure(
                        "silent",
                        format!(
                            "session silent for {:.0} s: the {who} sent nothing{}",
                            quiet.as_secs_f64(),
                            if to.is_none() {
                                " until the end of the capture"
                            } else {
                                ""
                            }
                        ),
                        [Some(from.frame), to.map(|t| t.frame)]
                            .into_iter()
                            .flatten()
                            .collect(),
                    ));
                }
            }
        }
    }

    /// Losses seen in the counters (notes: the capture point matters).
    fn loss_findings(&self, s: &SessionStats, client: Option<Way>, out: &mut Vec<Finding>) {
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        // Losses seen in the counters (notes: the capture point matters).
        for way in [c, p] {
            let d = &s.dirs[way.index()];
            let holes = d.tracker.holes();
            if !holes.is_empty() {
                let bytes: i64 = holes.iter().map(|(a, b)| b.saturating_sub(*a)).sum();
                out.push(Finding::note(
                    "gaps",
                    format!(
                        "{} {bytes} body bytes in {} range(s) never seen (lost, or captured elsewhere)",
                        if Some(way) == client { "client→peer:" } else { "peer→client:" },
                        holes.len()
                    ),
                    Vec::new(),
                ));
            }
            if d.rmid_unechoed > 0 {
                out.push(Finding::note(
                    "rmid-unechoed",
                    format!(
                        "{} packet(s) carry an rmid that is no lmid the other side sent",
                        d.rmid_unechoed
                    ),
                    d.first_rmid_unechoed.into_iter().collect(),
                ));
            }
        }
        for at in &s.ptcp_restarts {
            out.push(Finding::note(
                "ptcp-restart",
                "a new PTCP SYN restarted the counters on this socket pair",
                vec![at.frame],
            ));
        }
    }
}
