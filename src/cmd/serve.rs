//! `dhp2p serve`: many cameras from one TOML file, with health, metrics
//! and live reload (docs/SERVE.md).

use std::path::PathBuf;

use clap::Args;
use tokio::sync::mpsc;

use dhp2p::net::wait_for_signal;
use dhp2p::serve::config;
use dhp2p::serve::service::{self, ServeError};

/// Exit codes of `dhp2p serve`.
pub mod exit {
    /// Stopped by SIGINT/SIGTERM, or `--check` found the file valid.
    pub const OK: u8 = 0;
    /// Anything else: the HTTP port in use.
    pub const ERROR: u8 = 1;
    /// The file is invalid (or a password file unreadable, with --check).
    pub const USAGE: u8 = 2;
}

pub const SERVE_AFTER_HELP: &str = "\
Examples:
  dhp2p serve --config /etc/dhp2p/dhp2p.toml
  dhp2p serve --check --config dhp2p.toml
  curl http://127.0.0.1:9300/api/cameras
  kill -HUP $(pidof dhp2p)          # reload the file

Every [[camera]] of the file gets its own tunnel, listeners and reconnect
loop. SIGHUP or POST /api/reload re-reads the file: added cameras start,
removed ones stop, changed ones restart, unchanged ones are not touched.
An invalid file is refused and the running cameras stay.

Exit codes:
  0  stopped by SIGINT/SIGTERM, or --check: the file is valid
  1  other error (the HTTP port in use)
  2  the file is invalid (--check also: a password file cannot be read)
See docs/SERVE.md and examples/dhp2p.toml.";

/// Flags of `dhp2p serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The configuration file ([http], [defaults], [[camera]]).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the file, print the effective configuration (passwords
    /// left out) and exit: 0 valid, 2 invalid.
    #[arg(long)]
    pub check: bool,
}

/// `dhp2p serve --check`: prints the effective file or the errors.
fn check(args: &ServeArgs) -> u8 {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dhp2p: {e}");
            return exit::USAGE;
        }
    };
    let unreadable = config.unreadable_secrets(|k| std::env::var(k).ok());
    for e in &unreadable {
        eprintln!("dhp2p: {}: {e}", args.config.display());
    }
    if !unreadable.is_empty() {
        return exit::USAGE;
    }
    print!("{}", config.to_redacted_toml());
    exit::OK
}

/// `dhp2p serve`: runs until SIGINT/SIGTERM. Returns the exit code.
pub async fn run(args: ServeArgs) -> u8 {
    if args.check {
        return check(&args);
    }
    let (reload_tx, reload_rx) = mpsc::channel(4);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the configuration");
                        if reload_tx.send(()).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("cannot catch SIGHUP ({e}): reload with POST /api/reload"),
        }
    }
    #[cfg(not(unix))]
    let _keep = reload_tx;
    match service::run(args.config.clone(), wait_for_signal(), reload_rx).await {
        Ok(()) => exit::OK,
        Err(e @ ServeError::Config(_)) => {
            eprintln!("dhp2p: {e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("dhp2p: {e}");
            exit::ERROR
        }
    }
}
