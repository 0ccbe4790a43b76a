//! `dhp2p decode`: flags, the process's streams, the progress bar.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use dhp2p::codec::classify::Kind;
use dhp2p::decode::filter::{parse_realm, SessionFilter};
use dhp2p::decode::run::{
    decode, DecodeOptions, FollowDirection, EXIT_DAMAGED_OR_EMPTY, EXIT_NOT_A_CAPTURE, EXIT_OK,
};

/// Files at least this big get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 10 * 1000 * 1000;

pub const DECODE_AFTER_HELP: &str = "\
Input:
  A pcap (either byte order, µs or ns) or pcapng file, or `-` (the default)
  for a stream on stdin. Link types: Ethernet (VLAN/QinQ tags), Linux cooked
  SLL and SLL2, raw IPv4/IPv6, BSD loopback. IPv4 and IPv6, fragments
  reassembled. Cloud, punch and PTCP datagrams are recognised by content on
  any port; other UDP datagrams are shown as UDP, other frames are counted
  and skipped.

Output (stdout, one record per datagram and nothing else):
  N TIME SRC → DST KIND summary
                 TIME is seconds since the first frame; KIND is PTCP, CLOUD,
                 PUNCH or UDP; malformed datagrams show [malformed] and the
                 reason with its offset
  -V             adds the field tree (like tshark -V) and a blank line
  --hex          adds a hex dump (secret bytes shown as `*`)
  --json         one JSON object per datagram (NDJSON); schema in docs/DECODE.md
  --stats        a per-session and per-realm report instead of records
  --follow REALM the realm's reassembled bytes (device to client by default)
  On stderr: a line of counts at the end (not with -q), where reading stopped
  if the file is damaged, and a progress bar for big files on a terminal.

Exit codes:
  0  success
  1  the file is damaged (decoded up to the damage, offset on stderr), or
     holds no Dahua P2P datagram at all
  2  usage error
  4  the input cannot be opened or is not a pcap/pcapng capture

Examples:
  dhp2p decode session.pcap
  dhp2p decode -V --kind ptcp --realm 0x0a0b0c0d session.pcapng
  tcpdump -i eth0 -w - udp | dhp2p decode -
  dhp2p decode --json session.pcap | jq -c 'select(.kind == \"cloud\") | .summary'
  dhp2p decode --session 192.0.2.10:50000 --stats session.pcap
  dhp2p decode --follow 0x0a0b0c0d -o realm.bin session.pcap
  dhp2p decode --follow 0x0a0b0c0d --rtsp session.pcap";

/// Which of a realm's two byte streams `--follow` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// What the device (the tunnelled service) sent: the RTSP answers and media.
    FromDevice,
    /// What the client sent through the tunnel.
    ToDevice,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse()
}

#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Capture to read (pcap or pcapng); `-` reads a stream from stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,
    /// Print the field tree under each summary line (like tshark -V).
    #[arg(short = 'V', long = "tree")]
    pub tree: bool,
    /// Print a hex dump of each datagram (secret bytes masked).
    #[arg(long = "hex")]
    pub hex_dump: bool,
    /// One JSON object per datagram and line (NDJSON) instead of text; with
    /// --stats, the report as one JSON object.
    #[arg(long, conflicts_with_all = ["tree", "hex_dump"])]
    pub json: bool,
    /// Only datagrams of this kind: cloud, punch, ptcp or unknown (repeatable).
    #[arg(long = "kind", value_name = "KIND", value_parser = parse_kind)]
    pub kinds: Vec<Kind>,
    /// Only PTCP datagrams whose body names this realm (0x1234abcd or decimal).
    #[arg(long, value_name = "REALM", value_parser = parse_realm)]
    pub realm: Option<u32>,
    /// Only datagrams to or from ADDR:PORT, or between A and B (`A-B`).
    #[arg(long, value_name = "ADDR:PORT|A-B")]
    pub session: Option<SessionFilter>,
    /// Print a report per session and realm (handshake timeline, path,
    /// bytes, losses, verdict) instead of one record per datagram.
    #[arg(long, conflicts_with_all = ["tree", "hex_dump", "follow"])]
    pub stats: bool,
    /// Write one realm's reassembled byte stream instead of records.
    #[arg(long, value_name = "REALM", value_parser = parse_realm,
          conflicts_with_all = ["tree", "hex_dump", "json"])]
    pub follow: Option<u32>,
    /// With --follow: which direction of the realm to write.
    #[arg(long, value_enum, default_value = "from-device", requires = "follow")]
    pub direction: DirectionArg,
    /// With --follow: print the realm's RTSP dialogue (requests, responses,
    /// RTP packet counts) instead of its bytes.
    #[arg(long, requires = "follow")]
    pub rtsp: bool,
    /// With --follow: write to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE", requires = "follow")]
    pub output: Option<PathBuf>,
    /// Show secrets (DevAuth, Authorization credentials) instead of
    /// <redacted>. Do not paste the output anywhere public.
    #[arg(long)]
    pub no_redact: bool,
}

impl DecodeArgs {
    /// The engine's options these flags describe.
    pub fn options(&self) -> DecodeOptions {
        DecodeOptions {
            file: self.file.clone(),
            tree: self.tree,
            hex_dump: self.hex_dump,
            json: self.json,
            kinds: self.kinds.clone(),
            realm: self.realm,
            session: self.session,
            stats: self.stats,
            follow: self.follow,
            direction: match self.direction {
                DirectionArg::FromDevice => FollowDirection::FromDevice,
                DirectionArg::ToDevice => FollowDirection::ToDevice,
            },
            rtsp: self.rtsp,
            output: self.output.clone(),
            no_redact: self.no_redact,
        }
    }
}

/// Runs `dhp2p decode` on the process's streams and returns the exit code.
pub fn run(args: &DecodeArgs, quiet: bool) -> u8 {
    let args = &args.options();
    let stderr = io::stderr();
    let mut err = stderr.lock();
    if args.is_stdin() && io::stdin().is_terminal() {
        let _ = writeln!(
            err,
            "dhp2p decode: reading a pcap/pcapng capture from stdin, which is a terminal; give a FILE or pipe one in (`tcpdump -w - … | dhp2p decode -`); Ctrl-C stops"
        );
    }
    let (input, size): (Box<dyn Read>, Option<u64>) = if args.is_stdin() {
        (Box::new(io::stdin().lock()), None)
    } else {
        match File::open(&args.file) {
            Ok(file) => {
                let size = file.metadata().ok().map(|m| m.len());
                (Box::new(file), size)
            }
            Err(error) => {
                let _ = writeln!(err, "dhp2p decode: cannot open {}: {error}", args.name());
                return EXIT_NOT_A_CAPTURE;
            }
        }
    };
    let progress = size.filter(|&s| s >= PROGRESS_MIN_BYTES && io::stderr().is_terminal());
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let code = decode(args, quiet, input, progress, &mut out, &mut err);
    match code.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => code,
        // A closed pipe (`| head`) is how a reader says it has seen enough.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(error) => {
            let _ = writeln!(err, "dhp2p decode: {error}");
            EXIT_DAMAGED_OR_EMPTY
        }
    }
}
