//! A small client built from the codec, for driving the emulator in tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dhp2p::codec::cloud::{
    self, build_request, format_created_utc, Message, RequestParams, RequestStyle, Response,
    WsseAuth, XmlBody,
};
use dhp2p::codec::identity;
use dhp2p::codec::ptcp::{Body, Header, Packet, PID_IDLE, PID_SYN};
use tokio::net::UdpSocket;

pub const WAIT: Duration = Duration::from_secs(3);

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One UDP socket speaking the cloud protocol.
pub struct CloudClient {
    pub sock: UdpSocket,
    pub cseq: i64,
    pub style: RequestStyle,
    pub username: String,
    pub key: String,
    /// Seconds added to our clock in `Created` (to test skew).
    pub skew: i64,
}

impl CloudClient {
    pub async fn new() -> CloudClient {
        let profile = identity::default_profile();
        CloudClient {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            cseq: 0,
            style: RequestStyle::Legacy {
                content_headers: true,
            },
            username: profile.username,
            key: profile.key,
            skew: 0,
        }
    }

    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    pub fn request_bytes(&mut self, path: &str, body: &str) -> Vec<u8> {
        self.cseq += 1;
        let created = format_created_utc(unix_now() + self.skew).unwrap();
        let nonce = (self.cseq * 7919 + 12345).to_string();
        build_request(
            &self.style,
            &RequestParams {
                path,
                body,
                cseq: Some(self.cseq),
                auth: Some(WsseAuth {
                    username: &self.username,
                    key: &self.key,
                    nonce: &nonce,
                    created: &created,
                }),
                request_id: None,
            },
        )
        .encode()
    }

    pub async fn send(&mut self, to: SocketAddr, path: &str, body: &str) {
        let bytes = self.request_bytes(path, body);
        self.sock.send_to(&bytes, to).await.unwrap();
    }

    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.sock.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram, within `WAIT`.
    pub async fn recv(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
            _ => None,
        }
    }

    /// The next datagram within `wait`.
    pub async fn recv_within(&self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
            _ => None,
        }
    }

    /// Nothing arrives within `wait`.
    pub async fn silent_for(&self, wait: Duration) -> bool {
        let mut buf = vec![0u8; 65536];
        tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .is_err()
    }

    pub async fn recv_response(&self) -> Response {
        let (bytes, _) = self.recv().await.expect("a response");
        match cloud::decode(&bytes) {
            Ok(Message::Response(r)) => r,
            other => panic!(
                "not a response: {other:?} ({})",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    pub async fn ask(&mut self, to: SocketAddr, path: &str, body: &str) -> Response {
        self.send(to, path, body).await;
        self.recv_response().await
    }
}

pub fn xml(r: &Response) -> XmlBody {
    r.xml_body().unwrap().expect("a body")
}

pub fn element(r: &Response, name: &str) -> String {
    xml(r)
        .get(name)
        .unwrap_or_else(|| panic!("no <{name}> in {}", String::from_utf8_lossy(&r.body)))
        .to_string()
}

/// Reference-rule PTCP counters (DH-P2P §6.2), for exact control in tests.
#[derive(Debug, Default, Clone)]
pub struct RawPtcp {
    pub sent: u32,
    pub recv: u32,
    pub k: u32,
    pub id: u32,
    pub rmid: u32,
}

impl RawPtcp {
    pub fn packet(&mut self, body: &Body<'_>) -> Vec<u8> {
        let pid = if *body == Body::Syn {
            PID_SYN
        } else {
            PID_IDLE - self.k
        };
        let header = Header {
            sent: self.sent,
            recv: self.recv,
            pid,
            lmid: self.id,
            rmid: self.rmid,
        };
        let bytes = Packet {
            header,
            body: *body,
        }
        .to_vec();
        self.sent += body.encoded_len() as u32;
        self.id += 1;
        if !body.is_empty() && *body != Body::Syn {
            self.k += 1;
        }
        bytes
    }

    /// Accounts for a received packet; returns its body bytes.
    pub fn received(&mut self, datagram: &[u8]) -> Vec<u8> {
        let p = Packet::decode(datagram).expect("PTCP");
        if p.header.sent == self.recv {
            self.recv += (datagram.len() - 24) as u32;
        }
        self.rmid = p.header.lmid;
        datagram[24..].to_vec()
    }
}

/// A client that completed the whole direct handshake (relay lease for the
/// sign, p2p-channel, punch, SYN, 0x19/0x1A/0x1B) and now runs a real
/// `PtcpSession` with the device on `sock`.
pub struct DeviceLink {
    pub sock: CloudClient,
    pub device: SocketAddr,
    pub session: dhp2p::session::ptcp::PtcpSession,
}

pub const IDENTIFY: [u8; 8] = [0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e];

fn v4(a: SocketAddr) -> std::net::SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        _ => panic!("IPv4 only"),
    }
}

impl DeviceLink {
    pub async fn open(addrs: dhp2p::emulator::RoleAddrs, serial: &str) -> DeviceLink {
        use dhp2p::codec::cloud::{
            p2p_channel_body, relay_channel_body, relay_start_body, Identify,
        };
        use dhp2p::codec::punch;
        use dhp2p::session::ptcp::{Event, PtcpConfig, PtcpSession};
        use std::time::Instant;
        // The relay leg, only for the sign.
        let mut r = CloudClient::new().await;
        let lease = r.ask(addrs.relay, "/relay/agent", "").await;
        let token = element(&lease, "Token");
        r.ask(
            addrs.agent,
            &format!("/relay/start/{token}"),
            &relay_start_body(None),
        )
        .await;
        // The device leg.
        let mut d = CloudClient::new().await;
        let body = p2p_channel_body(&Identify(IDENTIFY), d.local_port());
        d.send(addrs.cloud, &format!("/device/{serial}/p2p-channel"), &body)
            .await;
        assert_eq!(d.recv_response().await.code, 100);
        let answer = d.recv_response().await;
        let device: SocketAddr = element(&answer, "PubAddr").parse().unwrap();
        r.send(
            addrs.cloud,
            &format!("/device/{serial}/relay-channel"),
            &relay_channel_body(&addrs.agent.to_string()),
        )
        .await;
        r.recv().await.expect("agent notification");
        let mut agent = RawPtcp::default();
        r.send_raw(addrs.agent, &agent.packet(&Body::Syn)).await;
        let (syn, _) = r.recv().await.unwrap();
        agent.received(&syn);
        r.send_raw(addrs.agent, &agent.packet(&Body::SignRequest))
            .await;
        let sign = loop {
            let (p, _) = r.recv().await.expect("sign");
            let body = agent.received(&p);
            if !body.is_empty() {
                break body[12..].to_vec();
            }
        };
        r.send_raw(addrs.agent, &agent.packet(&Body::Empty)).await;
        // Punch.
        let me = v4(d.sock.local_addr().unwrap());
        let req = punch::binding_request(punch::MAGIC_COOKIE, [3; 12], IDENTIFY, v4(device));
        d.send_raw(device, &req.encode()).await;
        let (theirs, _) = d.recv().await.expect("device binding request");
        let tid = punch::decode(&theirs).unwrap().transaction_id;
        let ok = punch::binding_success(
            punch::MAGIC_COOKIE,
            tid,
            IDENTIFY,
            me,
            punch::AddrForm::Inverted,
        );
        d.send_raw(device, &ok.encode()).await;
        // PTCP with the real session; skip the device's non-PTCP datagrams.
        let now = Instant::now();
        let mut session = PtcpSession::new(PtcpConfig::default(), now);
        let mut step = 0;
        session.send(&Body::Syn);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(out) = session.poll_transmit(Instant::now()) {
                d.send_raw(device, &out).await;
            }
            while let Some(ev) = session.poll_event() {
                if let Event::Body(b) = ev {
                    match (step, Body::decode(&b).unwrap()) {
                        (0, Body::Syn) => {
                            session.send(&Body::Auth { sign: &sign });
                            step = 1;
                        }
                        (1, Body::AuthReply { .. }) => {
                            session.send(&Body::AuthConfirm);
                            step = 2;
                        }
                        _ => {}
                    }
                }
            }
            if step == 2 && session.unacked() == 0 {
                while let Some(out) = session.poll_transmit(Instant::now()) {
                    d.send_raw(device, &out).await;
                }
                return DeviceLink {
                    sock: d,
                    device,
                    session,
                };
            }
            assert!(Instant::now() < deadline, "handshake stuck at step {step}");
            if let Some((p, _)) = d.recv_within(Duration::from_millis(20)).await {
                if p.starts_with(b"PTCP") {
                    session.handle_datagram(Instant::now(), &p);
                }
            }
            session.handle_timeout(Instant::now());
        }
    }

    /// Opens a realm to `port` and returns once CONN arrived.
    pub async fn bind(&mut self, realm: u32, port: u16) {
        self.session
            .send(&Body::bind(realm, port, [127, 0, 0, 1].into()));
        let want = Body::status(realm, dhp2p::codec::ptcp::Status::Conn);
        self.until(|b| b == want).await;
    }

    /// Pumps the session until a delivered body satisfies `done`.
    pub async fn until(&mut self, mut done: impl FnMut(Body<'_>) -> bool) {
        use std::time::Instant;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(out) = self.session.poll_transmit(Instant::now()) {
                self.sock.send_raw(self.device, &out).await;
            }
            while let Some(ev) = self.session.poll_event() {
                if let dhp2p::session::ptcp::Event::Body(b) = ev {
                    if done(Body::decode(&b).unwrap()) {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "timed out");
            if let Some((p, _)) = self.sock.recv_within(Duration::from_millis(5)).await {
                self.session.handle_datagram(Instant::now(), &p);
            }
            self.session.handle_timeout(Instant::now());
        }
    }

    /// Sends `data` on `realm` (to an echo service) and reads it all back.
    pub async fn echo(&mut self, realm: u32, data: &[u8]) -> Vec<u8> {
        use std::time::Instant;
        let mut back = Vec::new();
        let mut offset = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while back.len() < data.len() {
            while offset < data.len() && self.session.send_capacity() > 2048 {
                let end = (offset + 1280).min(data.len());
                self.session.send(&Body::Data {
                    realm,
                    payload: &data[offset..end],
                });
                offset = end;
            }
            while let Some(out) = self.session.poll_transmit(Instant::now()) {
                self.sock.send_raw(self.device, &out).await;
            }
            while let Some(ev) = self.session.poll_event() {
                if let dhp2p::session::ptcp::Event::Body(b) = ev {
                    if let Ok(Body::Data { realm: r, payload }) = Body::decode(&b) {
                        if r == realm {
                            back.extend_from_slice(payload);
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "echo timed out at {} of {}",
                back.len(),
                data.len()
            );
            // Drain what has arrived without waiting when there is more.
            let mut got_any = false;
            while let Some((p, _)) = self
                .sock
                .recv_within(Duration::from_millis(if got_any { 0 } else { 2 }))
                .await
            {
                self.session.handle_datagram(Instant::now(), &p);
                got_any = true;
            }
            self.session.handle_timeout(Instant::now());
        }
        back
    }
}
