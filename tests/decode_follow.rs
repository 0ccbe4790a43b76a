//! `--follow`: a realm's two streams rebuilt from DATA in `sent` order, each
//! byte once, gaps reported at their offsets, and the RTSP report.

use dhp2p::codec::ptcp::{Body, Status};
use dhp2p::decode::follow::{
    parse_rtsp_stream, redact_authorization, Flow, FollowResult, Follower,
};
use dhp2p::decode::record::Record;
use dhp2p::decode::REDACTED;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[path = "common/scenario.rs"]
mod scenario;

use scenario::*;

fn follow(records: &[Record], realm: u32) -> FollowResult {
    let mut follower = Follower::new(realm);
    for record in records {
        follower.add(record);
    }
    follower.finish()
}

#[test]
fn clean_direct_session_reassembles_exactly() {
    let (cap, media) = clean_direct([1000, 5000], 40);
    let result = follow(&cap.records, REALM);
    assert!(result.found());
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert_eq!(result.from_device(), media.from_device.as_slice());
    assert!(result.gaps().is_empty());
    assert_eq!(
        result.bind_target(),
        Some(("127.0.0.1".parse().unwrap(), 554))
    );
    assert_eq!(result.bind.unwrap().frame, media.bind_frame);
    assert_eq!(result.conn_frame, Some(media.conn_frame));
    assert_eq!(result.client, Some(addr(CLIENT_D)));
    assert_eq!(result.device, Some(addr(DEVICE)));
    assert_eq!(
        result.discs.iter().map(|d| d.flow).collect::<Vec<_>>(),
        [Flow::ToDevice, Flow::FromDevice]
    );
    assert!(result.other_sessions.is_empty());
    let stream = result.stream(Flow::FromDevice);
    assert_eq!(stream.repeats, 0);
    assert_eq!(stream.pieces[0].offset, 0);
    assert_eq!(
        stream.pieces.iter().map(|p| p.len).sum::<usize>(),
        media.from_device.len()
    );
}

#[test]
fn rtsp_report_lists_the_dialogue_redacted_and_counts_rtp_per_channel() {
    let (cap, _) = clean_direct([1000, 5000], 40);
    let report = follow(&cap.records, REALM).rtsp_report();
    // Requests and responses alternate, in capture order.
    let lines: Vec<&str> = report.lines().filter(|l| l.starts_with('#')).collect();
    let firsts: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap())
        .collect();
    let url = "rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0";
    assert_eq!(
        firsts,
        [
            format!("OPTIONS {url} RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
            format!("DESCRIBE {url} RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
            format!("SETUP {url}/trackID=0 RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
            format!("PLAY {url}/ RTSP/1.0").as_str(),
            "RTSP/1.0 200 OK",
        ]
    );
    assert!(lines[0].contains("client->device offset 0"));
    assert!(lines[1].contains("device->client offset 0"));
    assert!(!report.contains(DIGEST_RESPONSE), "{report}");
    assert!(report.contains(&format!(
        "Authorization: Digest username=\"admin\", realm=\"Login to 4L0C\", nonce=\"abcdef\", uri=\"{url}\", response=\"{REDACTED}\""
    )));
    assert!(report.contains("    CSeq: 2"));
    assert!(report.contains("    Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B3C4D"));
    let describe_answer = &rtsp_responses()[1];
    let head_end = describe_answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert!(
        report.contains(&format!(
            "({} body bytes)",
            describe_answer.len() - head_end
        )),
        "{report}"
    );
    let rtp_bytes: usize = interleaved(0, 40, 1).len() - 40 * 4;
    let rtcp_up: usize = interleaved(1, 2, 9).len() - 2 * 4;
    let rtcp_down: usize = interleaved(1, 1, 2).len() - 4;
    assert!(
        report.contains(&format!(
            "device->client channel 0 (RTP): 40 packets, {rtp_bytes} bytes"
        )),
        "{report}"
    );
    assert!(report.contains(&format!(
        "device->client channel 1 (RTCP): 1 packets, {rtcp_down} bytes"
    )));
    assert!(report.contains(&format!(
        "client->device channel 1 (RTCP): 2 packets, {rtcp_up} bytes"
    )));
    assert!(!report.contains("note:"), "{report}");
}

#[test]
fn a_stream_that_does_not_open_with_rtsp_is_not_parsed_as_rtsp() {
    let parsed = parse_rtsp_stream(
        b"\x00\x01$\x00\x00\x04\x80\x60\x00\x00OPTIONS * RTSP/1.0\r\n\r\n",
        &[],
    );
    assert!(parsed.messages.is_empty());
    assert!(parsed.interleaved.is_empty());
    assert_eq!(
        parsed.notes,
        ["does not start with an RTSP message or an interleaved frame (first bytes 000124000004806000004f5054494f4e)"]
    );
}

/// The fault plan of the stats test: a duplicate, a reordered pair, resends
/// and a body lost upstream and resent later.
#[test]
fn retransmitted_duplicated_and_reordered_data_still_reassembles_exactly() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [7, 9]);
    let media = media(&mut cap, &mut link, 30);
    let d = media.rtp_datagrams.clone();
    let resend2 = link.resend(1, &d[2]);
    let resend4 = link.resend(1, &d[4]);
    let resend6 = link.resend(1, &d[6]);
    let order: Vec<Vec<u8>> = [
        d[0].clone(),
        d[1].clone(),
        d[1].clone(),
        d[3].clone(),
        d[2].clone(),
        resend2,
        d[5].clone(),
        d[6].clone(),
        d[7].clone(),
        resend4,
        resend6,
    ]
    .into_iter()
    .chain(d[8..].iter().cloned())
    .collect();
    for datagram in order {
        link.push(&mut cap, 1, datagram);
    }
    let result = follow(&cap.records, REALM);
    assert_eq!(result.from_device(), media.from_device.as_slice());
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert!(result.gaps().is_empty(), "{:?}", result.gaps());
    assert_eq!(result.stream(Flow::FromDevice).repeats, 3);
}

#[test]
fn a_missing_data_body_is_a_gap_at_its_offset() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let media = media(&mut cap, &mut link, 12);
    let mut d = media.rtp_datagrams.clone();
    let lost = d.remove(3);
    let before = cap.records.len() as u64;
    push_in_order(&mut cap, &mut link, &d);
    close(&mut cap, &mut link);
    let result = follow(&cap.records, REALM);
    let rtp_start =
        media.from_device.len() - d.iter().chain([&lost]).map(|x| x.len() - 36).sum::<usize>();
    let offset = rtp_start + 3 * 1280;
    let lost_payload = &lost[36..];
    let mut expected = media.from_device.clone();
    expected.drain(offset..offset + lost_payload.len());
    assert_eq!(result.from_device(), expected.as_slice());
    let gaps = result.gaps();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let (flow, gap) = gaps[0];
    assert_eq!(flow, Flow::FromDevice);
    assert_eq!(gap.offset, offset as u64);
    assert_eq!(gap.session_bytes, lost.len() as u64 - 24);
    // The pieces around it: the third and the fourth RTP datagram captured.
    assert_eq!(gap.after_frame, Some(before + 5));
    assert_eq!(gap.before_frame, Some(before + 7));
    assert!(result.summary().contains(&format!(
        "device->client: GAP at offset {offset}: {} session bytes missing",
        lost.len() - 24
    )));
    let report = result.rtsp_report();
    assert!(report.contains("1 gap(s)"));
    assert!(report.contains("cut short by a gap"), "{report}");
}

#[test]
fn a_missing_last_body_before_disc_is_a_gap_at_the_end() {
    let mut cap = Capture::new();
    let mut link = device_handshake(&mut cap, [0, 0]);
    let media = media(&mut cap, &mut link, 6);
    let mut d = media.rtp_datagrams.clone();
    let lost = d.pop().unwrap();
    push_in_order(&mut cap, &mut link, &d);
    close(&mut cap, &mut link);
    let result = follow(&cap.records, REALM);
    let gaps = result.gaps();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        gaps[0].1.offset,
        (media.from_device.len() - (lost.len() - 36)) as u64
    );
    assert_eq!(gaps[0].1.session_bytes, lost.len() as u64 - 24);
    assert_eq!(gaps[0].1.before_frame, None);
}

#[test]
fn counters_starting_near_2_32_wrap_and_stay_exact() {
    for start in [
        [u32::MAX - 2000, u32::MAX - 40_000],
        [u32::MAX, u32::MAX - 11],
    ] {
        let (cap, media) = clean_direct(start, 60);
        let result = follow(&cap.records, REALM);
        assert_eq!(result.to_device(), media.to_device.as_slice());
        assert_eq!(result.from_device(), media.from_device.as_slice());
        assert!(result.gaps().is_empty());
    }
}

/// An echo service: the same bytes both ways, both lossy, shuffled
/// within windows, with duplicates and resends.
#[test]
fn an_echo_realm_reassembles_both_directions() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut cap = Capture::new();
    let mut link = Link::new(CLIENT_D, DEVICE, [u32::MAX - 70_000, 123]);
    link.send(&mut cap, 0, Body::Syn);
    link.send(&mut cap, 1, Body::Syn);
    link.send(&mut cap, 0, Body::bind(42, 7, "127.0.0.1".parse().unwrap()));
    link.send(&mut cap, 1, Body::status(42, Status::Conn));
    let payload: Vec<u8> = (0..200_000).map(|_| rng.gen()).collect();
    let mut made = Vec::new();
    for chunk in payload.chunks(1280) {
        made.push((
            0,
            link.make(
                0,
                Body::Data {
                    realm: 42,
                    payload: chunk,
                },
            ),
        ));
        made.push((
            1,
            link.make(
                1,
                Body::Data {
                    realm: 42,
                    payload: chunk,
                },
            ),
        ));
        if rng.gen_bool(0.1) {
            made.push((0, link.make(0, Body::Heartbeat)));
        }
    }
    let mut captured = Vec::new();
    for window in made.chunks(8) {
        let mut window = window.to_vec();
        window.shuffle(&mut rng);
        for (side, datagram) in window {
            if rng.gen_bool(0.1) {
                let resend = link.resend(side, &datagram);
                captured.push((side, resend));
            }
            if rng.gen_bool(0.05) {
                captured.push((side, datagram.clone()));
            }
            captured.push((side, datagram));
        }
    }
    for (side, datagram) in captured {
        link.push(&mut cap, side, datagram);
    }
    let result = follow(&cap.records, 42);
    assert_eq!(result.to_device(), payload.as_slice());
    assert_eq!(result.from_device(), payload.as_slice());
    assert!(result.gaps().is_empty());
    let report = result.rtsp_report();
    assert!(report.contains("non-RTSP content"), "{report}");
}

#[test]
fn only_the_followed_realm_is_taken_from_an_interleaved_session() {
    let mut cap = Capture::new();
    let mut link = Link::new(CLIENT_D, DEVICE, [0, 0]);
    link.send(&mut cap, 0, Body::Syn);
    link.send(&mut cap, 1, Body::Syn);
    let mut expected = [Vec::new(), Vec::new()];
    for i in 0..300u32 {
        let realm = 10 + i % 3;
        let bytes: Vec<u8> = (0..(i * 7 % 1280 + 1)).map(|j| (i + j) as u8).collect();
        link.send(
            &mut cap,
            (i % 2) as usize,
            Body::Data {
                realm,
                payload: &bytes,
            },
        );
        if realm == 11 {
            expected[(i % 2) as usize].extend_from_slice(&bytes);
        }
    }
    // Lose the last DATA of realm 12 from the client: a hole between realm
    // 11's pieces is still reported, since the capture cannot tell whose it
    // was.
    let result = follow(&cap.records, 11);
    assert_eq!(result.to_device(), expected[0].as_slice());
    assert_eq!(result.from_device(), expected[1].as_slice());
    assert!(result.gaps().is_empty());
    assert!(result.bind.is_none());
    assert_eq!(result.client, Some(addr(CLIENT_D)));
    let mut lossy = cap.records.clone();
    let victim = lossy
        .iter()
        .rposition(|r| {
            r.src == addr(CLIENT_D)
                && r.payload.len() > 36
                && r.payload[28..32] == 12u32.to_be_bytes()
        })
        .unwrap();
    let victim_len = lossy[victim].payload.len() as u64 - 24;
    lossy.remove(victim);
    let result = follow(&lossy, 11);
    assert_eq!(result.to_device(), expected[0].as_slice());
    let gaps = result.gaps();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].1.session_bytes, victim_len);
}

#[test]
fn relay_sessions_are_followed_too() {
    let mut cap = Capture::new();
    let mut agent = cloud_handshake(&mut cap);
    let media = media(&mut cap, &mut agent, 10);
    let d = media.rtp_datagrams.clone();
    push_in_order(&mut cap, &mut agent, &d);
    let result = follow(&cap.records, REALM);
    assert_eq!(
        result.session.unwrap().to_string(),
        format!("{CLIENT_R} <-> {AGENT}")
    );
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert_eq!(result.from_device(), media.from_device.as_slice());
}

#[test]
fn the_same_realm_in_two_sessions_follows_the_first_and_lists_the_other() {
    let (mut cap, media) = clean_direct([0, 0], 3);
    let mut other = Link::new(CLIENT_R, AGENT, [0, 0]);
    other.send(
        &mut cap,
        0,
        Body::Data {
            realm: REALM,
            payload: b"elsewhere",
        },
    );
    let result = follow(&cap.records, REALM);
    assert_eq!(result.to_device(), media.to_device.as_slice());
    assert_eq!(result.other_sessions.len(), 1);
    assert!(result.summary().contains("also appears in"));
}

#[test]
fn an_absent_realm_is_reported_as_not_found() {
    let (cap, _) = clean_direct([0, 0], 3);
    let result = follow(&cap.records, 0xdead_beef);
    assert!(!result.found());
    assert!(result.to_device().is_empty() && result.from_device().is_empty());
    assert!(result
        .rtsp_report()
        .contains("realm not found in the capture"));
    assert_eq!(result.summary(), "realm 0xdeadbeef: not in the capture\n");
}

#[test]
fn redaction_reuses_the_describe_rule_for_digest_and_basic() {
    let digest = b"DESCRIBE rtsp://x/ RTSP/1.0\r\nAuthorization: Digest username=\"u\", response=\"abc123\"\r\n\r\n";
    assert_eq!(
        redact_authorization(digest),
        format!("DESCRIBE rtsp://x/ RTSP/1.0\r\nAuthorization: Digest username=\"u\", response=\"{REDACTED}\"\r\n\r\n")
    );
    let basic = b"OPTIONS * RTSP/1.0\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n";
    assert_eq!(
        redact_authorization(basic),
        format!("OPTIONS * RTSP/1.0\r\nAuthorization: Basic {REDACTED}\r\n\r\n")
    );
    let plain = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    assert_eq!(redact_authorization(plain), String::from_utf8_lossy(plain));
}

#[test]
fn rtsp_parser_resyncs_after_garbage_and_counts_frames() {
    let mut bytes = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n".to_vec();
    bytes.extend_from_slice(b"\x01\x02garbage");
    bytes.extend(interleaved(2, 3, 5));
    bytes.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nbody");
    bytes.extend_from_slice(b"$\x00\x00\x10\x80");
    let parsed = parse_rtsp_stream(&bytes, &[]);
    assert_eq!(parsed.messages.len(), 2);
    assert_eq!(parsed.messages[1].headers, ["CSeq: 2", "Content-Length: 4"]);
    assert_eq!(parsed.messages[1].body_len, 4);
    assert_eq!(parsed.interleaved.len(), 3);
    assert!(parsed.interleaved.iter().all(|(c, _)| *c == 2));
    assert_eq!(parsed.notes.len(), 2, "{:?}", parsed.notes);
    assert!(
        parsed.notes[0].starts_with("9 unrecognised bytes at offset 28"),
        "{:?}",
        parsed.notes
    );
    assert!(parsed.notes[1].contains("cut short by the end of the stream"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any chunking, any starting counters, any arrival order with
    /// duplicates and resends: the stream comes back exactly; dropping one
    /// chunk (every copy) yields exactly one gap at its offset.
    #[test]
    fn any_order_with_repeats_reassembles_exactly(
        payload in proptest::collection::vec(any::<u8>(), 1..20_000),
        chunk in 1usize..1500,
        start in any::<u32>(),
        seed in any::<u64>(),
        drop_one in any::<bool>(),
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut cap = Capture::new();
        let mut link = Link::new(CLIENT_D, DEVICE, [start, start ^ 0x5555]);
        let made: Vec<Vec<u8>> = payload
            .chunks(chunk)
            .map(|c| link.make(0, Body::Data { realm: 5, payload: c }))
            .collect();
        let dropped = if drop_one && made.len() > 2 { Some(rng.gen_range(1..made.len() - 1)) } else { None };
        let mut captured = Vec::new();
        for (i, datagram) in made.iter().enumerate() {
            if Some(i) == dropped {
                continue;
            }
            captured.push(datagram.clone());
            if rng.gen_bool(0.2) {
                captured.push(link.resend(0, datagram));
            }
        }
        captured.shuffle(&mut rng);
        for datagram in captured {
            link.push(&mut cap, 0, datagram);
        }
        let result = follow(&cap.records, 5);
        let mut expected = payload.clone();
        match dropped {
            None => {
                prop_assert_eq!(result.to_device(), expected.as_slice());
                prop_assert!(result.gaps().is_empty());
            }
            Some(i) => {
                expected.drain(i * chunk..(i + 1) * chunk);
                prop_assert_eq!(result.to_device(), expected.as_slice());
                let gaps = result.gaps();
                prop_assert_eq!(gaps.len(), 1);
                prop_assert_eq!(gaps[0].1.offset, (i * chunk) as u64);
                prop_assert_eq!(gaps[0].1.session_bytes, (chunk + 12) as u64);
            }
        }
    }
}

/// A new PTCP session on the same sockets restarts the counters at the same
/// values: the second realm must not be mistaken for resends of the first,
/// and a late repeat of the device's SYN reply must not split the session.
#[test]
fn a_new_syn_on_the_same_sockets_starts_new_counters() {
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
    first.send(
        &mut cap,
        1,
        Body::Data {
            realm: 1,
            payload: b"old answer",
        },
    );
    let repeat = first.resend(1, &reply); // late SYN reply repeat
    first.push(&mut cap, 1, repeat);
    first.send(
        &mut cap,
        1,
        Body::Data {
            realm: 1,
            payload: b", more",
        },
    );
    let mut second = Link::new(CLIENT_D, DEVICE, [0, 0]);
    second.lmid = [90_000, 150_000_000];
    second.send(&mut cap, 0, Body::Syn);
    second.send(&mut cap, 1, Body::Syn);
    second.send(
        &mut cap,
        0,
        Body::Data {
            realm: 1,
            payload: b"second session",
        },
    );
    second.send(
        &mut cap,
        1,
        Body::Data {
            realm: 1,
            payload: b"new answer",
        },
    );
    let old = follow(&cap.records, 1);
    assert_eq!(old.to_device(), b"first session");
    assert_eq!(old.from_device(), b"old answer, more");
    // The same realm ID in the second session: listed, not mixed in.
    assert_eq!(old.other_sessions, [old.session.unwrap()]);
    assert!(old.gaps().is_empty());
}
