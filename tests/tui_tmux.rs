//! `dhp2p inspect` as users run it: the real binary in a real terminal
//! (tmux), keys sent with `send-keys`, the screen read with `capture-pane`.
//! (1) Following the emulator's `--tap` while a tunnel streams RTSP to
//! ffprobe/ffmpeg: realms appear and counters advance. (2) Opening a
//! capture file (and the same capture on stdin) and quitting on `q`.
//! Every wait is bounded; the tmux server is private and killed on drop.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::media::{framemd5, ready_field, rtsp_url, Background};

/// These tests run real-time peers; one at a time keeps them predictable.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SN: &str = "DEMO00000000001";

/// What the pane's shell prints before the inspector's exit status.
const EXIT_MARK: &str = "inspector-exit=";

/// A private tmux server with one window running a command, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a `width`x`height` pane.
    /// The shell prints its exit status after it and keeps the pane open.
    fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        common::require_program("tmux", "tmux");
        let tmux = Tmux {
            socket: format!("dhp2p-{name}-{}", std::process::id()),
        };
        let _ = tmux.run(&["kill-server"]);
        tmux.ok(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sleep 600",
        ]);
        let command = format!("{command}; echo {EXIT_MARK}$?; sleep 600");
        tmux.ok(&["respawn-pane", "-k", "-t", "t", &command]);
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends keys as `tmux send-keys` names them (`q`, `Up`, `End`, `C-c`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.ok(&args);
    }

    fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen once `ready` holds for it; fails with the last screen
    /// after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("{what}: not on screen within {timeout:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the command to exit; returns its exit status, which the
    /// shell prints after it (tmux's own pane status is not always
    /// collected in time to be read).
    fn wait_exit(&self, timeout: Duration) -> String {
        let screen = self.wait_for("the exit status", timeout, |s| s.contains(EXIT_MARK));
        screen
            .lines()
            .find_map(|l| l.split(EXIT_MARK).nth(1))
            .map(|status| status.trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dhp2p")
}

/// The number after `label` on the status line (`PTCP 123`).
fn count(screen: &str, label: &str) -> u64 {
    let status = screen
        .lines()
        .find(|l| l.contains(" CLOUD ") && l.contains(" PTCP "))
        .unwrap_or_else(|| panic!("no status line in\n{screen}"));
    let mut words = status.split_whitespace();
    words.find(|w| *w == label);
    words
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label} count in {status:?}"))
}

/// Realm rows of the realms view: `0x…` in the first column.
fn realm_rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .filter(|l| l.starts_with("0x"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn follows_the_emulator_tap_while_a_tunnel_streams() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut emulator = Background::spawn(common::dhp2p().arg("emulate-device").args([
        "--cloud-port",
        "0",
        "--tap",
        "127.0.0.1:0",
    ]));
    let ready = emulator.wait_line("ready ", Duration::from_secs(20));
    let cloud = ready_field(&ready, "cloud");
    let tap = ready_field(&ready, "tap");

    let tmux = Tmux::start(
        "live",
        &format!("{} inspect --tap {tap}", binary()),
        120,
        40,
    );
    tmux.wait_for("connected to the tap", Duration::from_secs(15), |s| {
        s.contains(&format!("tap {tap} LIVE")) && s.contains(" FOLLOW ")
    });

    let mut tunnel = Background::spawn(
        common::dhp2p()
            .args(["tunnel", SN, "--cloud", &cloud, "--udp-bind", "127.0.0.1"])
            .args([
                "-p",
                "127.0.0.1:0:RTSP",
                "--username",
                "admin",
                "--password",
                "admin",
            ]),
    );
    let listening = tunnel.wait_line("listening ", Duration::from_secs(20));
    let addr = listening
        .split_whitespace()
        .nth(1)
        .expect("listening ADDR")
        .to_owned();
    tunnel.wait_line("ready ", Duration::from_secs(30));

    // The handshake is on screen: cloud, punch and PTCP packets counted.
    let screen = tmux.wait_for("the handshake", Duration::from_secs(15), |s| {
        count(s, "CLOUD") > 0 && count(s, "PTCP") > 0
    });
    assert!(screen.contains("CLOUD"), "{screen}");

    let url = rtsp_url(&addr, Some(("admin", "admin")));
    let frames = framemd5(["-rtsp_transport", "tcp", "-i", &url, "-frames:v", "10"]);
    assert_eq!(frames.len(), 10);

    tmux.keys(&["r"]);
    let screen = tmux.wait_for("a realm in the realms view", Duration::from_secs(15), |s| {
        s.contains(" Realms ") && !realm_rows(s).is_empty()
    });
    let first_realms = realm_rows(&screen).len();
    assert!(screen.contains(" Handshake timeline "), "{screen}");
    assert!(screen.contains("PTCP SYN"), "{screen}");
    let first_ptcp = count(&screen, "PTCP");
    let row = realm_rows(&screen).remove(0);
    // The realm went to the device's RTSP port and carried data both ways.
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert!(columns[1].ends_with(":554"), "{row}");
    let bytes_back: u64 = columns[4].trim_end_matches('k').parse::<f64>().unwrap() as u64;
    assert!(bytes_back > 0, "{row}");

    // A second player: a new realm, and the counters move on.
    let frames = framemd5(["-rtsp_transport", "tcp", "-i", &url, "-frames:v", "10"]);
    assert_eq!(frames.len(), 10);
    let screen = tmux.wait_for("counters advancing", Duration::from_secs(15), |s| {
        realm_rows(s).len() > first_realms && count(s, "PTCP") > first_ptcp
    });
    assert!(count(&screen, "PTCP") > first_ptcp);

    // Back to the list: following the newest packets; Up pauses it.
    tmux.keys(&["r"]);
    tmux.wait_for("the packet list", Duration::from_secs(5), |s| {
        s.contains(" Packets ")
    });
    tmux.keys(&["Up"]);
    tmux.wait_for("paused", Duration::from_secs(5), |s| s.contains(" PAUSED"));
    tmux.keys(&["End"]);
    tmux.wait_for("following again", Duration::from_secs(5), |s| {
        s.contains(" FOLLOW ")
    });

    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), "0");
    let (status, stderr) = tunnel.interrupt();
    assert!(status.success(), "tunnel: {stderr}");
    drop(emulator);
}

/// Opens `command`'s inspector on captures/direct.pcap, checks the first
/// screen and quits with `q`.
fn open_direct_capture_and_quit(name: &str, command: &str, source: &str, live: bool) {
    let tmux = Tmux::start(name, command, 100, 30);
    let mut screen = tmux.wait_for("the capture", Duration::from_secs(15), |s| {
        s.contains(&format!("{source} END")) && s.contains(" Fields ")
    });
    if live {
        // A stream follows its newest packet; Home goes to the first.
        assert!(screen.contains(" FOLLOW "), "{screen}");
        assert!(screen.contains("CLOUD 200 OK CSeq=65535"), "{screen}");
        tmux.keys(&["Home"]);
        screen = tmux.wait_for("the first packet", Duration::from_secs(5), |s| {
            s.contains(" PAUSED") && s.lines().any(|l| l.starts_with("1 "))
        });
    }
    // The capture starts with the cloud handshake, first packet selected.
    let first_row = screen
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no first packet in\n{screen}"));
    assert!(first_row.contains("CLOUD"), "{first_row}");
    assert!(
        screen.contains("Dahua HTTP (Easy4IPCloud signalling)"),
        "{screen}"
    );
    assert!(
        count(&screen, "PTCP") > 0 && count(&screen, "PUNCH") > 0,
        "{screen}"
    );
    // The help screen, then quit.
    tmux.keys(&["?"]);
    tmux.wait_for("help", Duration::from_secs(5), |s| s.contains(" Keys "));
    tmux.keys(&["Escape"]);
    tmux.wait_for("back", Duration::from_secs(5), |s| s.contains(" Packets "));
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), "0");
    // The terminal is restored: the alternate screen is gone.
    let after = tmux.screen();
    assert!(!after.contains(" Packets "), "{after}");
    assert!(after.contains(EXIT_MARK), "{after}");
}

#[test]
fn opens_a_capture_file_and_quits_on_q() {
    let capture = common::repo_root().join("captures/direct.pcap");
    open_direct_capture_and_quit(
        "file",
        &format!("{} inspect {}", binary(), capture.display()),
        "direct.pcap",
        false,
    );
}

#[test]
fn reads_a_capture_streamed_on_stdin() {
    let capture = common::repo_root().join("captures/direct.pcap");
    assert!(Path::new(&capture).is_file());
    open_direct_capture_and_quit(
        "stdin",
        &format!("cat {} | {} inspect -", capture.display(), binary()),
        "stdin",
        true,
    );
}

#[test]
fn refuses_to_start_without_a_terminal_or_with_a_missing_file() {
    let out = common::dhp2p()
        .args(["inspect", "captures/direct.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a terminal"));
    let tmux = Tmux::start(
        "missing",
        &format!("{} inspect /nonexistent.pcap", binary()),
        100,
        10,
    );
    let screen = tmux.wait_for("the error", Duration::from_secs(10), |s| {
        s.contains("cannot open /nonexistent.pcap")
    });
    assert!(screen.contains("dhp2p inspect:"), "{screen}");
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), "1");
}

#[test]
fn reconnects_when_the_tap_comes_back() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A free port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tap = format!("127.0.0.1:{port}");
    let tmux = Tmux::start(
        "reconnect",
        &format!("{} inspect --tap {tap}", binary()),
        100,
        30,
    );
    tmux.wait_for("retrying", Duration::from_secs(10), |s| {
        s.contains("RECONNECTING") && s.contains(&format!("cannot connect to tap {tap}"))
    });
    for _round in 0..2 {
        let mut emulator = Background::spawn(common::dhp2p().arg("emulate-device").args([
            "--cloud-port",
            "0",
            "--tap",
            &tap,
        ]));
        emulator.wait_line("ready ", Duration::from_secs(20));
        tmux.wait_for("connected", Duration::from_secs(10), |s| {
            s.contains(&format!("tap {tap} LIVE"))
        });
        // The tap goes away with the emulator: the inspector retries.
        drop(emulator);
        tmux.wait_for(
            "retrying after the tap left",
            Duration::from_secs(10),
            |s| s.contains("RECONNECTING"),
        );
    }
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(Duration::from_secs(10)), "0");
}
