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
