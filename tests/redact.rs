//! `dhp2p redact` on the real binary: every capture in captures/ comes out
//! without its secrets, tells the same story to `decode --stats` and reads
//! the same in tshark with dh-p2p.lua; random sessions with planted secrets
//! and non-loopback addresses never leak them.

mod common;
#[path = "common/scenario.rs"]
mod scenario;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dhp2p::capture::UdpPcapWriter;
use dhp2p::codec::classify::{classify, Datagram};
use dhp2p::codec::cloud::{Endpoint, Message};
use dhp2p::codec::ptcp::Body;
use dhp2p::decode::pcap::PcapReader;
use dhp2p::decode::record::Record;
use proptest::prelude::*;

use scenario::{Capture, Link};

fn captures() -> Vec<PathBuf> {
    let dir = common::repo_root().join("captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap") | Some("pcapng")
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "captures/ lost its files: {files:?}");
    files
}

fn redact(input: &Path, output: &Path, extra: &[&str]) -> Output {
    common::dhp2p()
        .arg("redact")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
}

fn read_records(file: &Path) -> Vec<Record> {
    let reader = PcapReader::new(std::io::BufReader::new(File::open(file).unwrap())).unwrap();
    reader.map(|r| r.unwrap()).collect()
}

fn write_records(records: &[Record], file: &Path) {
    let mut writer = UdpPcapWriter::new(BufWriter::new(File::create(file).unwrap())).unwrap();
    for r in records {
        writer
            .write_udp_any(r.time, r.src, r.dst, &r.payload)
            .unwrap();
    }
    let _ = writer.into_inner();
}

/// Every secret the original holds, found with the codec: serials, tokens,
/// WSSE usernames, digests and nonces, secret XML elements, the sign and the
/// device's auth reply, RTSP Authorization values.
fn secrets_of(records: &[Record]) -> Vec<Vec<u8>> {
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut add = |s: &[u8]| {
        if s.len() >= 4 && !secrets.iter().any(|k| k == s) {
            secrets.push(s.to_vec());
        }
    };
    for record in records {
        match classify(&record.payload) {
            Datagram::Cloud(Ok(message)) => {
                if let Message::Request(request) = &message {
                    match request.endpoint() {
                        Endpoint::OnlineP2pSrv { serial }
                        | Endpoint::ProbeDevice { serial }
                        | Endpoint::InfoDevice { serial }
                        | Endpoint::P2pChannel { serial }
                        | Endpoint::RelayChannel { serial } => add(serial.as_bytes()),
                        Endpoint::RelayStart { token } | Endpoint::RelayUnbind { token } => {
                            add(token.as_bytes())
                        }
                        _ => {}
                    }
                }
                if let Ok(Some(wsse)) = message.wsse() {
                    add(wsse.username.as_bytes());
                    add(wsse.password_digest.as_bytes());
                    add(wsse.nonce.as_bytes());
                }
                if let Ok(Some(xml)) = message.xml_body() {
                    for e in xml.elements() {
                        let secret = matches!(
                            e.name.as_str(),
                            "DevAuth" | "Nonce" | "RandSalt" | "Info" | "UserName" | "Token"
                        ) || (e.name == "LocalAddr" && !e.text.contains('.'));
                        if secret {
                            add(e.text.as_bytes());
                        }
                    }
                }
            }
            Datagram::Ptcp(Ok(packet)) => match packet.body {
                Body::Sign { sign } | Body::Auth { sign } => add(sign),
                Body::AuthReply { data } => add(data),
                Body::Data { payload, .. } => {
                    for value in authorization_values(payload) {
                        add(&value);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    secrets
}

/// The quoted values of `Authorization:` lines (username, nonce, response…)
/// except the realm and uri, which are not secret.
fn authorization_values(payload: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(payload);
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.to_ascii_lowercase().starts_with("authorization:") {
            continue;
        }
        for part in line.split(',') {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let name = name.trim().rsplit(' ').next().unwrap_or("");
            if name != "realm" && name != "uri" && name != "algorithm" {
                out.push(value.trim().trim_matches('"').as_bytes().to_vec());
            }
        }
    }
    out
}

/// Where `needle` shows in `haystack`: as is, as lowercase or uppercase hex
/// text, or inverted (every byte XOR 0xFF, as the punch writes).
fn leak(haystack: &[u8], needle: &[u8]) -> Option<&'static str> {
    let find = |n: &[u8]| haystack.windows(n.len()).any(|w| w == n);
    let inverted: Vec<u8> = needle.iter().map(|b| !b).collect();
    if find(needle) {
        Some("raw")
    } else if find(hex::encode(needle).as_bytes()) {
        Some("hex")
    } else if find(hex::encode_upper(needle).as_bytes()) {
        Some("HEX")
    } else if find(&inverted) {
        Some("inverted")
    } else {
        None
    }
}

fn assert_no_leaks(file: &Path, secrets: &[Vec<u8>]) {
    let bytes = std::fs::read(file).unwrap();
    for secret in secrets {
        if let Some(form) = leak(&bytes, secret) {
            panic!(
                "{}: {:?} is still in the redacted file ({form})",
                file.display(),
                String::from_utf8_lossy(secret)
            );
        }
    }
}

fn stats(file: &Path) -> String {
    let out = common::dhp2p()
        .args(["decode", "--stats", "-q"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Datagrams per protocol as tshark with dh-p2p.lua sees them.
fn tshark_counts(file: &Path) -> BTreeMap<String, usize> {
    let tshark = common::require_program("tshark", "tshark");
    let lua = common::repo_root().join("dh-p2p.lua");
    let out = Command::new(tshark)
        .arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .args(["-o", "udp.try_heuristic_first:TRUE", "-r"])
        .arg(file)
        .args(["-T", "fields", "-e", "_ws.col.Protocol"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

#[test]
fn every_capture_loses_its_secrets_and_keeps_its_story() {
    let dir = common::scratch_dir("redact-captures");
    for input in captures() {
        let original = read_records(&input);
        let secrets = secrets_of(&original);
        assert!(
            secrets.len() >= 5,
            "{}: too few secrets found to test: {secrets:?}",
            input.display()
        );
        let output = dir.join(input.file_name().unwrap()).with_extension("pcap");
        let out = redact(&input, &output, &[]);
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let report = String::from_utf8_lossy(&out.stderr);
        assert!(report.contains("serial"), "no serial counted: {report}");
        assert_no_leaks(&output, &secrets);

        // Same datagrams, times, ports, lengths and PTCP counters.
        let redacted = read_records(&output);
        assert_eq!(original.len(), redacted.len(), "{}", input.display());
        for (a, b) in original.iter().zip(&redacted) {
            assert_eq!(a.time, b.time);
            assert_eq!(a.src, b.src, "loopback stays loopback");
            assert_eq!(a.payload.len(), b.payload.len(), "frame {}", a.number);
            if a.payload.starts_with(b"PTCP") && a.payload.len() >= 24 {
                assert_eq!(
                    a.payload[..24],
                    b.payload[..24],
                    "PTCP header, frame {}",
                    a.number
                );
            }
        }
        assert_eq!(
            stats(&input),
            stats(&output),
            "{}: --stats differ",
            input.display()
        );
        assert_eq!(
            tshark_counts(&input),
            tshark_counts(&output),
            "{}: tshark sees other protocols",
            input.display()
        );
    }
}

#[test]
fn the_same_key_gives_the_same_pseudonyms_and_no_key_a_fresh_one() {
    let dir = common::scratch_dir("redact-key");
    let input = common::repo_root().join("captures/auth-required.pcap");
    let run = |name: &str, key: Option<&str>| {
        let output = dir.join(name);
        let mut cmd = common::dhp2p();
        cmd.arg("redact").arg(&input).arg("-o").arg(&output);
        if let Some(key) = key {
            cmd.args(["--key-env", "REDACT_TEST_KEY"])
                .env("REDACT_TEST_KEY", key);
        }
        assert!(cmd.output().unwrap().status.success());
        std::fs::read(output).unwrap()
    };
    assert_eq!(run("a.pcap", Some("k1")), run("b.pcap", Some("k1")));
    assert_ne!(run("c.pcap", Some("k1")), run("d.pcap", Some("k2")));
    assert_ne!(run("e.pcap", None), run("f.pcap", None));
}

#[test]
fn refuses_what_it_cannot_redact_and_leaves_no_file() {
    let dir = common::scratch_dir("redact-refuse");
    let mut cap = Capture::new();
    // 10.0.0.1 gets a longer stand-in, and nothing says how long the body is.
    cap.push(
        "10.0.0.2:4000",
        "203.0.113.1:8800",
        b"HTTP/1.1 200 OK\r\nCSeq: 1\r\n\r\n<body><US>10.0.0.1:5000</US></body>".to_vec(),
    );
    let input = dir.join("in.pcap");
    write_records(&cap.records, &input);
    let output = dir.join("out.pcap");
    let out = redact(&input, &output, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("frame 1") && stderr.contains("refusing"),
        "{stderr}"
    );
    assert!(!output.exists(), "a refused run left {output:?}");
    assert!(!dir.join("out.pcap.partial").exists());
}

#[test]
fn drop_media_zeroes_rtp_payloads_and_keeps_their_headers() {
    let dir = common::scratch_dir("redact-media");
    let (cap, media) = scenario::clean_direct([1000, 5000], 12);
    let input = dir.join("in.pcap");
    write_records(&cap.records, &input);
    let output = dir.join("out.pcap");
    let out = redact(&input, &output, &["--drop-media"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The device's realm stream, put back together from the redacted DATA.
    let mut stream = Vec::new();
    for record in read_records(&output) {
        if let Datagram::Ptcp(Ok(packet)) = classify(&record.payload) {
            if let Body::Data { payload, .. } = packet.body {
                if record.src.port() == 3000 {
                    stream.extend_from_slice(payload);
                }
            }
        }
    }
    assert_eq!(stream.len(), media.from_device.len());
    let rtp_start = stream.len() - (media.from_device.len() - rtsp_len());
    let mut at = rtp_start;
    let mut frames = 0;
    while at + 4 <= stream.len() {
        assert_eq!(stream[at], b'$');
        let len = usize::from(u16::from_be_bytes([stream[at + 2], stream[at + 3]]));
        let frame = &stream[at + 4..at + 4 + len];
        assert_eq!(frame[0], 0x80, "RTP/RTCP header kept");
        let keep = if frame[1] == 200 { 8 } else { 12 };
        assert_eq!(frame[..2], media.from_device[at + 4..at + 6]);
        assert!(frame[keep..].iter().all(|b| *b == 0), "payload not zeroed");
        frames += 1;
        at += 4 + len;
    }
    assert_eq!(frames, 13);
    // The RTSP answers are untouched.
    assert_eq!(stream[..rtp_start], media.from_device[..rtp_start]);
}

fn rtsp_len() -> usize {
    scenario::rtsp_responses().iter().map(Vec::len).sum()
}

/// A session with secrets planted where a real one has them: non-loopback
/// addresses in headers, cloud bodies, the punch and BIND; a WSSE header;
/// DevAuth; RTSP Authorization split across DATA fragments at `split`; URL
/// userinfo; all put together from `seed`.
fn planted_session(seed: u64, split: usize) -> (Vec<Record>, Vec<Vec<u8>>, Vec<[u8; 4]>) {
    use dhp2p::codec::cloud::{Header, Method, Request};
    let mut cap = Capture::new();
    let lan = format!("192.168.{}.{}", seed % 200 + 1, seed % 50 + 2);
    let public = format!("8.{}.{}.9", seed % 250, (seed / 7) % 250);
    let client = format!("10.{}.0.2", seed % 100);
    let c = format!("{client}:40000");
    let device = format!("{public}:3000");
    let serial = format!("SN{:013}", seed * 7919);
    let username = format!("user{seed:06}");
    let digest = format!("Dg{seed:08}Zq+/Yw==");
    let devauth = format!("DevAuth{seed:010}abc=");
    let response = format!("{:032x}", seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let password = format!("pw{seed:08}");

    let mut request = Request::new(Method::DhPost, format!("/device/{serial}/p2p-channel"));
    request.headers.push(Header::new("CSeq", "1"));
    request.headers.push(Header::new(
        "X-WSSE",
        format!(
            "UsernameToken Username=\"{username}\", PasswordDigest=\"{digest}\", Nonce=\"{seed}77\", Created=\"2026-01-01T00:00:00Z\""
        ),
    ));
    let body = format!(
        "<body><DevAuth>{devauth}</DevAuth><UserName>{username}</UserName><LocalAddr>{lan}:3000</LocalAddr></body>"
    );
    request
        .headers
        .push(Header::new("Content-Length", body.len().to_string()));
    request.body = body.into_bytes();
    cap.push(&c, "203.0.113.1:8800", request.encode());
    cap.response(
        "203.0.113.1:8800",
        &c,
        200,
        "Server Nat Info!",
        Some(1),
        &format!("<body><PubAddr>{device}</PubAddr><LocalAddr>{lan}:3000</LocalAddr></body>"),
    );
    cap.punch_request(&c, &format!("{lan}:3000"));
    cap.punch_request(&c, &device);
    cap.punch_success(&device, &c);
    let mut link = Link::new(&c, &device, [seed as u32 % 1000, 7]);
    link.send(&mut cap, 0, Body::Syn);
    link.send(&mut cap, 1, Body::Syn);
    link.send(&mut cap, 0, Body::bind(0x1234, 554, lan.parse().unwrap()));
    link.ack(&mut cap, 1);
    let url = format!("rtsp://{username}:{password}@{lan}:554/cam");
    let mut rtsp = vec![b'A'; split];
    rtsp.extend_from_slice(b"\r\n\r\n");
    rtsp.extend_from_slice(
        format!(
            "DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Digest username=\"{username}\", realm=\"r\", nonce=\"n{seed}\", uri=\"{url}\", response=\"{response}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    for chunk in rtsp.chunks(64) {
        link.send(
            &mut cap,
            0,
            Body::Data {
                realm: 0x1234,
                payload: chunk,
            },
        );
        link.ack(&mut cap, 1);
    }
    let secrets = [serial, username, digest, devauth, response, password]
        .map(String::into_bytes)
        .to_vec();
    let ips = [lan, public, client].map(|ip| ip.parse::<std::net::Ipv4Addr>().unwrap().octets());
    (cap.records, secrets, ips.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn planted_secrets_never_leak(seed in 1u64..100_000, split in 0usize..200) {
        let dir = common::scratch_dir(&format!("redact-prop-{seed}-{split}"));
        let (records, secrets, ips) = planted_session(seed, split);
        let input = dir.join("in.pcap");
        write_records(&records, &input);
        let output = dir.join("out.pcap");
        let out = redact(&input, &output, &[]);
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_no_leaks(&output, &secrets);
        let bytes = std::fs::read(&output).unwrap();
        for ip in ips {
            let text = std::net::Ipv4Addr::from(ip).to_string();
            prop_assert!(leak(&bytes, &ip).is_none(), "{text} leaked as bytes: {:?}", leak(&bytes, &ip));
            prop_assert!(leak(&bytes, text.as_bytes()).is_none(), "{text} leaked as text");
        }
        prop_assert_eq!(read_records(&output).len(), records.len());
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn ipv6_addresses_become_documentation_addresses() {
    let dir = common::scratch_dir("redact-ipv6");
    let mut cap = Capture::new();
    let client = "[2a02:1210:5e00::17]:40000";
    let cloud = "[2a01:4f8:c0c:1::8]:8800";
    cap.request(
        client,
        cloud,
        dhp2p::codec::cloud::Method::DhGet,
        "/probe/p2psrv",
        1,
        "",
    );
    cap.response(cloud, client, 200, "OK", Some(1), "");
    let input = dir.join("in.pcap");
    write_records(&cap.records, &input);
    let output = dir.join("out.pcap");
    let out = redact(&input, &output, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let redacted = read_records(&output);
    assert_eq!(redacted.len(), 2);
    for (a, b) in cap.records.iter().zip(&redacted) {
        for (original, stand_in) in [(a.src, b.src), (a.dst, b.dst)] {
            let std::net::IpAddr::V6(v6) = stand_in.ip() else {
                panic!("{stand_in} is not IPv6");
            };
            assert_eq!(v6.segments()[..2], [0x2001, 0x0db8], "{stand_in}");
            assert_eq!(original.port(), stand_in.port());
        }
        assert_eq!(a.payload, b.payload);
    }
    assert_ne!(redacted[0].src, redacted[0].dst);
    assert_eq!(
        redacted[0].src, redacted[1].dst,
        "one address, one stand-in"
    );
    let bytes = std::fs::read(&output).unwrap();
    for ip in ["2a02:1210:5e00::17", "2a01:4f8:c0c:1::8"] {
        let octets = ip.parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert!(leak(&bytes, &octets).is_none(), "{ip} leaked");
    }
}

#[test]
fn a_session_with_real_addresses_tells_the_same_story() {
    // Every address here has a same-length stand-in (9 to 14 characters),
    // so only the addresses themselves differ in the report.
    let dir = common::scratch_dir("redact-story");
    let (records, _, ips) = planted_session(1234, 40);
    let input = dir.join("in.pcap");
    write_records(&records, &input);
    let output = dir.join("out.pcap");
    let out = redact(&input, &output, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let redacted = read_records(&output);
    let mut mapping = BTreeMap::new();
    for (a, b) in records.iter().zip(&redacted) {
        mapping.insert(a.src.ip().to_string(), b.src.ip().to_string());
        mapping.insert(a.dst.ip().to_string(), b.dst.ip().to_string());
    }
    for ip in &ips {
        let ip = std::net::Ipv4Addr::from(*ip).to_string();
        let stand_in = &mapping[&ip];
        assert_ne!(&ip, stand_in);
        assert_eq!(ip.len(), stand_in.len(), "{ip} → {stand_in}");
    }
    let mut expected = stats(&input);
    for (original, stand_in) in &mapping {
        expected = expected.replace(original.as_str(), stand_in);
    }
    assert!(
        mapping.values().any(|ip| expected.contains(ip.as_str())),
        "the report names no address: {expected}"
    );
    assert_eq!(expected, stats(&output));
    assert_eq!(tshark_counts(&input), tshark_counts(&output));
}

#[test]
fn pseudonyms_keep_length_and_alphabet_and_addresses_their_text_length() {
    use dhp2p::redact::names::Names;
    let mut names = Names::new([7; 32]);
    let serial = "4L0C2F1PAZ3B7E9";
    let pseudonym = names.text("serial", serial);
    assert_eq!(pseudonym.len(), serial.len());
    assert_ne!(pseudonym, serial);
    for (a, b) in serial.chars().zip(pseudonym.chars()) {
        assert_eq!(
            a.is_ascii_digit(),
            b.is_ascii_digit(),
            "{serial} → {pseudonym}"
        );
        assert_eq!(
            a.is_ascii_uppercase(),
            b.is_ascii_uppercase(),
            "{serial} → {pseudonym}"
        );
    }
    assert_eq!(
        pseudonym,
        Names::new([7; 32]).text("serial", serial),
        "keyed, stable"
    );
    assert_ne!(
        pseudonym,
        Names::new([8; 32]).text("serial", serial),
        "another key"
    );

    let originals = [
        "10.0.0.1",
        "192.168.1.108",
        "8.8.4.4",
        "172.16.254.254",
        "100.64.1.1",
    ];
    for ip in originals {
        names.ip(ip.parse().unwrap()).unwrap();
    }
    names.allocate().unwrap();
    let mut seen = Vec::new();
    for ip in originals {
        let stand_in = names.ip(ip.parse().unwrap()).unwrap().to_string();
        let len = ip.len().clamp(9, 14);
        assert_eq!(stand_in.len(), len, "{ip} → {stand_in}");
        assert!(!seen.contains(&stand_in), "{stand_in} given twice");
        seen.push(stand_in);
    }
    let (text, n) = names
        .text_ips(b"<US>192.168.1.108:3000</US> v6.7.11 1.2.3.4.5 127.0.0.1.")
        .unwrap();
    assert_eq!(n, 1);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with(&format!("<US>{}:3000</US>", seen[1])),
        "{text}"
    );
    assert!(text.ends_with(" v6.7.11 1.2.3.4.5 127.0.0.1."), "{text}");
}
