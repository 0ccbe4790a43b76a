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
