//! Flow control by the peer's advertised window (`pid`, FIELD-NOTES C1): a
//! peer whose window reads zero gets no new bodies until it reopens, only a
//! probe when nothing is in flight; with the window ignored, it gets them all.

use std::time::Instant;

use dhp2p::codec::ptcp::{Body, Packet};
use dhp2p::session::ptcp::{PeerWindow, PtcpConfig, PtcpSession};

const BODIES: usize = 300;

fn sender(peer_window: PeerWindow, now: Instant) -> PtcpSession {
    let config = PtcpConfig {
        peer_window,
        ..PtcpConfig::default()
    };
    let mut a = PtcpSession::with_counters(config, now, 4, 4);
    for i in 0..BODIES {
        a.send(&Body::Data {
            realm: 7,
            payload: &vec![i as u8; 1280],
        });
    }
    a
}

/// Datagrams carrying DATA that `s` sends now.
fn drain(s: &mut PtcpSession, now: Instant) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit(now))
        .filter(|d| matches!(Packet::decode(d).map(|p| p.body), Ok(Body::Data { .. })))
        .collect()
}

/// The receiver, holding `backlog` unconsumed bytes, says so in a packet.
fn advertise(b: &mut PtcpSession, backlog: usize, now: Instant) -> Vec<u8> {
    b.set_backlog(backlog);
    b.send(&Body::Heartbeat);
    let d = b.poll_transmit(now).expect("a packet");
    let pid = Packet::decode(&d).expect("valid").header.pid;
    assert_eq!(pid & 0xFFFF, 0xFFFF - backlog.min(0xFFFF) as u32);
    d
}

#[test]
fn a_closed_window_pauses_new_bodies_and_a_reopened_one_resumes_them() {
    let now = Instant::now();
    let mut a = sender(PeerWindow::PauseWhenClosed, now);
    let mut b = PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4);
    a.handle_datagram(now, &advertise(&mut b, 100_000, now));
    let probe = drain(&mut a, now);
    assert_eq!(probe.len(), 1, "one probe body while the window is closed");
    assert!(
        drain(&mut a, now).is_empty(),
        "nothing more while it is in flight"
    );
    // The receiver consumed everything: its next packet reopens the window.
    b.handle_datagram(now, &probe[0]);
    a.handle_datagram(now, &advertise(&mut b, 0, now));
    assert_eq!(
        drain(&mut a, now).len(),
        BODIES - 1,
        "the rest once it reopens"
    );
}

#[test]
fn an_ignored_window_sends_everything_the_send_window_allows() {
    let now = Instant::now();
    let mut a = sender(PeerWindow::Ignore, now);
    let mut b = PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4);
    a.handle_datagram(now, &advertise(&mut b, 100_000, now));
    assert_eq!(drain(&mut a, now).len(), BODIES);
}

/// `send_data` (the payload kept where the client's read put it) puts the
/// same datagrams on the wire as `send(&Body::Data)`, first sends and
/// resends alike, and `poll_transmit_into` appends exactly those bytes.
#[test]
fn data_sent_in_place_is_the_same_datagrams_first_and_resent() {
    let t0 = Instant::now();
    let config = PtcpConfig {
        lmid: dhp2p::session::ptcp::LmidMode::Counter { start: 1 },
        ..PtcpConfig::default()
    };
    let mut encoded = PtcpSession::with_counters(config.clone(), t0, 4, 4);
    let mut in_place = PtcpSession::with_counters(config, t0, 4, 4);
    // One client read of 3000 bytes, cut into bodies as the tunnel does.
    let read = bytes::Bytes::from((0..3000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for (from, to) in [(0, 1280), (1280, 2560), (2560, 3000)] {
        encoded.send(&Body::Data {
            realm: 9,
            payload: &read[from..to],
        });
        in_place.send_data(9, read.slice(from..to));
    }
    in_place.send(&Body::Heartbeat);
    encoded.send(&Body::Heartbeat);
    let first: Vec<Vec<u8>> = std::iter::from_fn(|| encoded.poll_transmit(t0)).collect();
    let mut packed = Vec::new();
    let mut ends = Vec::new();
    while in_place.poll_transmit_into(t0, &mut packed) {
        ends.push(packed.len());
    }
    assert!(!in_place.poll_transmit_into(t0, &mut packed));
    assert_eq!(first.len(), 4);
    assert_eq!(packed, first.concat(), "the same bytes, end to end");
    let bounds: Vec<usize> = first
        .iter()
        .scan(0, |end, d| {
            *end += d.len();
            Some(*end)
        })
        .collect();
    assert_eq!(ends, bounds, "one datagram per call, none merged");
    // No ACK: after the retransmission timeout both resend the same.
    let later = t0 + std::time::Duration::from_secs(2);
    encoded.handle_timeout(later);
    in_place.handle_timeout(later);
    let again: Vec<Vec<u8>> = std::iter::from_fn(|| encoded.poll_transmit(later)).collect();
    let again_in_place: Vec<Vec<u8>> =
        std::iter::from_fn(|| in_place.poll_transmit(later)).collect();
    assert!(!again.is_empty());
    assert_eq!(again, again_in_place);
    let body = |d: &[u8]| d[dhp2p::codec::ptcp::HEADER_LEN..].to_vec();
    assert_eq!(
        body(&again_in_place[0]),
        body(&first[0]),
        "the resend carries the first body"
    );
}
