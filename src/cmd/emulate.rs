//! `dhp2p emulate-device`: flags, start-up line, shutdown report.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use dhp2p::emulator::config::{
    AuthPolicy, CloudDialect, DeviceSpec, EmulatorConfig, FleetFile, Mode, RefuseBind, Service,
};
use dhp2p::emulator::driver::{self, DriverOptions};
use dhp2p::emulator::report;
use dhp2p::net::faults::FaultConfig;
use dhp2p::net::record::Recorder;
use dhp2p::net::{wait_for_signal, ListenAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    None,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Direct,
    RelayOnly,
    Offline,
    /// Known to the cloud, away at its P2P server (404 at /probe/device).
    OfflineKnown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    Legacy,
    Sdk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RefuseArg {
    Silent,
    Disc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        self == OnOff::On
    }
}

/// `PORT=SPEC` pairs of `--service` and `--expose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap<T> {
    pub port: u16,
    pub value: T,
}

impl<T: FromStr<Err = String>> FromStr for PortMap<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (port, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected PORT=VALUE"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        Ok(PortMap {
            port,
            value: value.parse()?,
        })
    }
}

const AFTER_HELP: &str = "\
Examples:
  # Everything on loopback, cloud on UDP 8800, the demo device DEMO00000000001:
  dhp2p emulate-device
  # Any free ports; the ready line on stdout says which:
  dhp2p emulate-device --cloud-port 0 --serial ABC123 --serial DEF456
  # A device that demands authentication, over a lossy network, recorded:
  dhp2p emulate-device --auth required --loss 5 --reorder 5 --dup 2 --record emu.pcap
  # A fleet: devices that behave differently (docs/EMULATOR.md, \"Fleet\"):
  dhp2p emulate-device --cloud-port 0 --device CAM00000000001 --device CAM00000000002,mode=relay-only,loss=5
  # Reach the built-in RTSP service without the tunnel:
  dhp2p emulate-device --expose 554=127.0.0.1:8554
  ffprobe 'rtsp://admin:admin@127.0.0.1:8554/cam/realmonitor?channel=1&subtype=0'

Output: one line on stdout once every role listens, e.g.
  ready cloud=127.0.0.1:8800 serial=DEMO00000000001 p2psrv=127.0.0.1:40001 relay=… agent=… device=… svc554=127.0.0.1:8554
Logs go to stderr (RUST_LOG, -v). On exit (SIGINT/SIGTERM) one JSON line per
realm on stderr (serial, realm, port, bytes each way, SHA-256 each way), then
the datagram totals. Captures (--record, --tap) contain authentication
material: share them with care. See docs/EMULATOR.md.";

/// Flags of `dhp2p emulate-device`.
#[derive(Debug, Clone, Args)]
#[command(after_help = AFTER_HELP)]
pub struct EmulateArgs {
    /// IP address every role listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// UDP port of the main cloud server (0: any free port).
    #[arg(long, default_value_t = 8800)]
    pub cloud_port: u16,
    /// Serial number of an emulated device (repeat for several; matched in any case).
    #[arg(long = "serial", value_name = "SN")]
    pub serials: Vec<String>,
    /// Device user name (RTSP and device authentication).
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Device password (RTSP and device authentication).
    #[arg(
        long,
        default_value = "admin",
        env = "DHP2P_EMULATOR_PASSWORD",
        hide_env_values = true
    )]
    pub password: String,
    /// Whether p2p-channel demands device authentication (403 without it).
    #[arg(long, value_enum, default_value = "none")]
    pub auth: AuthArg,
    /// direct: hole punching works; relay-only: only the relay gets through;
    /// offline: the cloud reports the device offline.
    #[arg(long, value_enum, default_value = "direct")]
    pub mode: ModeArg,
    /// legacy: the easy4ip cloud (DH* and NF* accepted); sdk: the DMSS cloud,
    /// which answers legacy channel requests 403 DevPwd_InvalidDigest.
    #[arg(long, value_enum, default_value = "legacy")]
    pub cloud_profile: ProfileArg,
    /// Service behind a device port: builtin (Dahua-like RTSP), echo, or
    /// HOST:PORT of a real server. Default: 554=builtin.
    #[arg(long = "service", value_name = "PORT=builtin|echo|HOST:PORT")]
    pub services: Vec<PortMap<Service>>,
    /// Also listen for plain TCP on ADDR straight to the service of PORT.
    #[arg(long = "expose", value_name = "PORT=ADDR")]
    pub expose: Vec<PortMap<ListenAddr>>,
    /// The built-in RTSP service plays its clip once, then ends the stream.
    #[arg(long)]
    pub clip_once: bool,
    /// Percent of PTCP/punch datagrams lost, each way, device and agent legs.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub loss: f64,
    /// Percent of PTCP/punch datagrams duplicated.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub dup: f64,
    /// Percent of PTCP/punch datagrams held back (up to --delay, or 20 ms).
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub reorder: f64,
    /// Delay added to every PTCP/punch datagram, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay: u64,
    /// Seed of every random choice (faults, salts, tokens): runs repeat.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Realms one device session grants at once (8 is a guess, FIELD-NOTES §4.5).
    #[arg(long, default_value_t = 8)]
    pub max_realms: usize,
    /// What a BIND beyond --max-realms gets: silence (as in production) or DISC.
    #[arg(long, value_enum, default_value = "silent")]
    pub refuse_bind: RefuseArg,
    /// Whether the device resends unacknowledged PTCP bodies on a timer.
    #[arg(long, value_enum, default_value = "on")]
    pub device_retransmit: OnOff,
    /// Whether a direct session must present the agent's sign (0x19) before BIND.
    #[arg(long, value_enum, default_value = "on")]
    pub require_sign: OnOff,
    /// The device sends its binding request before the cloud's 200 (mcw0)
    /// instead of in answer to the client's request.
    #[arg(long)]
    pub punch_before_200: bool,
    /// The device falls silent after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub vanish_after: Option<f64>,
    /// ...and comes back this many seconds later.
    #[arg(long, value_name = "SECS", requires = "vanish_after")]
    pub vanish_for: Option<f64>,
    /// Largest WSSE clock skew accepted before 401, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub max_skew: u64,
    /// Write every datagram sent or received as a pcap file.
    #[arg(long, value_name = "FILE.pcap")]
    pub record: Option<PathBuf>,
    /// Serve the same pcap stream live over TCP (a bare port means 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub tap: Option<ListenAddr>,
    /// One more device with its own socket; keys left out take the flags
    /// above (repeatable; see docs/EMULATOR.md, "Fleet").
    #[arg(
        long = "device",
        value_name = "SN[,auth=none|required][,password=P][,mode=M][,loss=N][,dup=N][,reorder=N][,delay=MS][,vanish-after=S][,vanish-for=S][,max-realms=N][,cloud=PROFILE]"
    )]
    pub devices: Vec<DeviceSpec>,
    /// Devices from a TOML file: `[[device]]` tables with the keys of --device.
    #[arg(long, value_name = "FILE.toml")]
    pub fleet: Option<PathBuf>,
}

fn secs(s: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow::anyhow!("{flag}: {s} is not a duration in seconds"))
}

impl EmulateArgs {
    /// The emulator configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<EmulatorConfig> {
        let mut config = EmulatorConfig {
            fleet: self.devices.clone(),
            ..EmulatorConfig::default()
        };
        if let Some(path) = &self.fleet {
            config
                .fleet
                .extend(FleetFile::load(path).map_err(anyhow::Error::msg)?.device);
        }
        if !self.serials.is_empty() || !config.fleet.is_empty() {
            // With a fleet, the demo device is only there when asked for.
            config.serials = self.serials.clone();
        }
        config.username = self.username.clone();
        config.password = self.password.clone();
        config.auth = match self.auth {
            AuthArg::None => AuthPolicy::None,
            AuthArg::Required => AuthPolicy::Required,
        };
        config.mode = match self.mode {
            ModeArg::Direct => Mode::Direct,
            ModeArg::RelayOnly => Mode::RelayOnly,
            ModeArg::Offline => Mode::Offline,
            ModeArg::OfflineKnown => Mode::OfflineKnown,
        };
        config.dialect = match self.cloud_profile {
            ProfileArg::Legacy => CloudDialect::Legacy,
            ProfileArg::Sdk => CloudDialect::Sdk,
        };
        for s in &self.services {
            config.services.insert(s.port, s.value.clone());
        }
        config.max_realms = self.max_realms;
        config.refuse_bind = match self.refuse_bind {
            RefuseArg::Silent => RefuseBind::Silent,
            RefuseArg::Disc => RefuseBind::Disc,
        };
        config.device_retransmit = self.device_retransmit.on();
        config.require_sign = self.require_sign.on();
        config.punch_before_200 = self.punch_before_200;
        config.vanish_after = self
            .vanish_after
            .map(|s| secs(s, "--vanish-after"))
            .transpose()?;
        config.vanish_for = self
            .vanish_for
            .map(|s| secs(s, "--vanish-for"))
            .transpose()?;
        config.max_skew = Duration::from_secs(self.max_skew);
        config.seed = self.seed;
        Ok(config)
    }

    pub fn faults(&self) -> anyhow::Result<FaultConfig> {
        let faults = FaultConfig {
            loss_pct: self.loss,
            dup_pct: self.dup,
            reorder_pct: self.reorder,
            delay: Duration::from_millis(self.delay),
            seed: self.seed,
        };
        faults.validate()?;
        Ok(faults)
    }
}

/// `dhp2p emulate-device`: flags that fail validation (a fault percentage
/// out of range, a bad duration) exit 2 like any usage error; then the
/// emulator runs until SIGINT/SIGTERM.
pub fn main(args: EmulateArgs) -> ExitCode {
    let checked = args.config().and_then(|c| Ok((c, args.faults()?)));
    let (config, faults) = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dhp2p: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    super::run_async(run(args, config, faults))
}

/// Bad flags: clap's own code.
const EXIT_USAGE: u8 = 2;

/// Runs the emulator until SIGINT/SIGTERM.
async fn run(args: EmulateArgs, config: EmulatorConfig, faults: FaultConfig) -> anyhow::Result<()> {
    let (recorder, tap) = Recorder::start(args.record.clone(), args.tap.map(|t| t.0)).await?;
    if recorder.is_enabled() {
        tracing::warn!("captures contain authentication material: share them with care");
    }
    let options_exposed: Vec<(u16, std::net::SocketAddr)> =
        args.expose.iter().map(|e| (e.port, e.value.0)).collect();
    let options = DriverOptions {
        listen: args.listen,
        cloud_port: args.cloud_port,
        expose: args.expose.iter().map(|e| (e.port, e.value.0)).collect(),
        faults,
        recorder: recorder.clone(),
        clip_once: args.clip_once,
    };
    let signal = wait_for_signal();
    let emu = driver::start(config, options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the emulator: {e}{}", report::start_hint(&e)))?;
    for (port, addr) in &options_exposed {
        dhp2p::net::listen::warn_if_exposed(*addr, &format!("the emulated device's port {port}"));
    }
    if !args.listen.is_loopback() {
        tracing::warn!(
            "the emulated cloud, relay and device listen on {}, which other machines can reach",
            args.listen
        );
    }
    crate::cmd::MachineOut::default().line(&report::ready_line(&emu, tap));
    signal.await;
    tracing::info!("stopping");
    let finished = emu.stop().await;
    let record_error = recorder.finish().await.err();
    for line in report::exit_lines(&finished, recorder.frames_written())? {
        eprintln!("{line}");
    }
    match (record_error, &args.record) {
        // Logged when it happened; the report above is complete anyway.
        (Some(e), Some(path)) => Err(anyhow::anyhow!(
            "--record {}: the recording stopped early: {e}",
            path.display()
        )),
        (Some(e), None) => Err(anyhow::anyhow!("the capture stopped early: {e}")),
        (None, _) => Ok(()),
    }
}
