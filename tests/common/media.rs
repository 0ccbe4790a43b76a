//! Real peers for the end-to-end tests: ffprobe/ffmpeg as RTSP clients,
//! gst-rtsp-server as an RTSP server nobody here wrote, and long-running
//! `dhp2p` processes. Every helper is bounded in time and kills what it
//! spawned, so a misbehaving peer fails a test instead of hanging the suite.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The path and query every Dahua client asks for; gst-rtsp-server matches
/// mount points on the path alone, so the same URL plays on both servers.
pub const DAHUA_PATH: &str = "/cam/realmonitor?channel=1&subtype=0";

/// The Debian packages `tools/gst-rtsp-server.py` needs (as `tools/test` lists them).
pub const GST_PACKAGES: &str = "python3-gi gir1.2-gst-rtsp-server-1.0 \
     gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
     gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp";

/// How long ffprobe/ffmpeg may take against a local server before the test fails.
const CLIENT_LIMIT_SECS: u64 = 60;

/// Drains a pipe on a thread so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Runs `cmd` (stdin closed, stdout and stderr collected); kills it and fails
/// the test, naming the command line and its stderr, if it is still running
/// after `secs` seconds.
pub fn run_with_timeout(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!("{cmd:?} still running after {secs} s; killed. stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// The one stream ffprobe reports for an RTSP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub r_frame_rate: String,
}

impl StreamInfo {
    /// The H.264 stream a test expects, for `assert_eq!`.
    pub fn h264(width: u32, height: u32, r_frame_rate: &str) -> StreamInfo {
        StreamInfo {
            codec: "h264".to_string(),
            width,
            height,
            r_frame_rate: r_frame_rate.to_string(),
        }
    }
}

/// `ffprobe -v error -rtsp_transport tcp -show_streams -of json URL`, not yet run.
pub fn ffprobe_command(url: &str) -> Command {
    let mut cmd = Command::new(super::require_program("ffprobe", "ffmpeg"));
    cmd.args(["-v", "error", "-rtsp_transport", "tcp"])
        .args(["-show_streams", "-of", "json"])
        .arg(url);
    cmd
}

/// The single stream of an `ffprobe -show_streams -of json` run; fails the
/// test with ffprobe's stderr if it failed, and if it saw other than exactly
/// one stream (the servers under test offer one video track).
pub fn stream_info(out: &Output) -> StreamInfo {
    assert!(
        out.status.success(),
        "ffprobe failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let streams = json["streams"].as_array().expect("a streams array");
    assert_eq!(streams.len(), 1, "one video track: {json}");
    let video = &streams[0];
    let text = |key: &str| {
        video[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {video}"))
            .to_string()
    };
    let number = |key: &str| {
        video[key]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| panic!("no {key} in {video}"))
    };
    StreamInfo {
        codec: text("codec_name"),
        width: number("width"),
        height: number("height"),
        r_frame_rate: text("r_frame_rate"),
    }
}

/// What ffprobe sees at `url` over RTSP-over-TCP (interleaved); fails the
/// test with ffprobe's stderr on error.
pub fn ffprobe_stream(url: &str) -> StreamInfo {
    stream_info(&run_with_timeout(
        &mut ffprobe_command(url),
        CLIENT_LIMIT_SECS,
    ))
}

/// The `hash` column of every frame line of `-f framemd5` output.
pub fn frame_hashes(framemd5: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(framemd5)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// The per-frame MD5s of `ffmpeg -v error ARGS -f framemd5 -`, where `args`
/// are the input options, `-i INPUT` and any output options before the
/// muxer; fails the test with ffmpeg's stderr on error.
pub fn framemd5<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run_with_timeout(
        Command::new(super::require_program("ffmpeg", "ffmpeg"))
            .args(["-v", "error"])
            .args(args)
            .args(["-f", "framemd5", "-"]),
        CLIENT_LIMIT_SECS,
    );
    assert!(
        out.status.success(),
        "ffmpeg failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    frame_hashes(&out.stdout)
}

/// The value of `key=` in a `ready k=v k=v` line; fails the test if absent.
pub fn ready_field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

/// A long-running child (`dhp2p emulate-device`, `dhp2p tunnel`, the gst
/// server): stdout read line by line with timeouts, stderr collected, killed
/// on drop so a failing test leaves nothing behind.
pub struct Background {
    child: Option<Child>,
    command: String,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Background {
    /// Spawns `cmd` with stdin closed and stdout/stderr piped.
    pub fn spawn(cmd: &mut Command) -> Background {
        let command = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Background {
            child: Some(child),
            command,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next stdout line; fails the test, with stderr so far, if none
    /// comes within `timeout` or stdout closes first.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no line on stdout within {timeout:?}; stderr:\n{}",
                self.command,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                // The process is gone (or closed stdout): say how it ended.
                std::thread::sleep(Duration::from_millis(100));
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "{}: stdout closed (exit {status:?}); stderr:\n{}",
                    self.command,
                    self.stderr()
                )
            }
        }
    }

    /// The first stdout line starting with `prefix`, skipping others; fails
    /// the test if none comes within `timeout`.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => skipped.push(line),
                Err(e) => panic!(
                    "{}: no stdout line starting with {prefix:?} within {timeout:?} ({e}); \
                     other lines: {skipped:?}; stderr:\n{}",
                    self.command,
                    self.stderr()
                ),
            }
        }
    }

    /// SIGINT (as Ctrl-C), then the exit status and the whole stderr; fails
    /// the test if the process has not exited 10 s later.
    pub fn interrupt(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("child");
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{}: still running 10 s after SIGINT; killed. stderr:\n{}",
                    self.command,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tools/gst-rtsp-server.py` (gst-rtsp-server, live H.264 320x240 at
/// 15 fps on `/cam/realmonitor`) on a free loopback port; killed on drop.
pub struct GstRtspServer {
    pub addr: SocketAddr,
    process: Background,
}

impl GstRtspServer {
    /// Without authentication.
    pub fn start() -> GstRtspServer {
        GstRtspServer::start_with(&[])
    }

    /// With extra flags of the script, e.g. `["--user", "u", "--password", "p"]`.
    pub fn start_with(extra: &[&str]) -> GstRtspServer {
        let python = std::path::Path::new("/usr/bin/python3");
        assert!(
            python.is_file(),
            "/usr/bin/python3 is missing: the gst-rtsp-server tests need Debian's python3 \
             with GStreamer. Install the Debian packages python3 {GST_PACKAGES} \
             (apt-get install ...), or run tools/test, which installs them."
        );
        let process = Background::spawn(
            Command::new(python)
                .arg(super::repo_root().join("tools/gst-rtsp-server.py"))
                .args(["--address", "127.0.0.1", "--port", "0"])
                .args(extra),
        );
        let line = match process.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "tools/gst-rtsp-server.py printed no ready line within 20 s; stderr:\n{}",
                process.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                // Let the stderr reader catch the last words.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "tools/gst-rtsp-server.py exited before listening. If it cannot load \
                     GStreamer, install the Debian packages {GST_PACKAGES} (apt-get install \
                     ...), or run tools/test, which installs them. stderr:\n{}",
                    process.stderr()
                )
            }
        };
        let addr = line
            .strip_prefix("ready rtsp=")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        GstRtspServer { addr, process }
    }

    /// The Dahua-style URL the tests use, with `user:password@` when given.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        rtsp_url(self.addr, credentials)
    }

    /// Stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

/// `rtsp://[user:password@]ADDR/cam/realmonitor?channel=1&subtype=0`.
pub fn rtsp_url(addr: impl std::fmt::Display, credentials: Option<(&str, &str)>) -> String {
    match credentials {
        Some((user, password)) => format!("rtsp://{user}:{password}@{addr}{DAHUA_PATH}"),
        None => format!("rtsp://{addr}{DAHUA_PATH}"),
    }
}

/// `dhp2p emulate-device --cloud-port 0 ARGS…`, running; and its cloud
/// address from the ready line.
pub fn start_emulator(args: &[&str]) -> (Background, String) {
    let mut emu = Background::spawn(
        super::dhp2p()
            .arg("emulate-device")
            .args(["--cloud-port", "0"])
            .args(args),
    );
    let ready = emu.wait_line("ready ", Duration::from_secs(20));
    (emu, ready_field(&ready, "cloud"))
}

/// `dhp2p tunnel SERIAL --cloud CLOUD ARGS…` on loopback UDP, once it is
/// ready; and its first listening address.
pub fn start_tunnel(serial: &str, cloud: &str, args: &[&str]) -> (Background, String) {
    let mut t = Background::spawn(
        super::dhp2p()
            .args([
                "tunnel",
                serial,
                "--cloud",
                cloud,
                "--udp-bind",
                "127.0.0.1",
            ])
            .args(args),
    );
    let listening = t.wait_line("listening ", Duration::from_secs(20));
    let addr = listening
        .split_whitespace()
        .nth(1)
        .expect("an address on the listening line")
        .to_string();
    t.wait_line("ready ", Duration::from_secs(30));
    (t, addr)
}
