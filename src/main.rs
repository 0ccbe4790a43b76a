//! The `dhp2p` binary: parse arguments, set up logging, dispatch.

mod cli;

use std::io::{self, ErrorKind};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use dhp2p::decode::dissect;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running commands report their events by default; one-shot
    // decoders only warn.
    let chatty = matches!(
        cli.command,
        Command::EmulateDevice(_) | Command::Tunnel(_) | Command::Demo(_)
    );
    // The inspector owns the terminal: log lines on stderr would tear it.
    if !matches!(cli.command, Command::Inspect(_)) {
        init_logging(&cli.global, chatty);
    }
    let result = match &cli.command {
        Command::Dissect(args) => dissect::run(
            &args.options(cli.global.quiet),
            &args.hex,
            io::stdin().lock(),
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        ),
        Command::Decode(args) => {
            return ExitCode::from(dhp2p::decode::command::run(args, cli.global.quiet))
        }
        Command::EmulateDevice(args) => {
            return run_async(dhp2p::emulator::command::run(args.as_ref().clone()))
        }
        Command::Tunnel(args) => {
            return run_code(dhp2p::net::tunnel_command::run(args.as_ref().clone()))
        }
        Command::Demo(args) => return run_code(dhp2p::net::tunnel_command::demo(args.clone())),
        Command::Inspect(args) => return ExitCode::from(dhp2p::tui::command::run(args)),
        Command::Redact(args) => {
            return ExitCode::from(dhp2p::redact::command::run(args, cli.global.quiet))
        }
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

/// Runs an async command on a fresh runtime; errors are printed and exit 1.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dhp2p: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhp2p: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an async command that returns its own exit code.
fn run_code(fut: impl std::future::Future<Output = u8>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => ExitCode::from(rt.block_on(fut)),
        Err(e) => {
            eprintln!("dhp2p: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at the level chosen by -v/-q; RUST_LOG wins when set.
fn init_logging(global: &cli::GlobalArgs, chatty: bool) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) if chatty => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let _ = if global.json_log {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
