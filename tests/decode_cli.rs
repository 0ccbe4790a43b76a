//! `dhp2p decode` as a user runs it: summary lines, -V, --json, --hex,
//! filters, stdin, exit codes, and nothing but records on stdout.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use dhp2p::capture::UdpPcapWriter;
use serde_json::Value;

fn h(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(digits).expect("test vector is hex")
}

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 50000);
const DEVICE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000);
const CLOUD: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 5), 8800);

/// DH-P2P.md §11.7 A1: a PTCP SYN.
fn syn_a1() -> Vec<u8> {
    h("50544350 00000000 00000000 0002ffff 00000000 00000000 00030100")
}

/// DH-P2P.md §11.8 D8: BIND realm 0x0a0b0c0d → 127.0.0.1:554.
fn bind_d8() -> Vec<u8> {
    h("50544350 0000002c 00000010 0000fffd 00000003 00001003
       11000000 0a0b0c0d 00000000 0000022a 7f000001")
}

/// DH-P2P.md §11.8 D10: STATUS CONN for realm 0x0a0b0c0d.
fn conn_d10() -> Vec<u8> {
    h("50544350 00000010 00000040 0000fffe 00001005 00000003
       12000000 0a0b0c0d 00000000 434f4e4e")
}

/// DH-P2P.md §11.8 D12: DATA carrying an RTSP OPTIONS.
fn data_d12() -> Vec<u8> {
    let mut bytes = h("50544350 00000040 00000020 0000fffc 00000005 00001005
                       10000033 0a0b0c0d 00000000");
    bytes.extend_from_slice(b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    bytes
}

/// DH-P2P.md §11.6: client → device Binding Request.
fn punch_request() -> Vec<u8> {
    h("ff fe ff e7 de ed 5b bd 00 01 02 03 04 05 06 07
       08 09 0a 0b 7f d5 ff f7 2b 61 98 57 d4 2b 81 e1
       ff fb ff f7 ff fe 63 bf 34 ff 8e f5")
}

/// DH-P2P.md §11.10: the online/p2psrv answer.
const US_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nCSeq: 2\r\nContent-Length: 39\r\n\r\n<body><US>198.51.100.5:8800</US></body>";

/// A cloud request with a DevAuth (DH-P2P.md §11.5 body), to check redaction.
fn devauth_request() -> Vec<u8> {
    let mut bytes =
        b"DHPOST /device/ABC123456789XYZ/p2p-channel HTTP/1.1\r\nCSeq: 5\r\n\r\n".to_vec();
    bytes.extend_from_slice(b"<body><CreateDate>1700000000</CreateDate><DevAuth>G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY/bjI=</DevAuth></body>");
    bytes
}

/// A PTCP header cut short: malformed.
fn malformed_ptcp() -> Vec<u8> {
    h("50544350 00000000 000000")
}

const T0: u64 = 1_700_000_000;

/// The reference vectors as one session capture, in this order:
/// 1 cloud reply, 2 punch, 3 SYN, 4 BIND, 5 CONN, 6 DATA, 7 unknown UDP,
/// 8 malformed PTCP, 9 cloud request with DevAuth.
fn session_capture() -> Vec<u8> {
    let mut w = UdpPcapWriter::new(Vec::new()).unwrap();
    let at = |micros: u64| Duration::from_micros(T0 * 1_000_000 + micros);
    w.write_udp(at(0), CLOUD, CLIENT, US_REPLY).unwrap();
    w.write_udp(at(3120), CLIENT, DEVICE, &punch_request())
        .unwrap();
    w.write_udp(at(10_000), CLIENT, DEVICE, &syn_a1()).unwrap();
    w.write_udp(at(20_000), CLIENT, DEVICE, &bind_d8()).unwrap();
    w.write_udp(at(30_000), DEVICE, CLIENT, &conn_d10())
        .unwrap();
    w.write_udp(at(1_500_000), CLIENT, DEVICE, &data_d12())
        .unwrap();
    w.write_udp(at(1_600_000), CLIENT, DEVICE, b"\x01\x02hello")
        .unwrap();
    w.write_udp(at(1_700_000), DEVICE, CLIENT, &malformed_ptcp())
        .unwrap();
    w.write_udp(at(2_000_000), CLIENT, CLOUD, &devauth_request())
        .unwrap();
    w.into_inner()
}

fn write_capture(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = common::scratch_dir(&format!("decode_cli_{name}"));
    let path = dir.join(format!("{name}.pcap"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn decode(args: &[&str], file: &Path) -> Output {
    common::dhp2p()
        .arg("decode")
        .args(args)
        .arg(file)
        .output()
        .expect("run dhp2p decode")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn summary_lines_for_every_kind() {
    let file = write_capture("summary", &session_capture());
    let out = decode(&[], &file);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert_eq!(
        lines[0],
        "    1 0.000000 198.51.100.5:8800 → 192.0.2.10:50000 CLOUD 200 OK CSeq=2 US=198.51.100.5:8800"
    );
    assert!(
        lines[1].starts_with(
            "    2 0.003120 192.0.2.10:50000 → 203.0.113.10:40000 PUNCH Binding Request"
        ),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "    3 0.010000 192.0.2.10:50000 → 203.0.113.10:40000 PTCP sent=0 recv=0 pid=0x0002ffff lmid=0 rmid=0 SYN"
    );
    assert_eq!(
        lines[3],
        "    4 0.020000 192.0.2.10:50000 → 203.0.113.10:40000 PTCP sent=44 recv=16 pid=0x0000fffd lmid=3 rmid=4099 BIND realm=0x0a0b0c0d 127.0.0.1:554"
    );
    assert!(
        lines[4].ends_with("STATUS realm=0x0a0b0c0d CONN"),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].starts_with("    6 1.500000 192.0.2.10:50000 → 203.0.113.10:40000 PTCP "),
        "{}",
        lines[5]
    );
    assert!(
        lines[5].ends_with("DATA realm=0x0a0b0c0d len=51"),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].contains(" UDP 7 bytes, not PTCP, cloud or punch"),
        "{}",
        lines[6]
    );
    assert!(
        lines[7].contains(" PTCP [malformed] ") && lines[7].contains("offset"),
        "{}",
        lines[7]
    );
    assert_eq!(
        lines[8],
        "    9 2.000000 192.0.2.10:50000 → 198.51.100.5:8800 CLOUD DHPOST /device/ABC123456789XYZ/p2p-channel CSeq=5"
    );
    // The counts line goes to stderr.
    let err = stderr(&out);
    assert!(
        err.contains("9 frames, 9 UDP datagrams (PTCP 5, CLOUD 2, PUNCH 1, other UDP 1)"),
        "{err}"
    );
    assert!(err.contains("1 malformed"), "{err}");
}

#[test]
fn quiet_leaves_stderr_empty() {
    let file = write_capture("quiet", &session_capture());
    let out = decode(&["-q"], &file);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out).lines().count(), 9);
}

#[test]
fn tree_follows_each_summary_line() {
    let file = write_capture("tree", &session_capture());
    let out = decode(&["-V", "--kind", "ptcp", "--realm", "0x0a0b0c0d"], &file);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.is_empty()).collect();
    assert_eq!(blocks.len(), 3, "{text}");
    let bind: Vec<&str> = blocks[0].lines().collect();
    assert!(bind[0].starts_with("    4 0.020000 "));
    assert_eq!(bind[1], "Phony TCP (Dahua P2P)");
    assert!(bind.contains(&"    Bytes Sent: 44"));
    assert!(bind.contains(&"        Realm: 0x0a0b0c0d"));
    assert!(bind.contains(&"        Target: 127.0.0.1:554"));
}

#[test]
fn json_is_one_object_per_datagram_with_the_documented_keys() {
    let file = write_capture("json", &session_capture());
    let out = decode(&["--json"], &file);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let objects: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert_eq!(objects.len(), 9);
    for (i, object) in objects.iter().enumerate() {
        for key in [
            "number",
            "time",
            "time_relative",
            "src",
            "dst",
            "session",
            "kind",
            "summary",
            "length",
        ] {
            assert!(
                object.get(key).is_some(),
                "object {i} lacks {key}: {object}"
            );
        }
        assert_eq!(object["number"], i as u64 + 1);
    }
    let bind = &objects[3];
    assert_eq!(bind["kind"], "ptcp");
    assert_eq!(bind["src"], "192.0.2.10:50000");
    assert_eq!(bind["dst"], "203.0.113.10:40000");
    assert_eq!(bind["session"], "192.0.2.10:50000 <-> 203.0.113.10:40000");
    assert_eq!(bind["time"].as_f64(), Some(T0 as f64 + 0.02));
    assert_eq!(bind["time_relative"].as_f64(), Some(0.02));
    assert_eq!(bind["length"], 44);
    assert_eq!(bind["ptcp"]["body"]["type"], "BIND");
    assert_eq!(bind["ptcp"]["body"]["realm"], 0x0a0b_0c0d);
    assert_eq!(bind["ptcp"]["body"]["port"], 554);
    assert_eq!(objects[0]["kind"], "cloud");
    assert_eq!(objects[1]["kind"], "punch");
    assert_eq!(objects[6]["kind"], "unknown");
    assert!(objects[7]["error"]
        .as_str()
        .is_some_and(|e| e.contains("offset")));
    // Secrets are redacted by default.
    assert!(!text.contains("G4lqyodMoJKlHsUMNKh15XBFBqjVZX3d1wuIrVY"));
    assert!(text.contains("<redacted>"));
}

#[test]
fn hex_dump_masks_secrets_unless_asked() {
    let file = write_capture("hex", &session_capture());
    let out = decode(&["--hex", "--kind", "cloud"], &file);
    let text = stdout(&out);
    assert!(
        text.contains("0000  48 54 54 50 2f 31 2e 31 20 32 30 30 20 4f 4b 0d  |HTTP/1.1 200 OK.|")
    );
    assert!(!text.contains("G4lq"), "{text}");
    // The 44 DevAuth bytes show as `*` (0x2a), so offsets stay true.
    assert!(text.contains("2a 2a 2a 2a 2a 2a 2a 2a"), "{text}");
    assert!(text.matches('*').count() >= 44, "{text}");
    let out = decode(&["--hex", "--kind", "cloud", "--no-redact"], &file);
    assert!(stdout(&out).contains("G4lq"));
}

#[test]
fn filters_by_kind_realm_and_session() {
    let file = write_capture("filters", &session_capture());
    let numbers = |args: &[&str]| -> Vec<u64> {
        let out = decode(&[&["--json"], args].concat(), &file);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["number"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(numbers(&["--kind", "cloud"]), [1, 9]);
    assert_eq!(numbers(&["--kind", "punch", "--kind", "unknown"]), [2, 7]);
    assert_eq!(numbers(&["--realm", "0x0a0b0c0d"]), [4, 5, 6]);
    assert_eq!(numbers(&["--realm", "168496141"]), [4, 5, 6]);
    assert_eq!(numbers(&["--realm", "0x1"]), Vec::<u64>::new());
    assert_eq!(numbers(&["--session", "198.51.100.5:8800"]), [1, 9]);
    assert_eq!(
        numbers(&[
            "--session",
            "203.0.113.10:40000-192.0.2.10:50000",
            "--kind",
            "ptcp"
        ]),
        [3, 4, 5, 6, 8]
    );
}

#[test]
fn reads_a_stream_from_stdin() {
    let mut child = common::dhp2p()
        .args(["decode", "-", "--kind", "ptcp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = session_capture();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in bytes.chunks(37) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().all(|l| l.contains(" PTCP ")));
    assert!(stderr(&out).contains("stdin"));
}

#[test]
fn damaged_file_decodes_up_to_the_damage_and_exits_1() {
    let mut bytes = session_capture();
    let full_len = bytes.len();
    bytes.truncate(full_len - 20);
    let file = write_capture("damaged", &bytes);
    let out = decode(&[], &file);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).lines().count(), 8);
    let err = stderr(&out);
    let last_record_at = full_len - (16 + 42 + devauth_request().len());
    assert!(
        err.contains(&format!(
            "damaged at byte offset {last_record_at} (frame 9)"
        )),
        "{err}"
    );
    // Even with -q the damage is reported.
    let out = decode(&["-q"], &file);
    assert!(stderr(&out).contains("damaged at byte offset"));
}

#[test]
fn not_a_capture_or_missing_exits_4() {
    let dir = common::scratch_dir("decode_cli_not_capture");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "these are notes, not packets\n").unwrap();
    let out = decode(&[], &text);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap or pcapng capture"),
        "{err}"
    );
    let out = decode(&[], &dir.join("missing.pcap"));
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("cannot open"), "{}", stderr(&out));
}

#[test]
fn capture_without_dahua_datagrams_exits_1() {
    let mut w = UdpPcapWriter::new(Vec::new()).unwrap();
    w.write_udp(Duration::from_secs(T0), CLIENT, DEVICE, b"\x00dns?")
        .unwrap();
    let file = write_capture("no_dahua", &w.into_inner());
    let out = decode(&[], &file);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(
        stderr(&out).contains("no Dahua P2P datagram"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = common::dhp2p()
        .args(["decode", "--realm", "nope", "x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = common::dhp2p()
        .args(["decode", "--json", "-V", "x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let out = common::dhp2p().args(["decode", "--help"]).output().unwrap();
    let help = stdout(&out);
    assert!(help.contains("Exit codes:"));
    assert!(help.contains("tcpdump -i eth0 -w - udp | dhp2p decode -"));
}

#[test]
fn follow_writes_the_realm_bytes_to_stdout_or_a_file() {
    let file = write_capture("follow", &session_capture());
    let options = b"OPTIONS rtsp://127.0.0.1:554/ RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    let out = decode(
        &["--follow", "0x0a0b0c0d", "--direction", "to-device"],
        &file,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, options);
    let target = file.with_extension("bin");
    let target_arg = target.to_str().unwrap();
    let out = decode(
        &[
            "--follow",
            "0x0a0b0c0d",
            "--direction",
            "to-device",
            "-o",
            target_arg,
        ],
        &file,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&target).unwrap(), options);
    // The device sent nothing on this realm.
    let out = decode(&["--follow", "168496141"], &file);
    assert!(out.stdout.is_empty());
    // A realm that is not in the capture.
    let out = decode(&["--follow", "0x1"], &file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in the capture"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stats_prints_a_report_instead_of_records() {
    let file = write_capture("stats", &session_capture());
    let out = decode(&["--stats"], &file);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("192.0.2.10:50000 <-> 203.0.113.10:40000"),
        "{text}"
    );
    assert!(!text.contains(" → "), "no record lines: {text}");
    let out = decode(&["--stats", "--json"], &file);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    let report: Value = serde_json::from_str(&text).expect("one JSON object");
    assert!(report.is_object());
}
