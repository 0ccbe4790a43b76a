//! The readable `decode --stats` report.

use std::fmt::Write as _;
use std::time::Duration;

use super::{SessionVerdict, Severity};
use crate::decode::model::session::{DirectionRow, Milestone, RealmStats, SessionStats};
use crate::decode::model::{Conversation, Way};

impl Conversation {
    /// Readable report: the handshake story across sessions, then one
    /// section per session.
    pub fn report_text(&self) -> String {
        let mut out = String::new();
        let duration = match (self.start, self.end) {
            (Some(s), Some(e)) => e.saturating_sub(s).as_secs_f64(),
            _ => 0.0,
        };
        let realm_count: usize = self.sessions.iter().map(|s| s.realms.len()).sum();
        let _ = writeln!(
            out,
            "== dhp2p decode --stats: {} datagrams ({} other UDP), {} sessions, {} realms, {:.6} s ==",
            self.datagrams,
            self.unrecognised,
            self.sessions.len(),
            realm_count,
            duration
        );
        let verdicts = self.verdicts();
        let unhealthy = verdicts.iter().filter(|v| !v.healthy).count();
        let _ = writeln!(
            out,
            "verdict: {}",
            if unhealthy == 0 {
                "all sessions healthy".to_string()
            } else {
                format!("{unhealthy} of {} sessions unhealthy", verdicts.len())
            }
        );

        let timeline = self.timeline();
        if !timeline.is_empty() {
            let _ = writeln!(out, "\nHandshake timeline (all sessions)");
            let mut previous: Option<Duration> = None;
            for (session_no, s, stage) in &timeline {
                let delay = previous.map_or(0.0, |p| stage.at.time.saturating_sub(p).as_secs_f64());
                previous = Some(stage.at.time);
                let _ = writeln!(
                    out,
                    "  t={:>11.6}  #{:<7} S{:<3} {:<21} -> {:<21} {}{}  (+{:.3} s)",
                    self.rel(stage.at.time),
                    stage.at.frame,
                    session_no,
                    stage.way.from_addr(&s.key).to_string(),
                    stage.way.to_addr(&s.key).to_string(),
                    stage.name,
                    repeats(stage.count),
                    delay
                );
            }
        }

        for (number, (s, verdict)) in self.sessions.iter().zip(&verdicts).enumerate() {
            self.session_text(&mut out, number + 1, s, verdict);
        }
        out
    }

    fn session_text(
        &self,
        out: &mut String,
        number: usize,
        s: &SessionStats,
        verdict: &SessionVerdict,
    ) {
        let client = self.client_way(s);
        let c = client.unwrap_or(Way::AtoB);
        let p = c.reverse();
        let (cname, pname) = if client.is_some() {
            ("client", "peer")
        } else {
            ("a", "b")
        };
        let _ = writeln!(
            out,
            "\nSession S{number}: {} <-> {}  [{}]  frames {}-{}, t={:.6}-{:.6} s",
            c.from_addr(&s.key),
            p.from_addr(&s.key),
            Self::role(s),
            s.first.frame,
            s.last.frame,
            self.rel(s.first.time),
            self.rel(s.last.time)
        );
        if client.is_some() {
            let _ = writeln!(
                out,
                "  client {}, peer {}",
                c.from_addr(&s.key),
                p.from_addr(&s.key)
            );
        }
        let cd = &s.dirs[c.index()];
        let pd = &s.dirs[p.index()];
        let _ = writeln!(
            out,
            "  datagrams: {cname}->{pname} {} ({} B), {pname}->{cname} {} ({} B)",
            cd.datagrams, cd.payload_bytes, pd.datagrams, pd.payload_bytes
        );
        let malformed = cd.malformed.saturating_add(pd.malformed);
        let unknown = cd.kinds[3].saturating_add(pd.kinds[3]);
        if malformed > 0 || unknown > 0 {
            let _ = writeln!(out, "  malformed: {malformed}, unrecognised: {unknown}");
        }
        if let Some((_, detail)) = self.path(s) {
            let _ = writeln!(out, "  path: {detail}");
        }
        if !s.stages.is_empty() {
            let _ = writeln!(out, "  timeline:");
            let mut previous: Option<Duration> = None;
            for stage in &s.stages {
                let delay =
                    previous.map_or(0.0, |pt| stage.at.time.saturating_sub(pt).as_secs_f64());
                previous = Some(stage.at.time);
                let arrow = if stage.way == c { "->" } else { "<-" };
                let _ = writeln!(
                    out,
                    "    #{:<7} t={:>11.6}  {arrow} {}{}  (+{:.3} s)",
                    stage.at.frame,
                    self.rel(stage.at.time),
                    stage.name,
                    repeats(stage.count),
                    delay
                );
            }
        }
        if s.has_ptcp() {
            ptcp_table(out, s, (cname, pname), c);
        }
        if !s.realm_order.is_empty() {
            let _ = writeln!(out, "  realms:");
            for realm in s.realm_order.iter().filter_map(|r| s.realms.get(r)) {
                let _ = writeln!(out, "    {}", self.realm_line(s, realm, c));
            }
        }
        let _ = writeln!(
            out,
            "  verdict: {}",
            if verdict.healthy {
                "healthy"
            } else {
                "UNHEALTHY"
            }
        );
        for finding in &verdict.findings {
            let frames = if finding.frames.is_empty() {
                String::new()
            } else {
                format!(
                    "  [frames {}]",
                    finding
                        .frames
                        .iter()
                        .map(|f| format!("#{f}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            };
            let _ = writeln!(
                out,
                "    {} {}{frames}",
                if finding.severity == Severity::Failure {
                    "!"
                } else {
                    "-"
                },
                finding.text
            );
        }
    }

    fn realm_line(&self, s: &SessionStats, r: &RealmStats, c: Way) -> String {
        let mut line = format!("0x{:08x}", r.realm);
        match r.bind {
            Some(b) => {
                let _ = write!(
                    line,
                    "  BIND {}:{} #{} t={:.6}",
                    b.ip,
                    b.port,
                    b.at.frame,
                    self.rel(b.at.time)
                );
                if b.count > 1 {
                    let _ = write!(line, " ×{}", b.count);
                }
            }
            None => line.push_str("  no BIND in view"),
        }
        match r.conn {
            Some((at, _)) => {
                let delay = r
                    .bind
                    .map(|b| {
                        format!(
                            " (+{:.3} s)",
                            at.time.saturating_sub(b.at.time).as_secs_f64()
                        )
                    })
                    .unwrap_or_default();
                let _ = write!(line, ", CONN #{}{delay}", at.frame);
            }
            None if r.bind.is_some() && !r.answered() => line.push_str(", never answered"),
            None => {}
        }
        for (at, way) in r.discs.iter().take(2) {
            let who = if *way == c { "client" } else { "peer" };
            let _ = write!(
                line,
                ", DISC by {who} #{} t={:.6}",
                at.frame,
                self.rel(at.time)
            );
        }
        let to = r.data[c.index()];
        let from = r.data[c.reverse().index()];
        let _ = write!(
            line,
            "; to peer {} B in {} DATA, from peer {} B in {} DATA",
            to.1, to.0, from.1, from.0
        );
        let _ = s;
        line
    }

    /// Stages of every session, in capture order, with the session number.
    pub(crate) fn timeline(&self) -> Vec<(usize, &SessionStats, &Milestone)> {
        let mut all: Vec<(usize, &SessionStats, &Milestone)> = self
            .sessions
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.stages.iter().map(move |st| (i + 1, s, st)))
            .collect();
        all.sort_by_key(|(_, _, st)| st.at.frame);
        all
    }
}

/// The per-direction PTCP counters of a session, client side first.
fn ptcp_table(out: &mut String, s: &SessionStats, (cname, pname): (&str, &str), c: Way) {
    let cd = &s.dirs[c.index()];
    let pd = &s.dirs[c.reverse().index()];
    let rows: [DirectionRow; 16] = [
        ("PTCP datagrams", |d| d.ptcp_packets),
        ("bodies", |d| d.bodies),
        ("body bytes", |d| d.body_bytes),
        ("new body bytes", |d| d.new_body_bytes),
        ("DATA bodies (new)", |d| d.data_bodies),
        ("DATA payload bytes (new)", |d| d.data_bytes),
        ("ACKs (empty)", |d| d.acks),
        ("heartbeats", |d| d.heartbeats),
        ("retransmissions", |d| d.retransmissions),
        ("duplicates", |d| d.duplicates),
        ("late (reordered/resent)", |d| d.late),
        ("gaps seen (jumps)", |d| d.gap_events),
        ("gaps still open (bytes)", |d| {
            d.tracker
                .holes()
                .iter()
                .map(|(a, b)| u64::try_from(b.saturating_sub(*a)).unwrap_or(0))
                .sum()
        }),
        ("overlaps/conflicts", |d| {
            d.overlaps.saturating_add(d.conflicts)
        }),
        ("lmid zero/backwards", |d| {
            d.lmid_zero.saturating_add(d.lmid_backwards)
        }),
        ("rmid not echoing", |d| d.rmid_unechoed),
    ];
    let _ = writeln!(
        out,
        "  {:<26} {:>16} {:>16}",
        "PTCP",
        format!("{cname}->{pname}"),
        format!("{pname}->{cname}")
    );
    for (label, get) in rows {
        let _ = writeln!(out, "    {:<24} {:>16} {:>16}", label, get(cd), get(pd));
    }
    let ou_c = cd.out_unacked(pd).map_or("-".into(), |v| v.to_string());
    let ou_p = pd.out_unacked(cd).map_or("-".into(), |v| v.to_string());
    let _ = writeln!(
            out,
            "  loss accounting at the end: out_unacked {cname}={ou_c} {pname}={ou_p} (in_skew {cname}={})",
            cd.last_recv
                .zip(pd.tracker.high())
                .map_or("-".into(), |(recv, high)| high.saturating_sub(pd.tracker.position(recv)).to_string())
        );
}

/// ` ×3` after a stage seen three times; nothing after one seen once.
fn repeats(count: u64) -> String {
    if count > 1 {
        format!(" ×{count}")
    } else {
        String::new()
    }
}
