//! The probe in simulated time against a scripted cloud: verdicts, resends,
//! the deadline, and that nothing is sent before the driver polls.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::codec::cloud::{Header, Request};
use crate::codec::crypto::{encrypt_info_text, DeviceInfo};
use crate::codec::identity::by_name;

const SN: &str = "PROBE0000000001";
const UNIX: i64 = 1_760_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const MAIN: u16 = 8800;
const OTHER: u16 = 8801;
const P2PSRV: u16 = 8900;

fn clouds() -> Vec<ProbeCloud> {
    ["easy4ip", "amcrest"]
        .iter()
        .zip([MAIN, OTHER])
        .map(|(name, port)| ProbeCloud {
            profile: by_name(name).expect("a built-in profile"),
            addr: addr(port),
        })
        .collect()
}

/// How the scripted world answers.
#[derive(Clone, Copy)]
struct World {
    /// Port of the cloud that knows the serial (`None`: neither).
    known_at: Option<u16>,
    online: bool,
    /// Datagrams to drop before answering anything (loss at the start).
    drop_first: u32,
    /// No answers at all.
    silent: bool,
}

impl Default for World {
    fn default() -> Self {
        World {
            known_at: Some(MAIN),
            online: true,
            drop_first: 0,
            silent: false,
        }
    }
}

fn answer(world: &World, to: SocketAddr, request: &Request) -> Response {
    let path = request.path.clone();
    let mut r = if path.starts_with("/online/p2psrv/") {
        if world.known_at == Some(to.port()) {
            Response::new(200, "OK")
                .with_body(format!("<body><US>127.0.0.1:{P2PSRV}</US></body>").into_bytes())
        } else {
            Response::new(404, "Not Found")
        }
    } else if !world.online {
        Response::new(404, "Not Found")
    } else if path.starts_with("/probe/device/") {
        Response::new(200, "OK")
    } else {
        let info = encrypt_info_text(
            r#"{"rtspport":554,"httpport":80,"randsalt":"00112233445566778899aabbccddeeff"}"#,
        );
        Response::new(200, "OK").with_body(
            format!("<body><DevVersion>2.800.0000000.5.R</DevVersion><Info>{info}</Info></body>")
                .into_bytes(),
        )
    };
    if let Some(cseq) = request.header("CSeq") {
        r.headers.insert(0, Header::new("CSeq", cseq));
    }
    r
}

/// Runs the probe to its end with a 100 ms round trip; returns the report
/// and the time each request was sent.
fn run(world: World, config: ProbeConfig) -> (ProbeReport, Vec<(Duration, String)>) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut probe = Probe::new(config, now, 7);
    let mut sent = Vec::new();
    let mut dropped = 0;
    let mut in_flight: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
    for _ in 0..10_000 {
        if probe.is_done() {
            break;
        }
        while probe.wants_to_send().is_some() {
            let Some(t) = probe.poll_transmit(now, UNIX) else {
                break;
            };
            let Ok(Message::Request(request)) = cloud::decode(&t.payload) else {
                panic!("the probe sent something that is not a request");
            };
            sent.push((now - t0, request.path.clone()));
            if world.silent || dropped < world.drop_first {
                dropped += 1;
                continue;
            }
            let reply = answer(&world, t.to, &request).encode();
            in_flight.push((now + Duration::from_millis(100), t.to, reply));
        }
        let next_answer = in_flight.iter().map(|(at, ..)| *at).min();
        let next = [next_answer, probe.next_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { break };
        now = now.max(next);
        let (due, rest): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|(at, ..)| *at <= now);
        in_flight = rest;
        for (_, from, bytes) in due {
            probe.handle_datagram(now, UNIX, from, &bytes);
        }
        probe.handle_timeout(now);
    }
    assert!(probe.is_done(), "the probe never ended");
    (probe.into_report(), sent)
}

fn config() -> ProbeConfig {
    ProbeConfig::new(SN, clouds())
}

#[test]
fn an_online_device_gets_cloud_firmware_and_ports_in_three_requests() {
    let (report, sent) = run(World::default(), config());
    assert_eq!(report.verdict, Verdict::Online);
    assert_eq!(report.cloud.as_deref(), Some("easy4ip"));
    assert_eq!(report.p2psrv, Some(addr(P2PSRV)));
    assert_eq!(report.firmware.as_deref(), Some("2.800.0000000.5.R"));
    let ports = report.ports.expect("the Info ports");
    assert_eq!(
        (ports.rtsp, ports.http, ports.salt),
        (Some(554), Some(80), true)
    );
    let paths: Vec<&str> = sent.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/online/p2psrv/{SN}"),
            format!("/probe/device/{SN}"),
            format!("/info/device/{SN}")
        ]
    );
    assert_eq!(report.requests, 3);
}

#[test]
fn the_second_cloud_is_asked_when_the_first_says_404() {
    let world = World {
        known_at: Some(OTHER),
        ..World::default()
    };
    let (report, _) = run(world, config());
    assert_eq!(report.verdict, Verdict::Online);
    assert_eq!(report.cloud.as_deref(), Some("amcrest"));
    assert_eq!(
        report.clouds,
        [
            ("easy4ip".to_owned(), CloudAnswer::NotFound),
            ("amcrest".to_owned(), CloudAnswer::Known)
        ]
    );
}

#[test]
fn known_but_not_online_is_offline_and_skips_info() {
    let world = World {
        online: false,
        ..World::default()
    };
    let (report, sent) = run(world, config());
    assert_eq!(report.verdict, Verdict::Offline);
    assert!(report.firmware.is_none());
    assert_eq!(sent.len(), 2, "{sent:?}");
}

#[test]
fn a_serial_no_cloud_knows_is_unknown() {
    let world = World {
        known_at: None,
        ..World::default()
    };
    let (report, sent) = run(world, config());
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(report.cloud.is_none());
    assert_eq!(sent.len(), 2);
}

#[test]
fn lost_requests_are_resent_with_backoff() {
    let world = World {
        drop_first: 2,
        ..World::default()
    };
    let (report, sent) = run(world, config());
    assert_eq!(report.verdict, Verdict::Online);
    let times: Vec<u128> = sent.iter().take(3).map(|(t, _)| t.as_millis()).collect();
    // 500 ms, then 1 s: the wait doubles.
    assert_eq!(times, [0, 500, 1500]);
    assert_eq!(report.requests, 5);
}

#[test]
fn a_silent_cloud_fails_after_its_attempts_and_the_next_is_asked() {
    let world = World {
        silent: true,
        ..World::default()
    };
    let (report, sent) = run(world, config());
    assert_eq!(report.verdict, Verdict::Failed);
    // Four sends to each cloud, then give up.
    assert_eq!(sent.len(), 8);
    assert_eq!(report.clouds[0].1, CloudAnswer::NoAnswer);
    assert!(report.error.as_deref().unwrap_or("").contains("no answer"));
}

#[test]
fn the_total_timeout_ends_the_probe() {
    let world = World {
        silent: true,
        ..World::default()
    };
    let mut c = config();
    c.timeout = Duration::from_secs(2);
    let (report, sent) = run(world, c);
    assert_eq!(report.verdict, Verdict::Failed);
    assert!(sent.iter().all(|(t, _)| *t < Duration::from_secs(2)));
    assert!(report.error.unwrap().contains("timed out"), "a timeout");
}

#[test]
fn nothing_is_built_until_polled_so_a_held_request_is_not_resent_early() {
    let t0 = Instant::now();
    let mut probe = Probe::new(config(), t0, 1);
    assert_eq!(probe.wants_to_send(), Some("easy4ip"));
    // The driver held it for 3 s (rate limit); no resend timer ran meanwhile.
    assert_eq!(probe.next_timeout(), Some(t0 + Duration::from_secs(20)));
    let later = t0 + Duration::from_secs(3);
    assert!(probe.poll_transmit(later, UNIX).is_some());
    assert_eq!(probe.wants_to_send(), None);
    assert_eq!(
        probe.next_timeout(),
        Some(later + Duration::from_millis(500))
    );
}

#[test]
fn stray_and_garbage_datagrams_are_counted_not_fatal() {
    let t0 = Instant::now();
    let mut probe = Probe::new(config(), t0, 1);
    probe.poll_transmit(t0, UNIX);
    probe.handle_datagram(t0, UNIX, addr(MAIN), b"\xff\x00garbage");
    let wrong_cseq = Response::new(200, "OK");
    let mut wrong = wrong_cseq;
    wrong.headers.push(Header::new("CSeq", "999"));
    probe.handle_datagram(t0, UNIX, addr(MAIN), &wrong.encode());
    probe.handle_datagram(t0, UNIX, addr(4), &Response::new(404, "x").encode());
    assert!(!probe.is_done());
    assert_eq!(probe.report().skipped, 3);
}

#[test]
fn the_info_salt_is_reported_only_as_present() {
    let info = DeviceInfo::from_json_map(serde_json::from_str(r#"{"randsalt":"ab"}"#).unwrap());
    let ports = ServicePorts::from_info(&info);
    let json = serde_json::to_string(&ports).unwrap();
    assert!(!json.contains("ab\""), "{json}");
    assert!(json.contains("\"salt\":true"));
}
