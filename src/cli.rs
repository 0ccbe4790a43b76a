//! Command-line arguments (clap derive). `main.rs` parses them and
//! dispatches; each command's work lives in the library (`dissect` in
//! `dhp2p::decode::dissect`). A new command is a new `Command` variant with
//! its own args struct.

use clap::{Args, Parser, Subcommand};

use dhp2p::decode::dissect::DissectOptions;

const TOP_AFTER_HELP: &str = "\
Examples:
  dhp2p demo
  dhp2p tunnel ABC123456789XYZ --username admin
  dhp2p emulate-device --cloud-port 0
  dhp2p dissect '50544350 00000000 00000000 0002ffff 00000000 00000000 00030100'
  dhp2p dissect -V --hex < datagrams.txt
  dhp2p inspect --tap 127.0.0.1:4000
  dhp2p decode session.pcap
  tcpdump -i eth0 -w - udp | dhp2p decode -

Run `dhp2p <command> --help` for the options and exit codes of a command.";

const DISSECT_AFTER_HELP: &str = "\
Input:
  Each argument is one datagram in hex. Spaces, colons, commas and 0x
  prefixes are allowed, and so is a pasted hex dump (`0000  50 54 43 50 …
  |PTCP…|`, several lines in one quoted argument). With no argument or `-`,
  datagrams are read from stdin: one per line of hex, or one per hex dump
  block (blocks end at a blank line or at a line with offset 0000). Lines
  starting with `#` are skipped, so the reference files' vectors can be
  pasted as they are.

Output (stdout):
  N KIND summary      one line per datagram; KIND is PTCP, CLOUD, PUNCH or UDP
  -V                  adds the field tree, like tshark -V
  --hex               adds a hex dump (secret bytes shown as `*`)
  --json              one JSON object per line instead (NDJSON, nothing else);
                      schema in docs/DECODE.md
  Secrets (DevAuth, Authorization Digest/Basic credentials) read <redacted>
  unless --no-redact is given.

Exit codes:
  0  every datagram decoded
  1  some datagram was malformed or not a Dahua P2P datagram (or I/O error)
  2  usage error
  3  some input was not valid hex (the message names the argument or stdin
     line and the offending character)

Examples:
  # A PTCP SYN (DH-P2P.md §11.7 A1)
  dhp2p dissect '50544350 00000000 00000000 0002ffff 00000000 00000000 00030100'
  # A cloud request, as text turned into hex, with the field tree
  printf 'DHGET /probe/p2psrv HTTP/1.1\\r\\nCSeq: 1\\r\\n\\r\\n' | xxd -p | tr -d '\\n' | dhp2p dissect -V
  # Hex dumps pasted from a file, as JSON
  dhp2p dissect --json < vectors.txt | jq .summary";

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
    #[command(after_help = DISSECT_AFTER_HELP)]
    Dissect(DissectArgs),
    /// Decode a pcap/pcapng capture: one line per Dahua P2P datagram,
    /// optionally field trees, hex or JSON; or a report (--stats) or a
    /// realm's bytes (--follow).
    #[command(after_help = dhp2p::decode::command::DECODE_AFTER_HELP)]
    Decode(Box<dhp2p::decode::command::DecodeArgs>),
    /// Serve a Dahua device's TCP ports (RTSP first) on localhost, found by
    /// serial number through the cloud and reached through NAT.
    Tunnel(Box<dhp2p::net::tunnel_command::TunnelArgs>),
    /// The emulator and a tunnel to it in one process: prints an RTSP URL
    /// to play. Needs nothing but this binary.
    Demo(dhp2p::net::tunnel_command::DemoArgs),
    /// Run a fake Easy4IPCloud (cloud, P2P server, relay, agent) and Dahua
    /// device on loopback, for offline use and tests.
    EmulateDevice(Box<dhp2p::emulator::command::EmulateArgs>),
    /// Watch traffic live in the terminal (pcap file, stdin or a --tap):
    /// packet list, field tree, hex bytes, realms and handshake timeline.
    Inspect(dhp2p::tui::command::InspectArgs),
    /// Write a copy of a capture that can be posted publicly: serials,
    /// credentials and addresses replaced, everything else byte for byte.
    #[command(after_help = dhp2p::redact::command::REDACT_AFTER_HELP)]
    Redact(dhp2p::redact::command::RedactArgs),
}

#[derive(Debug, Args)]
pub struct DissectArgs {
    /// Datagrams in hex, one per argument; none or `-` reads stdin.
    #[arg(value_name = "HEX")]
    pub hex: Vec<String>,
    /// Print the field tree under each summary line (like tshark -V).
    #[arg(short = 'V', long = "tree")]
    pub tree: bool,
    /// Print a hex dump of each datagram.
    #[arg(long = "hex")]
    pub hex_dump: bool,
    /// Print one JSON object per datagram and line (NDJSON) instead of text.
    #[arg(long, conflicts_with_all = ["tree", "hex_dump"])]
    pub json: bool,
    /// Show secrets (DevAuth, Authorization credentials) instead of
    /// <redacted>. Do not paste the output anywhere public.
    #[arg(long)]
    pub no_redact: bool,
}

impl DissectArgs {
    pub fn options(&self, quiet: bool) -> DissectOptions {
        DissectOptions {
            tree: self.tree,
            hex: self.hex_dump,
            json: self.json,
            redact: !self.no_redact,
            quiet,
        }
    }
}
