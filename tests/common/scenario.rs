//! Builds captures as `Record` lists from codec values (no files): cloud
//! requests and answers, punch messages and two PTCP peers with counters.
//! Shared by tests/decode_stats.rs and tests/decode_follow.rs.
#![allow(dead_code)]

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use dhp2p::codec::cloud::{Header as CloudHeader, Method, Request, Response};
use dhp2p::codec::ptcp::{Body, Header, Packet, PID_IDLE, PID_SYN};
use dhp2p::codec::punch;
use dhp2p::decode::record::Record;

pub const CLIENT_R: &str = "10.0.0.2:40001";
pub const CLIENT_D: &str = "10.0.0.2:40000";
pub const MAIN: &str = "203.0.113.1:8800";
pub const P2PSRV: &str = "203.0.113.2:8802";
pub const RELAY: &str = "203.0.113.3:8500";
pub const AGENT: &str = "203.0.113.4:9000";
pub const DEVICE: &str = "198.51.100.7:3000";
pub const DEVICE_LAN: &str = "192.168.1.20:3000";
pub const SERIAL: &str = "ABC123456789XYZ";
pub const IDENTIFY: [u8; 8] = [0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e];

pub fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

pub fn v4(text: &str) -> SocketAddrV4 {
    text.parse().expect("test address")
}

pub struct Capture {
    pub records: Vec<Record>,
    pub now: Duration,
}

impl Capture {
    pub fn new() -> Capture {
        Capture {
            records: Vec::new(),
            now: Duration::from_secs(1_700_000_000),
        }
    }

    pub fn wait_ms(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// Appends a datagram 1 ms after the previous one; its frame number.
    pub fn push(&mut self, src: &str, dst: &str, payload: Vec<u8>) -> u64 {
        self.now += Duration::from_millis(1);
        let number = self.records.len() as u64 + 1;
        self.records.push(Record {
            number,
            time: self.now,
            src: addr(src),
            dst: addr(dst),
            payload,
        });
        number
    }

    pub fn request(
        &mut self,
        src: &str,
        dst: &str,
        method: Method,
        path: &str,
        cseq: i64,
        body: &str,
    ) -> u64 {
        let mut request = Request::new(method, path);
        request
            .headers
            .push(CloudHeader::new("CSeq", cseq.to_string()));
        if !body.is_empty() {
            request
                .headers
                .push(CloudHeader::new("Content-Length", body.len().to_string()));
            request.body = body.as_bytes().to_vec();
        }
        self.push(src, dst, request.encode())
    }

    pub fn response(
        &mut self,
        src: &str,
        dst: &str,
        code: u16,
        reason: &str,
        cseq: Option<i64>,
        body: &str,
    ) -> u64 {
        let mut response = Response::new(code, reason);
        if let Some(cseq) = cseq {
            response = response.with_header("CSeq", cseq.to_string());
        }
        if !body.is_empty() {
            response = response.with_body(body.as_bytes().to_vec());
        }
        self.push(src, dst, response.encode())
    }

    pub fn punch_request(&mut self, src: &str, dst: &str) -> u64 {
        let message = punch::binding_request([1, 2, 3, 4], [7; 12], IDENTIFY, v4(dst));
        self.push(src, dst, message.encode())
    }

    pub fn punch_success(&mut self, src: &str, dst: &str) -> u64 {
        let message = punch::binding_success(
            [1, 2, 3, 4],
            [7; 12],
            IDENTIFY,
            v4(dst),
            punch::AddrForm::Inverted,
        );
        self.push(src, dst, message.encode())
    }

    pub fn punch_confirm(&mut self, src: &str, dst: &str) -> u64 {
        self.push(
            src,
            dst,
            punch::confirm([1, 2, 3, 4], [7; 12], IDENTIFY).encode(),
        )
    }
}

/// Two PTCP peers: side 0 is the client, side 1 the device (or agent).
pub struct Link {
    pub addrs: [String; 2],
    pub sent: [u32; 2],
    pub recv: [u32; 2],
    pub lmid: [u32; 2],
    pub seen_lmid: [u32; 2],
}

impl Link {
    pub fn new(client: &str, device: &str, start: [u32; 2]) -> Link {
        Link {
            addrs: [client.to_owned(), device.to_owned()],
            sent: start,
            recv: [start[1], start[0]],
            lmid: [60_000, 143_000_000],
            seen_lmid: [0, 0],
        }
    }

    /// The next datagram from `side`, advancing its `sent`; not delivered.
    pub fn make(&mut self, side: usize, body: Body<'_>) -> Vec<u8> {
        let header = Header {
            sent: self.sent[side],
            recv: self.recv[side],
            pid: if body == Body::Syn { PID_SYN } else { PID_IDLE },
            lmid: self.lmid[side],
            rmid: self.seen_lmid[side],
        };
        self.lmid[side] += 10;
        self.sent[side] = self.sent[side].wrapping_add(body.encoded_len() as u32);
        Packet { header, body }.to_vec()
    }

    /// The same body at the same `sent` under a fresh header (a resend).
    pub fn resend(&mut self, side: usize, datagram: &[u8]) -> Vec<u8> {
        let packet = Packet::decode(datagram).expect("test datagram");
        let header = Header {
            sent: packet.header.sent,
            recv: self.recv[side],
            pid: packet.header.pid,
            lmid: self.lmid[side],
            rmid: self.seen_lmid[side],
        };
        self.lmid[side] += 10;
        Packet {
            header,
            body: packet.body,
        }
        .to_vec()
    }

    /// The receiver takes `datagram` (from `side`): `recv` moves when in order.
    pub fn deliver(&mut self, side: usize, datagram: &[u8]) {
        let other = 1 - side;
        let packet = Packet::decode(datagram).expect("test datagram");
        if packet.header.sent == self.recv[other] {
            self.recv[other] = self.recv[other].wrapping_add(packet.body.encoded_len() as u32);
        }
        self.seen_lmid[other] = packet.header.lmid;
    }

    /// Pushes a datagram from `side` into the capture (no delivery).
    pub fn push(&self, cap: &mut Capture, side: usize, datagram: Vec<u8>) -> u64 {
        cap.push(&self.addrs[side], &self.addrs[1 - side], datagram)
    }

    /// Makes, delivers and captures a datagram; its frame number.
    pub fn send(&mut self, cap: &mut Capture, side: usize, body: Body<'_>) -> u64 {
        let datagram = self.make(side, body);
        self.deliver(side, &datagram);
        self.push(cap, side, datagram)
    }

    pub fn ack(&mut self, cap: &mut Capture, side: usize) -> u64 {
        self.send(cap, side, Body::Empty)
    }

    /// Sends `bytes` as DATA of at most 1280 bytes each, the peer ACKing
    /// each one; the frame numbers of the DATA.
    pub fn stream(&mut self, cap: &mut Capture, side: usize, realm: u32, bytes: &[u8]) -> Vec<u64> {
        let mut frames = Vec::new();
        for chunk in bytes.chunks(1280) {
            frames.push(self.send(
                cap,
                side,
                Body::Data {
                    realm,
                    payload: chunk,
                },
            ));
            self.ack(cap, 1 - side);
        }
        frames
    }
}

/// The RTSP exchange of a player, with a Digest Authorization on DESCRIBE.
pub const DIGEST_RESPONSE: &str = "6629fae49393a05397450978507c4ef1";

pub fn rtsp_requests() -> Vec<Vec<u8>> {
    let url = "rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0";
    vec![
        format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: test\r\n\r\n").into_bytes(),
        format!(
            "DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\nAuthorization: Digest username=\"admin\", realm=\"Login to 4L0C\", nonce=\"abcdef\", uri=\"{url}\", response=\"{DIGEST_RESPONSE}\"\r\n\r\n"
        )
        .into_bytes(),
        format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n").into_bytes(),
        format!("PLAY {url}/ RTSP/1.0\r\nCSeq: 4\r\nSession: 123456789012\r\nRange: npt=0.000-\r\n\r\n").into_bytes(),
    ]
}

pub fn rtsp_responses() -> Vec<Vec<u8>> {
    let sdp = "v=0\r\no=- 2251938202 2251938202 IN IP4 0.0.0.0\r\ns=Media Server\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\na=control:trackID=0\r\na=rtpmap:96 H264/90000\r\na=recvonly\r\n";
    vec![
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: 123456789012\r\nServer: Rtsp Server/3.0\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n".to_vec(),
        format!("RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()).into_bytes(),
        b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 123456789012;timeout=60\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B3C4D\r\n\r\n".to_vec(),
        b"RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: 123456789012\r\nRange: npt=0.000000-\r\nRTP-Info: url=trackID=0;seq=1;rtptime=0\r\n\r\n".to_vec(),
    ]
}

/// `count` interleaved frames on `channel`, RTP v2 headers, sizes varying.
pub fn interleaved(channel: u8, count: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        let len = 200 + (i * 397 + usize::from(seed) * 13) % 1700;
        out.push(b'$');
        out.push(channel);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(0x80);
        out.push(if channel % 2 == 0 { 96 } else { 200 });
        out.extend((2..len).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8 ^ seed)));
    }
    out
}

/// What the realm carries in a media scenario.
pub struct Media {
    pub to_device: Vec<u8>,
    pub from_device: Vec<u8>,
    /// The device's RTP datagrams, made but not yet captured.
    pub rtp_datagrams: Vec<Vec<u8>>,
    pub bind_frame: u64,
    pub conn_frame: u64,
    pub play_frame: u64,
}

pub const REALM: u32 = 0x5f7f_1ce8;

/// BIND, CONN, the RTSP dialogue and RTCP from the client, then the
/// device's RTP split into 1280-byte DATA made (not captured) for the
/// caller to push in any order.
pub fn media(cap: &mut Capture, link: &mut Link, rtp_frames: usize) -> Media {
    let bind_frame = link.send(cap, 0, Body::bind(REALM, 554, "127.0.0.1".parse().unwrap()));
    link.ack(cap, 1);
    let conn_frame = link.send(
        cap,
        1,
        Body::status(REALM, dhp2p::codec::ptcp::Status::Conn),
    );
    link.ack(cap, 0);
    let mut to_device = Vec::new();
    let mut from_device = Vec::new();
    let mut play_frame = 0;
    for (request, response) in rtsp_requests().into_iter().zip(rtsp_responses()) {
        let frames = link.stream(cap, 0, REALM, &request);
        if request.starts_with(b"PLAY") {
            play_frame = frames[0];
        }
        to_device.extend_from_slice(&request);
        link.stream(cap, 1, REALM, &response);
        from_device.extend_from_slice(&response);
    }
    let rtcp = interleaved(1, 2, 9);
    link.stream(cap, 0, REALM, &rtcp);
    to_device.extend_from_slice(&rtcp);
    let mut rtp = interleaved(0, rtp_frames, 1);
    rtp.extend(interleaved(1, 1, 2));
    let rtp_datagrams: Vec<Vec<u8>> = rtp
        .chunks(1280)
        .map(|chunk| {
            link.make(
                1,
                Body::Data {
                    realm: REALM,
                    payload: chunk,
                },
            )
        })
        .collect();
    from_device.extend_from_slice(&rtp);
    Media {
        to_device,
        from_device,
        rtp_datagrams,
        bind_frame,
        conn_frame,
        play_frame,
    }
}

/// Captures `datagrams` from the device in order, the client ACKing each.
pub fn push_in_order(cap: &mut Capture, link: &mut Link, datagrams: &[Vec<u8>]) {
    for datagram in datagrams {
        link.deliver(1, datagram);
        link.push(cap, 1, datagram.clone());
        link.ack(cap, 0);
    }
}

/// Realm close: client DISC, device DISC, ACKs.
pub fn close(cap: &mut Capture, link: &mut Link) -> (u64, u64) {
    let ours = link.send(
        cap,
        0,
        Body::status(REALM, dhp2p::codec::ptcp::Status::Disc),
    );
    link.ack(cap, 1);
    let theirs = link.send(
        cap,
        1,
        Body::status(REALM, dhp2p::codec::ptcp::Status::Disc),
    );
    link.ack(cap, 0);
    (ours, theirs)
}

/// The cloud and relay part of a legacy direct handshake, up to the
/// agent's sign. Returns the agent link (sign exchanged).
pub fn cloud_handshake(cap: &mut Capture) -> Link {
    cap.request(CLIENT_R, MAIN, Method::DhGet, "/probe/p2psrv", 1, "");
    cap.response(MAIN, CLIENT_R, 200, "OK", Some(1), "");
    cap.request(
        CLIENT_R,
        MAIN,
        Method::DhGet,
        &format!("/online/p2psrv/{SERIAL}"),
        2,
        "",
    );
    cap.response(
        MAIN,
        CLIENT_R,
        200,
        "OK",
        Some(2),
        &format!("<body><DS>{P2PSRV}</DS><US>{P2PSRV}</US></body>"),
    );
    cap.request(
        CLIENT_R,
        P2PSRV,
        Method::DhGet,
        &format!("/probe/device/{SERIAL}"),
        3,
        "",
    );
    cap.response(P2PSRV, CLIENT_R, 200, "OK", Some(3), "");
    cap.request(
        CLIENT_R,
        P2PSRV,
        Method::DhGet,
        &format!("/info/device/{SERIAL}"),
        4,
        "",
    );
    cap.response(
        P2PSRV,
        CLIENT_R,
        200,
        "OK",
        Some(4),
        "<body><DevVersion>6.7.11</DevVersion><Info></Info></body>",
    );
    cap.request(CLIENT_R, MAIN, Method::DhGet, "/online/relay", 5, "");
    cap.response(
        MAIN,
        CLIENT_R,
        200,
        "OK",
        Some(5),
        &format!("<body><Address>{RELAY}</Address></body>"),
    );
    cap.request(
        CLIENT_D,
        MAIN,
        Method::DhPost,
        &format!("/device/{SERIAL}/p2p-channel"),
        6,
        "<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify><IpEncrpt>false</IpEncrpt><LocalAddr>10.0.0.2:40000</LocalAddr></body>",
    );
    cap.request(CLIENT_R, RELAY, Method::DhGet, "/relay/agent", 7, "");
    cap.response(
        RELAY,
        CLIENT_R,
        200,
        "OK",
        Some(7),
        &format!("<body><Token>0123abcd</Token><Agent>{AGENT}</Agent></body>"),
    );
    cap.request(
        CLIENT_R,
        AGENT,
        Method::DhPost,
        "/relay/start/0123abcd",
        8,
        "<body><Client>:0</Client></body>",
    );
    cap.response(
        AGENT,
        CLIENT_R,
        200,
        "OK",
        Some(8),
        "<body><SID>77</SID><Time>1700000000</Time></body>",
    );
    cap.response(MAIN, CLIENT_D, 100, "Trying", Some(6), "");
    cap.response(
        MAIN,
        CLIENT_D,
        200,
        "Server Nat Info!",
        Some(6),
        &format!("<body><LocalAddr>{DEVICE_LAN}</LocalAddr><PubAddr>{DEVICE}</PubAddr></body>"),
    );
    cap.request(
        CLIENT_R,
        MAIN,
        Method::DhPost,
        &format!("/device/{SERIAL}/relay-channel"),
        9,
        &format!("<body><agentAddr>{AGENT}</agentAddr></body>"),
    );
    cap.response(AGENT, CLIENT_R, 200, "Server Nat Info!", None, "");
    let mut agent = Link::new(CLIENT_R, AGENT, [0, 0]);
    agent.send(cap, 0, Body::Syn);
    agent.send(cap, 1, Body::Syn);
    agent.send(cap, 0, Body::SignRequest);
    agent.ack(cap, 1);
    agent.send(
        cap,
        1,
        Body::Sign {
            sign: b"SIGNSIGNSIGNSIGN",
        },
    );
    agent.ack(cap, 0);
    agent
}

/// Punching (the LAN candidate never answers) and the device session up
/// to 0x1B; counters start at `start`.
pub fn device_handshake(cap: &mut Capture, start: [u32; 2]) -> Link {
    cap.punch_request(CLIENT_D, DEVICE_LAN);
    cap.punch_request(CLIENT_D, DEVICE);
    cap.punch_request(DEVICE, CLIENT_D);
    cap.punch_success(CLIENT_D, DEVICE);
    cap.punch_success(DEVICE, CLIENT_D);
    cap.punch_confirm(CLIENT_D, DEVICE);
    let mut link = Link::new(CLIENT_D, DEVICE, start);
    link.send(cap, 0, Body::Syn);
    link.send(cap, 1, Body::Syn);
    link.send(
        cap,
        0,
        Body::Auth {
            sign: b"SIGNSIGNSIGNSIGN",
        },
    );
    link.send(cap, 1, Body::AuthReply { data: b"" });
    link.send(cap, 0, Body::AuthConfirm);
    link.ack(cap, 1);
    link
}

/// A whole clean direct session: handshake, realm with RTSP and RTP,
/// heartbeats, DISC both ways.
pub fn clean_direct(start: [u32; 2], rtp_frames: usize) -> (Capture, Media) {
    let mut cap = Capture::new();
    cloud_handshake(&mut cap);
    let mut link = device_handshake(&mut cap, start);
    let media = media(&mut cap, &mut link, rtp_frames);
    let datagrams = media.rtp_datagrams.clone();
    push_in_order(&mut cap, &mut link, &datagrams);
    cap.wait_ms(2000);
    link.send(&mut cap, 0, Body::Heartbeat);
    link.ack(&mut cap, 1);
    link.send(&mut cap, 1, Body::Heartbeat);
    link.ack(&mut cap, 0);
    close(&mut cap, &mut link);
    (cap, media)
}
