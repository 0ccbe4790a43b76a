//! `dhp2p tunnel` as a new user and a careless client meet it (issue 11): a
//! closed stdout, connect/close churn, messages that say why a client was
//! closed, warnings for listeners other machines can reach, plain logs in
//! a pipe.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::media::{ready_field, Background};

const SN: &str = "DEMO00000000001";

fn emulator(args: &[&str]) -> (Background, String) {
    let mut emu = Background::spawn(
        common::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0", "--service", "7=echo"])
            .args(args),
    );
    let ready = emu.wait_line("ready ", Duration::from_secs(20));
    (emu, ready_field(&ready, "cloud"))
}

/// A tunnel to the emulator's echo service; waits for `ready`.
fn tunnel(cloud: &str, args: &[&str]) -> (Background, String) {
    let mut t = Background::spawn(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", cloud, "--udp-bind", "127.0.0.1"])
            .args(["-p", "127.0.0.1:0:7"])
            .args(args),
    );
    let listening = t.wait_line("listening ", Duration::from_secs(20));
    let addr = listening.split_whitespace().nth(1).unwrap().to_string();
    t.wait_line("ready ", Duration::from_secs(30));
    (t, addr)
}

/// Sends `text` through the tunnel and reads the echo.
fn echo(addr: &str, text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(text)?;
    let mut back = vec![0u8; text.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn sigint(child: &mut std::process::Child) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects a child's stderr in the background.
fn collect_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

#[test]
fn a_closed_stdout_neither_panics_nor_stops_the_tunnel() {
    // `dhp2p … | head -0`: both processes' stdout is a pipe nobody reads.
    let cloud_port = free_udp_port();
    let cloud = format!("127.0.0.1:{cloud_port}");
    let mut emu = common::dhp2p()
        .args(["emulate-device", "--cloud-port", &cloud_port.to_string()])
        .args(["--service", "7=echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(emu.stdout.take());
    let emu_err = collect_stderr(&mut emu);
    let port = free_tcp_port();
    let mut t = common::dhp2p()
        .args(["tunnel", SN, "--cloud", &cloud, "--udp-bind", "127.0.0.1"])
        .args(["-p", &format!("127.0.0.1:{port}:7")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(t.stdout.take());
    let t_err = collect_stderr(&mut t);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = 0;
    while served < 3 {
        assert!(
            Instant::now() < deadline,
            "the tunnel never served a client"
        );
        match echo(&addr, b"still here") {
            Ok(back) => {
                assert_eq!(back, b"still here");
                served += 1;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    assert!(sigint(&mut t).success());
    let _ = sigint(&mut emu);
    let (t_err, emu_err) = (t_err.join().unwrap(), emu_err.join().unwrap());
    for text in [&t_err, &emu_err] {
        assert!(!text.contains("panicked"), "{text}");
        assert!(!text.contains("failed printing"), "{text}");
    }
}

/// Device sessions the tunnel opened and has not closed, from its log.
fn live_sessions(stderr: &str) -> isize {
    let opened = stderr.matches(": ready, ").count() as isize;
    let closed = stderr.matches("; closing it (").count() as isize
        + stderr.matches(": lost the device").count() as isize;
    opened - closed
}

#[test]
fn connect_close_churn_leaves_no_device_session_or_fd_behind() {
    let (_emu, cloud) = emulator(&[]);
    let (t, addr) = tunnel(&cloud, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = open_fds(t.pid());
    assert_eq!(live_sessions(&t.stderr()), 1, "{}", t.stderr());
    // 300 health checks / port scans, several at once.
    let churn: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for _ in 0..75 {
                    drop(TcpStream::connect(&addr).unwrap());
                }
            })
        })
        .collect();
    for c in churn {
        c.join().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (fds, sessions) = (open_fds(t.pid()), live_sessions(&t.stderr()));
        if fds <= baseline && sessions == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "15 s after churn: {fds} fds (baseline {baseline}), {sessions} device sessions:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(echo(&addr, b"after churn").unwrap(), b"after churn");
    let (status, _) = t.interrupt();
    assert!(status.success());
}

/// Waits until the client's connection is closed by the tunnel.
fn wait_closed(s: &mut TcpStream, within: Duration) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
    }
}

#[test]
fn a_client_without_room_is_told_every_slot_is_busy() {
    let (_emu, cloud) = emulator(&[]);
    let (t, addr) = tunnel(
        &cloud,
        &[
            "--max-sessions",
            "1",
            "--max-realms",
            "1",
            "--hold-timeout",
            "2",
        ],
    );
    let mut first = TcpStream::connect(&addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    first.write_all(b"mine").unwrap();
    let mut back = [0u8; 4];
    first.read_exact(&mut back).unwrap();
    let mut second = TcpStream::connect(&addr).unwrap();
    second.write_all(b"me too").unwrap();
    let started = Instant::now();
    wait_closed(&mut second, Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let (status, stderr) = t.interrupt();
    assert!(status.success());
    assert!(
        stderr.contains("all 1 sessions × 1 realms are busy (raise --max-sessions"),
        "{stderr}"
    );
    assert!(!stderr.contains("no device session within"), "{stderr}");
    // A pipe gets plain text, no colour codes.
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in a pipe:\n{stderr}"
    );
}

#[test]
fn a_client_after_the_device_was_lost_is_told_so() {
    let (emu, cloud) = emulator(&[]);
    let (mut t, addr) = tunnel(
        &cloud,
        &[
            "--idle-timeout",
            "3",
            "--heartbeat",
            "1",
            "--hold-timeout",
            "2",
        ],
    );
    drop(emu);
    t.wait_line("lost ", Duration::from_secs(15));
    let mut client = TcpStream::connect(&addr).unwrap();
    client.write_all(b"anyone?").unwrap();
    wait_closed(&mut client, Duration::from_secs(10));
    let (_, stderr) = t.interrupt();
    assert!(
        stderr.contains("the device was lost (") && stderr.contains("no new session came up"),
        "{stderr}"
    );
}

#[test]
fn listeners_other_machines_can_reach_are_named_and_tap_0_prints_its_port() {
    let (_emu, cloud) = emulator(&[]);
    let mut t = Background::spawn(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", &cloud, "--udp-bind", "127.0.0.1"])
            .args(["-p", "0.0.0.0:0:7", "--tap", "0.0.0.0:0"]),
    );
    let tap = t.wait_line("tap ", Duration::from_secs(20));
    let port: u16 = tap.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port != 0 && tap.starts_with("tap 0.0.0.0:"), "{tap}");
    t.wait_line("ready ", Duration::from_secs(30));
    let (_, stderr) = t.interrupt();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("which other machines can reach"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings
        .iter()
        .any(|w| w.contains("authentication material")));
    assert!(warnings.iter().any(|w| w.contains("device's port 7")));

    // On loopback, nothing to warn about; a bare `--tap 0` is loopback.
    let mut t = Background::spawn(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", &cloud, "--udp-bind", "127.0.0.1"])
            .args(["-p", "127.0.0.1:0:7", "--tap", "0"]),
    );
    let tap = t.wait_line("tap ", Duration::from_secs(20));
    assert!(tap.starts_with("tap 127.0.0.1:"), "{tap}");
    let (_, stderr) = t.interrupt();
    assert!(
        !stderr.contains("which other machines can reach"),
        "{stderr}"
    );
}
