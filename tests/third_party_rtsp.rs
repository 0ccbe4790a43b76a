//! A real third-party RTSP server (gst-rtsp-server via
//! `tools/gst-rtsp-server.py`) on its own and behind
//! `dhp2p emulate-device --service 554=HOST:PORT`, read by ffprobe/ffmpeg: the
//! fixtures the tunnel tests build on, checked before anything relies on them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::media::{
    ffprobe_command, ffprobe_stream, frame_hashes, framemd5, ready_field, rtsp_url,
    run_with_timeout, Background, GstRtspServer, StreamInfo,
};

/// What `tools/gst-rtsp-server.py` serves.
fn gst_stream() -> StreamInfo {
    StreamInfo::h264(320, 240, "15/1")
}

#[test]
fn gst_server_serves_h264_320x240_at_15fps_over_tcp_at_the_dahua_url() {
    let server = GstRtspServer::start();
    let url = server.url(None);
    assert!(
        url.ends_with("/cam/realmonitor?channel=1&subtype=0"),
        "{url}"
    );
    // Two clients one after the other: the shared pipeline serves both.
    assert_eq!(ffprobe_stream(&url), gst_stream(), "first ffprobe");
    assert_eq!(ffprobe_stream(&url), gst_stream(), "second ffprobe");
    // ffmpeg decodes frames (interleaved TCP), not only the SDP.
    let hashes = framemd5(["-rtsp_transport", "tcp", "-i", &url, "-frames:v", "10"]);
    assert_eq!(hashes.len(), 10, "{hashes:?}");
    assert!(hashes.iter().all(|h| h.len() == 32), "{hashes:?}");
}

#[test]
fn gst_server_with_digest_auth_plays_for_the_user_and_refuses_others() {
    let server = GstRtspServer::start_with(&["--user", "viewer", "--password", "pw-1"]);
    assert_eq!(
        ffprobe_stream(&server.url(Some(("viewer", "pw-1")))),
        gst_stream()
    );
    for url in [server.url(Some(("viewer", "wrong"))), server.url(None)] {
        let out = run_with_timeout(&mut ffprobe_command(&url), 30);
        assert!(!out.status.success(), "{url} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("401 Unauthorized"), "{url}: {stderr}");
    }
}

#[test]
fn emulator_service_forwarding_reaches_the_gst_server() {
    let server = GstRtspServer::start();
    let mut emulator = Background::spawn(
        common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0"])
            .args(["--service", &format!("554={}", server.addr)])
            .args(["--expose", "554=127.0.0.1:0"]),
    );
    let ready = emulator.next_line(Duration::from_secs(20));
    assert!(ready.starts_with("ready cloud=127.0.0.1:"), "{ready}");
    let svc = ready_field(&ready, "svc554");
    assert_ne!(svc, server.addr.to_string(), "a listener of the emulator");
    // The emulator's own clip is 640x360 at 25 fps: these answers can only
    // come from gst-rtsp-server.
    let url = rtsp_url(&svc, None);
    assert_eq!(ffprobe_stream(&url), gst_stream(), "first ffprobe");
    assert_eq!(ffprobe_stream(&url), gst_stream(), "second ffprobe");
    let (status, stderr) = emulator.interrupt();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(stderr.contains("\"datagrams_in\""), "{stderr}");
    assert!(
        server.stderr().contains("serving /cam/realmonitor"),
        "{}",
        server.stderr()
    );
}

// ---------------------------------------------------------------------------
// the helpers themselves

#[test]
#[should_panic(expected = "still running after 1 s; killed")]
fn run_with_timeout_kills_and_fails_a_hung_command() {
    run_with_timeout(Command::new("sleep").arg("30"), 1);
}

#[test]
fn frame_hashes_take_the_last_column_of_frame_lines() {
    let output = b"#format: frame checksums\n#version: 2\n#tb 0: 1/15\n\
        #stream#, dts,        pts, duration,     size, hash\n\
        0,          0,          0,        1,   115200, 0123456789abcdef0123456789abcdef\n\
        0,          1,          1,        1,   115200, fedcba9876543210fedcba9876543210\n\n";
    assert_eq!(
        frame_hashes(output),
        [
            "0123456789abcdef0123456789abcdef",
            "fedcba9876543210fedcba9876543210"
        ]
    );
}

#[test]
fn ready_field_finds_exact_keys_only() {
    let line = "ready cloud=127.0.0.1:8800 serial=A,B svc554=127.0.0.1:9 svc5540=127.0.0.1:10";
    assert_eq!(ready_field(line, "svc554"), "127.0.0.1:9");
    assert_eq!(ready_field(line, "svc5540"), "127.0.0.1:10");
    assert_eq!(ready_field(line, "cloud"), "127.0.0.1:8800");
    let missing = std::panic::catch_unwind(|| ready_field(line, "relay"));
    assert!(missing.is_err());
}

#[test]
fn background_interrupt_returns_status_and_stderr() {
    let mut child = Background::spawn(Command::new("sh").args([
        "-c",
        "trap 'echo bye >&2; exit 0' INT; echo noise; echo 'ready x=1'; \
         while :; do sleep 0.05; done",
    ]));
    assert_eq!(
        child.wait_line("ready ", Duration::from_secs(10)),
        "ready x=1"
    );
    let (status, stderr) = child.interrupt();
    assert!(status.success(), "{status}");
    assert_eq!(stderr, "bye\n");
}
