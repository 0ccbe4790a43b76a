//! `dhp2p tunnel` and `dhp2p demo`: flags, password handling, exit codes.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tokio::sync::mpsc;

use crate::cmd::MachineOut;
use dhp2p::codec::cloud::Dialect;
use dhp2p::net::record::Recorder;
use dhp2p::net::{wait_for_signal, ListenAddr};
use dhp2p::session::handshake::HandshakeError;
use dhp2p::tunnel::config::{
    defaults, loopback_options, resolve_clouds, tunnel_options, CameraConfig, CloudChoice,
    CredentialSource, Mode, PeerWindowRule,
};
use dhp2p::tunnel::{self, PortSpec, RemotePort, Status, TunnelError, TunnelOptions};

/// Exit codes of `dhp2p tunnel` (also in `--help` and docs/TUNNEL.md).
pub mod exit {
    /// Stopped by SIGINT/SIGTERM after running.
    pub const OK: u8 = 0;
    /// Anything else: a port already in use, a network error.
    pub const ERROR: u8 = 1;
    /// Bad command line (clap), or a configuration that fails validation.
    pub const USAGE: u8 = 2;
    /// No cloud knows the serial, or the device is offline (404).
    pub const NOT_FOUND: u8 = 3;
    /// The device demands credentials, or refused the ones given (403).
    pub const AUTH: u8 = 4;
    /// The cloud could not be reached or refused this client (timeouts, 401).
    pub const CLOUD: u8 = 5;
    /// A password is needed but there is no terminal to ask on.
    pub const NO_PASSWORD: u8 = 6;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Hole punching first, the relay if that fails.
    Auto,
    /// Hole punching only.
    Direct,
    /// The relay only.
    Relay,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Direct => Mode::Direct,
            ModeArg::Relay => Mode::Relay,
        }
    }
}

/// `--peer-window`: what a device window of zero means to the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerWindowArg {
    /// No new DATA while the device's window (PTCP pid) reads zero.
    Pause,
    /// The window is not read, as in the original client.
    Ignore,
}

impl From<PeerWindowArg> for PeerWindowRule {
    fn from(a: PeerWindowArg) -> PeerWindowRule {
        match a {
            PeerWindowArg::Pause => PeerWindowRule::Pause,
            PeerWindowArg::Ignore => PeerWindowRule::Ignore,
        }
    }
}

const TUNNEL_AFTER_HELP: &str = "\
Examples:
  dhp2p tunnel ABC123456789XYZ
      RTSP on rtsp://127.0.0.1:1554/… (the device's own RTSP port behind it)
  dhp2p tunnel ABC123456789XYZ --username admin -p 1554:RTSP -p 8080:80
  DHP2P_PASSWORD=secret dhp2p tunnel ABC123456789XYZ --username admin --cloud dmss
  ffplay 'rtsp://admin:PASS@127.0.0.1:1554/cam/realmonitor?channel=1&subtype=0'

Every accepted TCP connection is its own realm; more device sessions open
when one is full. Listening ports stay open while the device is away, and
the tunnel reconnects by itself. Status lines go to stderr (-q, -v,
RUST_LOG, --json-log).

Exit codes:
  0  stopped by SIGINT/SIGTERM
  1  other error (a port in use, a network error)
  2  usage error
  3  the device is unknown to every cloud tried, or offline (404)
  4  the device requires authentication, or refused the credentials (403)
  5  the cloud could not be reached or refused this client (timeout, 401)
  6  a password is needed and there is no terminal to ask on
See docs/TUNNEL.md for go2rtc, Frigate and Home Assistant set-ups and troubleshooting.";

/// Flags of `dhp2p tunnel`.
#[derive(Debug, Clone, Args)]
#[command(after_help = TUNNEL_AFTER_HELP)]
pub struct TunnelArgs {
    /// Serial number of the camera or NVR (as printed on it or in the app).
    pub serial: String,
    /// Which cloud to ask: easy4ip (default), easy4ip-retired, amcrest, dmss,
    /// or HOST:PORT (IPv4). Unless one is given, a 404 makes dhp2p try the others.
    #[arg(long)]
    pub cloud: Option<CloudChoice>,
    /// Request dialect, overriding the cloud profile's (legacy DH*, sdk NF*).
    #[arg(long, value_parser = parse_dialect)]
    pub dialect: Option<Dialect>,
    /// Device user name, for devices that demand authentication.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Device password. Visible to other users in `ps`: prefer
    /// --password-file, DHP2P_PASSWORD or the prompt.
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Read the device password from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// [BIND_ADDR:]LOCAL_PORT:REMOTE_PORT, repeatable. REMOTE_PORT `RTSP`
    /// means the device's RTSP port. Default 127.0.0.1:1554:RTSP.
    #[arg(short = 'p', long = "port", value_name = "[ADDR:]LOCAL:REMOTE")]
    pub ports: Vec<PortSpec>,
    /// auto: hole punching, then the relay if that fails; direct; relay.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    /// Skip the sign exchange (relay lease → 0x17 → 0x19); some devices,
    /// like those set up by the DMSS app, do not need it.
    #[arg(long)]
    pub no_sign: bool,
    /// pause: send no new data while the device says its window is full
    /// (the PTCP pid reads zero; dhp2p's own reading of the field, see
    /// docs/PROTOCOL.md 5.2); ignore: do not read it, as the original client.
    #[arg(long, value_enum, default_value = "pause")]
    pub peer_window: PeerWindowArg,
    /// Realms one device session carries before another opens (8 is a guess).
    #[arg(long, default_value_t = defaults::MAX_REALMS)]
    pub max_realms: usize,
    /// Most device sessions at once.
    #[arg(long, default_value_t = defaults::MAX_SESSIONS)]
    pub max_sessions: usize,
    /// Seconds without any datagram from the device before the session is
    /// declared lost and rebuilt (longer than --heartbeat).
    #[arg(long, default_value_t = defaults::IDLE_TIMEOUT_SECS)]
    pub idle_timeout: u64,
    /// Seconds between our heartbeats (5, as the original; the SDK uses 10).
    #[arg(long, default_value_t = defaults::HEARTBEAT_SECS)]
    pub heartbeat: u64,
    /// Seconds a client that connects early may wait for the device.
    #[arg(long, default_value_t = defaults::HOLD_TIMEOUT_SECS)]
    pub hold_timeout: u64,
    /// Local address of the UDP sockets.
    #[arg(long, default_value = defaults::UDP_BIND)]
    pub udp_bind: IpAddr,
    /// Write the session's datagrams as pcap (contains authentication material).
    #[arg(long, value_name = "FILE.pcap")]
    pub record: Option<PathBuf>,
    /// Serve the same pcap stream live over TCP (a bare port means 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub tap: Option<ListenAddr>,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    s.parse()
}

/// The variable `dhp2p tunnel` reads the password from.
const PASSWORD_ENV: &str = "DHP2P_PASSWORD";

impl TunnelArgs {
    /// The camera these flags describe (not yet validated); `env` tells
    /// whether DHP2P_PASSWORD is set.
    pub fn camera(&self, env: impl Fn(&str) -> Option<String>) -> CameraConfig {
        let mut camera = CameraConfig::new(self.serial.clone());
        camera.username = self.username.clone();
        camera.password = self.password.clone();
        camera.password_file = self.password_file.clone();
        // An exported DHP2P_PASSWORD matters only with a user name.
        if camera.username.is_some()
            && camera.password.is_none()
            && camera.password_file.is_none()
            && env(PASSWORD_ENV).is_some()
        {
            camera.password_env = Some(PASSWORD_ENV.to_owned());
        }
        camera.cloud = self.cloud.clone().unwrap_or_default();
        camera.dialect = self.dialect;
        camera.mode = self.mode.into();
        if !self.ports.is_empty() {
            camera.ports = self.ports.clone();
        }
        camera.sign = !self.no_sign;
        camera.peer_window = self.peer_window.into();
        camera.max_realms = self.max_realms;
        camera.max_sessions = self.max_sessions;
        camera.idle_timeout = self.idle_timeout;
        camera.heartbeat = self.heartbeat;
        camera.hold_timeout = self.hold_timeout;
        camera.udp_bind = self.udp_bind;
        camera
    }
}

/// The password from the camera's source, or a prompt on a terminal.
fn password(camera: &CameraConfig) -> Result<Option<String>, u8> {
    let (Some(user), Some(source)) = (&camera.username, camera.credential_source()) else {
        return Ok(None);
    };
    if matches!(source, CredentialSource::Inline(_)) {
        tracing::warn!(
            "--password is visible to other users (ps); prefer --password-file or {PASSWORD_ENV}"
        );
    }
    match source.read(|k| std::env::var(k).ok()) {
        Ok(Some(p)) => return Ok(Some(p)),
        Ok(None) => {}
        Err(e) => {
            eprintln!("dhp2p: {e}");
            return Err(exit::ERROR);
        }
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "dhp2p: --username {user} needs a password: set {PASSWORD_ENV}, --password-file or --password (no terminal to ask on)"
        );
        return Err(exit::NO_PASSWORD);
    }
    match rpassword::prompt_password(format!("Password for {user}: ")) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            eprintln!("dhp2p: cannot read the password: {e}");
            Err(exit::NO_PASSWORD)
        }
    }
}

/// Builds the driver options for a validated camera.
pub async fn options(
    args: &TunnelArgs,
    camera: &CameraConfig,
    password: Option<String>,
) -> anyhow::Result<TunnelOptions> {
    let clouds = resolve_clouds(&camera.cloud, camera.dialect, |k| std::env::var(k).ok()).await?;
    let (recorder, tap) = Recorder::start(args.record.clone(), args.tap.map(|t| t.0)).await?;
    if recorder.is_enabled() {
        tracing::warn!("captures contain authentication material: share them with care");
    }
    if let Some(tap) = tap {
        tracing::info!("live capture on tcp://{tap}");
        // The bound port, for `--tap 0` (scripts wait for it).
        MachineOut::default().line(&format!("tap {tap}"));
    }
    Ok(tunnel_options(camera, password, clouds, recorder))
}

/// The exit code for a tunnel that stopped with an error.
pub fn exit_code(err: &TunnelError) -> u8 {
    match err {
        TunnelError::Handshake(h) => match h {
            HandshakeError::NotFound { .. } => exit::NOT_FOUND,
            HandshakeError::AuthRequired { .. } | HandshakeError::BadCredentials { .. } => {
                exit::AUTH
            }
            HandshakeError::PunchFailed { .. }
            | HandshakeError::NoAuthReply { .. }
            | HandshakeError::RelayUnavailable { .. }
            | HandshakeError::Protocol { .. } => exit::ERROR,
            _ => exit::CLOUD,
        },
        _ => exit::ERROR,
    }
}

/// `dhp2p tunnel`: runs until SIGINT/SIGTERM. Returns the exit code.
pub async fn run(args: TunnelArgs) -> u8 {
    let camera = args.camera(|k| std::env::var(k).ok());
    if let Err(e) = camera.validate() {
        eprintln!("dhp2p: {e}");
        return exit::USAGE;
    }
    let password = match password(&camera) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let opts = match options(&args, &camera, password).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dhp2p: {e:#}");
            return exit::ERROR;
        }
    };
    let recorder = opts.recorder.clone();
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    // Machine-readable lines on stdout (scripts and tests wait for them);
    // the human-readable story is on stderr.
    let printer = tokio::spawn(async move {
        let mut out = MachineOut::default();
        while let Some(s) = status_rx.recv().await {
            let line = match s {
                Status::Listening(addrs) => addrs
                    .iter()
                    .map(|a| format!("listening {a}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Status::Ready { path, remote_rtsp } => {
                    format!("ready {path} rtsp-port={remote_rtsp}")
                }
                Status::Lost { reason } => format!("lost {reason}"),
            };
            out.line(&line);
        }
    });
    let result = tunnel::run(opts, wait_for_signal(), status_tx).await;
    printer.abort();
    let _ = recorder.finish().await;
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("dhp2p: {e}");
            exit_code(&e)
        }
    }
}

const DEMO_AFTER_HELP: &str = "\
Runs the emulator (a fake cloud and camera) and a tunnel to it in one
process, on free loopback ports. Once the tunnel is up it prints the RTSP
URL alone on one stdout line, then commands to play it:

  rtsp://admin:admin@127.0.0.1:PORT/cam/realmonitor?channel=1&subtype=0
  ffplay -rtsp_transport tcp \"rtsp://…\"
  vlc \"rtsp://…\"

Stop it with Ctrl-C.";

/// Flags of `dhp2p demo`.
#[derive(Debug, Clone, Args)]
#[command(after_help = DEMO_AFTER_HELP)]
pub struct DemoArgs {
    /// Local RTSP port of the tunnel (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// auto, direct or relay (the emulator allows all three).
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    /// Percent of PTCP datagrams the emulated network loses (each way).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
}

/// `dhp2p demo`: emulator + tunnel, prints the URL, runs until a signal.
pub async fn demo(args: DemoArgs) -> u8 {
    use dhp2p::emulator::driver::{self as emu_driver, DriverOptions};
    use dhp2p::emulator::EmulatorConfig;
    use dhp2p::net::faults::FaultConfig;
    let config = EmulatorConfig::default();
    let serial = config.serials[0].clone();
    let (user, pass) = (config.username.clone(), config.password.clone());
    let faults = FaultConfig {
        loss_pct: args.loss,
        ..FaultConfig::none()
    };
    if let Err(e) = faults.validate() {
        eprintln!("dhp2p: {e}");
        return exit::USAGE;
    }
    let emu = match emu_driver::start(
        config,
        DriverOptions {
            faults,
            ..DriverOptions::default()
        },
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dhp2p: cannot start the emulator: {e}");
            return exit::ERROR;
        }
    };
    let mut opts = match loopback_options(
        emu.addrs.cloud,
        &serial,
        Some((user.clone(), pass.clone())),
        args.port,
        RemotePort::Rtsp,
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dhp2p: {e}");
            return exit::ERROR;
        }
    };
    opts.target.mode = Mode::from(args.mode).into();
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut out = MachineOut::default();
        let mut port = None;
        let mut printed = false;
        while let Some(s) = status_rx.recv().await {
            match s {
                Status::Listening(addrs) => port = addrs.first().map(|a| a.port()),
                Status::Ready { .. } if !printed => {
                    let Some(port) = port else { continue };
                    let url = format!(
                        "rtsp://{user}:{pass}@127.0.0.1:{port}/cam/realmonitor?channel=1&subtype=0"
                    );
                    out.line(&url);
                    out.line(&format!("ffplay -rtsp_transport tcp \"{url}\""));
                    out.line(&format!("vlc \"{url}\""));
                    printed = true;
                }
                _ => {}
            }
        }
    });
    let result = tunnel::run(opts, wait_for_signal(), status_tx).await;
    printer.abort();
    emu.stop().await;
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("dhp2p: {e}");
            exit_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cmd::{Cli, Command};
    use dhp2p::tunnel::config::cameras_from_toml;

    fn tunnel_args(flags: &[&str]) -> TunnelArgs {
        let argv = ["dhp2p", "tunnel"].iter().chain(flags);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Tunnel(args)) => *args,
            other => panic!("not a tunnel command line: {other:?}"),
        }
    }

    #[test]
    fn a_toml_camera_is_the_same_config_as_the_equivalent_flags() {
        let flags = tunnel_args(&[
            "ABC123456789XYZ",
            "--username",
            "admin",
            "--password-file",
            "/run/secrets/cam",
            "--cloud",
            "dolynk",
            "--mode",
            "relay",
            "-p",
            "1554:RTSP",
            "-p",
            "0.0.0.0:8080:80",
            "--no-sign",
            "--peer-window",
            "ignore",
            "--idle-timeout",
            "20",
            "--max-realms",
            "4",
        ])
        .camera(|_| None);
        let toml = r#"
            [defaults]
            username = "admin"
            idle_timeout = 20

            [[camera]]
            serial = "ABC123456789XYZ"
            password_file = "/run/secrets/cam"
            cloud = "dmss"
            mode = "relay"
            ports = ["127.0.0.1:1554:rtsp", "0.0.0.0:8080:80"]
            sign = false
            peer_window = "ignore"
            max_realms = 4
        "#;
        let from_file = cameras_from_toml(toml).unwrap();
        assert_eq!(from_file, vec![flags.clone()]);
        assert!(flags.validate().is_ok());
    }

    #[test]
    fn defaults_of_flags_and_file_agree() {
        let flags = tunnel_args(&["ABC123"]).camera(|_| None);
        let file = cameras_from_toml("[[camera]]\nserial = \"ABC123\"\n").unwrap();
        assert_eq!(file, vec![flags]);
    }

    #[test]
    fn dhp2p_password_in_the_environment_is_the_env_source() {
        let env = |k: &str| (k == PASSWORD_ENV).then(|| "pw".to_owned());
        let camera = tunnel_args(&["ABC123", "-u", "admin"]).camera(env);
        assert_eq!(
            camera.credential_source(),
            Some(CredentialSource::Env(PASSWORD_ENV.into()))
        );
        let camera = tunnel_args(&["ABC123", "-u", "admin"]).camera(|_| None);
        assert_eq!(camera.credential_source(), Some(CredentialSource::Prompt));
        // Exported but no user name: not a usage error, just unused.
        let camera = tunnel_args(&["ABC123"]).camera(env);
        assert_eq!(camera.credential_source(), None);
        assert!(camera.validate().is_ok());
    }
}
