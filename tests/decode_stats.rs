//! `--stats` on captures built in memory from codec values: timeline, path,
//! byte and loss accounting from the PTCP counters, realms and the
//! FIELD-NOTES §7 verdicts.

use dhp2p::codec::cloud::Method;
use dhp2p::codec::ptcp::{Body, Status};
use dhp2p::decode::follow::Follower;
use dhp2p::decode::record::Record;
use dhp2p::decode::stats::{Arrival, SentTracker, StatsCollector};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

#[path = "common/scenario.rs"]
mod scenario;

use scenario::*;

fn collect(records: &[Record]) -> StatsCollector {
    let mut stats = StatsCollector::new();
    for record in records {
        stats.add(record);
    }
    stats
}

/// The JSON session whose endpoints are `x` and `y`.
fn session<'a>(json: &'a Value, x: &str, y: &str) -> &'a Value {
    json["sessions"]
        .as_array()
        .expect("sessions[]")
        .iter()
        .find(|s| {
            let (a, b) = (s["a"].as_str().unwrap(), s["b"].as_str().unwrap());
            (a == x && b == y) || (a == y && b == x)
        })
        .unwrap_or_else(|| panic!("no session {x} <-> {y}"))
}

fn codes(session: &Value) -> Vec<String> {
    session["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

fn finding<'a>(session: &'a Value, code: &str) -> &'a Value {
    session["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no finding {code} in {session:#}"))
}

fn stage_names(session: &Value) -> Vec<String> {
    session["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap().to_owned())
        .collect()
}

/// The client→peer (index 0) or peer→client (1) PTCP object.
fn ptcp(session: &Value, index: usize) -> &Value {
    &session["directions"][index]["ptcp"]
}

#[test]
fn clean_direct_session_is_healthy_with_the_timeline_in_order() {
    let (cap, media) = clean_direct([1000, 5000], 40);
    let stats = collect(&cap.records);
    let json = stats.report_json();
    assert_eq!(json["healthy"], true, "{}", stats.report_text());
    for verdict in stats.verdicts() {
        assert!(verdict.healthy, "{:?}", verdict);
    }
    let device = session(&json, CLIENT_D, DEVICE);
    assert_eq!(device["client"], CLIENT_D);
    assert_eq!(device["path"], "direct");
    assert_eq!(
        device["path_detail"],
        format!("direct: PTCP between the p2p-channel socket {CLIENT_D} and the device's PubAddr {DEVICE}")
    );
    let names = stage_names(device);
    let expected = [
        "punch Binding Request",
        "punch Binding Success",
        "punch confirm",
        "PTCP SYN",
        "0x19 auth",
        "0x1A auth reply",
        "0x1B auth confirm",
        "first BIND",
        "first CONN",
        "first DISC",
    ];
    let mut at = 0;
    for name in expected {
        let found = names[at..]
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} missing after stage {at} in {names:?}"));
        at += found;
    }
    // Frames and delays: each stage after the previous one.
    let timeline = device["timeline"].as_array().unwrap();
    let frames: Vec<u64> = timeline
        .iter()
        .map(|s| s["frame"].as_u64().unwrap())
        .collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
    assert_eq!(timeline[0]["delay"], 0.0);
    assert!(timeline
        .iter()
        .skip(1)
        .all(|s| s["delay"].as_f64().unwrap() > 0.0));
    let bind = timeline
        .iter()
        .find(|s| s["stage"] == "first BIND")
        .unwrap();
    assert_eq!(bind["frame"], media.bind_frame);
    let conn = timeline
        .iter()
        .find(|s| s["stage"] == "first CONN")
        .unwrap();
    assert_eq!(conn["frame"], media.conn_frame);

    // Cloud stages by endpoint, and the agent notification.
    let main_r = stage_names(session(&json, CLIENT_R, MAIN));
    assert_eq!(
        main_r,
        [
            "DHGET probe",
            "probe 200",
            "DHGET p2psrv",
            "p2psrv 200",
            "DHGET relay",
            "relay 200",
            "DHPOST relay-channel"
        ]
    );
    let main_d = stage_names(session(&json, CLIENT_D, MAIN));
    assert_eq!(
        main_d,
        ["DHPOST p2p-channel", "p2p-channel 100", "p2p-channel 200"]
    );
    let agent = session(&json, CLIENT_R, AGENT);
    assert_eq!(
        stage_names(agent),
        [
            "DHPOST relay/start",
            "relay/start 200",
            "agent notification 200",
            "PTCP SYN",
            "PTCP SYN",
            "0x17 sign request",
            "0x18 sign"
        ]
    );
    assert_eq!(agent["path"], "none");
    // The LAN candidate never answered, but the public one did: a note.
    let lan = session(&json, CLIENT_D, DEVICE_LAN);
    assert_eq!(lan["verdict"], "healthy");
    assert_eq!(codes(lan), ["punch-not-taken"]);

    // The merged timeline covers every session in capture order.
    let all = json["timeline"].as_array().unwrap();
    let frames: Vec<u64> = all.iter().map(|s| s["frame"].as_u64().unwrap()).collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(all[0]["stage"], "DHGET probe");
}

#[test]
fn clean_session_counts_bytes_each_way_and_the_realm() {
    let (cap, media) = clean_direct([1000, 5000], 40);
    let stats = collect(&cap.records);
    let json = stats.report_json();
    let device = session(&json, CLIENT_D, DEVICE);
    let up = ptcp(device, 0);
    let down = ptcp(device, 1);
    assert_eq!(up["data_bytes"], media.to_device.len() as u64);
    assert_eq!(down["data_bytes"], media.from_device.len() as u64);
    for dir in [up, down] {
        assert_eq!(dir["retransmissions"], 0);
        assert_eq!(dir["duplicates"], 0);
        assert_eq!(dir["late"], 0);
        assert_eq!(dir["gap_events"], 0);
        assert_eq!(dir["rmid_unechoed"], 0);
        assert_eq!(dir["heartbeats"], 1);
        assert_eq!(dir["out_unacked"], 0);
        assert_eq!(dir["open_gaps"].as_array().unwrap().len(), 0);
    }
    // Body bytes: every body the client sent, sub-headers included.
    let client_datagrams: Vec<&Record> = cap
        .records
        .iter()
        .filter(|r| r.src == addr(CLIENT_D) && r.dst == addr(DEVICE))
        .collect();
    let client_bodies: usize = client_datagrams
        .iter()
        .filter(|r| r.payload.starts_with(b"PTCP"))
        .map(|r| r.payload.len() - 24)
        .sum();
    assert_eq!(up["body_bytes"], client_bodies as u64);
    assert_eq!(
        device["directions"][0]["datagrams"],
        client_datagrams.len() as u64
    );
    let realms = json["realms"].as_array().unwrap();
    assert_eq!(realms.len(), 1);
    let realm = &realms[0];
    assert_eq!(realm["realm"], REALM);
    assert_eq!(realm["realm_hex"], "0x5f7f1ce8");
    assert_eq!(realm["bind"]["port"], 554);
    assert_eq!(realm["bind"]["ip"], "127.0.0.1");
    assert_eq!(realm["bind"]["frame"], media.bind_frame);
    assert_eq!(realm["conn"]["frame"], media.conn_frame);
    assert_eq!(realm["to_peer"]["bytes"], media.to_device.len() as u64);
    assert_eq!(realm["from_peer"]["bytes"], media.from_device.len() as u64);
    let discs = realm["disc"].as_array().unwrap();
    assert_eq!(discs.len(), 2);
    assert_eq!(discs[0]["by"], "client");
    assert_eq!(discs[1]["by"], "peer");
    assert_eq!(realm["orphan_conn"], false);
    assert_eq!(realm["bind_unanswered"], false);

    let text = stats.report_text();
    assert!(text.contains("verdict: all sessions healthy"), "{text}");
    assert!(text.contains(&format!(
        "path: direct: PTCP between the p2p-channel socket {CLIENT_D}"
    )));
    assert!(text.contains("0x5f7f1ce8  BIND 127.0.0.1:554"), "{text}");
    assert!(text.contains("Handshake timeline (all sessions)"));
}

/// The device's RTP with faults: an exact duplicate, a reordered pair, two
/// resends under fresh headers, and one body lost before the capture point
/// and resent later.
#[test]
fn retransmissions_duplicates_and_reordering_are_counted() {
    let mut cap = Capture::new();
    cloud_handshake(&mut cap);
    let mut link = device_handshake(&mut cap, [7, 9]);
    let media = media(&mut cap, &mut link, 30);
    let d = media.rtp_datagrams.clone();
    assert!(d.len() >= 10);
    let push = |cap: &mut Capture, link: &mut Link, bytes: Vec<u8>| {
        link.deliver(1, &bytes);
        link.push(cap, 1, bytes);
    };
    push(&mut cap, &mut link, d[0].clone());
    push(&mut cap, &mut link, d[1].clone());
    push(&mut cap, &mut link, d[1].clone()); // duplicate
    push(&mut cap, &mut link, d[3].clone()); // gap (d2 late)
    push(&mut cap, &mut link, d[2].clone()); // late
    link.deliver(1, &d[3]);
    let resend = link.resend(1, &d[2]);
    push(&mut cap, &mut link, resend); // retransmission
                                       // d4 lost before the capture point; d5.. arrive; d4 resent later.
    for datagram in &d[5..8] {
        push(&mut cap, &mut link, datagram.clone());
    }
    let resend4 = link.resend(1, &d[4]);
    push(&mut cap, &mut link, resend4); // late (fills the hole)
    let resend6 = link.resend(1, &d[6]);
    push(&mut cap, &mut link, resend6); // retransmission
    for datagram in &d[8..] {
        push(&mut cap, &mut link, datagram.clone());
    }
    link.ack(&mut cap, 0);
    close(&mut cap, &mut link);

    let stats = collect(&cap.records);
    let json = stats.report_json();
    let device = session(&json, CLIENT_D, DEVICE);
    let down = ptcp(device, 1);
    assert_eq!(down["duplicates"], 1, "{down:#}");
    assert_eq!(down["retransmissions"], 2);
    assert_eq!(down["late"], 2);
    assert_eq!(down["gap_events"], 2);
    assert_eq!(down["open_gaps"].as_array().unwrap().len(), 0);
    assert_eq!(down["data_bytes"], media.from_device.len() as u64);
    assert_eq!(ptcp(device, 0)["retransmissions"], 0);
    // The first duplicate is the third RTP datagram captured.
    let dup_frame = down["first_duplicate"].as_u64().unwrap();
    assert_eq!(cap.records[dup_frame as usize - 1].payload, d[1]);
    assert_eq!(device["verdict"], "healthy", "{:#}", device["findings"]);
}

#[test]
fn a_lost_data_body_leaves_an_open_gap_noted_with_its_size() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let media = media(&mut cap, &mut link, 12);
    let mut d = media.rtp_datagrams.clone();
    let lost = d.remove(3);
    push_in_order(&mut cap, &mut link, &d);
    let json = collect(&cap.records).report_json();
    let device = session(&json, CLIENT_D, DEVICE);
    let down = ptcp(device, 1);
    let gaps = down["open_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1);
    let size = gaps[0]["end"].as_i64().unwrap() - gaps[0]["start"].as_i64().unwrap();
    assert_eq!(size as usize, lost.len() - 24);
    let note = finding(device, "gaps");
    assert_eq!(note["severity"], "note");
    assert!(note["text"]
        .as_str()
        .unwrap()
        .contains(&format!("{size} body bytes in 1 range")));
}

#[test]
fn counters_wrapping_past_2_32_are_neither_gaps_nor_resends() {
    let (cap, media) = clean_direct([u32::MAX - 3000, u32::MAX - 100], 60);
    let json = collect(&cap.records).report_json();
    let device = session(&json, CLIENT_D, DEVICE);
    for index in [0, 1] {
        let dir = ptcp(device, index);
        assert_eq!(dir["gap_events"], 0, "{dir:#}");
        assert_eq!(dir["retransmissions"], 0);
        assert_eq!(dir["late"], 0);
        assert_eq!(dir["out_unacked"], 0);
    }
    assert_eq!(
        ptcp(device, 1)["data_bytes"],
        media.from_device.len() as u64
    );
    assert_eq!(device["verdict"], "healthy");
}

#[test]
fn tracker_unwraps_positions_across_the_wrap() {
    let mut tracker = SentTracker::new();
    let (p0, a0) = tracker.observe(u32::MAX - 9, &[1; 10], b"one");
    assert_eq!((p0, a0), (i64::from(u32::MAX - 9), Arrival::InOrder));
    let (p1, a1) = tracker.observe(0, &[2; 10], b"two");
    assert_eq!(p1, 1 << 32);
    assert_eq!(a1, Arrival::InOrder);
    let (p2, a2) = tracker.observe(30, &[3; 5], b"three");
    assert_eq!(p2, (1 << 32) + 30);
    assert_eq!(a2, Arrival::AfterGap { missing: 20 });
    assert_eq!(tracker.holes(), vec![((1 << 32) + 10, (1 << 32) + 30)]);
    assert_eq!(tracker.observe(10, &[4; 20], b"four").1, Arrival::Late);
    assert!(tracker.holes().is_empty());
    assert_eq!(tracker.observe(0, &[2; 10], b"two").1, Arrival::Duplicate);
    assert_eq!(
        tracker.observe(0, &[2; 10], b"two again").1,
        Arrival::Retransmission
    );
    assert_eq!(tracker.observe(0, &[9; 10], b"other").1, Arrival::Conflict);
    assert_eq!(tracker.observe(5, &[9; 40], b"wide").1, Arrival::Overlap);
    assert_eq!(tracker.position(u32::MAX - 9), i64::from(u32::MAX - 9));
    assert_eq!(tracker.uncovered((1 << 32) + 40, (1 << 32) + 50), 5);
}

#[test]
fn a_403_invalid_salt_says_the_device_needs_auth() {
    let mut cap = Capture::new();
    let request = cap.request(
        CLIENT_D,
        MAIN,
        Method::DhPost,
        &format!("/device/{SERIAL}/p2p-channel"),
        6,
        "<body><Identify>d4 9e 67 a8 2b d4 7e 1e</Identify></body>",
    );
    // FIELD-NOTES §2.3: the 403 body of KN #2.
    let answer = cap.response(
        MAIN,
        CLIENT_D,
        403,
        "Forbidden",
        Some(6),
        "<body><ErrCode>4</ErrCode><Error>DevPwd_InvalidSalt</Error><Policy>p2p,udprelay</Policy></body>",
    );
    let stats = collect(&cap.records);
    let json = stats.report_json();
    let s = session(&json, CLIENT_D, MAIN);
    assert_eq!(s["verdict"], "unhealthy");
    let f = finding(s, "auth-required");
    assert_eq!(f["severity"], "failure");
    assert!(f["text"]
        .as_str()
        .unwrap()
        .starts_with("403 DevPwd_InvalidSalt: device needs auth"));
    assert!(f["text"].as_str().unwrap().contains("Policy p2p,udprelay"));
    assert_eq!(f["frames"], serde_json::json!([answer]));
    assert_eq!(
        stage_names(s),
        ["DHPOST p2p-channel", "p2p-channel 403 DevPwd_InvalidSalt"]
    );
    assert_eq!(s["timeline"][0]["frame"], request);
    assert!(stats
        .report_text()
        .contains("! 403 DevPwd_InvalidSalt: device needs auth"));
}

#[test]
fn a_404_on_online_p2psrv_says_wrong_cloud_or_offline() {
    let mut cap = Capture::new();
    cap.request(
        CLIENT_R,
        MAIN,
        Method::DhGet,
        &format!("/online/p2psrv/{SERIAL}"),
        2,
        "",
    );
    let answer = cap.response(MAIN, CLIENT_R, 404, "Not Found", Some(2), "");
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_R, MAIN);
    let f = finding(s, "not-found");
    assert_eq!(f["text"], "404 on p2psrv: wrong cloud or offline");
    assert_eq!(f["frames"], serde_json::json!([answer]));
}

#[test]
fn unanswered_relay_agent_is_a_dead_relay_candidate() {
    let mut cap = Capture::new();
    let first = cap.request(CLIENT_R, RELAY, Method::DhGet, "/relay/agent", 7, "");
    cap.wait_ms(2000);
    cap.request(CLIENT_R, RELAY, Method::DhGet, "/relay/agent", 7, "");
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_R, RELAY);
    let f = finding(s, "no-answer");
    assert_eq!(
        f["text"],
        "/relay/agent never answers: dead relay candidate (2 tries)"
    );
    assert_eq!(f["frames"], serde_json::json!([first]));
}

#[test]
fn punch_never_answered() {
    let mut cap = Capture::new();
    let first = cap.punch_request(CLIENT_D, DEVICE);
    cap.wait_ms(1000);
    cap.punch_request(CLIENT_D, DEVICE);
    cap.request(
        CLIENT_D,
        MAIN,
        Method::DhPost,
        &format!("/device/{SERIAL}/p2p-channel"),
        6,
        "",
    );
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    assert_eq!(s["client"], CLIENT_D);
    let f = finding(s, "punch-unanswered");
    assert!(f["text"]
        .as_str()
        .unwrap()
        .starts_with("punch never answered: 2 Binding Requests"));
    assert_eq!(f["frames"], serde_json::json!([first]));
    assert_eq!(s["verdict"], "unhealthy");
}

#[test]
fn binds_never_answered_while_heartbeats_are_mean_refused_binds() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let ok = link.send(
        &mut cap,
        0,
        Body::bind(1, 554, "127.0.0.1".parse().unwrap()),
    );
    link.ack(&mut cap, 1);
    link.send(&mut cap, 1, Body::status(1, Status::Conn));
    link.ack(&mut cap, 0);
    let refused: Vec<u64> = (2..5)
        .map(|realm| {
            let frame = link.send(
                &mut cap,
                0,
                Body::bind(realm, 554, "127.0.0.1".parse().unwrap()),
            );
            link.ack(&mut cap, 1);
            cap.wait_ms(2000);
            frame
        })
        .collect();
    link.send(&mut cap, 0, Body::Heartbeat);
    let alive = link.ack(&mut cap, 1);
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    let f = finding(s, "binds-refused");
    assert_eq!(
        f["text"],
        "device refuses BINDs (out of realm slots): 3 BIND(s) never answered while the peer kept sending (1 granted)"
    );
    let mut frames = refused.clone();
    frames.push(alive);
    assert_eq!(f["frames"], serde_json::json!(frames));
    let realms = json["realms"].as_array().unwrap();
    assert_eq!(
        realms
            .iter()
            .filter(|r| r["bind_unanswered"] == true)
            .count(),
        3
    );
    assert_eq!(realms[0]["bind"]["frame"], ok);
}

#[test]
fn auth_reply_never_arriving_is_a_refused_sign() {
    let mut cap = Capture::new();
    cap.punch_request(CLIENT_D, DEVICE);
    cap.punch_success(DEVICE, CLIENT_D);
    let mut link = Link::new(CLIENT_D, DEVICE, [0, 0]);
    link.send(&mut cap, 0, Body::Syn);
    link.send(&mut cap, 1, Body::Syn);
    let auth = link.send(&mut cap, 0, Body::Auth { sign: b"BADSIGN" });
    link.ack(&mut cap, 1);
    let bind = link.send(
        &mut cap,
        0,
        Body::bind(9, 554, "127.0.0.1".parse().unwrap()),
    );
    link.ack(&mut cap, 1);
    cap.wait_ms(3000);
    link.send(&mut cap, 0, Body::Heartbeat);
    link.ack(&mut cap, 1);
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    let f = finding(s, "auth-reply-missing");
    assert!(f["text"]
        .as_str()
        .unwrap()
        .starts_with("0x1A never arrived (sign refused)"));
    assert_eq!(f["frames"], serde_json::json!([auth, bind]));
    assert!(!codes(s).contains(&"binds-refused".to_owned()));
}

#[test]
fn syn_never_answered() {
    let mut cap = Capture::new();
    let mut link = Link::new(CLIENT_D, DEVICE, [0, 0]);
    let syn = link.send(&mut cap, 0, Body::Syn);
    cap.wait_ms(500);
    link.push(&mut cap, 0, link_resend_syn());
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    assert_eq!(
        finding(s, "syn-unanswered")["frames"],
        serde_json::json!([syn])
    );
}

fn link_resend_syn() -> Vec<u8> {
    let mut link = Link::new(CLIENT_D, DEVICE, [0, 0]);
    link.lmid[0] += 500;
    link.make(0, Body::Syn)
}

#[test]
fn relay_path_is_detected_and_a_stall_after_play_is_named() {
    let mut cap = Capture::new();
    let mut agent = cloud_handshake(&mut cap);
    // Relay mode: the agent session carries the realm (docs/PROTOCOL.md §1.3).
    let media = media(&mut cap, &mut agent, 20);
    let d = media.rtp_datagrams.clone();
    push_in_order(&mut cap, &mut agent, &d[..3]);
    let last_data = cap.records.len() as u64 - 1;
    let mut heartbeat = 0;
    for _ in 0..4 {
        cap.wait_ms(5000);
        heartbeat = agent.send(&mut cap, 0, Body::Heartbeat);
        agent.ack(&mut cap, 1);
    }
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_R, AGENT);
    assert_eq!(s["path"], "relay");
    assert_eq!(
        s["path_detail"],
        format!("relay: PTCP with the agent {AGENT} carrying BIND/DATA")
    );
    let f = finding(s, "relay-stall");
    assert!(
        f["text"]
            .as_str()
            .unwrap()
            .starts_with("relay stall: data stopped after PLAY while heartbeats continue"),
        "{f:#}"
    );
    assert!(f["text"].as_str().unwrap().contains("heartbeats answered"));
    assert_eq!(
        f["frames"],
        serde_json::json!([media.play_frame, last_data, heartbeat])
    );
}

#[test]
fn outbound_stall_our_data_unacknowledged_for_20_s() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    link.send(
        &mut cap,
        0,
        Body::bind(3, 37777, "127.0.0.1".parse().unwrap()),
    );
    link.ack(&mut cap, 1);
    link.send(&mut cap, 1, Body::status(3, Status::Conn));
    link.ack(&mut cap, 0);
    // The device keeps sending and never moves its recv for our data.
    let mut first_unacked = None;
    let mut stalled_at = None;
    for i in 0..30u32 {
        let ours = link.make(
            0,
            Body::Data {
                realm: 3,
                payload: &[i as u8; 100],
            },
        );
        let frame = link.push(&mut cap, 0, ours);
        first_unacked.get_or_insert(frame);
        if i == 20 {
            stalled_at = Some(frame);
        }
        link.send(
            &mut cap,
            1,
            Body::Data {
                realm: 3,
                payload: &[0x55; 200],
            },
        );
        link.ack(&mut cap, 0);
        cap.wait_ms(1000);
    }
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    let f = finding(s, "outbound-stall");
    assert!(
        f["text"]
            .as_str()
            .unwrap()
            .starts_with("outbound stall: our data unacknowledged for 20 s"),
        "{f:#}"
    );
    assert_eq!(
        f["frames"],
        serde_json::json!([first_unacked.unwrap(), stalled_at.unwrap()])
    );
}

#[test]
fn a_silent_peer_is_reported_with_the_quiet_time() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let last_peer = cap.records.len() as u64;
    for _ in 0..5 {
        cap.wait_ms(5000);
        link.make(0, Body::Empty);
        let heartbeat = link.make(0, Body::Heartbeat);
        link.push(&mut cap, 0, heartbeat);
    }
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    let f = finding(s, "silent");
    assert!(
        f["text"].as_str().unwrap().starts_with(
            "session silent for 25 s: the peer sent nothing until the end of the capture"
        ),
        "{f:#}"
    );
    assert_eq!(f["frames"], serde_json::json!([last_peer]));
}

#[test]
fn orphan_conn_without_bind_in_view_is_noted() {
    let mut cap = Capture::new();
    let mut link = Link::new(CLIENT_D, DEVICE, [500, 900]);
    let conn = link.send(&mut cap, 1, Body::status(0xabcdef, Status::Conn));
    link.ack(&mut cap, 0);
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    let f = finding(s, "orphan-conn");
    assert_eq!(f["severity"], "note");
    assert_eq!(f["frames"], serde_json::json!([conn]));
    assert_eq!(json["realms"][0]["orphan_conn"], true);
}

/// Random datagrams and mutated PTCP through both collectors: no panic, and
/// the reports still render.
#[test]
fn ten_thousand_random_record_sequences_never_panic() {
    let (clean, _) = clean_direct([u32::MAX - 5000, 17], 8);
    let seeds: Vec<Vec<u8>> = clean.records.iter().map(|r| r.payload.clone()).collect();
    let addrs = [addr(CLIENT_D), addr(DEVICE), addr(MAIN), addr(AGENT)];
    let mut rng = SmallRng::seed_from_u64(0x5eed_57a7);
    for round in 0..10_000u32 {
        let mut stats = StatsCollector::new();
        let mut follower = Follower::new(if round % 2 == 0 { REALM } else { rng.gen() });
        let count = rng.gen_range(1..12);
        for number in 1..=count {
            let mut payload = if rng.gen_bool(0.2) {
                (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect()
            } else {
                seeds[rng.gen_range(0..seeds.len())].clone()
            };
            match rng.gen_range(0..6) {
                0 if payload.len() > 4 => {
                    let at = rng.gen_range(4..payload.len());
                    payload[at] ^= 1 << rng.gen_range(0..8);
                }
                1 if payload.len() >= 24 => {
                    // Extreme counters.
                    let field = 4 * rng.gen_range(1..6);
                    let value: u32 = *[0, 1, u32::MAX, u32::MAX / 2, rng.gen()]
                        .get(rng.gen_range(0..5))
                        .unwrap();
                    payload[field..field + 4].copy_from_slice(&value.to_be_bytes());
                }
                2 => payload.truncate(rng.gen_range(0..=payload.len())),
                3 if payload.len() >= 28 => {
                    let len: u32 = rng.gen();
                    payload[25..28].copy_from_slice(&len.to_be_bytes()[1..]);
                }
                4 => payload.extend((0..rng.gen_range(0..20)).map(|_| rng.gen::<u8>())),
                _ => {}
            }
            let record = Record {
                number,
                time: std::time::Duration::from_millis(rng.gen_range(0..u64::from(u32::MAX))),
                src: addrs[rng.gen_range(0..addrs.len())],
                dst: addrs[rng.gen_range(0..addrs.len())],
                payload,
            };
            stats.add(&record);
            follower.add(&record);
        }
        let _ = stats.report_text();
        let _ = stats.report_json();
        let result = follower.finish();
        let _ = result.rtsp_report();
        let _ = result.summary();
    }
}

#[test]
fn report_json_has_the_documented_top_level_shape() {
    let (cap, _) = clean_direct([0, 0], 4);
    let json = collect(&cap.records).report_json();
    for key in [
        "datagrams",
        "start_epoch",
        "duration",
        "healthy",
        "timeline",
        "sessions",
        "realms",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["datagrams"], cap.records.len() as u64);
    assert_eq!(json["unrecognised"], 0);
    let s = &json["sessions"][0];
    for key in [
        "id",
        "a",
        "b",
        "client",
        "peer",
        "role",
        "first_frame",
        "last_frame",
        "start",
        "end",
        "path",
        "path_detail",
        "directions",
        "timeline",
        "realms",
        "verdict",
        "findings",
    ] {
        assert!(s.get(key).is_some(), "missing session.{key}");
    }
    assert_eq!(s["id"], 1);
    assert_eq!(s["role"], "cloud");
}

#[test]
fn a_new_syn_on_the_same_sockets_is_a_restart_not_a_resend() {
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
    first.ack(&mut cap, 1);
    let repeat = first.resend(1, &reply); // late SYN reply repeat
    first.push(&mut cap, 1, repeat);
    let mut second = Link::new(CLIENT_D, DEVICE, [0, 0]);
    second.lmid = [90_000, 150_000_000];
    let restart = second.send(&mut cap, 0, Body::Syn);
    second.send(&mut cap, 1, Body::Syn);
    second.send(
        &mut cap,
        0,
        Body::Data {
            realm: 2,
            payload: b"second session",
        },
    );
    second.ack(&mut cap, 1);
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    assert_eq!(
        finding(s, "ptcp-restart")["frames"],
        serde_json::json!([restart])
    );
    assert_eq!(codes(s).iter().filter(|c| *c == "ptcp-restart").count(), 1);
    assert_eq!(ptcp(s, 0)["retransmissions"], 0);
    assert_eq!(ptcp(s, 0)["data_bytes"], 27);
    assert_eq!(s["verdict"], "healthy");
}

#[test]
fn other_udp_traffic_makes_no_session_but_is_counted() {
    let mut cap = Capture::new();
    cap.push(
        "10.0.0.2:5353",
        "224.0.0.251:5353",
        b"\x00\x00\x84\x00 mdns".to_vec(),
    );
    cap.request(CLIENT_R, MAIN, Method::DhGet, "/probe/p2psrv", 1, "");
    cap.push(MAIN, CLIENT_R, b"garbage in a cloud session".to_vec());
    let stats = collect(&cap.records);
    let json = stats.report_json();
    assert_eq!(json["unrecognised"], 1);
    assert_eq!(json["sessions"].as_array().unwrap().len(), 1);
    let s = session(&json, CLIENT_R, MAIN);
    assert_eq!(s["directions"][1]["kinds"]["unknown"], 1);
    assert!(stats
        .report_text()
        .starts_with("== dhp2p decode --stats: 3 datagrams (1 other UDP), 1 sessions"));
}

/// The inspector's realms view and timeline read the same model as
/// `--stats`: the realm's bytes each way, its state and its repeats agree
/// with the JSON report, and cloud answers are paired with their request.
#[test]
fn realms_view_and_stats_report_read_one_model() {
    let mut cap = Capture::new();
    cloud_handshake(&mut cap);
    let mut link = device_handshake(&mut cap, [7, 9]);
    let media = media(&mut cap, &mut link, 12);
    let d = media.rtp_datagrams.clone();
    for datagram in &d {
        link.deliver(1, datagram);
        link.push(&mut cap, 1, datagram.clone());
    }
    let resend = link.resend(1, &d[2]);
    link.push(&mut cap, 1, resend);
    link.push(&mut cap, 1, d[3].clone()); // duplicate
    link.ack(&mut cap, 0);
    close(&mut cap, &mut link);

    let model = collect(&cap.records);
    let json = model.report_json();
    let realms = model.realms();
    assert_eq!(realms.len(), 1);
    let view = &realms[0];
    let reported = &json["realms"][0];
    assert_eq!(view.realm, REALM);
    assert_eq!(view.client, addr(CLIENT_D));
    assert_eq!(view.target, Some(v4("127.0.0.1:554")));
    assert_eq!(view.state.as_str(), "DISC");
    assert_eq!(view.to_device, media.to_device.len() as u64);
    assert_eq!(view.from_device, media.from_device.len() as u64);
    assert_eq!(reported["to_peer"]["bytes"], view.to_device);
    assert_eq!(reported["from_peer"]["bytes"], view.from_device);
    assert_eq!(view.retransmissions, 2);
    let down = ptcp(session(&json, CLIENT_D, DEVICE), 1);
    assert_eq!(
        down["retransmissions"].as_u64().unwrap() + down["duplicates"].as_u64().unwrap(),
        view.retransmissions
    );

    let stages: Vec<_> = model.timeline_stages().collect();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    for expected in ["PTCP SYN", "AUTH", &format!("BIND 0x{REALM:08x}")] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    // Cloud answers are paired with their request by CSeq; the first
    // answer counts (a 100 Trying before the 200, as the inspector showed).
    let channel = stages
        .iter()
        .find(|s| s.name.ends_with("/p2p-channel"))
        .unwrap_or_else(|| panic!("no p2p-channel stage: {names:?}"));
    assert_eq!(channel.result, "100 Trying", "{channel:?}");
    assert!(channel.took().is_some());
    for stage in stages.iter().filter(|s| s.name.starts_with("DH")) {
        assert!(
            stage.answered.is_none() || stage.result.starts_with(['1', '2']),
            "{stage:?}"
        );
    }
    let bind = stages.iter().find(|s| s.name.starts_with("BIND")).unwrap();
    assert_eq!(bind.result, "CONN");
}

/// `--follow` splits a socket pair's PTCP sessions at the same SYN as
/// `--stats` (one restart rule): realm 2 is only in the second session.
#[test]
fn follow_and_stats_restart_at_the_same_syn() {
    let mut cap = Capture::new();
    let mut first = Link::new(CLIENT_D, DEVICE, [0, 0]);
    first.send(&mut cap, 0, Body::Syn);
    first.send(&mut cap, 1, Body::Syn);
    first.send(
        &mut cap,
        0,
        Body::Data {
            realm: 2,
            payload: b"old",
        },
    );
    let mut second = Link::new(CLIENT_D, DEVICE, [0, 0]);
    let restart = second.send(&mut cap, 0, Body::Syn);
    second.send(&mut cap, 1, Body::Syn);
    // Same `sent` position as the first session's body: new bytes, not a resend.
    second.send(
        &mut cap,
        0,
        Body::Data {
            realm: 2,
            payload: b"new",
        },
    );
    let json = collect(&cap.records).report_json();
    let s = session(&json, CLIENT_D, DEVICE);
    assert_eq!(
        finding(s, "ptcp-restart")["frames"],
        serde_json::json!([restart])
    );
    assert_eq!(ptcp(s, 0)["retransmissions"], 0);
    let mut follower = Follower::new(2);
    for record in &cap.records {
        follower.add(record);
    }
    let followed = follower.finish();
    // Without the split the second body would be a conflicting copy in one
    // stream; with it, the second session is listed apart.
    assert_eq!(followed.to_device(), b"old");
    assert_eq!(followed.other_sessions.len(), 1);
}
