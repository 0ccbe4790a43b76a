//! The emulator's built-in RTSP service: clip parsing, RTP packetization,
//! Digest authentication, request parsing, and the server played by real
//! peers (ffprobe/ffmpeg) and by a scripted raw client.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::media::{ffprobe_command, framemd5, run_with_timeout, stream_info, StreamInfo};
use dhp2p::codec::rtsp::{
    digest_response, ha1, ha2, next_client_frame as next_inbound, ClientFrame as Inbound,
    DigestAuthorization, DigestInput, Interleaved, QopAuth, RtspError as RequestError,
    MAX_MESSAGE_BYTES as MAX_REQUEST_BYTES,
};
use dhp2p::emulator::clip::{nal_type, Clip, ClipError, BUILTIN_CLIP};
use dhp2p::emulator::rtsp::rtp::{
    interleave, nals_to_send, H264Packetizer, FU_A, MAX_RTP_PAYLOAD, TICKS_PER_FRAME,
};
use dhp2p::emulator::rtsp::{
    parse_stream_uri, serve_connection, spawn_listener, ConnectionEnd, RtspConfig, StreamTarget,
};
use md5::Digest as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const USER: &str = "admin";
const PASSWORD: &str = "s3cret-pw";
const REALM: &str = "Login to 4M0123456789ABC";
const PATH: &str = "/cam/realmonitor?channel=1&subtype=0";

// ---------------------------------------------------------------------------
// helpers

fn config(clip_once: bool) -> RtspConfig {
    let mut cfg = RtspConfig::new(USER, PASSWORD, REALM);
    cfg.clip_once = clip_once;
    cfg
}

/// A multi-thread runtime serving `cfg` on 127.0.0.1:0; keep the runtime
/// alive as long as the server is needed.
fn start_server(cfg: RtspConfig) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (addr, _task) = rt
        .block_on(spawn_listener(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(cfg),
        ))
        .expect("bind RTSP listener");
    (rt, addr)
}

fn url(addr: SocketAddr, user: &str, password: &str) -> String {
    format!("rtsp://{user}:{password}@{addr}{PATH}")
}

fn assert_stream_info(out: &Output) {
    assert_eq!(stream_info(out), StreamInfo::h264(640, 360, "25/1"));
}

/// A minimal blocking RTSP client for scripted conversations.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// RTP packets (channel, bytes) seen while waiting for responses.
    interleaved: Vec<(u8, Vec<u8>)>,
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawClient {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            interleaved: Vec::new(),
        }
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).expect("read from server");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Next interleaved frame, if one is fully buffered at the front.
    fn take_interleaved(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.buf.first() != Some(&b'$') || self.buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        if self.buf.len() < 4 + len {
            return None;
        }
        let channel = self.buf[1];
        let packet = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Some((channel, packet))
    }

    fn read_interleaved(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some(frame) = self.take_interleaved() {
                return frame;
            }
            if !self.buf.is_empty() && self.buf[0] != b'$' {
                panic!(
                    "expected an interleaved frame, got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            assert!(self.fill() > 0, "server closed while streaming");
        }
    }

    fn read_response(&mut self) -> RawResponse {
        loop {
            while let Some(frame) = self.take_interleaved() {
                self.interleaved.push(frame);
            }
            if self.buf.first().is_some_and(|&b| b != b'$') {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    let head = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 head");
                    let mut lines = head.split("\r\n");
                    let status_line = lines.next().unwrap();
                    assert!(status_line.starts_with("RTSP/1.0 "), "{status_line}");
                    let status: u16 = status_line[9..12].parse().unwrap();
                    let headers: Vec<(String, String)> = lines
                        .map(|l| {
                            let (n, v) = l.split_once(':').expect("header line");
                            (n.to_string(), v.trim().to_string())
                        })
                        .collect();
                    let len = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
                        .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                    if self.buf.len() >= end + 4 + len {
                        let body = self.buf[end + 4..end + 4 + len].to_vec();
                        self.buf.drain(..end + 4 + len);
                        return RawResponse {
                            status,
                            headers,
                            body,
                        };
                    }
                }
            }
            assert!(self.fill() > 0, "server closed before answering");
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    fn request(&mut self, method: &str, uri: &str, cseq: u32, extra: &[String]) -> RawResponse {
        let mut text = format!("{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n");
        for h in extra {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        self.send(text.as_bytes());
        self.read_response()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `key="value"` out of a WWW-Authenticate header.
fn challenge_param(header: &str, key: &str) -> String {
    let start = header.find(&format!("{key}=\"")).expect("param") + key.len() + 2;
    let end = header[start..].find('"').unwrap() + start;
    header[start..end].to_string()
}

fn authorization(method: &str, uri: &str, nonce: &str, password: &str) -> String {
    let response = digest_response(&DigestInput {
        username: USER,
        realm: REALM,
        password,
        method,
        uri,
        nonce,
        qop: None,
    });
    format!(
        "Authorization: Digest username=\"{USER}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\""
    )
}

struct RtpHeader {
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
}

fn rtp_header(packet: &[u8]) -> RtpHeader {
    assert!(packet.len() > 12, "RTP packet too short");
    assert_eq!(packet[0], 0x80, "V=2, no padding/extension/CSRC");
    RtpHeader {
        marker: packet[1] & 0x80 != 0,
        payload_type: packet[1] & 0x7f,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes(packet[4..8].try_into().unwrap()),
        ssrc: u32::from_be_bytes(packet[8..12].try_into().unwrap()),
    }
}

/// Rebuilds NAL units from RTP payloads (single NAL or FU-A), independently
/// of the packetizer.
fn depacketize(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut partial: Option<Vec<u8>> = None;
    for packet in packets {
        let payload = &packet[12..];
        if payload[0] & 0x1f == FU_A {
            let (indicator, fu) = (payload[0], payload[1]);
            if fu & 0x80 != 0 {
                assert!(partial.is_none(), "FU-A start inside a fragment");
                partial = Some(vec![(indicator & 0xe0) | (fu & 0x1f)]);
            }
            let nal = partial.as_mut().expect("FU-A continuation without start");
            nal.extend_from_slice(&payload[2..]);
            if fu & 0x40 != 0 {
                nals.push(partial.take().unwrap());
            }
        } else {
            assert!(partial.is_none(), "single NAL inside a fragment");
            nals.push(payload.to_vec());
        }
    }
    assert!(partial.is_none(), "unfinished FU-A");
    nals
}

// ---------------------------------------------------------------------------
// clip

#[test]
fn builtin_clip_has_50_frames_and_an_idr_every_25() {
    let clip = Clip::parse(BUILTIN_CLIP).expect("builtin clip parses");
    assert_eq!(clip.frames().len(), 50);
    assert!(clip.frames()[0].is_idr, "first frame is an IDR");
    let idrs: Vec<usize> = clip
        .frames()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_idr)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(idrs, vec![0, 25]);
    for frame in clip.frames() {
        assert_eq!(frame.nals[0].nal_type(), nal_type::AUD, "AUD first");
        let slices = frame.nals.iter().filter(|n| n.is_vcl()).count();
        assert!(slices >= 1);
    }
    assert_eq!(clip.sps().nal_type(), nal_type::SPS);
    assert_eq!(clip.pps().nal_type(), nal_type::PPS);
    // Baseline (66 = 0x42), level 3.0 (30 = 0x1e) for 640x360.
    assert_eq!(&clip.profile_level_id()[..2], "42");
    assert_eq!(&clip.profile_level_id()[4..], "1E");
    assert_eq!(
        clip.profile_level_id(),
        hex::encode_upper(&clip.sps().data[1..4])
    );
    let sprop = clip.sprop_parameter_sets();
    let (sps, pps) = sprop.split_once(',').unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(b64.decode(sps).unwrap(), clip.sps().data);
    assert_eq!(b64.decode(pps).unwrap(), clip.pps().data);
    assert!(BUILTIN_CLIP.len() < 400 * 1024, "clip stays small");
}

#[test]
fn builtin_clip_nals_cover_the_file() {
    // Every byte of the file is a start code, a NAL byte, or a trailing zero.
    let clip = Clip::builtin();
    let nal_bytes: usize = clip
        .frames()
        .iter()
        .flat_map(|f| &f.nals)
        .map(|n| n.data.len())
        .sum();
    let nal_count = clip.frames().iter().map(|f| f.nals.len()).sum::<usize>();
    assert!(nal_bytes + 3 * nal_count <= BUILTIN_CLIP.len());
    assert!(nal_bytes + 4 * nal_count >= BUILTIN_CLIP.len());
}

/// A tiny synthetic Annex-B stream from (nal header, payload) pairs.
fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9];
const PPS: &[u8] = &[0x68, 0xcb, 0x81];
const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
const P_SLICE: &[u8] = &[0x41, 0x9a, 0x21];
const AUD: &[u8] = &[0x09, 0x10];

#[test]
fn clip_without_aud_splits_on_first_mb_in_slice() {
    let stream = annex_b(&[SPS, PPS, IDR, P_SLICE, P_SLICE, SPS, PPS, IDR]);
    let clip = Clip::parse(&stream).unwrap();
    let shape: Vec<(usize, bool)> = clip
        .frames()
        .iter()
        .map(|f| (f.nals.len(), f.is_idr))
        .collect();
    assert_eq!(shape, vec![(3, true), (1, false), (1, false), (3, true)]);
    assert_eq!(clip.profile_level_id(), "42C01E");
}

#[test]
fn clip_errors_are_clear() {
    assert!(matches!(
        Clip::parse(b""),
        Err(ClipError::NoStartCode { scanned: 0 })
    ));
    assert!(matches!(
        Clip::parse(b"not a video at all"),
        Err(ClipError::NoStartCode { .. })
    ));
    assert!(matches!(
        Clip::parse(&annex_b(&[PPS, IDR])),
        Err(ClipError::MissingSps)
    ));
    assert!(matches!(
        Clip::parse(&annex_b(&[SPS, IDR])),
        Err(ClipError::MissingPps)
    ));
    assert!(matches!(
        Clip::parse(&annex_b(&[SPS, PPS, P_SLICE])),
        Err(ClipError::MissingIdr)
    ));
    assert!(matches!(
        Clip::parse(&annex_b(&[SPS, PPS, P_SLICE, IDR])),
        Err(ClipError::FirstFrameNotIdr { offset: 4 })
    ));
    assert!(matches!(
        Clip::parse(&annex_b(&[&[0x67, 0x42], PPS, IDR])),
        Err(ClipError::SpsTooShort { offset: 4, len: 2 })
    ));
    assert!(matches!(
        Clip::parse(&annex_b(&[SPS, &[0xe8, 1], IDR])),
        Err(ClipError::ForbiddenBit {
            offset: 13,
            header: 0xe8
        })
    ));
    let err = Clip::load(std::path::Path::new("/nonexistent/clip.h264")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/clip.h264"), "{err}");
}

#[test]
fn clip_parser_survives_random_and_mutated_inputs() {
    let mut rng = SmallRng::seed_from_u64(0x6c1b);
    let seeds: Vec<Vec<u8>> = vec![
        BUILTIN_CLIP[..2048].to_vec(),
        annex_b(&[AUD, SPS, PPS, IDR, AUD, P_SLICE]),
        annex_b(&[SPS, PPS, IDR, P_SLICE, IDR]),
    ];
    let mut accepted = 0;
    for i in 0..100_000 {
        let input = if i % 10 == 0 {
            let len = rng.gen_range(0..64);
            (0..len)
                .map(|_| {
                    *[0u8, 1, 0x65, 0x67, 0x68, 0x09, rng.gen()]
                        .get(rng.gen_range(0..7))
                        .unwrap()
                })
                .collect()
        } else {
            let mut v = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..4) {
                match rng.gen_range(0..4) {
                    0 if !v.is_empty() => {
                        let at = rng.gen_range(0..v.len());
                        v[at] ^= 1 << rng.gen_range(0..8);
                    }
                    1 => v.truncate(rng.gen_range(0..=v.len())),
                    2 => {
                        let at = rng.gen_range(0..=v.len());
                        v.insert(at, *[0u8, 1, 0x80, 0xff].get(rng.gen_range(0..4)).unwrap());
                    }
                    _ => v.extend_from_slice(&[0, 0, 1]),
                }
            }
            v
        };
        if let Ok(clip) = Clip::parse(&input) {
            accepted += 1;
            assert!(clip.frames()[0].is_idr);
            assert!(clip.sps().data.len() >= 4);
        }
    }
    assert!(accepted > 0, "some mutated inputs remain valid clips");
}

// ---------------------------------------------------------------------------
// RTP

#[test]
fn fu_a_fragments_reassemble_to_the_nal() {
    let clip = Clip::builtin();
    let biggest = clip
        .frames()
        .iter()
        .flat_map(|f| &f.nals)
        .max_by_key(|n| n.data.len())
        .unwrap();
    assert!(
        biggest.data.len() > MAX_RTP_PAYLOAD,
        "clip has a NAL needing FU-A"
    );
    let mut packetizer = H264Packetizer::new(0xdead_beef, 65_530, 4_294_967_000);
    let packets = packetizer.packetize(&[&biggest.data], 1234);
    let expected_count = (biggest.data.len() - 1).div_ceil(MAX_RTP_PAYLOAD - 2);
    assert_eq!(packets.len(), expected_count);
    for (i, packet) in packets.iter().enumerate() {
        let h = rtp_header(packet);
        assert_eq!(h.payload_type, 96);
        assert_eq!(h.marker, i + 1 == packets.len(), "marker only on the last");
        assert_eq!(h.seq, 65_530u16.wrapping_add(i as u16), "seq wraps");
        assert_eq!(h.timestamp, 1234);
        assert_eq!(h.ssrc, 0xdead_beef);
        assert!(packet.len() <= 12 + MAX_RTP_PAYLOAD);
        assert_eq!(packet[12] & 0x1f, FU_A);
        assert_eq!(packet[12] & 0xe0, biggest.data[0] & 0xe0, "NRI kept");
        assert_eq!(packet[13] & 0x1f, biggest.nal_type());
    }
    assert_eq!(depacketize(&packets), vec![biggest.data.clone()]);
}

#[test]
fn small_nals_go_in_single_packets_and_the_marker_ends_the_access_unit() {
    let mut packetizer = H264Packetizer::new(7, 100, 0).with_max_payload(8);
    let nals: [&[u8]; 4] = [
        AUD,
        &[0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        &[],
        P_SLICE,
    ];
    let packets = packetizer.packetize(&nals, 90_000);
    // AUD single, the 12-byte NAL as 2 FU-A (6 + 5 body bytes), empty skipped, slice single.
    assert_eq!(packets.len(), 4);
    assert_eq!(&packets[0][12..], AUD);
    assert_eq!(&packets[3][12..], P_SLICE);
    let markers: Vec<bool> = packets.iter().map(|p| rtp_header(p).marker).collect();
    assert_eq!(markers, vec![false, false, false, true]);
    assert_eq!(
        depacketize(&packets),
        vec![
            AUD.to_vec(),
            vec![0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            P_SLICE.to_vec()
        ]
    );
    assert_eq!(packetizer.next_seq(), 104);
}

#[test]
fn timestamps_step_3600_per_frame_and_wrap() {
    let packetizer = H264Packetizer::new(1, 0, u32::MAX - 100);
    assert_eq!(TICKS_PER_FRAME, 3600);
    assert_eq!(packetizer.timestamp_for(0), u32::MAX - 100);
    assert_eq!(packetizer.timestamp_for(1), 3499);
    assert_eq!(
        packetizer.timestamp_for(50 * 1000 + 3),
        (u32::MAX - 100).wrapping_add(3600 * 50_003)
    );
    assert_eq!(
        packetizer.timestamp_for(u64::from(u32::MAX) + 2),
        (u32::MAX - 100).wrapping_add(3600u32.wrapping_mul(1))
    );
}

#[test]
fn sps_and_pps_are_sent_in_band_before_an_idr_lacking_them() {
    let clip = Clip::parse(&annex_b(&[AUD, SPS, PPS, IDR, AUD, P_SLICE, AUD, IDR])).unwrap();
    assert_eq!(clip.frames().len(), 3);
    assert_eq!(
        nals_to_send(&clip.frames()[0], &clip),
        vec![AUD, SPS, PPS, IDR]
    );
    assert_eq!(nals_to_send(&clip.frames()[1], &clip), vec![AUD, P_SLICE]);
    assert_eq!(
        nals_to_send(&clip.frames()[2], &clip),
        vec![AUD, SPS, PPS, IDR]
    );
    let no_aud = Clip::parse(&annex_b(&[SPS, PPS, IDR, IDR])).unwrap();
    assert_eq!(
        nals_to_send(&no_aud.frames()[1], &no_aud),
        vec![SPS, PPS, IDR]
    );
}

#[test]
fn interleaved_framing() {
    assert_eq!(
        interleave(0, &[1, 2, 3]).unwrap(),
        vec![b'$', 0, 0, 3, 1, 2, 3]
    );
    assert!(interleave(0, &vec![0; 70_000]).is_none());
}

// ---------------------------------------------------------------------------
// Digest

// RFC 2617 §3.5: the worked example (Mufasa / "Circle Of Life", qop=auth).
#[test]
fn digest_rfc2617_worked_example() {
    assert_eq!(
        ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
        "939e7578ed9e3c518a452acee763bce9"
    );
    assert_eq!(
        ha2("GET", "/dir/index.html"),
        "39aff3a2bab6126f332b942af96d3366"
    );
    let input = DigestInput {
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop: Some(QopAuth {
            nc: "00000001",
            cnonce: "0a4f113b",
            qop: "auth",
        }),
    };
    assert_eq!(digest_response(&input), "6629fae49393a05397450978507c4ef1");

    // The example's Authorization header, parsed and verified.
    let header = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
    let auth = DigestAuthorization::parse(header).unwrap();
    assert_eq!(auth.username, "Mufasa");
    assert_eq!(auth.realm, "testrealm@host.com");
    assert_eq!(auth.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
    assert_eq!(auth.uri, "/dir/index.html");
    assert_eq!(auth.qop.as_deref(), Some("auth"));
    assert_eq!(auth.nc.as_deref(), Some("00000001"));
    assert_eq!(auth.cnonce.as_deref(), Some("0a4f113b"));
    assert_eq!(auth.response, "6629fae49393a05397450978507c4ef1");
    let nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
    let realm = "testrealm@host.com";
    assert!(auth.verify("GET", realm, nonce, "Mufasa", "Circle Of Life"));
    assert!(!auth.verify("GET", realm, nonce, "Mufasa", "Circle of Life"));
    assert!(!auth.verify("POST", realm, nonce, "Mufasa", "Circle Of Life"));
    assert!(!auth.verify("GET", realm, "othernonce", "Mufasa", "Circle Of Life"));
}

// RFC 2617 §3.2.2.1 without qop (the RFC 2069 form Dahua uses), same inputs
// as §3.5; expected value computed independently with Python's hashlib.
#[test]
fn digest_without_qop() {
    let input = DigestInput {
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop: None,
    };
    assert_eq!(digest_response(&input), "670fd8c2df070c60b045671b8b24ff02");
    // And by hand: MD5(HA1:nonce:HA2).
    let by_hand = hex::encode(md5::Md5::digest(
        b"939e7578ed9e3c518a452acee763bce9:dcd98b7102dd2f0e8b11d0f600bfb0c093:39aff3a2bab6126f332b942af96d3366",
    ));
    assert_eq!(digest_response(&input), by_hand);
}

#[test]
fn digest_header_parsing_edge_cases() {
    assert!(DigestAuthorization::parse("Basic YWRtaW46YWRtaW4=").is_none());
    assert!(DigestAuthorization::parse(r#"Digest username="a""#).is_none());
    let quoted = DigestAuthorization::parse(
        r#"digest username="a\"b", realm="x, y", nonce=n, uri="/", response="R""#,
    )
    .unwrap();
    assert_eq!(quoted.username, "a\"b");
    assert_eq!(quoted.realm, "x, y");
    assert_eq!(quoted.nonce, "n");
    let mut rng = SmallRng::seed_from_u64(2617);
    let seed = br#"Digest username="Mufasa", realm="r", nonce="n", uri="/", qop=auth, nc=1, cnonce="c", response="x""#;
    for _ in 0..100_000 {
        let mut v = seed.to_vec();
        for _ in 0..rng.gen_range(1..4) {
            match rng.gen_range(0..3) {
                0 if !v.is_empty() => {
                    let at = rng.gen_range(0..v.len());
                    v[at] = *b"\"=, \\x\x00\xff".get(rng.gen_range(0..8)).unwrap();
                }
                1 => v.truncate(rng.gen_range(0..=v.len())),
                _ => {
                    let at = rng.gen_range(0..=v.len());
                    v.insert(at, rng.gen());
                }
            }
        }
        let text = String::from_utf8_lossy(&v);
        if let Some(auth) = DigestAuthorization::parse(&text) {
            let _ = auth.verify("DESCRIBE", "r", "n", "Mufasa", "pw");
        }
    }
}

// ---------------------------------------------------------------------------
// request framing and URIs

#[test]
fn request_framing() {
    let two = b"OPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x01\x00\x02ab";
    let (first, used) = next_inbound(two).unwrap().unwrap();
    let Inbound::Request(req) = first else {
        panic!("request expected")
    };
    assert_eq!(req.method, "OPTIONS");
    assert_eq!(req.uri, "rtsp://h/");
    assert_eq!(req.cseq(), Some("1"));
    assert_eq!(
        next_inbound(&two[used..]).unwrap(),
        Some((Inbound::Interleaved(Interleaved { channel: 1, len: 2 }), 6))
    );
    // Incomplete pieces wait for more.
    assert_eq!(next_inbound(b"OPTIONS rtsp://h/ RTS").unwrap(), None);
    assert_eq!(next_inbound(b"$\x01\x00\x05ab").unwrap(), None);
    assert_eq!(
        next_inbound(b"SET_PARAMETER * RTSP/1.0\r\nContent-Length: 4\r\n\r\nab").unwrap(),
        None
    );
    // Junk is rejected at once, even without a blank line.
    assert!(matches!(
        next_inbound(b"\x16\x03\x01\x02\x00"),
        Err(RequestError::Malformed { offset: 0, .. })
    ));
    assert!(matches!(
        next_inbound(b"hello world\r\n"),
        Err(RequestError::Malformed { .. })
    ));
    assert!(matches!(
        next_inbound(b"GET / HTTP/1.1\r\n"),
        Err(RequestError::Malformed { .. })
    ));
    assert!(matches!(
        next_inbound(b"OPTIONS * RTSP/1.0\r\nNoColon\r\n\r\n"),
        Err(RequestError::Malformed { offset: 20, .. })
    ));
    let huge = format!(
        "OPTIONS * RTSP/1.0\r\nX-Pad: {}\r\n",
        "a".repeat(MAX_REQUEST_BYTES)
    );
    assert_eq!(
        next_inbound(huge.as_bytes()),
        Err(RequestError::TooLarge {
            limit: MAX_REQUEST_BYTES
        })
    );
    assert_eq!(
        next_inbound(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 99999999999\r\n\r\n"),
        Err(RequestError::TooLarge {
            limit: MAX_REQUEST_BYTES
        })
    );
}

#[test]
fn request_parser_survives_random_and_mutated_inputs() {
    let mut rng = SmallRng::seed_from_u64(2326);
    let seeds: [&[u8]; 3] = [
        b"DESCRIBE rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0 RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n",
        b"SET_PARAMETER rtsp://h/ RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 5\r\n\r\nhello",
        b"$\x01\x00\x08\x81\xc9\x00\x07abcd",
    ];
    for _ in 0..100_000 {
        let mut v = seeds[rng.gen_range(0..seeds.len())].to_vec();
        for _ in 0..rng.gen_range(1..4) {
            match rng.gen_range(0..4) {
                0 => {
                    let at = rng
                        .gen_range(0..v.len().max(1))
                        .min(v.len().saturating_sub(1));
                    if let Some(b) = v.get_mut(at) {
                        *b ^= 1 << rng.gen_range(0..8);
                    }
                }
                1 => v.truncate(rng.gen_range(0..=v.len())),
                2 => {
                    let at = rng.gen_range(0..=v.len());
                    v.insert(at, *b"\r\n:$ 9\xff".get(rng.gen_range(0..7)).unwrap());
                }
                _ => {
                    // Extreme lengths in the places that carry one.
                    if v.first() == Some(&b'$') && v.len() >= 4 {
                        v[2] = 0xff;
                        v[3] = 0xff;
                    } else {
                        v.extend_from_slice(b"Content-Length: 18446744073709551615\r\n\r\n");
                    }
                }
            }
        }
        if let Ok(Some((_, used))) = next_inbound(&v) {
            assert!(used <= v.len());
        }
    }
}

#[test]
fn stream_uris() {
    let t = |channel, subtype, track| {
        Some(StreamTarget {
            channel,
            subtype,
            track,
        })
    };
    assert_eq!(
        parse_stream_uri("rtsp://10.0.0.1:554/cam/realmonitor?channel=1&subtype=0"),
        t(1, 0, None)
    );
    assert_eq!(
        parse_stream_uri("rtsp://u:p@h/cam/realmonitor?channel=3&subtype=2/"),
        t(3, 2, None)
    );
    assert_eq!(
        parse_stream_uri("rtsp://h/cam/realmonitor?channel=1&subtype=1/trackID=0"),
        t(1, 1, Some(0))
    );
    assert_eq!(
        parse_stream_uri(
            "rtsp://h/cam/realmonitor?channel=1&subtype=1&unicast=true&proto=Onvif/trackID=4"
        ),
        t(1, 1, Some(4))
    );
    assert_eq!(
        parse_stream_uri("/cam/realmonitor?channel=2"),
        t(2, 0, None)
    );
    for bad in [
        "rtsp://h/cam/realmonitor?channel=0&subtype=0",
        "rtsp://h/cam/realmonitor?channel=1&subtype=3",
        "rtsp://h/cam/realmonitor?subtype=0",
        "rtsp://h/cam/realmonitor?channel=x",
        "rtsp://h/cam/playback?channel=1",
        "rtsp://h/cam/realmonitor?channel=1/trackID=x",
        "http://h/cam/realmonitor?channel=1",
        "rtsp://h",
        "*",
    ] {
        assert_eq!(parse_stream_uri(bad), None, "{bad}");
    }
}

// ---------------------------------------------------------------------------
// the server, scripted raw client

#[test]
fn garbage_request_gets_400_and_close() {
    let (_rt, addr) = start_server(config(false));
    let mut client = RawClient::connect(addr);
    client.send(b"\x00\x01garbage\xff\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 400);
    let mut rest = Vec::new();
    client.stream.read_to_end(&mut rest).expect("server closes");
    assert!(rest.is_empty());

    // Text junk too.
    let mut client = RawClient::connect(addr);
    client.send(b"HELLO\r\n");
    let mut all = Vec::new();
    client.stream.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"RTSP/1.0 400 Bad Request\r\n"), "{all:?}");
}

#[test]
fn oversized_request_gets_400() {
    let (_rt, addr) = start_server(config(false));
    let mut client = RawClient::connect(addr);
    let mut big = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ".to_vec();
    big.extend(vec![b'a'; MAX_REQUEST_BYTES + 10]);
    // The server may close before taking every byte; ignore write errors.
    let _ = client.stream.write_all(&big);
    let mut all = Vec::new();
    let _ = client.stream.read_to_end(&mut all);
    assert!(
        all.starts_with(b"RTSP/1.0 400 "),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
}

#[test]
fn scripted_session_answers_like_dahua() {
    let (_rt, addr) = start_server(config(false));
    let base = format!("rtsp://{addr}{PATH}");
    let mut c = RawClient::connect(addr);

    // OPTIONS without auth: Session, Server, Public, no Content-Length.
    let r = c.request("OPTIONS", &base, 1, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("CSeq"), Some("1"));
    let session = r.header("Session").unwrap().to_string();
    assert_eq!(session.len(), 12);
    assert!(session.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(r.header("Server"), Some("Rtsp Server/3.0"));
    assert!(r.header("Public").unwrap().contains("GET_PARAMETER"));
    assert!(r.header("Content-Length").is_none());

    // DESCRIBE without auth: 401 with a Digest challenge in our realm.
    let r = c.request("DESCRIBE", &base, 2, &[]);
    assert_eq!(r.status, 401);
    let challenge = r.header("WWW-Authenticate").unwrap().to_string();
    assert!(challenge.starts_with("Digest "), "{challenge}");
    assert_eq!(challenge_param(&challenge, "realm"), REALM);
    let nonce = challenge_param(&challenge, "nonce");

    // Wrong password: 401 again, with a fresh nonce.
    let r = c.request(
        "DESCRIBE",
        &base,
        3,
        &[authorization("DESCRIBE", &base, &nonce, "wrong")],
    );
    assert_eq!(r.status, 401);
    let nonce2 = challenge_param(r.header("WWW-Authenticate").unwrap(), "nonce");
    assert_ne!(nonce, nonce2);

    // Right password, old nonce: refused; current nonce: SDP.
    let r = c.request(
        "DESCRIBE",
        &base,
        4,
        &[authorization("DESCRIBE", &base, &nonce, PASSWORD)],
    );
    assert_eq!(r.status, 401);
    let nonce = challenge_param(r.header("WWW-Authenticate").unwrap(), "nonce");
    let auth = |method: &str, uri: &str| authorization(method, uri, &nonce, PASSWORD);
    let r = c.request("DESCRIBE", &base, 5, &[auth("DESCRIBE", &base)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Base"), Some(format!("{base}/").as_str()));
    assert_eq!(r.header("Content-Type"), Some("application/sdp"));
    assert_eq!(r.header("Cache-Control"), Some("must-revalidate"));
    assert_eq!(r.header("x-Accept-Dynamic-Rate"), Some("1"));
    let sdp = String::from_utf8(r.body.clone()).unwrap();
    let clip = Clip::builtin();
    for line in [
        "v=0\r\n",
        "s=Media Server\r\n",
        "c=IN IP4 0.0.0.0\r\n",
        "a=control:*\r\n",
        "a=packetization-supported:DH\r\n",
        "a=range:npt=now-\r\n",
        "m=video 0 RTP/AVP 96\r\n",
        "a=control:trackID=0\r\n",
        "a=framerate:25.000000\r\n",
        "a=rtpmap:96 H264/90000\r\n",
        "a=recvonly\r\n",
    ] {
        assert!(sdp.contains(line), "SDP lacks {line:?}:\n{sdp}");
    }
    assert!(sdp.contains(&format!(
        "a=fmtp:96 packetization-mode=1;profile-level-id={};sprop-parameter-sets={}\r\n",
        clip.profile_level_id(),
        clip.sprop_parameter_sets()
    )));
    let o_line = sdp.lines().find(|l| l.starts_with("o=- ")).unwrap();
    let fields: Vec<&str> = o_line.split(' ').collect();
    assert_eq!(fields[1].len(), 10);
    assert_eq!(fields[1], fields[2]);

    // Unknown path: 404 (after auth).
    let other = format!("rtsp://{addr}/cam/playback?channel=1");
    let r = c.request("DESCRIBE", &other, 6, &[auth("DESCRIBE", &other)]);
    assert_eq!(r.status, 404);

    // SETUP over UDP: 461; over TCP: interleaved with an upper-case ssrc.
    let track = format!("{base}/trackID=0");
    let r = c.request(
        "SETUP",
        &track,
        7,
        &[
            auth("SETUP", &track),
            "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001".into(),
        ],
    );
    assert_eq!(r.status, 461);
    let r = c.request(
        "SETUP",
        &track,
        8,
        &[
            auth("SETUP", &track),
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1".into(),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Session"),
        Some(format!("{session};timeout=60").as_str())
    );
    assert_eq!(r.header("x-Dynamic-Rate"), Some("1"));
    let transport = r.header("Transport").unwrap();
    let ssrc_hex = transport
        .strip_prefix("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=")
        .expect(transport);
    assert_eq!(ssrc_hex.len(), 8);
    assert!(ssrc_hex
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
    let ssrc = u32::from_str_radix(ssrc_hex, 16).unwrap();

    // PLAY: Range and RTP-Info, then frames that match RTP-Info.
    let play_uri = format!("{base}/");
    let sess = format!("Session: {session}");
    let r = c.request(
        "PLAY",
        &play_uri,
        9,
        &[auth("PLAY", &play_uri), sess.clone()],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Session"), Some(session.as_str()));
    assert_eq!(r.header("Range"), Some("npt=0.000000-"));
    let rtp_info = r.header("RTP-Info").unwrap().to_string();
    let seq: u16 = rtp_info
        .split("seq=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let rtptime: u32 = rtp_info.split("rtptime=").nth(1).unwrap().parse().unwrap();
    assert!(rtp_info.starts_with("url=trackID=0;"), "{rtp_info}");

    let started = Instant::now();
    let mut packets = Vec::new();
    let mut frames = 0;
    while frames < 30 {
        let (channel, packet) = c.read_interleaved();
        assert_eq!(channel, 0);
        let h = rtp_header(&packet);
        assert_eq!(h.payload_type, 96);
        assert_eq!(h.ssrc, ssrc);
        assert_eq!(h.seq, seq.wrapping_add(packets.len() as u16));
        assert_eq!(h.timestamp, rtptime.wrapping_add(3600 * frames));
        if h.marker {
            frames += 1;
        }
        packets.push(packet);
        if frames == 5 && h.marker {
            // Mid-stream: an RTCP receiver report and a keep-alive.
            c.send(b"$\x01\x00\x08\x81\xc9\x00\x01\x00\x00\x00\x00");
            c.send(
                format!(
                    "GET_PARAMETER {play_uri} RTSP/1.0\r\nCSeq: 10\r\n{}\r\n{sess}\r\n\r\n",
                    auth("GET_PARAMETER", &play_uri)
                )
                .as_bytes(),
            );
            let r = c.read_response();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("CSeq"), Some("10"));
            // Frames that arrived before the answer are checked too.
            for (channel, packet) in std::mem::take(&mut c.interleaved) {
                assert_eq!(channel, 0);
                let h = rtp_header(&packet);
                assert_eq!(h.seq, seq.wrapping_add(packets.len() as u16));
                if h.marker {
                    frames += 1;
                }
                packets.push(packet);
            }
        }
    }
    // Frame 29 is due 29 × 40 ms after the first: real-time pacing.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1000), "paced: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "not stalled: {elapsed:?}"
    );

    // The first access unit is the clip's first IDR, byte for byte.
    let first_au: Vec<Vec<u8>> = {
        let end = packets.iter().position(|p| rtp_header(p).marker).unwrap();
        depacketize(&packets[..=end])
    };
    let expected: Vec<Vec<u8>> = clip.frames()[0]
        .nals
        .iter()
        .map(|n| n.data.clone())
        .collect();
    assert_eq!(first_au, expected);

    // TEARDOWN: 200; then the client closes.
    let r = c.request(
        "TEARDOWN",
        &play_uri,
        11,
        &[auth("TEARDOWN", &play_uri), sess],
    );
    assert_eq!(r.status, 200);

    // Methods: unsupported known ones 405, unknown ones 501.
    let r = c.request("RECORD", &base, 12, &[]);
    assert_eq!(r.status, 405);
    let r = c.request("FROBNICATE", &base, 13, &[]);
    assert_eq!(r.status, 501);
}

#[test]
fn looping_keeps_seq_and_timestamps_rising() {
    // Drive serve_connection over an in-memory pipe, with a short clip so
    // it loops quickly.
    let short = annex_b(&[AUD, SPS, PPS, IDR, AUD, P_SLICE]);
    let mut cfg = config(false);
    cfg.clip = Arc::new(Clip::parse(&short).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(serve_connection(server, Arc::new(cfg)));
        let script = |nonce: &str| {
            let uri = "rtsp://h/cam/realmonitor?channel=1&subtype=0";
            let mut s = String::new();
            for (cseq, method, extra) in [
                (
                    2,
                    "SETUP",
                    "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
                ),
                (3, "PLAY", ""),
            ] {
                s += &format!(
                    "{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n{}\r\n{extra}\r\n",
                    authorization(method, uri, nonce, PASSWORD)
                );
            }
            s
        };
        client
            .write_all(b"DESCRIBE rtsp://h/cam/realmonitor?channel=1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while find(&buf, b"\r\n\r\n").is_none() {
            let n = client.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let nonce = challenge_param(&head, "nonce");
        buf.clear();
        client.write_all(script(&nonce).as_bytes()).await.unwrap();
        // Read until 2 responses and 7 frames (3 loops of the 2-frame clip and one more).
        let mut responses = 0;
        let mut stamps = Vec::new();
        let mut seqs = Vec::new();
        while stamps.len() < 7 {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
            loop {
                if buf.first() == Some(&b'$') && buf.len() >= 4 {
                    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                    if buf.len() < 4 + len {
                        break;
                    }
                    let h = rtp_header(&buf[4..4 + len]);
                    seqs.push(h.seq);
                    if h.marker {
                        stamps.push(h.timestamp);
                    }
                    buf.drain(..4 + len);
                } else if let Some(end) = find(&buf, b"\r\n\r\n") {
                    assert!(buf.starts_with(b"RTSP/1.0 200 OK"));
                    responses += 1;
                    buf.drain(..end + 4);
                } else {
                    break;
                }
            }
        }
        assert_eq!(responses, 2);
        for pair in stamps.windows(2) {
            assert_eq!(pair[1].wrapping_sub(pair[0]), 3600);
        }
        for pair in seqs.windows(2) {
            assert_eq!(pair[1], pair[0].wrapping_add(1));
        }
        // The client vanishes mid-stream: the server ends quietly.
        drop(client);
        let report = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server ends")
            .unwrap()
            .expect("no error for a vanished client");
        assert!(matches!(
            report.ended_by,
            ConnectionEnd::ClientVanished | ConnectionEnd::ClientClosed
        ));
        assert_eq!(report.requests, 3);
        assert!(report.frames_sent >= 7);
        assert!(report.rtp_packets_sent >= report.frames_sent);
        assert!(report.bytes_sent > 0 && report.bytes_received > 0);
    });
}

#[test]
fn logs_never_show_the_password_or_authorization() {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let uri = format!("rtsp://{USER}:{PASSWORD}@h/cam/realmonitor?channel=1&subtype=0");
    let auth_value = authorization("DESCRIBE", &uri, "whatever", PASSWORD);
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let task = tokio::spawn(serve_connection(server, Arc::new(config(false))));
            let request = format!("DESCRIBE {uri} RTSP/1.0\r\nCSeq: 1\r\n{auth_value}\r\n\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let mut answer = [0u8; 512];
            let n = client.read(&mut answer).await.unwrap();
            assert!(answer[..n].starts_with(b"RTSP/1.0 401"));
            drop(client);
            task.await.unwrap().unwrap();
        });
    });
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("DESCRIBE"), "the request was logged: {logs}");
    assert!(logs.contains("Authorization: <redacted>"), "{logs}");
    assert!(!logs.contains(PASSWORD), "password leaked: {logs}");
    let response_hash = challenge_param(&auth_value, "response");
    assert!(
        !logs.contains(&response_hash),
        "Authorization leaked: {logs}"
    );
}

// ---------------------------------------------------------------------------
// real peers: ffprobe / ffmpeg

#[test]
fn ffprobe_over_tcp_sees_640x360_h264_at_25fps() {
    let (_rt, addr) = start_server(config(false));
    let out = run_with_timeout(&mut ffprobe_command(&url(addr, USER, PASSWORD)), 30);
    assert_stream_info(&out);
}

#[test]
fn ffprobe_default_transport_falls_back_to_tcp_after_461() {
    let (_rt, addr) = start_server(config(false));
    let out = run_with_timeout(
        Command::new(common::require_program("ffprobe", "ffmpeg"))
            .args(["-v", "error", "-show_streams", "-of", "json"])
            .arg(url(addr, USER, PASSWORD)),
        30,
    );
    assert_stream_info(&out);
    // ffmpeg logs the refused UDP SETUP before retrying over TCP.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SETUP failed: 461"), "stderr: {stderr}");
}

#[test]
fn ffprobe_with_a_wrong_password_gets_401() {
    let (_rt, addr) = start_server(config(false));
    let out = run_with_timeout(
        &mut ffprobe_command(&url(addr, USER, "not-the-password")),
        30,
    );
    assert!(!out.status.success(), "ffprobe must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("Unauthorized"),
        "stderr: {stderr}"
    );
}

#[test]
fn ffmpeg_decodes_every_frame_of_the_clip_once() {
    let (_rt, addr) = start_server(config(true));
    let clip_path = common::repo_root().join("assets/clip.h264");
    let expected = framemd5([
        "-i".as_ref(),
        clip_path.as_os_str(),
        "-fps_mode".as_ref(),
        "passthrough".as_ref(),
    ]);
    let streamed = framemd5([
        "-rtsp_transport",
        "tcp",
        "-i",
        &url(addr, USER, PASSWORD),
        "-fps_mode",
        "passthrough",
    ]);
    assert_eq!(expected.len(), 50, "reference decode has all 50 frames");
    assert_eq!(streamed, expected);
}
