//! The cloud exchange: building requests (fresh WSSE nonce and `Created` on
//! every send), resending them with the same CSeq, matching answers to
//! requests, and the 401 clock correction (FIELD-NOTES §2.2, §2.5).
//! What each answer means is handled by the leg that asked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::codec::cloud::{
    self, build_request, build_sdk_stun_warmup, format_created_offset, format_created_utc,
    p2p_channel_auth_body, p2p_channel_body, parse_created, relay_agent_body,
    relay_channel_auth_body, relay_channel_body, relay_start_body, DeviceAuthBlock, Endpoint,
    ErrorBody, Identify, Message, RequestParams, RequestStyle, Response, WsseAuth,
};
use crate::codec::crypto;
use crate::codec::identity::Dialect;

pub(super) use super::request::Req;
use super::timers::Timer;
use super::types::{HandshakeError, Sock, Stage, Transmit};
use super::{peer_text, Handshake, RelayLeg};

/// A request awaiting its answer. Its next send is [`Timer::Resend`].
#[derive(Debug, Clone)]
pub(super) struct Exchange {
    pub req: Req,
    pub to: SocketAddr,
    /// `None` only for the SDK warm-up, which carries no CSeq.
    pub cseq: Option<i64>,
    /// p2p-channel's `CreateDate`, kept across resends (FIELD-NOTES §2.2).
    pub create_date: i64,
    /// The wait after the next send.
    pub wait: Duration,
    /// The clock offset the last send was built with.
    pub offset: i64,
    /// What came back from `to` without answering: reported when the
    /// request runs out of time (issue 11 item 7).
    pub answers: Answers,
}

/// Datagrams from a request's peer that did not answer it.
#[derive(Debug, Clone, Default)]
pub(super) struct Answers {
    /// Undecodable, or an answer to no request of ours.
    pub invalid: u32,
    /// Why the first of them was not valid (peer text truncated).
    pub first_invalid: Option<String>,
    /// `1xx`: the cloud is working on it.
    pub provisional: u32,
}

/// The bookkeeping of every request in flight.
#[derive(Debug)]
pub(super) struct CloudExchanges {
    pub pending: Vec<Exchange>,
    next_cseq: i64,
    /// Server time minus our clock, learnt from a 401.
    pub clock_offset: i64,
    unauthorized: u32,
    /// Some answer carried a CSeq: CSeq-less answers then only match
    /// requests sent without one.
    servers_echo_cseq: bool,
    /// Every CSeq sent: a late or duplicated answer to one of them is stale,
    /// not invalid (a few dozen at most per handshake).
    sent_cseqs: Vec<i64>,
}

impl CloudExchanges {
    pub fn new() -> Self {
        CloudExchanges {
            pending: Vec::new(),
            next_cseq: 1,
            clock_offset: 0,
            unauthorized: 0,
            servers_echo_cseq: false,
            sent_cseqs: Vec::new(),
        }
    }

    pub fn get(&self, req: Req) -> Option<&Exchange> {
        self.pending.iter().find(|e| e.req == req)
    }

    fn get_mut(&mut self, req: Req) -> Option<&mut Exchange> {
        self.pending.iter_mut().find(|e| e.req == req)
    }

    pub fn remove(&mut self, req: Req) -> Option<Exchange> {
        let i = self.pending.iter().position(|e| e.req == req)?;
        Some(self.pending.remove(i))
    }

    /// A datagram from `from` on `sock` that answered nothing: it counts
    /// against every request waiting there.
    fn note_invalid(&mut self, sock: Sock, from: SocketAddr, reason: impl FnOnce() -> String) {
        let mut reason = Some(reason);
        let mut first: Option<String> = None;
        for e in self
            .pending
            .iter_mut()
            .filter(|e| e.req.sock() == sock && e.to == from)
        {
            e.answers.invalid = e.answers.invalid.saturating_add(1);
            if e.answers.first_invalid.is_none() {
                if first.is_none() {
                    first = reason.take().map(|r| r());
                }
                e.answers.first_invalid = first.clone();
            }
        }
    }
}

impl Handshake {
    fn corrected_unix(&self, unix: i64) -> i64 {
        unix.saturating_add(self.cloud.clock_offset)
    }

    pub(super) fn sdk(&self) -> bool {
        self.config.profile.dialect == Dialect::Sdk
    }

    /// Legacy: a counter from 1 shared by both sockets; SDK: a random signed
    /// int32 per logical request (FIELD-NOTES §2.2).
    fn new_cseq(&mut self) -> i64 {
        let cseq = if self.sdk() {
            i64::from(self.rng.gen::<i32>())
        } else {
            let c = self.cloud.next_cseq;
            self.cloud.next_cseq = c.wrapping_add(1);
            c
        };
        self.cloud.sent_cseqs.push(cseq);
        cseq
    }

    /// A WSSE or device-auth nonce: [0, 2^31) legacy, signed int32 SDK.
    fn nonce_text(&mut self) -> String {
        if self.sdk() {
            self.rng.gen::<i32>().to_string()
        } else {
            self.rng.gen_range(0..=i32::MAX).to_string()
        }
    }

    pub(super) fn start_request(&mut self, req: Req, to: SocketAddr, now: Instant, unix: i64) {
        let cseq = if req == Req::Warmup && self.sdk() {
            None
        } else {
            Some(self.new_cseq())
        };
        let wait = if req == Req::RelayChannel {
            self.config.relay_channel_wait
        } else {
            self.config.first_wait
        };
        self.cloud.pending.push(Exchange {
            req,
            to,
            cseq,
            create_date: self.corrected_unix(unix),
            wait,
            offset: self.cloud.clock_offset,
            answers: Answers::default(),
        });
        self.send_exchange(req, now, unix);
    }

    pub(super) fn send_exchange(&mut self, req: Req, now: Instant, unix: i64) {
        let Some(exchange) = self.cloud.get(req).cloned() else {
            return;
        };
        let payload = self.build(&exchange, unix);
        self.transmits.push_back(Transmit {
            sock: req.sock(),
            to: exchange.to,
            payload,
        });
        let max_wait = self.config.max_wait.max(exchange.wait);
        let offset = self.cloud.clock_offset;
        self.timers.set(Timer::Resend(req), now + exchange.wait);
        if let Some(e) = self.cloud.get_mut(req) {
            e.wait = (e.wait * 2).min(max_wait);
            e.offset = offset;
        }
    }

    /// Forgets a request (answered or given up).
    pub(super) fn end_exchange(&mut self, req: Req) -> Option<Exchange> {
        self.timers.stop(Timer::Resend(req));
        self.cloud.remove(req)
    }

    fn path(&self, req: Req) -> String {
        let serial = self.config.serial.clone();
        let endpoint = match req {
            Req::Warmup if self.sdk() => Endpoint::OnlineStun,
            Req::Warmup => Endpoint::ProbeP2pSrv,
            Req::P2pSrv => Endpoint::OnlineP2pSrv { serial },
            Req::ProbeDevice => Endpoint::ProbeDevice { serial },
            Req::InfoDevice => Endpoint::InfoDevice { serial },
            Req::OnlineRelay => Endpoint::OnlineRelay,
            Req::RelayAgent => Endpoint::RelayAgent,
            Req::RelayStart => Endpoint::RelayStart {
                token: self
                    .lease
                    .as_ref()
                    .map(|l| l.token.clone())
                    .unwrap_or_default(),
            },
            Req::RelayChannel => Endpoint::RelayChannel { serial },
            Req::P2pChannel => Endpoint::P2pChannel { serial },
        };
        endpoint.path()
    }

    /// The request's bytes, with a fresh WSSE nonce and `Created` (and fresh
    /// device-auth crypto) on every send.
    fn build(&mut self, exchange: &Exchange, unix: i64) -> Vec<u8> {
        let style = self.config.profile.request_style();
        if exchange.req == Req::Warmup && self.sdk() {
            let tou = match &style {
                RequestStyle::Sdk(headers) => headers.tou_type.clone(),
                RequestStyle::Legacy { .. } => String::new(),
            };
            return build_sdk_stun_warmup(&tou).encode();
        }
        let now_unix = self.corrected_unix(unix);
        let created = if self.sdk() {
            format_created_offset(now_unix, 0)
        } else {
            format_created_utc(now_unix)
        }
        .unwrap_or_default();
        let nonce = self.nonce_text();
        let path = self.path(exchange.req);
        let body = self.body(exchange, now_unix);
        let request_id = (self.sdk() && exchange.req == Req::P2pChannel).then(|| {
            let bytes: [u8; 16] = self.rng.gen();
            hex::encode(bytes)
        });
        let profile = &self.config.profile;
        build_request(
            &style,
            &RequestParams {
                path: &path,
                body: &body,
                cseq: exchange.cseq,
                auth: Some(WsseAuth {
                    username: &profile.username,
                    key: &profile.key,
                    nonce: &nonce,
                    created: &created,
                }),
                request_id: request_id.as_deref(),
            },
        )
        .encode()
    }

    fn body(&mut self, exchange: &Exchange, now_unix: i64) -> String {
        let serial = self.config.serial.clone();
        match exchange.req {
            Req::RelayAgent if self.sdk() => relay_agent_body(&serial),
            Req::RelayStart => relay_start_body(self.sdk().then_some(serial.as_str())),
            Req::P2pChannel => self.p2p_channel_body(exchange.create_date),
            Req::RelayChannel => self.relay_channel_body(now_unix),
            _ => String::new(),
        }
    }

    fn salt_text(&self) -> Option<&str> {
        self.facts.salt.as_deref().filter(|s| !s.is_empty())
    }

    /// Type 0, or with credentials the auth block over the encrypted
    /// `127.0.0.1:{port}` (DH-P2P §4; `RandSalt` left out for an empty salt,
    /// FIELD-NOTES §3.3).
    fn p2p_channel_body(&mut self, create_date: i64) -> String {
        let identify = Identify(self.identify);
        let (Some(key), Some((user, _))) =
            (self.facts.key.clone(), self.config.credentials.clone())
        else {
            return p2p_channel_body(&identify, self.device_port);
        };
        let nonce = self.nonce_text();
        let local = format!("127.0.0.1:{}", self.device_port);
        let encrypted = crypto::encrypt_local_addr(&key, &nonce, &local);
        let date = create_date.to_string();
        let dev_auth = crypto::dev_auth(&key, &nonce, &date, &encrypted);
        let block = DeviceAuthBlock {
            create_date: &date,
            dev_auth: &dev_auth,
            nonce: &nonce,
            rand_salt: self.salt_text(),
            user_name: &user,
        };
        p2p_channel_auth_body(&block, &identify, &encrypted)
    }

    /// `agentAddr`, with credentials after the auth block signed over an
    /// empty payload with the device's nonce (a fresh one in relay mode,
    /// where no channel answer gave one; FIELD-NOTES §3.2 has both).
    fn relay_channel_body(&mut self, now_unix: i64) -> String {
        let agent = self
            .agent_addr
            .as_ref()
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        let (Some(key), Some((user, _))) =
            (self.facts.key.clone(), self.config.credentials.clone())
        else {
            return relay_channel_body(&agent);
        };
        let device_nonce = self.facts.channel.as_ref().and_then(|c| c.nonce.clone());
        let nonce = match device_nonce {
            Some(n) => n,
            None => self.nonce_text(),
        };
        let date = now_unix.to_string();
        let dev_auth = crypto::dev_auth(&key, &nonce, &date, "");
        let block = DeviceAuthBlock {
            create_date: &date,
            dev_auth: &dev_auth,
            nonce: &nonce,
            rand_salt: self.salt_text(),
            user_name: &user,
        };
        relay_channel_auth_body(&block, &agent)
    }

    // -----------------------------------------------------------------
    // Answers

    /// A datagram of cloud text, or anything else from a peer we asked.
    pub(super) fn on_cloud(
        &mut self,
        now: Instant,
        unix: i64,
        sock: Sock,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let response = match cloud::decode(bytes) {
            Ok(Message::Response(response)) => response,
            Ok(Message::Request(_)) => {
                return self.invalid(sock, from, || "a request, not an answer".to_owned())
            }
            Err(e) => return self.invalid(sock, from, || format!("undecodable ({e})")),
        };
        if response.cseq().is_some() {
            self.cloud.servers_echo_cseq = true;
        }
        let Some(req) = self.match_exchange(sock, from, &response) else {
            // A duplicate or late answer to a request of ours: stale.
            if response
                .cseq()
                .is_some_and(|c| self.cloud.sent_cseqs.contains(&c))
            {
                self.skipped += 1;
                return;
            }
            // Noise, or an answer to nothing we asked.
            return self.invalid(sock, from, || {
                let status = peer_text(&format!("{} {}", response.code, response.reason));
                match response.cseq() {
                    Some(cseq) => format!("{status} with CSeq {cseq}, which matches no request"),
                    None => format!("{status} matching no request"),
                }
            });
        };
        self.on_answer(now, unix, req, from, &response);
    }

    /// Skips a datagram that answered nothing, and remembers it against
    /// the requests waiting on its sender.
    pub(super) fn invalid(
        &mut self,
        sock: Sock,
        from: SocketAddr,
        reason: impl FnOnce() -> String,
    ) {
        self.skipped += 1;
        self.cloud.note_invalid(sock, from, reason);
    }

    /// Which outstanding request an answer belongs to: by CSeq where the
    /// server echoes it; the agent's notification (no CSeq, a code below
    /// 300, from the agent) to relay-channel; else the request this socket
    /// sent to that address.
    fn match_exchange(&self, sock: Sock, from: SocketAddr, response: &Response) -> Option<Req> {
        let pending = &self.cloud.pending;
        if let Some(cseq) = response.cseq() {
            return pending
                .iter()
                .find(|e| e.req.sock() == sock && e.cseq == Some(cseq))
                .map(|e| e.req);
        }
        let from_agent = self.agent_addr.as_ref().is_some_and(|(a, _)| *a == from);
        if from_agent
            && response.code < 300
            && pending
                .iter()
                .any(|e| e.req == Req::RelayChannel && e.req.sock() == sock)
        {
            return Some(Req::RelayChannel);
        }
        pending
            .iter()
            .find(|e| {
                e.req.sock() == sock
                    && e.to == from
                    && e.req != Req::RelayChannel
                    && (e.cseq.is_none() || !self.cloud.servers_echo_cseq)
            })
            .map(|e| e.req)
    }

    fn on_answer(
        &mut self,
        now: Instant,
        unix: i64,
        req: Req,
        from: SocketAddr,
        response: &Response,
    ) {
        let code = response.code;
        if code == 401 {
            return self.on_unauthorized(now, unix, req, response);
        }
        if (100..200).contains(&code) {
            if let Some(e) = self.cloud.get_mut(req) {
                e.answers.provisional = e.answers.provisional.saturating_add(1);
            }
            // p2p-channel's `100 Trying`: the channel is being prepared and
            // the 200 follows once the device answered the cloud. Asking
            // again is only for a lost 200, so it waits twice as long.
            if req == Req::P2pChannel {
                self.timers
                    .set(Timer::Resend(req), now + self.config.max_wait * 2);
            }
            return;
        }
        if req == Req::RelayChannel {
            let from_agent = self.agent_addr.as_ref().is_some_and(|(a, _)| *a == from);
            if from_agent && code < 300 {
                self.end_exchange(req);
                return self.on_agent_notified(now, response);
            }
            if code >= 400 {
                self.end_exchange(req);
                let detail = status_text(response);
                return self.relay_failure(Stage::RelayChannel, detail);
            }
            // Main answered relay-channel after all: keep waiting for the agent.
            return;
        }
        self.end_exchange(req);
        let xml = response.xml_body().ok().flatten();
        match req {
            Req::Warmup => self.on_warmup(now, unix, response),
            Req::P2pSrv => self.on_p2psrv(now, unix, response, xml),
            Req::ProbeDevice => self.on_probe_device(now, response),
            Req::InfoDevice => self.on_info(now, response, xml),
            Req::OnlineRelay => self.on_online_relay(now, response, xml),
            Req::RelayAgent => self.on_relay_agent(now, unix, response, xml),
            Req::RelayStart => self.on_relay_start(now, response),
            Req::P2pChannel => self.on_channel(now, response, xml),
            Req::RelayChannel => {}
        }
    }

    /// 401: learn the server's clock from `<Time>` (or `Date`), then retry
    /// under a new CSeq, at most `max_401_retries` times (FIELD-NOTES §2.5).
    /// A 401 to a request built before the latest correction is only
    /// retried: the requests in flight all share the one clock error.
    fn on_unauthorized(&mut self, now: Instant, unix: i64, req: Req, response: &Response) {
        let stale = self
            .cloud
            .get(req)
            .is_some_and(|e| e.offset != self.cloud.clock_offset);
        let xml = response.xml_body().ok().flatten();
        let body_time = xml
            .as_ref()
            .and_then(|x| x.get("Time"))
            .and_then(|t| t.trim().parse::<i64>().ok());
        let server_time =
            body_time.or_else(|| response.header("Date").and_then(|d| parse_created(d).ok()));
        if stale {
            return self.retry_after_401(now, unix, req);
        }
        if let Some(t) = server_time {
            self.cloud.clock_offset = t.saturating_sub(unix);
        }
        self.cloud.unauthorized += 1;
        if self.cloud.unauthorized > self.config.max_401_retries {
            let error = xml
                .as_ref()
                .and_then(|x| ErrorBody::from_xml(x).error)
                .unwrap_or_else(|| response.reason.clone());
            return self.fail(HandshakeError::Unauthorized {
                retries: self.config.max_401_retries,
                offset_secs: self.cloud.clock_offset,
                error: peer_text(&error),
            });
        }
        self.retry_after_401(now, unix, req);
    }

    fn retry_after_401(&mut self, now: Instant, unix: i64, req: Req) {
        let had_cseq = self.cloud.get(req).is_some_and(|e| e.cseq.is_some());
        let cseq = if had_cseq {
            Some(self.new_cseq())
        } else {
            None
        };
        let first_wait = self.config.first_wait;
        let create_date = self.corrected_unix(unix);
        if let Some(e) = self.cloud.get_mut(req) {
            e.cseq = cseq;
            if e.req != Req::RelayChannel {
                e.wait = first_wait;
            }
            e.create_date = create_date;
        }
        self.send_exchange(req, now, unix);
    }

    /// The stage cap passed: every request still waiting is given up, each
    /// with what came back for it.
    pub(super) fn cap_requests(&mut self, now: Instant) {
        let reqs: Vec<Req> = self.cloud.pending.iter().map(|e| e.req).collect();
        for req in reqs {
            let Some(exchange) = self.end_exchange(req) else {
                continue;
            };
            let error = self.no_valid_answer(&exchange);
            if req.is_relay_leg() {
                self.relay_gave_up(req.stage(), error);
            } else if req == Req::P2pChannel && self.may_fall_back() {
                // Auto: the relay may still carry the session.
                let after = self.config.stage_cap;
                let reason = error.short_reason();
                self.fall_back(now, Stage::Channel, after, &reason);
            } else {
                self.fail(error);
            }
            if self.is_done() {
                return;
            }
        }
    }

    /// The error for a request that ran out of time: no answer at all, only
    /// `100 Trying`, or only answers that were not valid.
    pub(super) fn no_valid_answer(&self, exchange: &Exchange) -> HandshakeError {
        let stage = exchange.req.stage();
        let after = self.config.stage_cap;
        let a = &exchange.answers;
        if a.provisional > 0 {
            return HandshakeError::StillTrying {
                stage,
                after,
                answers: a.provisional,
            };
        }
        match &a.first_invalid {
            Some(first) if a.invalid > 0 => HandshakeError::NoValidAnswer {
                stage,
                after,
                peer: exchange.to,
                answers: a.invalid,
                first: first.clone(),
            },
            _ => HandshakeError::Timeout { stage, after },
        }
    }

    /// Whether the relay leg is still going (not off, not failed).
    pub(super) fn relay_running(&self) -> bool {
        !matches!(self.relay, RelayLeg::Off | RelayLeg::Failed(_))
    }
}

pub(super) fn status_text(response: &Response) -> String {
    let error = response
        .xml_body()
        .ok()
        .flatten()
        .and_then(|x| ErrorBody::from_xml(&x).error);
    let text = match error {
        Some(e) => format!("{} {} ({e})", response.code, response.reason),
        None => format!("{} {}", response.code, response.reason),
    };
    peer_text(&text)
}
