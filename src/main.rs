//! The `dhp2p` binary: parse arguments, set up logging, dispatch.

mod cli;

use std::io::{self, ErrorKind};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use dhp2p::decode::dissect;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let result = match &cli.command {
        Command::Dissect(args) => dissect::run(
            &args.options(cli.global.quiet),
            &args.hex,
            io::stdin().lock(),
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        ),
    };
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

/// Logs to stderr at the level chosen by -v/-q; RUST_LOG wins when set.
fn init_logging(global: &cli::GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}
