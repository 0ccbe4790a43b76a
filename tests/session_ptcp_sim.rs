//! PTCP sessions against each other over a simulated lossy link, in simulated
//! time: every body arrives in order, exactly once, whatever the link does.
//! A failing seed is printed so it can be replayed with `SIM_SEED=N`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dhp2p::codec::ptcp::{Body, Packet};
use dhp2p::session::ptcp::{Event, PtcpConfig, PtcpSession};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug)]
struct LinkFaults {
    loss: f64,
    dup: f64,
    reorder: f64,
    delay_ms: u64,
}

struct Link {
    faults: LinkFaults,
    queue: Vec<(Instant, u64, Vec<u8>)>,
    serial: u64,
}

impl Link {
    fn new(faults: LinkFaults) -> Self {
        Link {
            faults,
            queue: Vec::new(),
            serial: 0,
        }
    }
    fn push(&mut self, rng: &mut SmallRng, now: Instant, datagram: Vec<u8>) {
        if rng.gen_bool(self.faults.loss) {
            return;
        }
        let copies = if rng.gen_bool(self.faults.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = now + Duration::from_micros(self.faults.delay_ms * 1000 + 50);
            if rng.gen_bool(self.faults.reorder) {
                at += Duration::from_millis(rng.gen_range(1..20));
            }
            self.serial += 1;
            self.queue.push((at, self.serial, datagram.clone()));
        }
    }
    fn next(&self) -> Option<Instant> {
        self.queue.iter().map(|q| q.0).min()
    }
    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let i = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, q)| q.0 <= now)
            .min_by_key(|(_, q)| (q.0, q.1))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(i).2)
    }
}

struct Peer {
    session: PtcpSession,
    to_send: VecDeque<Vec<u8>>,
    expected: VecDeque<Vec<u8>>,
    received: usize,
}

impl Peer {
    fn pump_app(&mut self) {
        while let Some(next) = self.to_send.front() {
            if self.session.send_capacity() < next.len() + 12 {
                break;
            }
            let payload = self.to_send.pop_front().unwrap();
            self.session.send(&Body::Data {
                realm: 7,
                payload: &payload,
            });
        }
    }
    fn drain_events(&mut self, seed: u64) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Body(bytes) => {
                    let body = Body::decode(&bytes).unwrap();
                    match body {
                        Body::Data { payload, .. } => {
                            let want = self
                                .expected
                                .pop_front()
                                .unwrap_or_else(|| panic!("seed {seed}: unexpected extra body"));
                            assert_eq!(payload, &want[..], "seed {seed}: body out of order");
                            self.received += 1;
                        }
                        Body::Heartbeat => {}
                        other => panic!("seed {seed}: unexpected {other:?}"),
                    }
                }
                Event::Dead(r) => panic!("seed {seed}: session died: {r:?}"),
                Event::Malformed(e) => panic!("seed {seed}: malformed {e}"),
                Event::Acked { .. } => {}
            }
        }
    }
}

fn payloads(rng: &mut SmallRng, total: usize) -> VecDeque<Vec<u8>> {
    let mut out = VecDeque::new();
    let mut n = 0;
    let mut i = 0u8;
    while n < total {
        let len = rng.gen_range(1..=1280);
        out.push_back(
            (0..len)
                .map(|j| (j as u8).wrapping_add(i))
                .collect::<Vec<u8>>(),
        );
        n += len;
        i = i.wrapping_add(1);
    }
    out
}

/// Runs one simulated exchange; returns simulated duration.
fn run(seed: u64, faults: LinkFaults, bytes_each_way: usize, start: (u32, u32)) -> Duration {
    let mut rng = SmallRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let config = PtcpConfig {
        ack_delay: Duration::from_millis(rng.gen_range(0..3)),
        ..PtcpConfig::default()
    };
    let a_data = payloads(&mut rng, bytes_each_way);
    let b_data = payloads(&mut rng, bytes_each_way);
    let mut a = Peer {
        session: PtcpSession::with_counters(config.clone(), t0, start.0, start.1),
        expected: b_data.clone(),
        to_send: a_data.clone(),
        received: 0,
    };
    let mut b = Peer {
        session: PtcpSession::with_counters(config, t0, start.1, start.0),
        expected: a_data,
        to_send: b_data,
        received: 0,
    };
    let (mut ab, mut ba) = (Link::new(faults), Link::new(faults));
    let mut now = t0;
    let want = a.expected.len() + b.expected.len();
    for _ in 0..2_000_000 {
        a.pump_app();
        b.pump_app();
        while let Some(d) = a.session.poll_transmit(now) {
            Packet::decode(&d).expect("valid PTCP");
            ab.push(&mut rng, now, d);
        }
        while let Some(d) = b.session.poll_transmit(now) {
            ba.push(&mut rng, now, d);
        }
        if a.received + b.received == want {
            if std::env::var("SIM_DEBUG").is_ok() {
                eprintln!(
                    "seed {seed}: {:?} a={:?} b={:?}",
                    now - t0,
                    a.session.stats(),
                    b.session.stats()
                );
            }
            return now - t0;
        }
        let next = [
            ab.next(),
            ba.next(),
            a.session.next_timeout(),
            b.session.next_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("something pending");
        now = now.max(next);
        while let Some(d) = ab.pop_due(now) {
            b.session.handle_datagram(now, &d);
        }
        while let Some(d) = ba.pop_due(now) {
            a.session.handle_datagram(now, &d);
        }
        a.session.handle_timeout(now);
        b.session.handle_timeout(now);
        a.drain_events(seed);
        b.drain_events(seed);
        assert!(
            now - t0 < Duration::from_secs(600),
            "seed {seed}: no progress"
        );
    }
    panic!("seed {seed}: too many steps");
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => default.collect(),
    }
}

#[test]
fn clean_link_delivers_everything() {
    let faults = LinkFaults {
        loss: 0.0,
        dup: 0.0,
        reorder: 0.0,
        delay_ms: 1,
    };
    for seed in seeds(0..50) {
        run(seed, faults, 64 * 1024, (0, 0));
    }
}

#[test]
fn lossy_reordering_duplicating_link_delivers_in_order_exactly_once() {
    let faults = LinkFaults {
        loss: 0.05,
        dup: 0.02,
        reorder: 0.05,
        delay_ms: 5,
    };
    for seed in seeds(1000..3000) {
        run(seed, faults, 16 * 1024, (0, 0));
    }
}

#[test]
fn heavy_loss_still_delivers() {
    let faults = LinkFaults {
        loss: 0.3,
        dup: 0.1,
        reorder: 0.2,
        delay_ms: 20,
    };
    for seed in seeds(5000..5200) {
        run(seed, faults, 8 * 1024, (0, 0));
    }
}

/// FIELD-NOTES §4.2: counters wrap every few GB; start just below 2^32.
#[test]
fn counters_wrap_past_2_pow_32() {
    let faults = LinkFaults {
        loss: 0.05,
        dup: 0.02,
        reorder: 0.05,
        delay_ms: 5,
    };
    for seed in seeds(9000..9200) {
        run(seed, faults, 32 * 1024, (u32::MAX - 10_000, u32::MAX - 5));
    }
}

/// A window's worth in flight: with 50 ms delay the transfer is not
/// stop-and-wait (64 KB must take far fewer than 64 KB / 1.3 KB round trips).
#[test]
fn send_window_keeps_the_pipe_full() {
    let faults = LinkFaults {
        loss: 0.0,
        dup: 0.0,
        reorder: 0.0,
        delay_ms: 50,
    };
    let took = run(1, faults, 256 * 1024, (0, 0));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// 1% loss with 20 ms delay: recovery resends each hole promptly instead of
/// waiting a timeout per lost body.
#[test]
fn light_loss_recovers_quickly() {
    let faults = LinkFaults {
        loss: 0.01,
        dup: 0.0,
        reorder: 0.0,
        delay_ms: 20,
    };
    let mut total = Duration::ZERO;
    for seed in 0..20 {
        total += run(seed, faults, 256 * 1024, (0, 0));
    }
    eprintln!("mean {:?}", total / 20);
    assert!(total / 20 < Duration::from_secs(2), "mean {:?}", total / 20);
}

/// 50 ms round trip with 1% loss: throughput must stay near window/RTT, not
/// collapse into timeouts (a regression guard for the benchmark's case).
#[test]
fn delay_and_loss_keep_throughput() {
    let faults = LinkFaults {
        loss: 0.01,
        dup: 0.0,
        reorder: 0.0,
        delay_ms: 25,
    };
    let mut worst = Duration::ZERO;
    for seed in 0..10 {
        let took = run(seed, faults, 1024 * 1024, (0, 0));
        worst = worst.max(took);
    }
    eprintln!("1 MiB each way, 50 ms RTT, 1% loss: worst {worst:?}");
    assert!(worst < Duration::from_secs(3), "worst {worst:?}");
}
