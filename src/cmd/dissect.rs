//! `dhp2p dissect`: flags and the process's streams.

use std::io::{self, ErrorKind, IsTerminal};
use std::process::ExitCode;

use clap::Args;

use dhp2p::decode::dissect::{self, DissectOptions};

pub const AFTER_HELP: &str = "\
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

/// Decodes the arguments (or stdin) to stdout.
pub fn run(args: &DissectArgs, quiet: bool) -> ExitCode {
    let reads_stdin = args.hex.is_empty() || args.hex.iter().any(|a| a == "-");
    if reads_stdin && io::stdin().is_terminal() {
        eprintln!(
            "dhp2p dissect: reading hex datagrams from the terminal, one per line; Ctrl-D ends (a datagram as an argument also works; see --help)"
        );
    }
    let result = dissect::run(
        &args.options(quiet),
        &args.hex,
        io::stdin().lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    match result {
        Ok(code) => ExitCode::from(code),
        // A closed pipe (`| head`) is how a reader says it has seen enough.
        Err(error) if error.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dhp2p: {error}");
            ExitCode::from(dissect::EXIT_NOT_DECODED)
        }
    }
}
