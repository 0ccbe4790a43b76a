//! Cloud and punch datagrams, and what every datagram does to a session's
//! counters and silences.

use std::net::SocketAddr;

use super::sent::Way;
use super::session::{
    endpoint_name, host_port_addr, At, CloudRequest, Learned, SessionStats, MAX_STAGES,
};
use super::timeline::{Awaiting, Timeline};
use crate::codec::cloud::{
    parse_addr_list, ChannelAnswer, Endpoint, ErrorBody, Message, TypedBody,
};
use crate::codec::punch::{MessageType, PunchMessage};
use crate::decode::record::Record;

// ---------------------------------------------------------------------------
// Per-datagram handlers

/// Datagram counts, times and silences, for every kind.
pub(crate) fn touch(session: &mut SessionStats, way: Way, record: &Record, at: At) {
    let other_last = session.dirs[way.reverse().index()].last;
    let dir = &mut session.dirs[way.index()];
    dir.datagrams = dir.datagrams.saturating_add(1);
    dir.payload_bytes = dir
        .payload_bytes
        .saturating_add(u64::try_from(record.payload.len()).unwrap_or(u64::MAX));
    // A quiet time counts only when the other side spoke during it.
    if let (Some(last), Some(other)) = (dir.last, other_last) {
        if other.time > last.time {
            let quiet = at.time.saturating_sub(last.time);
            if dir.silence.is_none_or(|(q, _, _)| quiet > q) {
                dir.silence = Some((quiet, last, Some(at)));
            }
        }
    }
    dir.first.get_or_insert(at);
    dir.last = Some(at);
    // The other side's quiet time up to now, if it lasts to the end.
    let other = &mut session.dirs[way.reverse().index()];
    if let Some(last) = other.last {
        let quiet = at.time.saturating_sub(last.time);
        let ends_open = other
            .silence
            .is_some_and(|(_, from, to)| to.is_none() && from == last);
        if ends_open || other.silence.is_none_or(|(q, _, _)| quiet > q) {
            other.silence = Some((quiet, last, None));
        }
    }
    if at.frame >= session.last.frame {
        session.last = at;
    }
}

pub(crate) fn on_cloud(
    session: &mut SessionStats,
    learned: &mut Learned,
    timeline: &mut Timeline,
    way: Way,
    record: &Record,
    at: At,
    message: &Message,
) {
    match message {
        Message::Request(request) => {
            learned.clients.insert(record.src);
            session.first_request_way.get_or_insert(way);
            let endpoint = request.endpoint();
            if matches!(endpoint, Endpoint::P2pChannel { .. }) {
                learned.p2p_channel_sockets.insert(record.src);
            }
            let name = endpoint_name(&endpoint);
            session.stage(at, way, format!("{} {name}", request.method.as_str()));
            let cseq = request.cseq();
            let retransmission = session.requests.iter_mut().rev().find(|r| {
                r.way == way && r.endpoint == endpoint && r.cseq == cseq && !r.final_answer
            });
            match retransmission {
                Some(r) => r.count = r.count.saturating_add(1),
                None => {
                    if session.requests.len() < MAX_STAGES {
                        // The timeline names the request by its path, as sent.
                        let step = format!("{} {}", request.method.as_str(), request.path);
                        let stage_id =
                            cseq.and_then(|_| timeline.start(session.key, step, at.time));
                        session.requests.push(CloudRequest {
                            stage_id,
                            at,
                            way,
                            endpoint,
                            cseq,
                            count: 1,
                            answers: Vec::new(),
                            final_answer: false,
                        });
                    }
                }
            }
        }
        Message::Response(response) => {
            let cseq = response.cseq();
            let back = way.reverse();
            let matched = {
                let candidates = session.requests.iter_mut().filter(|r| r.way == back);
                let by_cseq: Vec<&mut CloudRequest> = candidates
                    .filter(|r| match (r.cseq, cseq) {
                        (Some(a), Some(b)) => a == b,
                        _ => !r.final_answer,
                    })
                    .collect();
                // The newest request with that CSeq, else the oldest open one.
                if cseq.is_some() {
                    by_cseq.into_iter().next_back()
                } else {
                    by_cseq.into_iter().next()
                }
            };
            let xml = response.xml_body().ok().flatten();
            let error = xml.as_ref().map(ErrorBody::from_xml);
            match matched {
                Some(request) => {
                    if let Some(id) = request.stage_id {
                        let answer = format!("{} {}", response.code, response.reason);
                        timeline.answer(id, answer, at.time);
                    }
                    request.answers.push((at, response.code));
                    if response.code >= 200 {
                        request.final_answer = true;
                    }
                    let endpoint = request.endpoint.clone();
                    let name = endpoint_name(&endpoint);
                    let detail = error
                        .as_ref()
                        .and_then(|e| e.error.clone())
                        .map(|e| format!(" {e}"))
                        .unwrap_or_default();
                    session.stage(at, way, format!("{name} {}{detail}", response.code));
                    if response.code >= 400 {
                        let err = error.as_ref();
                        let what = match (response.code, err.and_then(|e| e.error.clone())) {
                            (403 | 401, Some(e)) if e.starts_with("DevPwd_") => e,
                            _ => name.clone(),
                        };
                        session.errors.push((
                            at,
                            response.code,
                            what,
                            err.and_then(|e| e.policy.clone()),
                        ));
                    }
                    if let Some(xml) = &xml {
                        learn_answer(learned, &endpoint, xml, response.code);
                    }
                }
                None => {
                    // The agent's own notification after relay-channel
                    // (docs/PROTOCOL.md §1.2), or a stray answer.
                    session.stage(at, way, format!("agent notification {}", response.code));
                    if session.unsolicited.len() < MAX_STAGES {
                        session
                            .unsolicited
                            .push((at, way, response.code, response.reason.clone()));
                    }
                    learned.agents.insert(record.src);
                }
            }
        }
    }
}

pub(crate) fn learn_answer(
    learned: &mut Learned,
    endpoint: &Endpoint,
    xml: &crate::codec::cloud::XmlBody,
    code: u16,
) {
    if !(200..300).contains(&code) {
        return;
    }
    match TypedBody::of_response(endpoint, xml) {
        TypedBody::ChannelAnswer(ChannelAnswer {
            pub_addr,
            local_addr,
            ..
        }) => {
            if let Some(addr) = pub_addr.as_deref().and_then(host_port_addr) {
                learned.pub_addrs.insert(addr);
            }
            if let Some(list) = local_addr.as_deref().and_then(|t| parse_addr_list(t).ok()) {
                learned
                    .local_addrs
                    .extend(list.into_iter().take(16).map(SocketAddr::V4));
            }
        }
        TypedBody::Agent(agent) => {
            if let Some(addr) = agent.agent.as_deref().and_then(host_port_addr) {
                learned.agents.insert(addr);
            }
        }
        _ => {}
    }
}

pub(crate) fn on_punch(
    session: &mut SessionStats,
    timeline: &mut Timeline,
    way: Way,
    at: At,
    message: &PunchMessage,
) {
    session.first_punch.get_or_insert((at, way));
    let key = session.key;
    let name = match message.message_type {
        MessageType::BindingRequest => {
            session.punch_requests[way.index()] =
                session.punch_requests[way.index()].saturating_add(1);
            timeline.start_awaiting(key, Awaiting::Punch, way, "punch".into(), at.time);
            "punch Binding Request"
        }
        MessageType::BindingSuccess => {
            session.punch_successes[way.index()] =
                session.punch_successes[way.index()].saturating_add(1);
            let success = "success".to_owned();
            timeline.answer_awaiting(key, Awaiting::Punch, way, success, at.time);
            if message.address().is_some() {
                "punch Binding Success"
            } else {
                "punch confirm"
            }
        }
        MessageType::BindingError => "punch Binding Error",
        MessageType::Other(_) => "punch other",
    };
    session.stage(at, way, name);
}
