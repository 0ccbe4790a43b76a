//! Writes a big capture of realistic Dahua P2P traffic for the `decode`
//! benchmark: a cloud exchange and hole punching, then PTCP sessions whose
//! devices stream 1316-byte DATA datagrams (1280 payload bytes, the device's
//! chunk size) to clients that ACK every second one, with heartbeats and the
//! odd cloud or punch datagram in between.
//!
//!   cargo run --release --example gen_capture -- OUT.pcap [MEGABYTES]
//!
//! Deterministic: the same size gives the same file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use dhp2p::capture::UdpPcapWriter;
use dhp2p::codec::ptcp::{Body, Header, Packet, Status};

/// DH-P2P.md §11.6: client → device Binding Request.
const PUNCH: &str =
    "fffeffe7deed5bbd000102030405060708090a0b7fd5fff72b619857d42b81e1fffbfff7fffe63bf34ff8ef5";
/// DH-P2P.md §11.10: the online/p2psrv answer.
const US_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>";
const PROBE: &[u8] = b"DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 1\r\n\r\n";

/// Bytes of DATA payload per datagram.
const CHUNK: usize = 1280;

/// One PTCP session: a client and a device with their counters.
struct Session {
    client: SocketAddrV4,
    device: SocketAddrV4,
    realm: u32,
    client_sent: u32,
    device_sent: u32,
    clock: u32,
}

impl Session {
    fn packet(&self, from_device: bool, body: Body<'_>) -> Vec<u8> {
        let header = if from_device {
            Header {
                sent: self.device_sent,
                recv: self.client_sent,
                pid: 0x0000_fffc,
                lmid: self.clock.wrapping_add(4096),
                rmid: self.clock,
            }
        } else {
            Header {
                sent: self.client_sent,
                recv: self.device_sent,
                pid: 0x0000_fffc,
                lmid: self.clock,
                rmid: self.clock.wrapping_add(4096),
            }
        };
        let header = match body {
            Body::Syn => Header {
                pid: 0x0002_ffff,
                ..header
            },
            _ => header,
        };
        Packet { header, body }.to_vec()
    }
}

/// Writes about `megabytes` MB of traffic to `path`; returns frames written.
pub fn generate(path: &Path, megabytes: u64) -> io::Result<u64> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut w = UdpPcapWriter::new(file)?;
    let target = megabytes * 1_000_000;
    let cloud = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 5), 8800);
    let mut sessions: Vec<Session> = (0..4u8)
        .map(|i| Session {
            client: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10 + i), 50000 + u16::from(i)),
            device: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10 + i), 40000),
            realm: 0x0a0b_0c00 + u32::from(i),
            client_sent: 0,
            device_sent: 0,
            clock: 1000 * u32::from(i),
        })
        .collect();
    let punch = hex::decode(PUNCH).map_err(io::Error::other)?;
    let payload: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut micros: u64 = 1_700_000_000 * 1_000_000;
    let mut written: u64 = 24;
    let mut frames: u64 = 0;
    let emit = |w: &mut UdpPcapWriter<BufWriter<File>>,
                micros: u64,
                src: SocketAddrV4,
                dst: SocketAddrV4,
                bytes: &[u8]|
     -> io::Result<u64> {
        w.write_udp(Duration::from_micros(micros), src, dst, bytes)?;
        Ok(16 + 42 + bytes.len() as u64)
    };
    // Handshake: cloud, punch, SYN, BIND, CONN for every session.
    for s in &sessions {
        written += emit(&mut w, micros, s.client, cloud, PROBE)?;
        written += emit(&mut w, micros + 800, cloud, s.client, US_REPLY)?;
        written += emit(&mut w, micros + 2000, s.client, s.device, &punch)?;
        let syn = s.packet(false, Body::Syn);
        written += emit(&mut w, micros + 3000, s.client, s.device, &syn)?;
        let bind = s.packet(false, Body::bind(s.realm, 554, Ipv4Addr::LOCALHOST));
        written += emit(&mut w, micros + 4000, s.client, s.device, &bind)?;
        let conn = s.packet(true, Body::status(s.realm, Status::Conn));
        written += emit(&mut w, micros + 5000, s.device, s.client, &conn)?;
        frames += 6;
        micros += 10_000;
    }
    for s in &mut sessions {
        s.client_sent = 20;
        s.device_sent = 16;
    }
    // Streaming.
    let mut round: u64 = 0;
    while written < target {
        let s = &mut sessions[(round % 4) as usize];
        micros += 250;
        let data = s.packet(
            true,
            Body::Data {
                realm: s.realm,
                payload: &payload,
            },
        );
        written += emit(&mut w, micros, s.device, s.client, &data)?;
        s.device_sent = s.device_sent.wrapping_add((12 + CHUNK) as u32);
        frames += 1;
        if round % 2 == 1 {
            let ack = s.packet(false, Body::Empty);
            written += emit(&mut w, micros + 40, s.client, s.device, &ack)?;
            frames += 1;
        }
        if round % 4000 == 0 {
            let heartbeat = s.packet(false, Body::Heartbeat);
            written += emit(&mut w, micros + 60, s.client, s.device, &heartbeat)?;
            s.client_sent = s.client_sent.wrapping_add(12);
            frames += 1;
        }
        if round % 20_000 == 7 {
            written += emit(&mut w, micros + 80, s.client, cloud, PROBE)?;
            written += emit(&mut w, micros + 90, s.client, s.device, &punch)?;
            frames += 2;
        }
        s.clock = s.clock.wrapping_add(1);
        round += 1;
    }
    w.into_inner().flush()?;
    Ok(frames)
}

#[allow(dead_code)]
fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: gen_capture OUT.pcap [MEGABYTES (default 200)]");
        std::process::exit(2);
    };
    let megabytes = args.next().and_then(|m| m.parse().ok()).unwrap_or(200);
    let frames = generate(Path::new(&path), megabytes)?;
    eprintln!("wrote {frames} frames to {path}");
    Ok(())
}
