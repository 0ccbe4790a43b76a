//! The command layer: every subcommand's flags (clap), option building,
//! password handling, exit codes and signal handling, one file per
//! subcommand. `main.rs` parses and dispatches; the library below never
//! sees clap. A new command is a new `Command` variant, its own file here
//! with an args struct and a `run`, and one dispatch line in `main.rs`.

pub mod decode;
pub mod dissect;
pub mod emulate;
pub mod inspect;
pub mod probe;
pub mod redact;
pub mod serve;
pub mod tunnel;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use dhp2p::net::logging::Verbosity;

const TOP_AFTER_HELP: &str = "\
Examples:
  dhp2p demo
  dhp2p tunnel ABC123456789XYZ --username admin
  dhp2p serve --config dhp2p.toml
  dhp2p emulate-device --cloud-port 0
  dhp2p dissect '50544350 00000000 00000000 0002ffff 00000000 00000000 00030100'
  dhp2p dissect -V --hex < datagrams.txt
  dhp2p inspect --tap 127.0.0.1:4000
  dhp2p decode session.pcap
  dhp2p redact session.pcap -o shareable.pcap
  dhp2p probe --file serials.txt
  tcpdump -i eth0 -w - udp | dhp2p decode -

Run `dhp2p <command> --help` for the options and exit codes of a command.";

/// Dahua P2P toolkit: decode, tunnel and emulate Easy4IPCloud, inverted-STUN
/// and PTCP traffic.
#[derive(Debug, Parser)]
#[command(name = "dhp2p", version, about, after_help = TOP_AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG
    /// overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr: no warnings or notes.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log lines on stderr as JSON objects (for machines).
    #[arg(long, global = true)]
    pub json_log: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode datagrams given as hex: one summary line each, optionally the
    /// field tree, a hex dump or JSON.
    #[command(after_help = dissect::AFTER_HELP)]
    Dissect(dissect::DissectArgs),
    /// Decode a pcap/pcapng capture: one line per Dahua P2P datagram,
    /// optionally field trees, hex or JSON; or a report (--stats) or a
    /// realm's bytes (--follow).
    #[command(after_help = decode::DECODE_AFTER_HELP)]
    Decode(Box<decode::DecodeArgs>),
    /// Serve a Dahua device's TCP ports (RTSP first) on localhost, found by
    /// serial number through the cloud and reached through NAT.
    Tunnel(Box<tunnel::TunnelArgs>),
    /// Serve many cameras from one TOML file, with health, Prometheus
    /// metrics and live reload (SIGHUP): the always-on bridge.
    #[command(after_help = serve::SERVE_AFTER_HELP)]
    Serve(serve::ServeArgs),
    /// The emulator and a tunnel to it in one process: prints an RTSP URL
    /// to play. Needs nothing but this binary.
    Demo(tunnel::DemoArgs),
    /// Run a fake Easy4IPCloud (cloud, P2P server, relay, agent) and Dahua
    /// device on loopback, for offline use and tests.
    EmulateDevice(Box<emulate::EmulateArgs>),
    /// Watch traffic live in the terminal (pcap file, stdin or a --tap):
    /// packet list, field tree, hex bytes, realms and handshake timeline.
    Inspect(inspect::InspectArgs),
    /// Write a copy of a capture that can be posted publicly: serials,
    /// logins, digests, tokens and addresses replaced, the story kept.
    #[command(after_help = redact::REDACT_AFTER_HELP)]
    Redact(redact::RedactArgs),
    /// Ask the clouds about many serials: which cloud knows each, online or
    /// not, firmware and ports; with --deep a full handshake.
    #[command(after_help = probe::PROBE_AFTER_HELP)]
    Probe(Box<probe::ProbeArgs>),
}

impl GlobalArgs {
    /// The log level these flags ask for; `chatty` commands run long and
    /// report their events by default.
    pub fn verbosity(&self, chatty: bool) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal { chatty },
            (false, n) => Verbosity::Verbose(n),
        }
    }
}

/// Runs an async command on a fresh runtime; errors are printed and exit 1.
pub fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run_code(async {
        match fut.await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("dhp2p: {e:#}");
                1
            }
        }
    })
}

/// Runs an async command that returns its own exit code.
pub fn run_code(fut: impl std::future::Future<Output = u8>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => ExitCode::from(rt.block_on(fut)),
        Err(e) => {
            eprintln!("dhp2p: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Stdout for machine lines of long-running commands (`ready …`, the URL of
/// `demo`). A closed stdout (`| head -1`) means nobody is listening: the
/// command stops printing and keeps working; it never panics.
#[derive(Debug, Default)]
pub struct MachineOut {
    closed: bool,
}

impl MachineOut {
    /// Writes `line` and flushes; after the first failure, nothing more.
    pub fn line(&mut self, line: &str) {
        use std::io::Write as _;
        if self.closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            self.closed = true;
            tracing::info!("stdout is closed ({e}): no more status lines; still running");
        }
    }
}
