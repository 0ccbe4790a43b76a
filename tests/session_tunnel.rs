//! The client realm layer against a scripted device in simulated time:
//! BIND retries with fresh realm IDs, orphan CONNs closed, retirement,
//! fair sharing of the window, closes in both directions.

use std::time::{Duration, Instant};

use dhp2p::codec::ptcp::{Body, Status};
use dhp2p::session::ptcp::{Event, PtcpConfig, PtcpSession};
use dhp2p::session::tunnel::{BindFailure, TunnelConfig, TunnelEvent, TunnelSession};

/// The device end: a PtcpSession plus what the test tells it to do.
struct Device {
    s: PtcpSession,
    bodies: Vec<Vec<u8>>,
}

struct Pair {
    now: Instant,
    client: TunnelSession,
    device: Device,
    events: Vec<TunnelEvent>,
}

impl Pair {
    fn new(config: TunnelConfig) -> Pair {
        let now = Instant::now();
        // Both sides as if the SYN exchange had happened (counters at 4).
        let c = PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4);
        let d = PtcpSession::with_counters(PtcpConfig::default(), now, 4, 4);
        Pair {
            now,
            client: TunnelSession::new(config, c, 1),
            device: Device {
                s: d,
                bodies: Vec::new(),
            },
            events: Vec::new(),
        }
    }

    /// Moves datagrams both ways (1 ms each) until quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(d) = self.client.poll_transmit(self.now) {
                self.device.s.handle_datagram(self.now, &d);
                moved = true;
            }
            while let Some(d) = self.device.s.poll_transmit(self.now) {
                self.client.handle_datagram(self.now, &d);
                moved = true;
            }
            while let Some(ev) = self.device.s.poll_event() {
                if let Event::Body(b) = ev {
                    self.device.bodies.push(b.to_vec());
                }
            }
            while let Some(ev) = self.client.poll_event() {
                self.events.push(ev);
            }
            if !moved {
                return;
            }
            self.now += Duration::from_millis(1);
        }
        panic!("never settled");
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(50);
            self.client.handle_timeout(self.now);
            self.device.s.handle_timeout(self.now);
            self.settle();
        }
    }

    fn device_send(&mut self, body: Body<'_>) {
        self.device.s.send(&body);
        self.settle();
    }

    /// BIND bodies the device received, as realm IDs.
    fn binds(&self) -> Vec<u32> {
        self.device
            .bodies
            .iter()
            .filter_map(|b| match Body::decode(b) {
                Ok(Body::Bind {
                    realm, port: 554, ..
                }) => Some(realm),
                _ => None,
            })
            .collect()
    }

    fn discs(&self) -> Vec<u32> {
        self.device
            .bodies
            .iter()
            .filter_map(|b| match Body::decode(b) {
                Ok(Body::Status {
                    realm,
                    status: Status::Disc,
                    ..
                }) => Some(realm),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn bind_conn_data_both_ways_and_client_close() {
    let mut p = Pair::new(TunnelConfig::default());
    let realm = p.client.open(p.now, 1, 554);
    p.settle();
    assert_eq!(p.binds(), [realm]);
    p.device_send(Body::status(realm, Status::Conn));
    assert_eq!(p.events, [TunnelEvent::Opened { client: 1, realm }]);
    p.client.client_data(1, &b"OPTIONS * RTSP/1.0\r\n\r\n"[..]);
    p.settle();
    assert!(p.device.bodies.iter().any(|b| matches!(Body::decode(b), Ok(Body::Data { payload, .. }) if payload == b"OPTIONS * RTSP/1.0\r\n\r\n")));
    p.device_send(Body::Data {
        realm,
        payload: b"RTSP/1.0 200 OK\r\n\r\n",
    });
    assert!(p.events.contains(&TunnelEvent::Data {
        client: 1,
        bytes: bytes::Bytes::from_static(b"RTSP/1.0 200 OK\r\n\r\n")
    }));
    p.client.client_closed(p.now, 1);
    p.settle();
    assert_eq!(p.discs(), [realm]);
}

#[test]
fn bind_timeout_retries_with_a_fresh_realm_then_fails() {
    let mut p = Pair::new(TunnelConfig::default());
    let first = p.client.open(p.now, 1, 554);
    p.settle();
    p.advance(Duration::from_millis(2100));
    let binds = p.binds();
    assert_eq!(binds.len(), 2, "{binds:x?}");
    assert_eq!(binds[0], first);
    assert_ne!(
        binds[1], first,
        "a fresh realm ID per attempt (FIELD-NOTES §4.5)"
    );
    p.advance(Duration::from_millis(2100));
    assert!(p.events.contains(&TunnelEvent::BindFailed {
        client: 1,
        reason: BindFailure::TimedOut
    }));
    // A late CONN for the first attempt is an orphan: DISC at once.
    p.device_send(Body::status(first, Status::Conn));
    assert_eq!(p.discs(), [first]);
    assert_eq!(p.client.orphans_closed(), 1);
}

#[test]
fn session_retires_after_clients_fail_in_a_row() {
    let mut p = Pair::new(TunnelConfig {
        bind_attempts: 1,
        ..TunnelConfig::default()
    });
    for client in [1, 2] {
        p.client.open(p.now, client, 554);
        p.settle();
        p.advance(Duration::from_millis(2100));
    }
    assert!(p.events.contains(&TunnelEvent::Retired));
    assert!(!p.client.can_open());
}

/// Issue 11 item 4: a device port with nothing listening answers every BIND
/// with DISC. That is the port's answer, not a sick session: it must not retire.
#[test]
fn refused_binds_do_not_retire_the_session() {
    let mut p = Pair::new(TunnelConfig::default());
    for client in 1..=6 {
        let realm = p.client.open(p.now, client, 9999);
        p.settle();
        p.device_send(Body::status(realm, Status::Disc));
        assert!(p.events.contains(&TunnelEvent::BindFailed {
            client,
            reason: BindFailure::Refused
        }));
    }
    assert!(!p.events.contains(&TunnelEvent::Retired));
    assert!(p.client.can_open());
    // And a client for a port that works still gets its realm.
    let realm = p.client.open(p.now, 7, 554);
    p.settle();
    p.device_send(Body::status(realm, Status::Conn));
    assert!(p.events.contains(&TunnelEvent::Opened { client: 7, realm }));
}

#[test]
fn device_disc_on_bind_is_refused_and_on_open_realm_closes() {
    let mut p = Pair::new(TunnelConfig::default());
    let r1 = p.client.open(p.now, 1, 554);
    let r2 = p.client.open(p.now, 2, 554);
    p.settle();
    p.device_send(Body::status(r1, Status::Disc));
    assert!(p.events.contains(&TunnelEvent::BindFailed {
        client: 1,
        reason: BindFailure::Refused
    }));
    p.device_send(Body::status(r2, Status::Conn));
    p.device_send(Body::status(r2, Status::Disc));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, TunnelEvent::Closed { client: 2, .. })));
    assert_eq!(p.client.realms(), 0);
}

#[test]
fn client_leaving_before_conn_leaves_no_realm() {
    let mut p = Pair::new(TunnelConfig::default());
    let realm = p.client.open(p.now, 1, 554);
    p.settle();
    p.client.client_closed(p.now, 1);
    p.device_send(Body::status(realm, Status::Conn));
    assert_eq!(p.discs(), [realm], "the CONN is answered DISC");
    assert_eq!(p.client.realms(), 0);
}

#[test]
fn realms_share_the_window_round_robin() {
    let mut p = Pair::new(TunnelConfig::default());
    let a = p.client.open(p.now, 1, 554);
    let b = p.client.open(p.now, 2, 554);
    p.settle();
    p.device_send(Body::status(a, Status::Conn));
    p.device_send(Body::status(b, Status::Conn));
    p.device.bodies.clear();
    // Client 1 floods first; client 2 writes a little after.
    p.client.client_data(1, vec![1u8; 200 * 1024]);
    p.client.client_data(2, vec![2u8; 4 * 1024]);
    p.settle();
    let order: Vec<u32> = p
        .device
        .bodies
        .iter()
        .filter_map(|b| match Body::decode(b) {
            Ok(Body::Data { realm, .. }) => Some(realm),
            _ => None,
        })
        .collect();
    // Client 2's 4 KB are not stuck behind client 1's 200 KB.
    let last_b = order.iter().rposition(|r| *r == b).unwrap();
    assert!(
        last_b < 10,
        "realm b finished at body {last_b} of {}",
        order.len()
    );
    assert!(p.client.client_capacity(1) > 0);
}

#[test]
fn max_realms_caps_can_open() {
    let mut p = Pair::new(TunnelConfig {
        max_realms: 2,
        ..TunnelConfig::default()
    });
    p.client.open(p.now, 1, 554);
    assert!(p.client.can_open());
    p.client.open(p.now, 2, 554);
    assert!(!p.client.can_open());
}

#[test]
fn silence_kills_the_session_and_says_so() {
    let mut p = Pair::new(TunnelConfig::default());
    let realm = p.client.open(p.now, 1, 554);
    p.settle();
    p.device_send(Body::status(realm, Status::Conn));
    // The device vanishes: no more datagrams from it.
    let mut now = p.now;
    for _ in 0..400 {
        now += Duration::from_millis(100);
        p.client.handle_timeout(now);
        while p.client.poll_transmit(now).is_some() {}
    }
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    assert!(
        events.iter().any(|e| matches!(e, TunnelEvent::Dead(_))),
        "{events:?}"
    );
    assert!(p.client.is_dead());
}
