//! `net::faults`: the seeded fault link (loss, dup, reorder, delay) as a
//! simulation, and `FaultySender` on real UDP sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhp2p::net::faults::{
    FaultConfig, FaultConfigError, FaultLink, FaultStats, FaultySender, DEFAULT_QUEUE_CAP,
};
use dhp2p::net::record::Recorder;
use tokio::net::UdpSocket;

fn config(loss: f64, dup: f64, reorder: f64, delay_ms: u64, seed: u64) -> FaultConfig {
    FaultConfig {
        loss_pct: loss,
        dup_pct: dup,
        reorder_pct: reorder,
        delay: Duration::from_millis(delay_ms),
        seed,
    }
}

/// One release: (item, when it was pushed, when it came out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Release {
    item: u64,
    pushed: Duration,
    released: Duration,
}

/// Pushes `count` items `gap` apart and polls at every push and at every
/// `next_release`, so each release is observed at its exact release time.
fn simulate(link: &mut FaultLink<u64>, count: u64, gap: Duration) -> Vec<Release> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let drain = |link: &mut FaultLink<u64>, now: Instant, out: &mut Vec<Release>| {
        while let Some(item) = link.poll(now) {
            out.push(Release {
                item,
                pushed: gap * u32::try_from(item).unwrap(),
                released: now - t0,
            });
        }
    };
    for i in 0..count {
        let push_at = t0 + gap * u32::try_from(i).unwrap();
        while let Some(due) = link.next_release().filter(|&t| t < push_at) {
            drain(link, due, &mut out);
        }
        link.push(push_at, i);
        drain(link, push_at, &mut out);
    }
    while let Some(due) = link.next_release() {
        drain(link, due, &mut out);
    }
    out
}

/// Pushes `count` items at one instant, taking whatever is due at once after
/// each (so the queue bound is not what is measured), then drains the link.
fn push_all_at_once(link: &mut FaultLink<u64>, count: u64) -> Vec<u64> {
    let now = Instant::now();
    let mut out = Vec::new();
    for i in 0..count {
        link.push(now, i);
        while let Some(item) = link.poll(now) {
            out.push(item);
        }
    }
    while let Some(due) = link.next_release() {
        while let Some(item) = link.poll(due) {
            out.push(item);
        }
    }
    out
}

fn assert_invariant(stats: FaultStats, queued: usize) {
    assert_eq!(
        stats.pushed + stats.duplicated,
        stats.passed + stats.dropped + stats.overflow + queued as u64,
        "{stats:?}"
    );
}

#[test]
fn no_faults_pass_everything_in_order_at_once() {
    let cfg = FaultConfig::none();
    assert!(cfg.is_none());
    let mut link = FaultLink::new(&cfg, 0);
    let now = Instant::now();
    for i in 0..1000u64 {
        link.push(now, i);
        assert_eq!(link.next_release(), Some(now));
        assert_eq!(link.poll(now), Some(i));
        assert_eq!(link.poll(now), None);
    }
    // Several queued at one instant come out FIFO.
    for i in 0..10u64 {
        link.push(now, i);
    }
    let out: Vec<u64> = std::iter::from_fn(|| link.poll(now)).collect();
    assert_eq!(out, (0..10).collect::<Vec<_>>());
    assert_eq!(
        link.stats(),
        FaultStats {
            pushed: 1010,
            passed: 1010,
            ..FaultStats::default()
        }
    );
    assert!(link.is_empty());
    assert_eq!(link.next_release(), None);
}

#[test]
fn seed_alone_is_no_fault() {
    assert!(config(0.0, 0.0, 0.0, 0, 42).is_none());
    assert!(!config(0.0, 0.0, 0.0, 1, 0).is_none());
    assert!(!config(0.1, 0.0, 0.0, 0, 0).is_none());
}

#[test]
fn loss_100_drops_everything() {
    let mut link = FaultLink::new(&config(100.0, 50.0, 50.0, 10, 7), 0);
    let out = push_all_at_once(&mut link, 10_000);
    assert!(out.is_empty());
    let stats = link.stats();
    assert_eq!(stats.dropped, 10_000);
    assert_eq!(stats.passed, 0);
    assert_eq!(stats.duplicated, 0);
    assert_invariant(stats, link.len());
}

#[test]
fn loss_30_drops_30_percent() {
    let mut link = FaultLink::new(&config(30.0, 0.0, 0.0, 0, 1), 0);
    let out = push_all_at_once(&mut link, 100_000);
    let dropped = link.stats().dropped;
    assert!(
        (29_000..=31_000).contains(&dropped),
        "dropped {dropped} of 100000"
    );
    assert_eq!(out.len() as u64, 100_000 - dropped);
    // Survivors keep their order: loss alone never reorders.
    assert!(out.windows(2).all(|w| w[0] < w[1]));
    assert_invariant(link.stats(), link.len());
}

#[test]
fn dup_10_adds_10_percent_copies() {
    let mut link = FaultLink::new(&config(0.0, 10.0, 0.0, 0, 2), 0);
    let out = push_all_at_once(&mut link, 100_000);
    let extra = out.len() - 100_000;
    assert!((9_000..=11_000).contains(&extra), "{extra} extra copies");
    assert_eq!(link.stats().duplicated, extra as u64);
    // A copy follows its original directly when nothing delays either.
    let mut sorted = out.clone();
    sorted.dedup();
    assert_eq!(sorted, (0..100_000).collect::<Vec<_>>());
    assert_invariant(link.stats(), link.len());
}

#[test]
fn reorder_without_delay_overtakes_within_20_ms_and_loses_nothing() {
    let mut link = FaultLink::new(&config(0.0, 0.0, 20.0, 0, 3), 0);
    let gap = Duration::from_millis(1);
    let out = simulate(&mut link, 5_000, gap);
    let mut items: Vec<u64> = out.iter().map(|r| r.item).collect();
    let overtaken = items.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(overtaken > 100, "only {overtaken} out-of-order releases");
    items.sort_unstable();
    assert_eq!(items, (0..5_000).collect::<Vec<_>>(), "an item was lost");
    for r in &out {
        let held = r.released - r.pushed;
        assert!(held <= Duration::from_millis(20), "{r:?} held {held:?}");
    }
    let held_back = out.iter().filter(|r| r.released > r.pushed).count() as u64;
    assert_eq!(held_back, link.stats().reordered);
    let reordered = link.stats().reordered;
    assert!((800..=1_200).contains(&reordered), "{reordered} reordered");
}

#[test]
fn reorder_with_delay_holds_for_up_to_the_delay_more() {
    let mut link = FaultLink::new(&config(0.0, 0.0, 30.0, 50, 4), 0);
    let out = simulate(&mut link, 2_000, Duration::from_millis(2));
    assert_eq!(out.len(), 2_000);
    let overtaken = out.windows(2).filter(|w| w[0].item > w[1].item).count();
    assert!(overtaken > 50, "only {overtaken} out-of-order releases");
    for r in &out {
        let held = r.released - r.pushed;
        assert!(
            held >= Duration::from_millis(50) && held <= Duration::from_millis(100),
            "{r:?} held {held:?}"
        );
    }
    assert_eq!(link.stats().delayed, 2_000);
}

#[test]
fn delay_shifts_every_item_and_keeps_order() {
    let mut link = FaultLink::new(&config(0.0, 0.0, 0.0, 25, 5), 0);
    let out = simulate(&mut link, 1_000, Duration::from_millis(1));
    assert_eq!(
        out.iter().map(|r| r.item).collect::<Vec<_>>(),
        (0..1_000).collect::<Vec<_>>()
    );
    for r in &out {
        assert_eq!(r.released - r.pushed, Duration::from_millis(25), "{r:?}");
    }
    assert_eq!(link.stats().delayed, 1_000);
}

#[test]
fn nothing_is_released_early() {
    let t0 = Instant::now();
    let mut link = FaultLink::new(&config(0.0, 0.0, 0.0, 10, 6), 0);
    link.push(t0, 1u64);
    assert_eq!(link.poll(t0), None);
    assert_eq!(link.poll(t0 + Duration::from_micros(9_999)), None);
    assert_eq!(link.next_release(), Some(t0 + Duration::from_millis(10)));
    assert_eq!(link.poll(t0 + Duration::from_millis(10)), Some(1));
}

#[test]
fn same_seed_same_outcome() {
    let cfg = config(10.0, 10.0, 10.0, 5, 99);
    let a = simulate(
        &mut FaultLink::new(&cfg, 0),
        20_000,
        Duration::from_micros(300),
    );
    let mut link_b = FaultLink::new(&cfg, 0);
    let b = simulate(&mut link_b, 20_000, Duration::from_micros(300));
    assert_eq!(a, b);
    let mut link_c = FaultLink::new(&cfg, 0);
    simulate(&mut link_c, 20_000, Duration::from_micros(300));
    assert_eq!(link_b.stats(), link_c.stats());
}

#[test]
fn different_seeds_or_directions_differ() {
    let run = |seed: u64, stream: u64| {
        let mut link = FaultLink::new(&config(10.0, 10.0, 10.0, 5, seed), stream);
        simulate(&mut link, 5_000, Duration::from_micros(300))
    };
    let base = run(1, 0);
    assert_ne!(base, run(2, 0), "seeds 1 and 2 gave the same run");
    assert_ne!(base, run(1, 1), "two directions share one random stream");
    assert_ne!(run(0, 1), run(1, 0));
}

#[test]
fn queue_is_bounded() {
    let cfg = config(0.0, 0.0, 0.0, 1_000, 8);
    let mut link = FaultLink::with_capacity(&cfg, 0, 1_000);
    let now = Instant::now();
    for i in 0..5_000u64 {
        link.push(now, i);
    }
    assert_eq!(link.len(), 1_000);
    assert_eq!(link.stats().overflow, 4_000);
    // The first ones queued are the ones kept.
    let later = now + Duration::from_secs(1);
    let out: Vec<u64> = std::iter::from_fn(|| link.poll(later)).collect();
    assert_eq!(out, (0..1_000).collect::<Vec<_>>());
    assert_invariant(link.stats(), link.len());
}

#[test]
fn default_queue_cap_holds() {
    let cfg = config(0.0, 50.0, 0.0, 60_000, 9);
    let mut link = FaultLink::new(&cfg, 0);
    let now = Instant::now();
    for i in 0..(DEFAULT_QUEUE_CAP as u64 + 20_000) {
        link.push(now, i);
    }
    assert_eq!(link.len(), DEFAULT_QUEUE_CAP);
    assert!(link.stats().overflow >= 20_000);
    assert_invariant(link.stats(), link.len());
}

#[test]
fn validation_names_the_flag() {
    assert_eq!(config(0.0, 100.0, 100.0, 3_600_000, 0).validate(), Ok(()));
    let err = config(100.5, 0.0, 0.0, 0, 0).validate().unwrap_err();
    assert_eq!(
        err,
        FaultConfigError::PercentOutOfRange {
            flag: "--loss",
            value: 100.5
        }
    );
    assert_eq!(
        err.to_string(),
        "--loss must be a percentage from 0 to 100, got 100.5"
    );
    let err = config(0.0, -1.0, 0.0, 0, 0).validate().unwrap_err();
    assert!(err.to_string().starts_with("--dup "), "{err}");
    let err = config(0.0, 0.0, f64::NAN, 0, 0).validate().unwrap_err();
    assert!(err.to_string().starts_with("--reorder "), "{err}");
    let err = config(0.0, 0.0, 0.0, 3_600_001, 0).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "--delay must be at most 3600000 ms, got 3600001 ms"
    );
}

#[test]
fn unvalidated_config_is_clamped_not_trusted() {
    let mut link = FaultLink::new(&config(500.0, f64::NAN, -3.0, 0, 0), 0);
    let out = push_all_at_once(&mut link, 100);
    assert!(out.is_empty());
    assert_eq!(link.stats().dropped, 100);
    let huge = FaultConfig {
        delay: Duration::MAX,
        ..FaultConfig::none()
    };
    let mut link = FaultLink::new(&huge, 0);
    link.push(Instant::now(), 1u64);
    assert_eq!(link.len(), 1);
}

async fn udp_pair() -> (Arc<UdpSocket>, UdpSocket) {
    let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    (Arc::new(a), b)
}

#[tokio::test]
async fn faulty_sender_without_faults_sends_and_records_directly() {
    let (a, b) = udp_pair().await;
    let dir = tempdir("faulty_sender_direct");
    let (recorder, _) = Recorder::start(Some(dir.join("d.pcap")), None)
        .await
        .unwrap();
    let sender = FaultySender::new(a, &FaultConfig::none(), 0, recorder.clone()).unwrap();
    let to = b.local_addr().unwrap();
    assert_eq!(sender.send_to(b"hello", to).await.unwrap(), 5);
    let mut buf = [0u8; 64];
    let (n, _) = b.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(recorder.frames_written(), 1);
    assert_eq!(sender.stats(), FaultStats::default());
}

#[tokio::test]
async fn faulty_sender_delays_and_records_only_what_was_sent() {
    let (a, b) = udp_pair().await;
    let dir = tempdir("faulty_sender_delay");
    let (recorder, _) = Recorder::start(Some(dir.join("d.pcap")), None)
        .await
        .unwrap();
    let sender = FaultySender::new(a, &config(0.0, 0.0, 0.0, 40, 1), 0, recorder.clone()).unwrap();
    let to = b.local_addr().unwrap();
    let start = Instant::now();
    sender.send_to(b"late", to).await.unwrap();
    assert_eq!(recorder.frames_written(), 0, "recorded before it was sent");
    let mut buf = [0u8; 64];
    let (n, _) = b.recv_from(&mut buf).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(&buf[..n], b"late");
    sender.close().await;
    assert_eq!(recorder.frames_written(), 1);
}

#[tokio::test]
async fn faulty_sender_drops_are_counted_not_sent_or_recorded() {
    let (a, b) = udp_pair().await;
    let dir = tempdir("faulty_sender_loss");
    let (recorder, _) = Recorder::start(Some(dir.join("d.pcap")), None)
        .await
        .unwrap();
    let sender = FaultySender::new(a, &config(100.0, 0.0, 0.0, 0, 1), 0, recorder.clone()).unwrap();
    let to: SocketAddr = b.local_addr().unwrap();
    for _ in 0..50 {
        sender.send_to(b"lost", to).await.unwrap();
    }
    sender.send_to(b"lost", to).await.unwrap();
    let stats = sender.stats();
    sender.close().await;
    assert_eq!(stats.dropped, 51);
    assert_eq!(recorder.frames_written(), 0);
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(200), b.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a dropped datagram arrived");
}

#[tokio::test]
async fn faulty_sender_close_lets_the_queue_out() {
    let (a, b) = udp_pair().await;
    let sender =
        FaultySender::new(a, &config(0.0, 0.0, 50.0, 10, 11), 0, Recorder::disabled()).unwrap();
    let to = b.local_addr().unwrap();
    for i in 0..100u8 {
        sender.send_to(&[i], to).await.unwrap();
    }
    sender.close().await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 8];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(200), b.recv_from(&mut buf)).await
    {
        assert_eq!(n, 1);
        seen.push(buf[0]);
    }
    assert!(seen.windows(2).any(|w| w[0] > w[1]), "no reordering seen");
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<u8>>());
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
