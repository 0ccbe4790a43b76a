//! `dhp2p inspect`: its arguments and the glue between source, app and
//! terminal driver.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use dhp2p::tui::app::{App, Config, DEFAULT_MAX_PACKETS};
use dhp2p::tui::driver;
use dhp2p::tui::source::{self, Input};

/// Exit code when the inspector cannot start (no terminal, unreadable file).
pub const EXIT_CANNOT_START: u8 = 1;

const AFTER_HELP: &str = "\
Sources:
  dhp2p inspect capture.pcap             a pcap or pcapng file
  tcpdump -i any -w - udp | dhp2p inspect -
                                         a live pcap stream on stdin
  dhp2p inspect --tap 127.0.0.1:4000     a running `dhp2p tunnel --tap` or
                                         `emulate-device --tap`; reconnects
                                         when it restarts

Filter bar (/): kind:ptcp realm:0x0a0b0c0d session:127.0.0.1:5000 malformed
  and words of the summary; decode's flag syntax (--kind ptcp) works too.
Press ? in the inspector for every key. docs/INSPECT.md has screenshots.";

/// Watch Dahua P2P traffic live in the terminal: packet list, field tree,
/// hex bytes, realms and the handshake timeline.
#[derive(Debug, Clone, Args)]
#[command(after_help = AFTER_HELP)]
pub struct InspectArgs {
    /// A pcap/pcapng file, or `-` for a live pcap stream on stdin.
    #[arg(
        value_name = "FILE",
        required_unless_present = "tap",
        conflicts_with = "tap"
    )]
    pub file: Option<PathBuf>,
    /// Follow the pcap stream of a running `--tap ADDR` (tunnel or
    /// emulate-device); reconnects when it restarts.
    #[arg(long, value_name = "ADDR")]
    pub tap: Option<SocketAddr>,
    /// Packets kept in memory; older ones are dropped (counts stay).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PACKETS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_packets: usize,
    /// Show secrets (DevAuth, Authorization credentials) instead of <redacted>.
    #[arg(long)]
    pub no_redact: bool,
}

impl InspectArgs {
    pub fn input(&self) -> Input {
        match (&self.tap, &self.file) {
            (Some(addr), _) => Input::Tap(*addr),
            (None, Some(path)) if path.as_os_str() == "-" => Input::Stdin,
            (None, Some(path)) => Input::File(path.clone()),
            (None, None) => Input::Stdin,
        }
    }
}

/// Runs the inspector until the user quits; returns the exit code.
pub fn run(args: &InspectArgs) -> u8 {
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "dhp2p inspect: stdout is not a terminal; for text output use `dhp2p decode` (or `dhp2p dissect`)"
        );
        return EXIT_CANNOT_START;
    }
    let input = args.input();
    let events = match &input {
        Input::File(path) => match source::open_file(path) {
            Ok(reader) => source::spawn_file(reader),
            Err(e) => {
                eprintln!("dhp2p inspect: {e}");
                return EXIT_CANNOT_START;
            }
        },
        Input::Stdin => source::spawn_stdin(),
        Input::Tap(addr) => source::spawn_tap(*addr),
    };
    let config = Config {
        source: input.label(),
        max_packets: args.max_packets,
        live: input.is_live(),
        redact: !args.no_redact,
    };
    match driver::run(App::new(config), events) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dhp2p inspect: terminal error: {e}");
            EXIT_CANNOT_START
        }
    }
}
