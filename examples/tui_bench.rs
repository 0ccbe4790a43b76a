//! `tools/bench-inspect`: the inspector under load. Feeds packets through
//! the app as a live source would (a realistic mix: cloud signalling, punch,
//! PTCP control and 1280-byte DATA over many realms, some retransmitted)
//! and draws a frame every `--per-frame` packets into a ratatui
//! `TestBackend` (by default 66 packets per frame: 2,000 packets/s at the
//! inspector's 30 Hz cap). Reports ingest throughput, frame times (p50, p99,
//! max) and peak memory (VmHWM).
//!
//!   cargo run --release --example tui_bench [-- --packets 100000 --max-packets 100000 --per-frame 66 --size 120x40]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dhp2p::codec::ptcp::{self, Body, Header, Packet};
use dhp2p::decode::record::Record;
use dhp2p::tui::app::{App, Config};
use dhp2p::tui::ui;
use dhp2p::tui::SourceState;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

struct Options {
    packets: u64,
    max_packets: usize,
    per_frame: u64,
    width: u16,
    height: u16,
}

fn options() -> Options {
    let mut o = Options {
        packets: 100_000,
        max_packets: 100_000,
        per_frame: 66,
        width: 120,
        height: 40,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--packets" => o.packets = value.parse().expect("--packets N"),
            "--max-packets" => o.max_packets = value.parse().expect("--max-packets N"),
            "--per-frame" => o.per_frame = value.parse::<u64>().expect("--per-frame N").max(1),
            "--size" => {
                let (w, h) = value.split_once('x').expect("--size WxH");
                o.width = w.parse().expect("width");
                o.height = h.parse().expect("height");
            }
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// Peak resident memory of this process in KiB (`VmHWM`), 0 when unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ptcp(sent: u32, recv: u32, lmid: u32, body: Body<'_>) -> Vec<u8> {
    Packet {
        header: Header {
            sent,
            recv,
            pid: ptcp::PID_IDLE,
            lmid,
            rmid: lmid,
        },
        body,
    }
    .to_vec()
}

/// The `n`-th datagram of a synthetic busy tunnel: mostly DATA in 32 realms
/// from the device, ACKs back, every 50th a retransmission, a BIND/CONN per
/// realm, a heartbeat and a cloud exchange now and then.
fn datagram(n: u64, sent: &mut u32, payload: &[u8]) -> (bool, Vec<u8>) {
    let realm = 0x1000_0000 + (n % 32) as u32;
    let lmid = n as u32;
    match n % 100 {
        0 => (
            true,
            ptcp(
                0,
                *sent,
                lmid,
                Body::bind(realm, 554, [127, 0, 0, 1].into()),
            ),
        ),
        1 => (
            false,
            ptcp(*sent, 0, lmid, Body::status(realm, ptcp::Status::Conn)),
        ),
        2 => (
            true,
            b"DHPOST /device/DEMO00000000001/p2p-channel HTTP/1.1\r\nCSeq: 9\r\n\r\n".to_vec(),
        ),
        3 => (
            false,
            b"HTTP/1.1 200 OK\r\nCSeq: 9\r\n\r\n<body><PubAddr>127.0.0.1:4000</PubAddr></body>"
                .to_vec(),
        ),
        4 => (false, ptcp(*sent, 0, lmid, Body::Heartbeat)),
        m if m % 2 == 1 => (true, ptcp(0, *sent, lmid, Body::Empty)),
        m => {
            // Every 50th DATA goes again with the same `sent`.
            let at = if m == 50 {
                sent.wrapping_sub(payload.len() as u32)
            } else {
                let at = *sent;
                *sent = sent.wrapping_add(payload.len() as u32);
                at
            };
            (false, ptcp(at, 0, lmid, Body::Data { realm, payload }))
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() {
    let o = options();
    let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let device: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let payload: Vec<u8> = (0..ptcp::FRAGMENT_SIZE).map(|i| i as u8).collect();
    let mut config = Config::new("bench", true);
    config.max_packets = o.max_packets;
    let mut app = App::new(config);
    app.set_source_state(SourceState::Live);
    let mut terminal = Terminal::new(TestBackend::new(o.width, o.height)).unwrap();
    let rss_before = peak_rss_kib();

    let mut sent = 0u32;
    let mut frames = Vec::new();
    let mut ingest = Duration::ZERO;
    let start = Instant::now();
    for n in 0..o.packets {
        let (from_client, bytes) = datagram(n, &mut sent, &payload);
        let (src, dst) = if from_client {
            (client, device)
        } else {
            (device, client)
        };
        let record = Record {
            number: n + 1,
            time: Duration::from_secs(1_700_000_000) + Duration::from_micros(n * 500),
            src,
            dst,
            payload: bytes,
        };
        let t = Instant::now();
        app.push(record);
        ingest += t.elapsed();
        if (n + 1) % o.per_frame == 0 {
            let t = Instant::now();
            terminal.draw(|frame| ui::render(frame, &mut app)).unwrap();
            frames.push(t.elapsed());
        }
    }
    let total = start.elapsed();
    // The realms view too, as a user toggling it would see it.
    let mut realm_frames = Vec::new();
    app.handle_key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Char('r'),
    ));
    for _ in 0..100 {
        let t = Instant::now();
        terminal.draw(|frame| ui::render(frame, &mut app)).unwrap();
        realm_frames.push(t.elapsed());
    }
    frames.sort();
    realm_frames.sort();
    let peak = peak_rss_kib();
    println!(
        "inspector bench: {} packets, ring {}, a frame every {} packets, {}x{}",
        o.packets, o.max_packets, o.per_frame, o.width, o.height
    );
    println!(
        "ingest      {:>10.0} packets/s ({:.2} µs/packet, decode + realms + ring)",
        o.packets as f64 / ingest.as_secs_f64(),
        ingest.as_secs_f64() * 1e6 / o.packets as f64
    );
    println!(
        "frames      {:>10} drawn; packets view p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        frames.len(),
        percentile(&frames, 0.5).as_secs_f64() * 1e3,
        percentile(&frames, 0.99).as_secs_f64() * 1e3,
        frames.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "realms view p50 {:.2} ms, p99 {:.2} ms ({} realms, {} timeline stages)",
        percentile(&realm_frames, 0.5).as_secs_f64() * 1e3,
        percentile(&realm_frames, 0.99).as_secs_f64() * 1e3,
        app.model().realm_count(),
        app.model().timeline_len()
    );
    println!(
        "memory      peak RSS (VmHWM) {:.1} MiB ({:.1} MiB before feeding); {} packets retained",
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        app.retained()
    );
    println!("wall        {:.2} s", total.as_secs_f64());
}
