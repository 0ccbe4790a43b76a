//! The text-protocol roles: main cloud, P2P server, relay server, and the
//! agent's HTTP side. Each request datagram gets at most one answer (or, for
//! p2p-channel, `100 Trying` then a delayed `200 Server Nat Info!`), built
//! with the shared cloud codec. Behaviour follows DH-P2P §7 and FIELD-NOTES §2.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use super::config::{AuthPolicy, CloudDialect, Mode};
use super::core::{ChannelGrant, Emulator, Lease, Role, Transmit};
use crate::codec::cloud::{
    self, format_created_utc, parse_created, ChannelRequest, Endpoint, Identify, Message, Method,
    Request, Response,
};
use crate::codec::crypto;
use crate::codec::identity;

/// The body of a 403 as the real cloud sends it (FIELD-NOTES §2.3).
fn forbidden(error: &str) -> Response {
    let body = format!(
        "<body><ErrCode>4</ErrCode><Error>{error}</Error><Policy>p2p,udprelay</Policy></body>"
    );
    Response::new(403, "Forbidden").with_body(body.into_bytes())
}

/// Why a request's device-auth block was refused.
enum AuthVerdict {
    /// No block at all.
    Missing,
    /// A block that verifies; the device's key.
    Valid(crypto::DeviceKey),
    /// `RandSalt` is not this device's salt.
    WrongSalt,
    /// DevAuth does not verify (wrong user or password).
    WrongDigest,
}

impl Emulator {
    /// Answers a datagram that reached one of the text roles.
    pub(super) fn handle_text(
        &mut self,
        now: Instant,
        unix: i64,
        role: Role,
        index: usize,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let request = match cloud::decode(bytes) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Response(_)) | Err(_) => {
                // Garbage and stray responses are dropped, and counted.
                self.stats.dropped_text += 1;
                return;
            }
        };
        self.stats.requests += 1;
        let endpoint = request.endpoint();
        self.count_request(now, role, index, from, &endpoint);
        // WSSE first: every request but the SDK warm-up carries it.
        if !matches!(endpoint, Endpoint::OnlineStun) {
            if let Some(reject) = self.check_wsse(unix, &request) {
                return self.answer((role, index), from, &request, reject);
            }
        }
        let answer = match (role, &endpoint) {
            (Role::Cloud, Endpoint::ProbeP2pSrv) => Some(Response::new(200, "OK")),
            (Role::Cloud, Endpoint::OnlineStun) => Some(Response::new(200, "OK")),
            (Role::Cloud, Endpoint::OnlineP2pSrv { serial }) => {
                Some(match self.registered_serial(now, index, serial) {
                    Some(_) => {
                        let us = self.addrs.p2psrv;
                        Response::new(200, "OK").with_body(
                            format!("<body><DS>{us}</DS><US>{us}</US></body>").into_bytes(),
                        )
                    }
                    None => not_found(),
                })
            }
            (Role::Cloud, Endpoint::OnlineRelay) => Some(Response::new(200, "OK").with_body(
                format!("<body><Address>{}</Address></body>", self.addrs.relay).into_bytes(),
            )),
            (Role::Cloud, Endpoint::P2pChannel { serial }) => {
                return self.p2p_channel(now, index, from, &request, serial.clone());
            }
            (Role::Cloud, Endpoint::RelayChannel { serial }) => {
                // The main server never answers relay-channel (DH-P2P §7.8):
                // the agent sends its own notification instead.
                self.relay_channel(now, index, from, &request, serial.clone());
                return;
            }
            (Role::P2pSrv, Endpoint::ProbeDevice { serial }) => {
                Some(match self.online_serial(now, serial) {
                    Some(_) => Response::new(200, "OK"),
                    None => not_found(),
                })
            }
            (Role::P2pSrv, Endpoint::InfoDevice { serial }) => {
                Some(match self.online_serial(now, serial) {
                    Some(key) => {
                        let info = self
                            .devices
                            .get(&key)
                            .map(|d| d.info_blob.clone())
                            .unwrap_or_default();
                        Response::new(200, "OK").with_body(
                            format!(
                                "<body><DevVersion>{}</DevVersion><Info>{info}</Info></body>",
                                self.config.dev_version
                            )
                            .into_bytes(),
                        )
                    }
                    None => not_found(),
                })
            }
            (Role::Relay, Endpoint::RelayAgent) => Some(self.relay_agent(from)),
            (Role::Relay, Endpoint::RelayUnbind { token }) => Some(self.relay_unbind(token)),
            (Role::Agent, Endpoint::RelayStart { token }) => {
                Some(self.relay_start(unix, from, token))
            }
            // Undocumented endpoints (local-channel, tcprelay-…) and requests
            // sent to the wrong role: 404, as docs/EMULATOR.md says.
            _ => Some(not_found()),
        };
        if let Some(answer) = answer {
            self.answer((role, index), from, &request, answer);
        }
    }

    /// Counts a request per socket and endpoint, and logs it with its time.
    fn count_request(
        &mut self,
        now: Instant,
        role: Role,
        index: usize,
        from: SocketAddr,
        endpoint: &Endpoint,
    ) {
        let socket = match (role, index) {
            (Role::Cloud, i) if i > 0 => match self.cloud_names.get(i - 1) {
                Some(name) => format!("cloud.{name}"),
                None => "cloud".to_string(),
            },
            (role, _) => role.name().to_string(),
        };
        let key = format!("{socket} {}", endpoint_name(endpoint));
        let t = self.uptime(now).as_secs_f64();
        self.log_request(format!("request t={t:.3}s {key} from {from}"));
        *self.request_counts.entry(key).or_insert(0) += 1;
    }

    /// Sends `answer` from socket `via` echoing the request's CSeq, with the
    /// server's Date.
    fn answer(&mut self, via: (Role, usize), to: SocketAddr, request: &Request, answer: Response) {
        let bytes = self.finish_response(request, answer).encode();
        self.transmit_via(via.0, via.1, None, to, bytes);
    }

    fn finish_response(&self, request: &Request, mut answer: Response) -> Response {
        // CSeq and Date go first, as the real servers order them.
        let mut head = Vec::new();
        if let Some(cseq) = request.header("CSeq") {
            head.push(cloud::Header::new("CSeq", cseq));
        }
        head.push(cloud::Header::new(
            "Date",
            format_created_utc(self.last_unix).unwrap_or_default(),
        ));
        head.append(&mut answer.headers);
        answer.headers = head;
        answer
    }

    /// `Some(401)` when the WSSE header is missing, from an unknown client
    /// identity, with a wrong digest or a skewed clock.
    fn check_wsse(&mut self, unix: i64, request: &Request) -> Option<Response> {
        let unauthorized = |why: &str| {
            Response::new(401, "Unauthorized").with_body(
                format!("<body><Error>{why}</Error><Time>{unix}</Time></body>").into_bytes(),
            )
        };
        let Ok(Some(wsse)) = request.wsse() else {
            self.stats.rejected_wsse += 1;
            return Some(unauthorized("MissingWsse"));
        };
        let known = identity::profiles()
            .into_iter()
            .find(|p| p.username == wsse.username && wsse.digest_matches(&p.key));
        if known.is_none() {
            self.stats.rejected_wsse += 1;
            return Some(unauthorized("InvalidDigest"));
        }
        match parse_created(&wsse.created) {
            Ok(created) if created.abs_diff(unix) <= self.config.max_skew.as_secs() => None,
            _ => {
                self.stats.rejected_wsse += 1;
                Some(unauthorized("TimeSkew"))
            }
        }
    }

    /// The configured serial matching `serial` (any case), when the device
    /// is online now.
    pub(super) fn online_serial(&self, now: Instant, serial: &str) -> Option<String> {
        let key = serial.to_ascii_uppercase();
        let unit = self.devices.get(&key)?.unit;
        let online = self
            .units
            .get(unit)
            .is_some_and(|u| !matches!(u.mode, Mode::Offline | Mode::OfflineKnown))
            && !self.unit_vanished(unit, now);
        online.then_some(key)
    }

    /// The configured serial, when the cloud of socket `cloud` (0 = main)
    /// knows the device: online, or away but still registered
    /// (`offline-known`). Other clouds do not know it (404).
    fn registered_serial(&self, now: Instant, cloud: usize, serial: &str) -> Option<String> {
        let key = serial.to_ascii_uppercase();
        let unit = self.devices.get(&key)?.unit;
        let known = self
            .units
            .get(unit)
            .is_some_and(|u| u.mode == Mode::OfflineKnown)
            || self.online_serial(now, serial).is_some();
        (known && self.cloud_index_of(unit) == cloud).then_some(key)
    }

    fn cloud_index_of(&self, unit: usize) -> usize {
        let cloud = self.units.get(unit).and_then(|u| u.cloud.as_deref());
        cloud
            .and_then(|c| self.cloud_names.iter().position(|n| n == c))
            .map_or(0, |i| i + 1)
    }

    pub(super) fn unit_of(&self, serial_key: &str) -> usize {
        self.devices.get(serial_key).map_or(0, |d| d.unit)
    }

    fn verify_auth(&self, serial_key: &str, body: &ChannelRequest, payload: &str) -> AuthVerdict {
        let (Some(user), Some(nonce), Some(date), Some(dev_auth)) = (
            body.user_name.as_deref(),
            body.nonce.as_deref(),
            body.create_date.as_deref(),
            body.dev_auth.as_deref(),
        ) else {
            return AuthVerdict::Missing;
        };
        let Some(device) = self.devices.get(serial_key) else {
            return AuthVerdict::Missing;
        };
        let salt = &device.salt;
        if let Some(sent_salt) = body.rand_salt.as_deref() {
            if sent_salt != salt {
                return AuthVerdict::WrongSalt;
            }
        }
        let password = self
            .units
            .get(device.unit)
            .map_or(self.config.password.as_str(), |u| u.password.as_str());
        let key = crypto::device_key(user, salt, password);
        if user != self.config.username || crypto::dev_auth(&key, nonce, date, payload) != dev_auth
        {
            return AuthVerdict::WrongDigest;
        }
        AuthVerdict::Valid(key)
    }

    fn p2p_channel(
        &mut self,
        now: Instant,
        cloud: usize,
        from: SocketAddr,
        request: &Request,
        serial: String,
    ) {
        let via = (Role::Cloud, cloud);
        let Some(key) = self.registered_serial(now, cloud, &serial) else {
            return self.answer(via, from, request, not_found());
        };
        let unit = self.unit_of(&key);
        let auth = self.units.get(unit).map_or(AuthPolicy::None, |u| u.auth);
        if self.config.dialect == CloudDialect::Sdk
            && matches!(request.method, Method::DhPost | Method::DhGet)
        {
            // FIELD-NOTES C9: the DMSS cloud refuses the legacy layout.
            return self.answer(via, from, request, forbidden("DevPwd_InvalidDigest"));
        }
        let body = match request.xml_body() {
            Ok(Some(xml)) => ChannelRequest::from_xml(&xml),
            _ => return self.answer(via, from, request, bad_request()),
        };
        let Some(identify) = body
            .identify
            .as_deref()
            .and_then(|t| t.parse::<Identify>().ok())
        else {
            return self.answer(via, from, request, bad_request());
        };
        let local_addr = body.local_addr.clone().unwrap_or_default();
        let verdict = self.verify_auth(&key, &body, &local_addr);
        let device_key = match verdict {
            AuthVerdict::Valid(k) => Some(k),
            AuthVerdict::Missing if auth == AuthPolicy::None => None,
            AuthVerdict::Missing | AuthVerdict::WrongSalt => {
                self.stats.rejected_device_auth += 1;
                return self.answer(via, from, request, forbidden("DevPwd_InvalidSalt"));
            }
            AuthVerdict::WrongDigest => {
                self.stats.rejected_device_auth += 1;
                return self.answer(via, from, request, forbidden("DevPwd_InvalidDigest"));
            }
        };
        let cseq = request.cseq().unwrap_or(0);
        self.answer(via, from, request, Response::new(100, "Trying"));
        // The device's own answer forms: with auth, a nonce and an encrypted
        // LocalAddr (DH-P2P §4); PubAddr always plain.
        let device_addr = self
            .device_addrs
            .get(unit)
            .copied()
            .unwrap_or(self.addrs.device);
        let mut answer_body = String::from("<body>");
        match &device_key {
            Some(k) => {
                let n2 = self.rng.gen_range(0..i32::MAX as u32).to_string();
                let enc = crypto::encrypt_local_addr(k, &n2, &device_addr.to_string());
                answer_body.push_str(&format!(
                    "<LocalAddr>{enc}</LocalAddr><Nonce>{n2}</Nonce><PubAddr>{device_addr}</PubAddr>"
                ));
                if let Some(d) = self.devices.get_mut(&key) {
                    d.last_nonce = Some(n2);
                }
            }
            None => answer_body.push_str(&format!(
                "<LocalAddr>{device_addr}</LocalAddr><PubAddr>{device_addr}</PubAddr>"
            )),
        }
        answer_body.push_str("</body>");
        let answer = self.finish_response(
            request,
            Response::new(200, "Server Nat Info!").with_body(answer_body.into_bytes()),
        );
        let due = now + self.config.trying_delay;
        let answer = Transmit {
            from: Role::Cloud,
            index: cloud,
            leg: None,
            to: from,
            payload: answer.encode(),
        };
        self.transmit_at(due, answer);
        // A retransmitted request (same source, same CSeq) is answered again
        // but does not start a second punch.
        let grant = ChannelGrant {
            serial: key,
            client: from,
            identify: identify.0,
            authenticated: device_key.is_some(),
            cseq,
            granted_at: due,
        };
        self.grant_channel(now, unit, grant);
    }

    fn relay_channel(
        &mut self,
        now: Instant,
        cloud: usize,
        from: SocketAddr,
        request: &Request,
        serial: String,
    ) {
        let Some(key) = self.registered_serial(now, cloud, &serial) else {
            // Nothing comes back from main either way; an unknown device
            // simply never joins the agent.
            return;
        };
        let body = match request.xml_body() {
            Ok(Some(xml)) => ChannelRequest::from_xml(&xml),
            _ => return,
        };
        let unit = self.unit_of(&key);
        let auth = self.units.get(unit).map_or(AuthPolicy::None, |u| u.auth);
        if body.dev_auth.is_some() || auth == AuthPolicy::Required {
            // relay-channel signs an empty payload with the device's nonce
            // (or a fresh one, MF): verify_auth takes whatever nonce came.
            if !matches!(self.verify_auth(&key, &body, ""), AuthVerdict::Valid(_)) {
                self.stats.rejected_device_auth += 1;
                return;
            }
        }
        // Which lease: the one started from this socket, else the newest
        // at the named agent that has no device yet.
        let token = self
            .leases
            .iter()
            .filter(|(_, l)| l.client == Some(from))
            .max_by_key(|(_, l)| l.created)
            .or_else(|| {
                self.leases
                    .iter()
                    .filter(|(_, l)| l.client.is_some() && l.serial.is_none())
                    .max_by_key(|(_, l)| l.created)
            })
            .map(|(t, _)| t.clone());
        let Some(token) = token else { return };
        let Some(lease) = self.leases.get_mut(&token) else {
            return;
        };
        let first_join = lease.serial.is_none();
        lease.serial = Some(key);
        let Some(client) = lease.client else { return };
        if first_join || lease.notified_at.is_none() {
            lease.notified_at = Some(now);
        }
        // The agent's notification, from the agent's own address.
        let note = Transmit {
            from: Role::Agent,
            index: 0,
            leg: None,
            to: client,
            payload: Response::new(200, "Server Nat Info!").encode(),
        };
        self.transmit_at(now + self.config.trying_delay, note);
    }

    fn relay_agent(&mut self, from: SocketAddr) -> Response {
        let token: String = (0..16)
            .map(|_| char::from_digit(self.rng.gen_range(0..16), 16).unwrap_or('0'))
            .collect();
        let sign: Vec<u8> = (0..16).map(|_| self.rng.gen_range(b'A'..=b'Z')).collect();
        self.leases.insert(
            token.clone(),
            Lease {
                created: self.lease_serial,
                client: None,
                allocated_by: from,
                serial: None,
                sign,
                notified_at: None,
            },
        );
        self.lease_serial += 1;
        Response::new(200, "OK").with_body(
            format!(
                "<body><Token>{token}</Token><Agent>{}</Agent></body>",
                self.addrs.agent
            )
            .into_bytes(),
        )
    }

    fn relay_start(&mut self, unix: i64, from: SocketAddr, token: &str) -> Response {
        let sid = self.rng.gen_range(1..u32::MAX);
        match self.leases.get_mut(token) {
            Some(lease) => {
                lease.client = Some(from);
                Response::new(200, "OK").with_body(
                    format!("<body><SID>{sid}</SID><Time>{unix}</Time></body>").into_bytes(),
                )
            }
            None => {
                self.stats.rejected_tokens += 1;
                forbidden("InvalidToken")
            }
        }
    }

    fn relay_unbind(&mut self, token: &str) -> Response {
        match self.leases.remove(token) {
            Some(_) => {
                self.drop_relay_peer(token);
                Response::new(200, "OK")
            }
            // PR: 403 after the lease expired.
            None => {
                self.stats.rejected_tokens += 1;
                forbidden("InvalidToken")
            }
        }
    }
}

/// A short name of an endpoint for the request counts (no serial or token).
fn endpoint_name(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ProbeP2pSrv => "/probe/p2psrv",
        Endpoint::OnlineP2pSrv { .. } => "/online/p2psrv",
        Endpoint::ProbeDevice { .. } => "/probe/device",
        Endpoint::InfoDevice { .. } => "/info/device",
        Endpoint::OnlineRelay => "/online/relay",
        Endpoint::OnlineStun => "/online/stun",
        Endpoint::P2pStunProbe => "/p2p/stun/probe",
        Endpoint::P2pChannel { .. } => "p2p-channel",
        Endpoint::RelayChannel { .. } => "relay-channel",
        Endpoint::LocalChannel { .. } => "local-channel",
        Endpoint::TcpRelayChannel { .. } => "tcprelay-channel",
        Endpoint::TcpRelayClientBind => "tcprelay-client-bind",
        Endpoint::RelayAgent => "/relay/agent",
        Endpoint::RelayStart { .. } => "/relay/start",
        Endpoint::RelayUnbind { .. } => "/relay/unbind",
        Endpoint::Other(_) => "other",
    }
}

fn not_found() -> Response {
    Response::new(404, "Not Found")
}

fn bad_request() -> Response {
    Response::new(400, "Bad Request")
}
