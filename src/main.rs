//! The `dhp2p` binary: parse arguments, set up logging, dispatch to the
//! command layer (`src/cmd/`).

mod cmd;

use std::process::ExitCode;

use clap::Parser;

use cmd::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running commands report their events by default; one-shot
    // decoders only warn.
    let chatty = matches!(
        cli.command,
        Command::EmulateDevice(_) | Command::Tunnel(_) | Command::Demo(_) | Command::Serve(_)
    );
    // The inspector owns the terminal: log lines on stderr would tear it.
    if !matches!(cli.command, Command::Inspect(_)) {
        dhp2p::net::logging::init(cli.global.verbosity(chatty), cli.global.json_log);
    }
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Dissect(args) => cmd::dissect::run(&args, quiet),
        Command::Decode(args) => ExitCode::from(cmd::decode::run(&args, quiet)),
        Command::EmulateDevice(args) => cmd::emulate::main(*args),
        Command::Tunnel(args) => cmd::run_code(cmd::tunnel::run(*args)),
        Command::Serve(args) => cmd::run_code(cmd::serve::run(args)),
        Command::Demo(args) => cmd::run_code(cmd::tunnel::demo(args)),
        Command::Inspect(args) => ExitCode::from(cmd::inspect::run(&args)),
        Command::Redact(args) => ExitCode::from(cmd::redact::run(&args, quiet)),
        Command::Probe(args) => cmd::run_code(cmd::probe::run(*args, quiet)),
    }
}
