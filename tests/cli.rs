//! The real `dhp2p` binary: `dissect` output, stdin input and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn dhp2p(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhp2p"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dhp2p");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait for dhp2p")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

// DH-P2P.md §11.7 A1: client→agent SYN.
const SYN: &str = "50544350 00000000 00000000 0002ffff 00000000 00000000 00030100";

// DH-P2P.md §11.8 D8, as the reference prints it.
const BIND_DUMP: &str = "\
0000  50 54 43 50 00 00 00 2c 00 00 00 10 00 00 ff fd  |PTCP...,........|
0010  00 00 00 03 00 00 10 03 11 00 00 00 0a 0b 0c 0d  |................|
0020  00 00 00 00 00 00 02 2a 7f 00 00 01              |.......*....|";

// DH-P2P.md §11.6: Binding Request.
const PUNCH_REQUEST: &str = "ff:fe:ff:e7:de:ed:5b:bd:00:01:02:03:04:05:06:07:08:09:0a:0b:\
                             7f:d5:ff:f7:2b:61:98:57:d4:2b:81:e1:ff:fb:ff:f7:ff:fe:63:bf:34:ff:8e:f5";

#[test]
fn dissect_prints_a_summary_line() {
    let out = dhp2p(&["dissect", SYN], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "1 PTCP sent=0 recv=0 pid=0x0002ffff lmid=0 rmid=0 SYN\n"
    );
}

#[test]
fn dissect_accepts_a_pasted_hex_dump_and_colons() {
    let out = dhp2p(&["dissect", BIND_DUMP, PUNCH_REQUEST], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "1 PTCP sent=44 recv=16 pid=0x0000fffd lmid=3 rmid=4099 BIND realm=0x0a0b0c0d 127.0.0.1:554",
            "2 PUNCH Binding Request txid=fffefdfcfbfaf9f8f7f6f5f4 identify=d4 9e 67 a8 2b d4 7e 1e addr=203.0.113.10:40000",
        ]
    );
}

#[test]
fn dissect_json_is_ndjson_with_kind() {
    let out = dhp2p(
        &["dissect", "--json", SYN, PUNCH_REQUEST, "0x41 0x42"],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the unknown datagram sets exit 1"
    );
    let text = stdout(&out);
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["kind"], "ptcp");
    assert_eq!(objects[0]["n"], 1);
    assert_eq!(objects[0]["ptcp"]["body"]["type"], "SYN");
    assert_eq!(objects[1]["kind"], "punch");
    assert_eq!(objects[2]["kind"], "unknown");
    assert_eq!(objects[2]["length"], 2);
}

#[test]
fn dissect_tree_shows_realm() {
    let out = dhp2p(&["dissect", "-V", BIND_DUMP], None);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("\n        Realm: 0x0a0b0c0d\n"), "{text}");
    assert!(text.contains("    Bytes Sent: 44\n"));
}

#[test]
fn dissect_hex_prints_the_dump() {
    let out = dhp2p(&["dissect", "--hex", BIND_DUMP], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(BIND_DUMP), "{}", stdout(&out));
}

#[test]
fn dissect_reads_lines_and_dump_blocks_from_stdin() {
    let input = format!(
        "# DH-P2P.md §11.7 A1\n{SYN}\n\n## D8\n{BIND_DUMP}\n{}\n",
        "48545450 2f312e31 20323030 204f4b0d 0a435365 713a2031 0d0a0d0a"
    );
    let out = dhp2p(&["dissect"], Some(&input));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("1 PTCP ") && lines[0].ends_with(" SYN"));
    assert!(lines[1].starts_with("2 PTCP ") && lines[1].contains("BIND"));
    assert_eq!(lines[2], "3 CLOUD 200 OK CSeq=1");
    // `-` reads stdin too.
    let out = dhp2p(&["dissect", "-"], Some(SYN));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("1 PTCP "));
}

#[test]
fn bad_hex_exits_3_naming_argument_and_character() {
    let out = dhp2p(&["dissect", SYN, "50 54 4g"], None);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("argument 2"), "{err}");
    assert!(err.contains("'g'") && err.contains("column 8"), "{err}");
    // The good argument is still dissected.
    assert!(stdout(&out).starts_with("1 PTCP "));

    let out = dhp2p(&["dissect", "505"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("odd number of hex digits"));

    let out = dhp2p(&["dissect"], Some(&format!("{SYN}\nzz\n")));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("stdin line 2"));
}

#[test]
fn malformed_datagram_exits_1() {
    // PTCP magic and 3 bytes.
    let out = dhp2p(&["dissect", "50544350000000"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("1 PTCP [malformed] "), "{text}");
    assert!(stderr(&out).contains("malformed PTCP"));
    // -q keeps stderr quiet; the exit code stays.
    let out = dhp2p(&["-q", "dissect", "50544350000000"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "");
}

#[test]
fn devauth_is_redacted_unless_asked() {
    let request = "DHPOST /device/X/p2p-channel HTTP/1.1\r\nCSeq: 5\r\n\r\n<body><DevAuth>SECRETVALUE=</DevAuth></body>";
    let hex_text = hex::encode(request);
    let out = dhp2p(&["dissect", "-V", "--hex", &hex_text], None);
    let text = stdout(&out);
    assert!(text.contains("DevAuth: <redacted>"), "{text}");
    assert!(!text.contains("SECRETVALUE") && !text.contains("SECRETVA"));
    let out = dhp2p(&["dissect", "-V", "--no-redact", &hex_text], None);
    assert!(stdout(&out).contains("DevAuth: SECRETVALUE="));
}

#[test]
fn help_mentions_examples_and_exit_codes() {
    let out = dhp2p(&["dissect", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("Examples:"), "{text}");
    assert!(text.contains("Exit codes:"));
    assert!(text.contains("3  some input was not valid hex"));
    let out = dhp2p(&["--help"], None);
    assert!(stdout(&out).contains("Examples:"));
    let out = dhp2p(&["--version"], None);
    assert!(stdout(&out).starts_with("dhp2p "));
}

#[test]
fn usage_error_exits_2() {
    let out = dhp2p(&["dissect", "--no-such-flag"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = dhp2p(&["dissect", "--json", "-V", SYN], None);
    assert_eq!(out.status.code(), Some(2));
}

/// A tunnel command line that gets past validation and the password but
/// stops at once (its UDP address cannot be bound), sending nothing.
fn tunnel_that_stops(extra: &[&str]) -> Output {
    let mut args = vec![
        "tunnel",
        "ABC123456789XYZ",
        "--cloud",
        "127.0.0.1:9",
        "-p",
        "127.0.0.1:0:RTSP",
        "--udp-bind",
        "192.0.2.1",
    ];
    args.extend_from_slice(extra);
    dhp2p(&args, None)
}

#[test]
fn a_serial_with_a_line_end_or_empty_is_refused_before_anything_is_sent() {
    for serial in ["ABC\r\nHost: evil", "", "ABC/../123"] {
        let out = dhp2p(&["tunnel", serial, "--cloud", "127.0.0.1:9"], None);
        assert_eq!(out.status.code(), Some(2), "{serial:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("serial"), "{}", stderr(&out));
        assert!(stdout(&out).is_empty(), "nothing listens: {}", stdout(&out));
    }
}

#[test]
fn a_password_without_a_username_is_a_usage_error() {
    let out = dhp2p(&["tunnel", "ABC123", "--password", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--password needs --username"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_ipv6_or_unknown_cloud_is_a_usage_error() {
    let out = dhp2p(&["tunnel", "ABC123", "--cloud", "[::1]:8800"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("IPv4-only"), "{}", stderr(&out));
    let out = dhp2p(&["tunnel", "ABC123", "--cloud", "nowhere"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("easy4ip"), "{}", stderr(&out));
}

#[test]
fn a_fault_value_out_of_range_is_a_usage_error() {
    let out = dhp2p(
        &["emulate-device", "--cloud-port", "0", "--loss", "150"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "the emulator must not start");
    let out = dhp2p(&["demo", "--loss", "-1"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn an_idle_timeout_below_the_heartbeat_names_the_heartbeat() {
    let out = dhp2p(&["tunnel", "ABC123", "--idle-timeout", "3"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("heartbeat (5 s"), "{}", stderr(&out));
}

#[test]
fn a_password_on_the_command_line_is_warned_about() {
    let out = tunnel_that_stops(&["--username", "admin", "--password", "s3cret"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("visible to other users"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_password_file_is_read_and_warned_about_when_others_can_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("dhp2p-pwfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let path = file.to_str().unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = tunnel_that_stops(&["--username", "admin", "--password-file", path]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("readable by other users"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tunnel_that_stops(&["--username", "admin", "--password-file", path]);
    assert!(
        !stderr(&out).contains("readable by other users"),
        "{}",
        stderr(&out)
    );
    // No terminal and no file: not a silent empty password.
    let missing = dir.join("missing");
    let out = tunnel_that_stops(&["-u", "admin", "--password-file", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read the password file"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_garbage_on_stdin_exits_3_naming_the_line() {
    // Like `head -c 100000 /dev/urandom | dhp2p dissect`, reproducibly.
    let mut x: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..100_000)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhp2p"))
        .arg("dissect")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dhp2p");
    let mut input = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&garbage);
    });
    let out = child.wait_with_output().expect("wait for dhp2p");
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("stdin line 1: not text (byte 0x"),
        "the line is not named:\n{err}"
    );
    assert!(!err.contains("did not contain valid UTF-8"), "{err}");
}

/// Runs `dhp2p ARGS` with a terminal as stdin/stdout/stderr (util-linux
/// `script`), stdin at end of file at once.
fn on_a_terminal(args: &str) -> String {
    let script = "/usr/bin/script";
    assert!(
        std::path::Path::new(script).exists(),
        "script is missing: apt-get install bsdutils"
    );
    let command = format!("timeout 5 {} {args}", env!("CARGO_BIN_EXE_dhp2p"));
    let out = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn decode_and_dissect_on_a_terminal_say_what_they_wait_for() {
    let dissect = on_a_terminal("dissect");
    assert!(
        dissect.contains("reading hex datagrams from the terminal"),
        "{dissect}"
    );
    let decode = on_a_terminal("decode -");
    assert!(
        decode.contains("stdin, which is a terminal; give a FILE"),
        "{decode}"
    );
    // Not on a pipe: scripts get no noise.
    let piped = dhp2p(&["dissect"], Some(SYN));
    assert!(!stderr(&piped).contains("terminal"), "{}", stderr(&piped));
}
