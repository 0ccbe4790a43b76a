//! Log output on stderr, shared by every command.

/// How much to log, as the commands' -q/-v flags choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// -q: errors only.
    Quiet,
    /// No flag: `info` for long-running commands, `warn` for one-shot ones.
    Normal { chatty: bool },
    /// -v, -vv, -vvv…
    Verbose(u8),
}

impl Verbosity {
    fn level(self) -> &'static str {
        match self {
            Verbosity::Quiet => "error",
            Verbosity::Normal { chatty: true } => "info",
            Verbosity::Normal { chatty: false } | Verbosity::Verbose(0) => "warn",
            Verbosity::Verbose(1) => "info",
            Verbosity::Verbose(2) => "debug",
            Verbosity::Verbose(_) => "trace",
        }
    }
}

/// Logs to stderr at `verbosity`; RUST_LOG wins when set. `json` writes
/// one JSON object per line (for machines).
pub fn init(verbosity: Verbosity, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(verbosity.level()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person: not in journald, files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
