//! The emulator's roles driven by a client built from the codec: every
//! answer, every error answer, both dialects, auth, relay, idempotent repeats.

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::client::{element, unix_now, xml, CloudClient, RawPtcp};
use dhp2p::codec::cloud::{
    p2p_channel_auth_body, p2p_channel_body, relay_channel_body, relay_start_body, DeviceAuthBlock,
    Identify, RequestStyle, SdkHeaders,
};
use dhp2p::codec::crypto;
use dhp2p::codec::identity;
use dhp2p::codec::ptcp::{Body, Packet, Status};
use dhp2p::codec::punch;
use dhp2p::emulator::driver::{self, DriverOptions, RunningEmulator};
use dhp2p::emulator::{AuthPolicy, CloudDialect, EmulatorConfig, Mode, RefuseBind, Service};

const SN: &str = "DEMO00000000001";
const IDENTIFY: [u8; 8] = [0xd4, 0x9e, 0x67, 0xa8, 0x2b, 0xd4, 0x7e, 0x1e];

async fn start(f: impl FnOnce(&mut EmulatorConfig)) -> RunningEmulator {
    let mut config = EmulatorConfig::default();
    config.services.insert(554, Service::Echo);
    f(&mut config);
    driver::start(config, DriverOptions::default())
        .await
        .unwrap()
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        _ => panic!("v4"),
    }
}

#[tokio::test]
async fn probe_and_lookups_answer_with_cseq_and_date() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let r = c.ask(emu.addrs.cloud, "/probe/p2psrv", "").await;
    assert_eq!((r.code, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.cseq(), Some(1));
    assert!(r.header("Date").is_some_and(|d| d.ends_with('Z')));
    assert!(!r.has_body());
    // Serials match in any case (FIELD-NOTES §2.1: IMOU wanted lower case).
    let r = c
        .ask(emu.addrs.cloud, "/online/p2psrv/demo00000000001", "")
        .await;
    assert_eq!(r.code, 200);
    assert_eq!(element(&r, "US"), emu.addrs.p2psrv.to_string());
    let r = c
        .ask(emu.addrs.cloud, "/online/p2psrv/NOSUCHSERIAL", "")
        .await;
    assert_eq!(r.code, 404);
    let r = c.ask(emu.addrs.cloud, "/online/relay", "").await;
    assert_eq!(element(&r, "Address"), emu.addrs.relay.to_string());
    emu.stop().await;
}

#[tokio::test]
async fn p2p_server_probe_and_info_device() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let r = c
        .ask(emu.addrs.p2psrv, &format!("/probe/device/{SN}"), "")
        .await;
    assert_eq!(r.code, 200);
    let r = c.ask(emu.addrs.p2psrv, "/probe/device/OTHER", "").await;
    assert_eq!(r.code, 404);
    let r = c
        .ask(emu.addrs.p2psrv, &format!("/info/device/{SN}"), "")
        .await;
    assert_eq!(element(&r, "DevVersion"), "6.7.11");
    let info = crypto::decrypt_info(&element(&r, "Info")).unwrap();
    assert_eq!(info.rtspport, Some(554));
    assert_eq!(info.privport, Some(37777));
    assert_eq!(info.randsalt.as_deref().map(str::len), Some(32));
    emu.stop().await;
}

#[tokio::test]
async fn relay_lease_start_and_unbind() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let r = c.ask(emu.addrs.relay, "/relay/agent", "").await;
    let token = element(&r, "Token");
    assert_eq!(element(&r, "Agent"), emu.addrs.agent.to_string());
    let r = c
        .ask(
            emu.addrs.agent,
            &format!("/relay/start/{token}"),
            &relay_start_body(None),
        )
        .await;
    assert_eq!(r.code, 200);
    assert!(element(&r, "SID").parse::<u32>().is_ok());
    assert!(
        element(&r, "Time")
            .parse::<i64>()
            .unwrap()
            .abs_diff(unix_now())
            < 5
    );
    let r = c
        .ask(
            emu.addrs.agent,
            "/relay/start/0000000000000000",
            &relay_start_body(None),
        )
        .await;
    assert_eq!(r.code, 403, "wrong token");
    let r = c
        .ask(emu.addrs.relay, &format!("/relay/unbind/{token}"), "")
        .await;
    assert_eq!(r.code, 200);
    let r = c
        .ask(emu.addrs.relay, &format!("/relay/unbind/{token}"), "")
        .await;
    assert_eq!(r.code, 403, "unbind after the lease is gone (PR)");
    emu.stop().await;
}

#[tokio::test]
async fn wsse_failures_get_401_with_server_time() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    c.key = "wrong-key".into();
    let r = c.ask(emu.addrs.cloud, "/probe/p2psrv", "").await;
    assert_eq!(r.code, 401);
    assert!(
        element(&r, "Time")
            .parse::<i64>()
            .unwrap()
            .abs_diff(unix_now())
            < 5
    );
    let mut c = CloudClient::new().await;
    c.skew = 3600;
    assert_eq!(c.ask(emu.addrs.cloud, "/probe/p2psrv", "").await.code, 401);
    c.skew = 100;
    assert_eq!(c.ask(emu.addrs.cloud, "/probe/p2psrv", "").await.code, 200);
    // No X-WSSE at all.
    c.send_raw(
        emu.addrs.cloud,
        b"DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 9\r\n\r\n",
    )
    .await;
    assert_eq!(c.recv_response().await.code, 401);
    emu.stop().await;
}

#[tokio::test]
async fn every_public_identity_is_accepted() {
    let emu = start(|_| {}).await;
    for profile in identity::profiles() {
        let mut c = CloudClient::new().await;
        c.username = profile.username.clone();
        c.key = profile.key.clone();
        let r = c.ask(emu.addrs.cloud, "/probe/p2psrv", "").await;
        assert_eq!(r.code, 200, "{}", profile.name);
    }
    emu.stop().await;
}

#[tokio::test]
async fn offline_device_is_404_everywhere() {
    let emu = start(|c| c.mode = Mode::Offline).await;
    let mut c = CloudClient::new().await;
    let port = c.local_port();
    assert_eq!(
        c.ask(emu.addrs.cloud, &format!("/online/p2psrv/{SN}"), "")
            .await
            .code,
        404
    );
    let body = p2p_channel_body(&Identify(IDENTIFY), port);
    let r = c
        .ask(emu.addrs.cloud, &format!("/device/{SN}/p2p-channel"), &body)
        .await;
    assert_eq!(r.code, 404);
    emu.stop().await;
}

#[tokio::test]
async fn undocumented_endpoints_are_404() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let r = c
        .ask(emu.addrs.cloud, &format!("/device/{SN}/local-channel"), "")
        .await;
    assert_eq!(r.code, 404);
    emu.stop().await;
}

/// p2p-channel: 100 Trying, then 200 Server Nat Info! with the device's
/// addresses (DH-P2P §7.5, FIELD-NOTES C9).
async fn open_channel(c: &mut CloudClient, emu: &RunningEmulator) -> (SocketAddr, i64) {
    let body = p2p_channel_body(&Identify(IDENTIFY), c.local_port());
    c.send(emu.addrs.cloud, &format!("/device/{SN}/p2p-channel"), &body)
        .await;
    let r = c.recv_response().await;
    assert_eq!((r.code, r.reason.as_str()), (100, "Trying"));
    let r = c.recv_response().await;
    assert_eq!((r.code, r.reason.as_str()), (200, "Server Nat Info!"));
    let pub_addr: SocketAddr = element(&r, "PubAddr").parse().unwrap();
    assert_eq!(pub_addr, emu.addrs.device);
    (pub_addr, c.cseq)
}

#[tokio::test]
async fn p2p_channel_answers_then_device_punches() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let (device, _) = open_channel(&mut c, &emu).await;
    let client = v4(c.sock.local_addr().unwrap());
    let req = punch::binding_request(punch::MAGIC_COOKIE, [7; 12], IDENTIFY, v4(device));
    c.send_raw(device, &req.encode()).await;
    let (bytes, from) = c.recv().await.unwrap();
    assert_eq!(from, device);
    let answer = punch::decode(&bytes).unwrap();
    assert_eq!(answer.message_type, punch::MessageType::BindingRequest);
    let success = punch::binding_success(
        punch::MAGIC_COOKIE,
        answer.transaction_id,
        IDENTIFY,
        client,
        punch::AddrForm::Inverted,
    );
    c.send_raw(device, &success.encode()).await;
    // Exactly five datagrams to discard (DH-P2P §7.11), none PTCP.
    for _ in 0..5 {
        let (bytes, _) = c.recv().await.expect("five datagrams");
        assert!(!bytes.starts_with(b"PTCP"));
    }
    assert!(
        c.silent_for(Duration::from_millis(300)).await,
        "a sixth datagram"
    );
    emu.stop().await;
}

#[tokio::test]
async fn retransmitted_p2p_channel_is_answered_but_punches_once() {
    let emu = start(|c| c.punch_before_200 = true).await;
    let mut c = CloudClient::new().await;
    let body = p2p_channel_body(&Identify(IDENTIFY), c.local_port());
    let bytes = c.request_bytes(&format!("/device/{SN}/p2p-channel"), &body);
    let mut punches = 0;
    let mut answers = Vec::new();
    for _ in 0..2 {
        c.send_raw(emu.addrs.cloud, &bytes).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while let Some((d, _)) = c.recv_within(Duration::from_millis(300)).await {
        if punch::looks_like_punch(&d) {
            punches += 1;
        } else {
            answers.push(dhp2p::codec::cloud::decode(&d).unwrap());
        }
    }
    let codes: Vec<u16> = answers
        .iter()
        .map(|m| m.as_response().unwrap().code)
        .collect();
    assert_eq!(codes, [100, 200, 100, 200]);
    assert_eq!(punches, 1, "the repeat must not start a second punch");
    emu.stop().await;
}

fn auth_body(salt: &str, password: &str, local_port: u16, n1: &str) -> String {
    let key = crypto::device_key("admin", salt, password);
    let t = unix_now().to_string();
    let enc = crypto::encrypt_local_addr(&key, n1, &format!("127.0.0.1:{local_port}"));
    let dev_auth = crypto::dev_auth(&key, n1, &t, &enc);
    p2p_channel_auth_body(
        &DeviceAuthBlock {
            create_date: &t,
            dev_auth: &dev_auth,
            nonce: n1,
            rand_salt: Some(salt),
            user_name: "admin",
        },
        &Identify(IDENTIFY),
        &enc,
    )
}

async fn salt_of(c: &mut CloudClient, emu: &RunningEmulator) -> String {
    let r = c
        .ask(emu.addrs.p2psrv, &format!("/info/device/{SN}"), "")
        .await;
    crypto::decrypt_info(&element(&r, "Info"))
        .unwrap()
        .randsalt
        .unwrap()
}

#[tokio::test]
async fn auth_required_missing_wrong_and_right() {
    let emu = start(|c| c.auth = AuthPolicy::Required).await;
    let mut c = CloudClient::new().await;
    let path = format!("/device/{SN}/p2p-channel");
    // Missing: 403 DevPwd_InvalidSalt with the captured body shape.
    let body = p2p_channel_body(&Identify(IDENTIFY), c.local_port());
    let r = c.ask(emu.addrs.cloud, &path, &body).await;
    assert_eq!(r.code, 403);
    assert_eq!(element(&r, "Error"), "DevPwd_InvalidSalt");
    assert_eq!(element(&r, "ErrCode"), "4");
    assert_eq!(element(&r, "Policy"), "p2p,udprelay");
    // The original's static salt is wrong for this device.
    let body = auth_body(crypto::LEGACY_RANDSALT, "admin", c.local_port(), "1234567");
    let r = c.ask(emu.addrs.cloud, &path, &body).await;
    assert_eq!(element(&r, "Error"), "DevPwd_InvalidSalt");
    // Right salt, wrong password.
    let salt = salt_of(&mut c, &emu).await;
    let body = auth_body(&salt, "nope", c.local_port(), "1234567");
    let r = c.ask(emu.addrs.cloud, &path, &body).await;
    assert_eq!(element(&r, "Error"), "DevPwd_InvalidDigest");
    // Right: authenticated answer forms (Nonce, encrypted LocalAddr).
    let body = auth_body(&salt, "admin", c.local_port(), "-5");
    c.send(emu.addrs.cloud, &path, &body).await;
    assert_eq!(c.recv_response().await.code, 100);
    let r = c.recv_response().await;
    assert_eq!(r.code, 200);
    let n2 = element(&r, "Nonce");
    let key = crypto::device_key("admin", &salt, "admin");
    let local = crypto::decrypt_local_addr(&key, &n2, &element(&r, "LocalAddr")).unwrap();
    assert_eq!(local, emu.addrs.device.to_string());
    assert_eq!(element(&r, "PubAddr"), emu.addrs.device.to_string());
    emu.stop().await;
}

#[tokio::test]
async fn auth_none_still_gives_authenticated_forms_to_a_valid_block() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let salt = salt_of(&mut c, &emu).await;
    let body = auth_body(&salt, "admin", c.local_port(), "77");
    c.send(emu.addrs.cloud, &format!("/device/{SN}/p2p-channel"), &body)
        .await;
    assert_eq!(c.recv_response().await.code, 100);
    let r = c.recv_response().await;
    assert!(xml(&r).get("Nonce").is_some());
    emu.stop().await;
}

#[tokio::test]
async fn sdk_dialect_accepted_and_dmss_cloud_refuses_legacy() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    c.style = RequestStyle::Sdk(SdkHeaders::dmss());
    let (_, _) = open_channel(&mut c, &emu).await;
    emu.stop().await;

    let emu = start(|c| c.dialect = CloudDialect::Sdk).await;
    let mut c = CloudClient::new().await;
    let body = p2p_channel_body(&Identify(IDENTIFY), c.local_port());
    let r = c
        .ask(emu.addrs.cloud, &format!("/device/{SN}/p2p-channel"), &body)
        .await;
    assert_eq!(r.code, 403);
    assert_eq!(element(&r, "Error"), "DevPwd_InvalidDigest");
    c.style = RequestStyle::Sdk(SdkHeaders::easyviewer());
    open_channel(&mut c, &emu).await;
    // The SDK warm-up carries no WSSE and is still answered.
    c.send_raw(
        emu.addrs.cloud,
        &dhp2p::codec::cloud::build_sdk_stun_warmup("Client/Dmss_Android").encode(),
    )
    .await;
    assert_eq!(c.recv_response().await.code, 200);
    emu.stop().await;
}

/// Lease + relay-channel + agent notification + SYN: the relay leg.
async fn relay_leg(c: &mut CloudClient, emu: &RunningEmulator) -> RawPtcp {
    let r = c.ask(emu.addrs.relay, "/relay/agent", "").await;
    let token = element(&r, "Token");
    let r = c
        .ask(
            emu.addrs.agent,
            &format!("/relay/start/{token}"),
            &relay_start_body(None),
        )
        .await;
    assert_eq!(r.code, 200);
    c.send(
        emu.addrs.cloud,
        &format!("/device/{SN}/relay-channel"),
        &relay_channel_body(&emu.addrs.agent.to_string()),
    )
    .await;
    let (note, from) = c.recv().await.expect("agent notification");
    assert_eq!(from, emu.addrs.agent, "notification comes from the agent");
    assert!(note.starts_with(b"HTTP/1.1 200 Server Nat Info!"));
    let mut s = RawPtcp::default();
    c.send_raw(emu.addrs.agent, &s.packet(&Body::Syn)).await;
    let (d, _) = c.recv().await.unwrap();
    assert_eq!(s.received(&d), [0, 3, 1, 0]);
    s
}

/// The next non-empty body, ACKed as a client must (else the device resends).
async fn next_body(c: &CloudClient, s: &mut RawPtcp) -> Vec<u8> {
    loop {
        let (d, from) = c.recv().await.expect("a PTCP datagram");
        let body = s.received(&d);
        if !body.is_empty() {
            c.send_raw(from, &s.packet(&Body::Empty)).await;
            return body;
        }
    }
}

#[tokio::test]
async fn agent_sign_is_repeated_for_a_repeated_request() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let mut s = relay_leg(&mut c, &emu).await;
    let req = s.packet(&Body::SignRequest);
    c.send_raw(emu.addrs.agent, &req).await;
    // Take the sign without acknowledging it, as if our ACK were lost.
    let (d, _) = c.recv().await.unwrap();
    let first = s.received(&d);
    assert_eq!(first[0], 0x18);
    assert_eq!(first.len(), 12 + 16);
    // The same 0x17 again, after a while (as a client resends on its own
    // timeout): the same sign again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    while c.recv_within(Duration::from_millis(1)).await.is_some() {}
    c.send_raw(emu.addrs.agent, &req).await;
    let (d, _) = c.recv().await.unwrap();
    let again = Packet::decode(&d).unwrap();
    assert_eq!(again.body.command_data(), &first[12..]);
    emu.stop().await;
}

#[tokio::test]
async fn relay_only_mode_carries_a_realm_through_the_agent() {
    let emu = start(|c| c.mode = Mode::RelayOnly).await;
    let mut c = CloudClient::new().await;
    // Direct punching gets no answer.
    let (device, _) = open_channel(&mut c, &emu).await;
    let req = punch::binding_request(punch::MAGIC_COOKIE, [1; 12], IDENTIFY, v4(device));
    c.send_raw(device, &req.encode()).await;
    assert!(c.silent_for(Duration::from_millis(300)).await);
    // Relay mode (DH-P2P §6.8): BIND right after the agent's SYN.
    let mut s = relay_leg(&mut c, &emu).await;
    let realm = 0x1234_5678;
    c.send_raw(
        emu.addrs.agent,
        &s.packet(&Body::bind(realm, 554, [127, 0, 0, 1].into())),
    )
    .await;
    let body = next_body(&c, &mut s).await;
    assert_eq!(
        Body::decode(&body).unwrap(),
        Body::status(realm, Status::Conn)
    );
    let payload = b"hello through the relay";
    c.send_raw(emu.addrs.agent, &s.packet(&Body::Data { realm, payload }))
        .await;
    let body = next_body(&c, &mut s).await;
    assert_eq!(Body::decode(&body).unwrap(), Body::Data { realm, payload });
    emu.stop().await;
}

/// Punch, SYN, 0x19 without a valid sign: the device answers no 0x1A and
/// ignores BINDs (BJ); realm refusals per --max-realms / --refuse-bind.
async fn direct_session(c: &mut CloudClient, emu: &RunningEmulator) -> (RawPtcp, SocketAddr) {
    let (device, _) = open_channel(c, emu).await;
    let client = v4(c.sock.local_addr().unwrap());
    let req = punch::binding_request(punch::MAGIC_COOKIE, [9; 12], IDENTIFY, v4(device));
    c.send_raw(device, &req.encode()).await;
    let (bytes, _) = c.recv().await.unwrap();
    let tid = punch::decode(&bytes).unwrap().transaction_id;
    let ok = punch::binding_success(
        punch::MAGIC_COOKIE,
        tid,
        IDENTIFY,
        client,
        punch::AddrForm::Inverted,
    );
    c.send_raw(device, &ok.encode()).await;
    for _ in 0..5 {
        c.recv().await.unwrap();
    }
    let mut s = RawPtcp::default();
    c.send_raw(device, &s.packet(&Body::Syn)).await;
    let body = next_body(c, &mut s).await;
    assert_eq!(body, [0, 3, 1, 0], "SYN answered by SYN with no ACK first");
    (s, device)
}

#[tokio::test]
async fn repeated_syn_and_bind_get_the_same_answers() {
    let emu = start(|c| c.require_sign = false).await;
    let mut c = CloudClient::new().await;
    let (mut s, device) = direct_session(&mut c, &emu).await;
    // The same SYN again: the SYN again.
    let mut again = RawPtcp::default();
    c.send_raw(device, &again.packet(&Body::Syn)).await;
    let (d, _) = c.recv().await.unwrap();
    assert_eq!(Packet::decode(&d).unwrap().body, Body::Syn);
    let bind = s.packet(&Body::bind(5, 554, [127, 0, 0, 1].into()));
    c.send_raw(device, &bind).await;
    assert_eq!(
        Body::decode(&next_body(&c, &mut s).await).unwrap(),
        Body::status(5, Status::Conn)
    );
    c.send_raw(
        device,
        &s.packet(&Body::bind(5, 554, [127, 0, 0, 1].into())),
    )
    .await;
    assert_eq!(
        Body::decode(&next_body(&c, &mut s).await).unwrap(),
        Body::status(5, Status::Conn)
    );
    emu.stop().await;
}

#[tokio::test]
async fn unsigned_session_binds_are_ignored() {
    let emu = start(|_| {}).await;
    let mut c = CloudClient::new().await;
    let (mut s, device) = direct_session(&mut c, &emu).await;
    c.send_raw(
        device,
        &s.packet(&Body::Auth {
            sign: b"not-a-sign",
        }),
    )
    .await;
    // Only the ACK: no 0x1A.
    let (d, _) = c.recv().await.unwrap();
    assert!(s.received(&d).is_empty());
    c.send_raw(
        device,
        &s.packet(&Body::bind(5, 554, [127, 0, 0, 1].into())),
    )
    .await;
    let (d, _) = c.recv().await.unwrap();
    assert!(s.received(&d).is_empty(), "BIND only ACKed");
    assert!(c.silent_for(Duration::from_millis(400)).await, "no CONN");
    emu.stop().await;
}

#[tokio::test]
async fn realms_beyond_the_cap_are_refused_as_configured() {
    for (refuse, expect_disc) in [(RefuseBind::Silent, false), (RefuseBind::Disc, true)] {
        let emu = start(|c| {
            c.require_sign = false;
            c.max_realms = 2;
            c.refuse_bind = refuse;
        })
        .await;
        let mut c = CloudClient::new().await;
        let (mut s, device) = direct_session(&mut c, &emu).await;
        for realm in [1, 2] {
            c.send_raw(
                device,
                &s.packet(&Body::bind(realm, 554, [127, 0, 0, 1].into())),
            )
            .await;
            assert_eq!(
                Body::decode(&next_body(&c, &mut s).await).unwrap(),
                Body::status(realm, Status::Conn)
            );
        }
        c.send_raw(
            device,
            &s.packet(&Body::bind(3, 554, [127, 0, 0, 1].into())),
        )
        .await;
        let mut bodies = Vec::new();
        let mut datagrams = 0;
        while let Some((d, from)) = c.recv_within(Duration::from_millis(400)).await {
            datagrams += 1;
            let body = s.received(&d);
            if !body.is_empty() {
                c.send_raw(from, &s.packet(&Body::Empty)).await;
                bodies.push(Body::decode(&body).unwrap().name());
            }
        }
        assert!(datagrams >= 1, "the BIND is acknowledged");
        if expect_disc {
            assert_eq!(bodies, ["STATUS"], "{refuse:?}");
        } else {
            assert!(bodies.is_empty(), "{refuse:?}: {bodies:?}");
        }
        emu.stop().await;
    }
}

#[tokio::test]
async fn bind_to_a_port_without_a_service_is_disc() {
    let emu = start(|c| c.require_sign = false).await;
    let mut c = CloudClient::new().await;
    let (mut s, device) = direct_session(&mut c, &emu).await;
    c.send_raw(
        device,
        &s.packet(&Body::bind(8, 9999, [127, 0, 0, 1].into())),
    )
    .await;
    assert_eq!(
        Body::decode(&next_body(&c, &mut s).await).unwrap(),
        Body::status(8, Status::Disc)
    );
    emu.stop().await;
}
