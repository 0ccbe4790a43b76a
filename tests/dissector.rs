//! `dh-p2p.lua` under a real tshark: a pcap built from the reference vectors
//! must decode with the same fields the codec reads.

mod common;

use std::net::SocketAddrV4;
use std::process::Command;
use std::time::Duration;

use dhp2p::capture::UdpPcapWriter;

const CLIENT: &str = "192.0.2.10:50000";
const DEVICE: &str = "203.0.113.10:40000";
const CLOUD: &str = "198.51.100.1:8800";

/// (src, dst, payload) of each frame, from DH-P2P.md §11.
fn frames() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let h = |s: &str| hex::decode(s.replace(' ', "")).unwrap();
    vec![
        // §11.2 DHGET /probe/p2psrv
        (CLIENT, CLOUD, b"DHGET /probe/p2psrv HTTP/1.1\r\nCSeq: 1\r\nAuthorization: WSSE profile=\"UsernameToken\"\r\nX-WSSE: UsernameToken Username=\"cba1b29e32cb17aa46b8ff9e73c7f40b\", PasswordDigest=\"JpL3CgK92AyJzUvBm3aSlB/MmNM=\", Nonce=\"123456789\", Created=\"2024-01-02T03:04:05Z\"\r\n\r\n".to_vec()),
        // §11.10 p2p-channel answer
        (CLOUD, CLIENT, b"HTTP/1.1 200 Server Nat Info!\r\nCSeq: 5\r\nContent-Length: 92\r\n\r\n<body><LocalAddr>192.168.1.200:22508</LocalAddr><PubAddr>203.0.113.10:40000</PubAddr></body>".to_vec()),
        // §11.6 binding request
        (CLIENT, DEVICE, h("fffeffe7deed5bbd000102030405060708090a0b7fd5fff72b619857d42b81e1fffbfff7fffe63bf34ff8ef5")),
        // §11.8 D8 BIND (len 0) and D10 CONN
        (CLIENT, DEVICE, h("505443500000002c000000100000fffd0000000300001003110000000a0b0c0d00000000 0000022a7f000001")),
        (DEVICE, CLIENT, h("5054435000000010000000400000fffe0000100500000003120000000a0b0c0d00000000434f4e4e")),
        // §11.8 D12 DATA carrying RTSP OPTIONS
        (CLIENT, DEVICE, h("5054435000000040000000200000fffc0000000500001005100000330a0b0c0d000000004f5054494f4e5320727473703a2f2f3132372e302e302e313a3535342f20525453502f312e300d0a435365713a20310d0a0d0a")),
        // §11.8 D13 empty ACK
        (DEVICE, CLIENT, h("5054435000000020000000 7f0000fffd0000100600000005")),
    ]
}

fn tshark_fields(pcap: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
    let tshark = common::require_program("tshark", "tshark");
    let lua = common::repo_root().join("dh-p2p.lua");
    let mut cmd = Command::new(tshark);
    cmd.arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .args(["-o", "udp.try_heuristic_first:TRUE", "-r"])
        .arg(pcap)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    assert!(!stderr.contains("Lua Error"), "dissector error: {stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn write_pcap(name: &str) -> std::path::PathBuf {
    let dir = common::scratch_dir(name);
    let path = dir.join("vectors.pcap");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = UdpPcapWriter::new(file).unwrap();
    for (i, (src, dst, payload)) in frames().into_iter().enumerate() {
        let src: SocketAddrV4 = src.parse().unwrap();
        let dst: SocketAddrV4 = dst.parse().unwrap();
        w.write_udp(
            Duration::from_millis(1_700_000_000_000 + i as u64 * 10),
            src,
            dst,
            &payload,
        )
        .unwrap();
    }
    assert_eq!(w.frames(), 7);
    path
}

#[test]
fn protocol_column_by_content_on_any_port() {
    let pcap = write_pcap("dissector-protocols");
    let rows = tshark_fields(&pcap, &["_ws.col.Protocol"]);
    let protos: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        protos,
        ["DHTTP", "DHTTP", "ISTUN", "PTCP", "PTCP", "PTCP", "PTCP"]
    );
}

#[test]
fn ptcp_header_and_bind_fields() {
    let pcap = write_pcap("dissector-ptcp");
    let rows = tshark_fields(
        &pcap,
        &[
            "ptcp.bytes_sent",
            "ptcp.bytes_recv",
            "ptcp.package_id",
            "ptcp.local_message_id",
            "ptcp.remote_message_id",
            "ptcp.type",
            "ptcp.realm",
            "ptcp.bind.port",
            "ptcp.bind.ip",
            "ptcp.status",
        ],
    );
    // frame 4: D8 BIND
    assert_eq!(
        rows[3],
        [
            "44",
            "16",
            "0x0000fffd",
            "3",
            "4099",
            "0x11",
            "0x0a0b0c0d",
            "554",
            "127.0.0.1",
            ""
        ]
    );
    // frame 5: D10 CONN
    assert_eq!(rows[4][5..], ["0x12", "0x0a0b0c0d", "", "", "CONN"]);
    // frame 7: empty ACK has no body fields
    assert_eq!(rows[6][..5], ["32", "127", "0x0000fffd", "4102", "5"]);
    assert_eq!(rows[6][5], "");
}

#[test]
fn data_starting_rtsp_goes_to_the_rtsp_dissector() {
    let pcap = write_pcap("dissector-rtsp");
    let rows = tshark_fields(&pcap, &["rtsp.method", "rtsp.url", "ptcp.stream_offset"]);
    assert_eq!(rows[5], ["OPTIONS", "rtsp://127.0.0.1:554/", "0"]);
}

#[test]
fn cloud_and_punch_fields() {
    let pcap = write_pcap("dissector-cloud");
    let rows = tshark_fields(
        &pcap,
        &[
            "dhttp.method",
            "dhttp.path",
            "dhttp.cseq",
            "dhttp.status",
            "dhttp.reason",
            "dhttp.body.PubAddr",
            "istun.type",
            "istun.identify",
            "istun.port",
            "istun.ip",
        ],
    );
    assert_eq!(rows[0][..3], ["DHGET", "/probe/p2psrv", "1"]);
    assert_eq!(
        rows[1][3..6],
        ["200", "Server Nat Info!", "203.0.113.10:40000"]
    );
    assert_eq!(
        rows[2][6..],
        ["0x0001", "d4 9e 67 a8 2b d4 7e 1e", "40000", "203.0.113.10"]
    );
}
