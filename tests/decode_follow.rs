//! `--follow`: a realm's two streams rebuilt from DATA in `sent` order, each
//! byte once, gaps reported at their offsets, and the RTSP report.

use dhp2p::codec::ptcp::{Body, Status};
use dhp2p::decode::follow::{
    parse_rtsp_stream, redact_authorization, Flow, FollowResult, Follower,
};
use dhp2p::decode::record::Record;
use dhp2p::decode::REDACTED;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Builds captures as `Record` lists from codec values (no files): cloud
/// requests and answers, punch messages and two PTCP peers with counters.
#[allow(dead_code)]
mod scenario {
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
        pub fn stream(
            &mut self,
            cap: &mut Capture,
            side: usize,
            realm: u32,
            bytes: &[u8],
        ) -> Vec<u64> {
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
}

use scenario::*;

fn follow(records: &[Record], realm: u32) -> FollowResult {
    let mut follower = Follower::new(realm);
    for record in records {
        follower.add(record);
    }
    follower.finish()
}

#[test]
fn clean_direct_session_reassembles_exactly() {
    let (cap, media) = clean_direct([1000, 5000], 40);
    let result = follow(&cap.records, REALM);
    assert!(result.found());
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert_eq!(result.from_device(), media.from_device.as_slice());
    assert!(result.gaps().is_empty());
    assert_eq!(
        result.bind_target(),
        Some(("127.0.0.1".parse().unwrap(), 554))
    );
    assert_eq!(result.bind.unwrap().frame, media.bind_frame);
    assert_eq!(result.conn_frame, Some(media.conn_frame));
    assert_eq!(result.client, Some(addr(CLIENT_D)));
    assert_eq!(result.device, Some(addr(DEVICE)));
    assert_eq!(
        result.discs.iter().map(|d| d.flow).collect::<Vec<_>>(),
        [Flow::ToDevice, Flow::FromDevice]
    );
    assert!(result.other_sessions.is_empty());
    let stream = result.stream(Flow::FromDevice);
    assert_eq!(stream.repeats, 0);
    assert_eq!(stream.pieces[0].offset, 0);
    assert_eq!(
        stream.pieces.iter().map(|p| p.len).sum::<usize>(),
        media.from_device.len()
    );
}

#[test]
fn rtsp_report_lists_the_dialogue_redacted_and_counts_rtp_per_channel() {
    let (cap, _) = clean_direct([1000, 5000], 40);
    let report = follow(&cap.records, REALM).rtsp_report();
    // Requests and responses alternate, in capture order.
    let lines: Vec<&str> = report.lines().filter(|l| l.starts_with('#')).collect();
    let firsts: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap())
        .collect();
    let url = "rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0";
    assert_eq!(
        firsts,
        [
            format!("OPTIONS {url} RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
            format!("DESCRIBE {url} RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
            format!("SETUP {url}/trackID=0 RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
            format!("PLAY {url}/ RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
        ]
    );
    assert!(lines[0].contains("client->device offset 0"));
    assert!(lines[1].contains("device->client offset 0"));
    assert!(!report.contains(DIGEST_RESPONSE), "{report}");
    assert!(report.contains(&format!(
        "Authorization: Digest username=\"admin\", realm=\"Login to 4L0C\", nonce=\"abcdef\", uri=\"{url}\", response=\"{REDACTED}\""
    )));
    assert!(report.contains("    CSeq: 2"));
    assert!(report.contains("    Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B3C4D"));
    let describe_answer = &rtsp_responses()[1];
    let head_end = describe_answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert!(
        report.contains(&format!(
            "({} body bytes)",
            describe_answer.len() - head_end
        )),
        "{report}"
    );
    let rtp_bytes: usize = interleaved(0, 40, 1).len() - 40 * 4;
    let rtcp_up: usize = interleaved(1, 2, 9).len() - 2 * 4;
    let rtcp_down: usize = interleaved(1, 1, 2).len() - 4;
    assert!(
        report.contains(&format!(
            "device->client channel 0 (RTP): 40 packets, {rtp_bytes} bytes"
        )),
        "{report}"
    );
    assert!(report.contains(&format!(
        "device->client channel 1 (RTCP): 1 packets, {rtcp_down} bytes"
    )));
    assert!(report.contains(&format!(
        "client->device channel 1 (RTCP): 2 packets, {rtcp_up} bytes"
    )));
    assert!(!report.contains("note:"), "{report}");
}

#[test]
fn a_stream_that_does_not_open_with_rtsp_is_not_parsed_as_rtsp() {
    let parsed = parse_rtsp_stream(
        b"\x00\x01$\x00\x00\x04\x80\x60\x00\x00OPTIONS * RTSP/1.0\r\n\r\n",
        &[],
    );
    assert!(parsed.messages.is_empty());
    assert!(parsed.interleaved.is_empty());
    assert_eq!(
        parsed.notes,
        ["does not start with an RTSP message or an interleaved frame (first bytes 000124000004806000004f5054494f4e)"]
    );
}

/// The fault plan of the stats test: a duplicate, a reordered pair, resends
/// and a body lost upstream and resent later.
#[test]
fn retransmitted_duplicated_and_reordered_data_still_reassembles_exactly() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [7, 9]);
    let media = media(&mut cap, &mut link, 30);
    let d = media.rtp_datagrams.clone();
    let resend2 = link.resend(1, &d[2]);
    let resend4 = link.resend(1, &d[4]);
    let resend6 = link.resend(1, &d[6]);
    let order: Vec<Vec<u8>> = [
        d[0].clone(),
        d[1].clone(),
        d[1].clone(),
        d[3].clone(),
        d[2].clone(),
        resend2,
        d[5].clone(),
        d[6].clone(),
        d[7].clone(),
        resend4,
        resend6,
    ]
    .into_iter()
    .chain(d[8..].iter().cloned())
    .collect();
    for datagram in order {
        link.push(&mut cap, 1, datagram);
    }
    let result = follow(&cap.records, REALM);
    assert_eq!(result.from_device(), media.from_device.as_slice());
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert!(result.gaps().is_empty(), "{:?}", result.gaps());
    assert_eq!(result.stream(Flow::FromDevice).repeats, 3);
}

#[test]
fn a_missing_data_body_is_a_gap_at_its_offset() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let media = media(&mut cap, &mut link, 12);
    let mut d = media.rtp_datagrams.clone();
    let lost = d.remove(3);
    let before = cap.records.len() as u64;
    push_in_order(&mut cap, &mut link, &d);
    close(&mut cap, &mut link);
    let result = follow(&cap.records, REALM);
    let rtp_start =
        media.from_device.len() - d.iter().chain([&lost]).map(|x| x.len() - 36).sum::<usize>();
    let offset = rtp_start + 3 * 1280;
    let lost_payload = &lost[36..];
    let mut expected = media.from_device.clone();
    expected.drain(offset..offset + lost_payload.len());
    assert_eq!(result.from_device(), expected.as_slice());
    let gaps = result.gaps();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let (flow, gap) = gaps[0];
    assert_eq!(flow, Flow::FromDevice);
    assert_eq!(gap.offset, offset as u64);
    assert_eq!(gap.session_bytes, lost.len() as u64 - 24);
    // The pieces around it: the third and the fourth RTP datagram captured.
    assert_eq!(gap.after_frame, Some(before + 5));
    assert_eq!(gap.before_frame, Some(before + 7));
    assert!(result.summary().contains(&format!(
        "device->client: GAP at offset {offset}: {} session bytes missing",
        lost.len() - 24
    )));
    let report = result.rtsp_report();
    assert!(report.contains("1 gap(s)"));
    assert!(report.contains("cut short by a gap"), "{report}");
}

#[test]
fn a_missing_last_body_before_disc_is_a_gap_at_the_end() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let media = media(&mut cap, &mut link, 6);
    let mut d = media.rtp_datagrams.clone();
    let lost = d.pop().unwrap();
    push_in_order(&mut cap, &mut link, &d);
    close(&mut cap, &mut link);
    let result = follow(&cap.records, REALM);
    let gaps = result.gaps();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        gaps[0].1.offset,
        (media.from_device.len() - (lost.len() - 36)) as u64
    );
    assert_eq!(gaps[0].1.session_bytes, lost.len() as u64 - 24);
    assert_eq!(gaps[0].1.before_frame, None);
}

#[test]
fn counters_starting_near_2_32_wrap_and_stay_exact() {
    for start in [
        [u32::MAX - 2000, u32::MAX - 40_000],
        [u32::MAX, u32::MAX - 11],
    ] {
        let (cap, media) = clean_direct(start, 60);
        let result = follow(&cap.records, REALM);
        assert_eq!(result.to_device(), media.to_device.as_slice());
        assert_eq!(result.from_device(), media.from_device.as_slice());
        assert!(result.gaps().is_empty());
    }
}

/// An echo service: the same bytes both ways, both lossy, shuffled
/// within windows, with duplicates and resends.
#[test]
fn an_echo_realm_reassembles_both_directions() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut cap = Capture::new();
    let mut link = Link::new(CLIENT_D, DEVICE, [u32::MAX - 70_000, 123]);
    link.send(&mut cap, 0, Body::Syn);
    link.send(&mut cap, 1, Body::Syn);
    link.send(&mut cap, 0, Body::bind(42, 7, "127.0.0.1".parse().unwrap()));
    link.send(&mut cap, 1, Body::status(42, Status::Conn));
    let payload: Vec<u8> = (0..200_000).map(|_| rng.gen()).collect();
    let mut made = Vec::new();
    for chunk in payload.chunks(1280) {
        made.push((
            0,
            link.make(
                0,
                Body::Data {
                    realm: 42,
                    payload: chunk,
                },
            ),
        ));
        made.push((
            1,
            link.make(
                1,
                Body::Data {
                    realm: 42,
                    payload: chunk,
                },
            ),
        ));
        if rng.gen_bool(0.1) {
            made.push((0, link.make(0, Body::Heartbeat)));
        }
    }
    let mut captured = Vec::new();
    for window in made.chunks(8) {
        let mut window = window.to_vec();
        window.shuffle(&mut rng);
        for (side, datagram) in window {
            if rng.gen_bool(0.1) {
                let resend = link.resend(side, &datagram);
                captured.push((side, resend));
            }
            if rng.gen_bool(0.05) {
                captured.push((side, datagram.clone()));
            }
            captured.push((side, datagram));
        }
    }
    for (side, datagram) in captured {
        link.push(&mut cap, side, datagram);
    }
    let result = follow(&cap.records, 42);
    assert_eq!(result.to_device(), payload.as_slice());
    assert_eq!(result.from_device(), payload.as_slice());
    assert!(result.gaps().is_empty());
    let report = result.rtsp_report();
    assert!(report.contains("non-RTSP content"), "{report}");
}

#[test]
fn only_the_followed_realm_is_taken_from_an_interleaved_session() {
    let mut cap = Capture::new();
    let mut link = Link::new(CLIENT_D, DEVICE, [0, 0]);
    link.send(&mut cap, 0, Body::Syn);
    link.send(&mut cap, 1, Body::Syn);
    let mut expected = [Vec::new(), Vec::new()];
    for i in 0..300u32 {
        let realm = 10 + i % 3;
        let bytes: Vec<u8> = (0..(i * 7 % 1280 + 1)).map(|j| (i + j) as u8).collect();
        link.send(
            &mut cap,
            (i % 2) as usize,
            Body::Data {
                realm,
                payload: &bytes,
            },
        );
        if realm == 11 {
            expected[(i % 2) as usize].extend_from_slice(&bytes);
        }
    }
    // Lose the last DATA of realm 12 from the client: a hole between realm
    // 11's pieces is still reported, since the capture cannot tell whose it
    // was.
    let result = follow(&cap.records, 11);
    assert_eq!(result.to_device(), expected[0].as_slice());
    assert_eq!(result.from_device(), expected[1].as_slice());
    assert!(result.gaps().is_empty());
    assert!(result.bind.is_none());
    assert_eq!(result.client, Some(addr(CLIENT_D)));
    let mut lossy = cap.records.clone();
    let victim = lossy
        .iter()
        .rposition(|r| {
            r.src == addr(CLIENT_D)
                && r.payload.len() > 36
                && r.payload[28..32] == 12u32.to_be_bytes()
        })
        .unwrap();
    let victim_len = lossy[victim].payload.len() as u64 - 24;
    lossy.remove(victim);
    let result = follow(&lossy, 11);
    assert_eq!(result.to_device(), expected[0].as_slice());
    let gaps = result.gaps();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].1.session_bytes, victim_len);
}

#[test]
fn relay_sessions_are_followed_too() {
    let mut cap = Capture::new();
    let mut agent = cloud_handshake(&mut cap);
    let media = media(&mut cap, &mut agent, 10);
    let d = media.rtp_datagrams.clone();
    push_in_order(&mut cap, &mut agent, &d);
    let result = follow(&cap.records, REALM);
    assert_eq!(
        result.session.unwrap().to_string(),
        format!("{CLIENT_R} <-> {AGENT}")
    );
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert_eq!(result.from_device(), media.from_device.as_slice());
}

#[test]
fn the_same_realm_in_two_sessions_follows_the_first_and_lists_the_other() {
    let (mut cap, media) = clean_direct([0, 0], 3);
    let mut other = Link::new(CLIENT_R, AGENT, [0, 0]);
    other.send(
        &mut cap,
        0,
        Body::Data {
            realm: REALM,
            payload: b"elsewhere",
        },
    );
    let result = follow(&cap.records, REALM);
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert_eq!(result.other_sessions.len(), 1);
    assert!(result.summary().contains("also appears in"));
}

#[test]
fn an_absent_realm_is_reported_as_not_found() {
    let (cap, _) = clean_direct([0, 0], 3);
    let result = follow(&cap.records, 0xdead_beef);
    assert!(!result.found());
    assert!(result.to_device().is_empty() && result.from_device().is_empty());
    assert!(result
        .rtsp_report()
        .contains("realm not found in the capture"));
    assert_eq!(result.summary(), "realm 0xdeadbeef: not in the capture\n");
}

#[test]
fn redaction_reuses_the_describe_rule_for_digest_and_basic() {
    let digest = b"DESCRIBE rtsp://x/ RTSP/1.0\r\nAuthorization: Digest username=\"u\", response=\"abc123\"\r\n\r\n";
    assert_eq!(
        redact_authorization(digest),
        format!("DESCRIBE rtsp://x/ RTSP/1.0\r\nAuthorization: Digest username=\"u\", response=\"{REDACTED}\"\r\n\r\n")
    );
    let basic = b"OPTIONS * RTSP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n";
    assert_eq!(
        redact_authorization(basic),
        format!("OPTIONS * RTSP/1.0\r\nAuthorization: Basic {REDACTED}\r\n\r\n")
    );
    let plain = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    assert_eq!(redact_authorization(plain), String::from_utf8_lossy(plain));
}

#[test]
fn rtsp_parser_resyncs_after_garbage_and_counts_frames() {
    let mut bytes = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n".to_vec();
    bytes.extend_from_slice(b"\x01\x02garbage");
    bytes.extend(interleaved(2, 3, 5));
    bytes.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nbody");
    bytes.extend_from_slice(b"$\x00\x00\x10\x80");
    let parsed = parse_rtsp_stream(&bytes, &[]);
    assert_eq!(parsed.messages.len(), 2);
    assert_eq!(parsed.messages[1].headers, ["CSeq: 2", "Content-Length: 4"]);
    assert_eq!(parsed.messages[1].body_len, 4);
    assert_eq!(parsed.interleaved.len(), 3);
    assert!(parsed.interleaved.iter().all(|(c, _)| *c == 2));
    assert_eq!(parsed.notes.len(), 2, "{:?}", parsed.notes);
    assert!(
        parsed.notes[0].starts_with("9 unrecognised bytes at offset 28"),
        "{:?}",
        parsed.notes
    );
    assert!(parsed.notes[1].contains("cut short by the end of the stream"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any chunking, any starting counters, any arrival order with
    /// duplicates and resends: the stream comes back exactly; dropping one
    /// chunk (every copy) yields exactly one gap at its offset.
    #[test]
    fn any_order_with_repeats_reassembles_exactly(
        payload in proptest::collection::vec(any::<u8>(), 1..20_000),
        chunk in 1usize..1500,
        start in any::<u32>(),
        seed in any::<u64>(),
        drop_one in any::<bool>(),
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut cap = Capture::new();
        let mut link = Link::new(CLIENT_D, DEVICE, [start, start ^ 0x5555]);
        let made: Vec<Vec<u8>> = payload
            .chunks(chunk)
            .map(|c| link.make(0, Body::Data { realm: 5, payload: c }))
            .collect();
        let dropped = if drop_one && made.len() > 2 { Some(rng.gen_range(1..made.len() - 1)) } else { None };
        let mut captured = Vec::new();
        for (i, datagram) in made.iter().enumerate() {
            if Some(i) == dropped {
                continue;
            }
            captured.push(datagram.clone());
            if rng.gen_bool(0.2) {
                captured.push(link.resend(0, datagram));
            }
        }
        captured.shuffle(&mut rng);
        for datagram in captured {
            link.push(&mut cap, 0, datagram);
        }
        let result = follow(&cap.records, 5);
        let mut expected = payload.clone();
        match dropped {
            None => {
                prop_assert_eq!(result.to_device(), expected.as_slice());
                prop_assert!(result.gaps().is_empty());
            }
            Some(i) => {
                expected.drain(i * chunk..(i + 1) * chunk);
                prop_assert_eq!(result.to_device(), expected.as_slice());
                let gaps = result.gaps();
                prop_assert_eq!(gaps.len(), 1);
                prop_assert_eq!(gaps[0].1.offset, (i * chunk) as u64);
                prop_assert_eq!(gaps[0].1.session_bytes, (chunk + 12) as u64);
            }
        }
    }
}

/// A new PTCP session on the same sockets restarts the counters at the same
/// values: the second realm must not be mistaken for resends of the first,
/// and a late repeat of the device's SYN reply must not split the session.
#[test]
fn a_new_syn_on_the_same_sockets_starts_new_counters() {
    let mut cap = Capture::new();
    let mut first = Link::new(CLIENT_D, DEVICE, [0, 0]);
    first.send(&mut cap, 0, Body::Syn);
    let reply = first.make(1, Body::Syn);
    first.deliver(1, &reply);
    first.push(&mut cap, 1, reply.clone());
    first.send(
        &mut cap,
        0,
        Body::Data {
            realm: 1,
            payload: b"first session",
        },
    );
    first.send(
        &mut cap,
        1,
        Body::Data {
            realm: 1,
            payload: b"old answer",
        },
    );
    let repeat = first.resend(1, &reply); // late SYN reply repeat
    first.push(&mut cap, 1, repeat);
    first.send(
        &mut cap,
        1,
        Body::Data {
            realm: 1,
            payload: b", more",
        },
    );
    let mut second = Link::new(CLIENT_D, DEVICE, [0, 0]);
    second.lmid = [90_000, 150_000_000];
    second.send(&mut cap, 0, Body::Syn);
    second.send(&mut cap, 1, Body::Syn);
    second.send(
        &mut cap,
        0,
        Body::Data {
            realm: 1,
            payload: b"second session",
        },
    );
    second.send(
        &mut cap,
        1,
        Body::Data {
            realm: 1,
            payload: b"new answer",
        },
    );
    let old = follow(&cap.records, 1);
    assert_eq!(old.to_device(), b"first session");
    assert_eq!(old.from_device(), b"old answer, more");
    // The same realm ID in the second session: listed, not mixed in.
    assert_eq!(old.other_sessions, [old.session.unwrap()]);
    assert!(old.gaps().is_empty());
}
