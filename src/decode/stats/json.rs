//! The `decode --stats --json` report (schema in docs/DECODE.md).

use std::time::Duration;

use serde_json::{json, Value};

use crate::decode::model::session::{RealmStats, SessionStats};
use crate::decode::model::{Conversation, Way};

impl Conversation {
    /// One JSON object: `sessions[]`, `realms[]` and the merged `timeline[]`
    /// (schema in docs/DECODE.md, `--stats`).
    pub fn report_json(&self) -> Value {
        let verdicts = self.verdicts();
        let mut sessions = Vec::new();
        let mut realms = Vec::new();
        for (i, (s, verdict)) in self.sessions.iter().zip(&verdicts).enumerate() {
            let id = i + 1;
            let client = self.client_way(s);
            let c = client.unwrap_or(Way::AtoB);
            let p = c.reverse();
            let mut previous: Option<Duration> = None;
            let stages: Vec<Value> = s
                .stages
                .iter()
                .map(|st| {
                    let delay =
                        previous.map_or(0.0, |pt| st.at.time.saturating_sub(pt).as_secs_f64());
                    previous = Some(st.at.time);
                    json!({
                        "frame": st.at.frame,
                        "time": self.rel(st.at.time),
                        "stage": st.name,
                        "from": st.way.from_addr(&s.key).to_string(),
                        "to": st.way.to_addr(&s.key).to_string(),
                        "count": st.count,
                        "delay": delay,
                    })
                })
                .collect();
            let directions: Vec<Value> = [c, p]
                .into_iter()
                .map(|w| self.direction_json(s, w))
                .collect();
            let path = self.path(s);
            let realm_ids: Vec<u32> = s.realm_order.clone();
            for realm in s.realm_order.iter().filter_map(|r| s.realms.get(r)) {
                realms.push(self.realm_json(id, s, realm, c));
            }
            sessions.push(json!({
                "id": id,
                "a": s.key.a.to_string(),
                "b": s.key.b.to_string(),
                "client": client.map(|w| w.from_addr(&s.key).to_string()),
                "peer": client.map(|w| w.to_addr(&s.key).to_string()),
                "role": Self::role(s),
                "first_frame": s.first.frame,
                "last_frame": s.last.frame,
                "start": self.rel(s.first.time),
                "end": self.rel(s.last.time),
                "path": path.as_ref().map(|(k, _)| *k),
                "path_detail": path.map(|(_, d)| d),
                "directions": directions,
                "timeline": stages,
                "realms": realm_ids,
                "verdict": if verdict.healthy { "healthy" } else { "unhealthy" },
                "findings": verdict.findings.iter().map(|f| json!({
                    "code": f.code,
                    "severity": f.severity.as_str(),
                    "text": f.text,
                    "frames": f.frames,
                })).collect::<Vec<_>>(),
            }));
        }
        let mut previous: Option<Duration> = None;
        let timeline: Vec<Value> = self
            .timeline()
            .into_iter()
            .map(|(id, s, st)| {
                let delay = previous.map_or(0.0, |pt| st.at.time.saturating_sub(pt).as_secs_f64());
                previous = Some(st.at.time);
                json!({
                    "frame": st.at.frame,
                    "time": self.rel(st.at.time),
                    "session": id,
                    "stage": st.name,
                    "from": st.way.from_addr(&s.key).to_string(),
                    "to": st.way.to_addr(&s.key).to_string(),
                    "delay": delay,
                })
            })
            .collect();
        json!({
            "datagrams": self.datagrams,
            "unrecognised": self.unrecognised,
            "start_epoch": self.start.map(|s| s.as_secs_f64()),
            "duration": match (self.start, self.end) {
                (Some(s), Some(e)) => e.saturating_sub(s).as_secs_f64(),
                _ => 0.0,
            },
            "healthy": verdicts.iter().all(|v| v.healthy),
            "timeline": timeline,
            "sessions": sessions,
            "realms": realms,
        })
    }

    fn direction_json(&self, s: &SessionStats, w: Way) -> Value {
        let d = &s.dirs[w.index()];
        let other = &s.dirs[w.reverse().index()];
        let holes = d.tracker.holes();
        let mut object = json!({
            "from": w.from_addr(&s.key).to_string(),
            "to": w.to_addr(&s.key).to_string(),
            "datagrams": d.datagrams,
            "payload_bytes": d.payload_bytes,
            "kinds": {
                "cloud": d.kinds[0],
                "punch": d.kinds[1],
                "ptcp": d.kinds[2],
                "unknown": d.kinds[3],
            },
            "malformed": d.malformed,
        });
        if d.ptcp_packets > 0 || other.ptcp_packets > 0 {
            object["ptcp"] = json!({
                "packets": d.ptcp_packets,
                "bodies": d.bodies,
                "body_bytes": d.body_bytes,
                "new_body_bytes": d.new_body_bytes,
                "data_bodies": d.data_bodies,
                "data_bytes": d.data_bytes,
                "acks": d.acks,
                "heartbeats": d.heartbeats,
                "retransmissions": d.retransmissions,
                "duplicates": d.duplicates,
                "late": d.late,
                "overlaps": d.overlaps,
                "conflicts": d.conflicts,
                "gap_events": d.gap_events,
                "gap_bytes_seen": d.gap_bytes,
                "open_gaps": holes.iter().map(|(a, b)| json!({"start": a, "end": b})).collect::<Vec<_>>(),
                "out_unacked": d.out_unacked(other),
                "lmid_zero": d.lmid_zero,
                "lmid_backwards": d.lmid_backwards,
                "rmid_unechoed": d.rmid_unechoed,
                "first_retransmission": d.first_retransmission,
                "first_duplicate": d.first_duplicate,
            });
        }
        object
    }

    fn realm_json(&self, session: usize, s: &SessionStats, r: &RealmStats, c: Way) -> Value {
        let role = |w: Way| if w == c { "client" } else { "peer" };
        json!({
            "session": session,
            "realm": r.realm,
            "realm_hex": format!("0x{:08x}", r.realm),
            "first_frame": r.first.frame,
            "bind": r.bind.map(|b| json!({
                "frame": b.at.frame,
                "time": self.rel(b.at.time),
                "port": b.port,
                "ip": b.ip.to_string(),
                "by": role(b.way),
                "count": b.count,
            })),
            "conn": r.conn.map(|(at, w)| json!({
                "frame": at.frame,
                "time": self.rel(at.time),
                "by": role(w),
                "delay": r.bind.map(|b| at.time.saturating_sub(b.at.time).as_secs_f64()),
            })),
            "disc": r.discs.iter().map(|(at, w)| json!({
                "frame": at.frame,
                "time": self.rel(at.time),
                "by": role(*w),
            })).collect::<Vec<_>>(),
            "disc_count": r.disc_count,
            "to_peer": {"packets": r.data[c.index()].0, "bytes": r.data[c.index()].1},
            "from_peer": {"packets": r.data[c.reverse().index()].0, "bytes": r.data[c.reverse().index()].1},
            "orphan_conn": r.bind.is_none() && r.conn.is_some(),
            "bind_unanswered": r.bind.is_some() && !r.answered(),
            "peer": s.key.to_string(),
        })
    }
}
