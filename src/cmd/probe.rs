//! `dhp2p probe`: flags, the serial list, cloud resolution, the table or
//! JSON lines, the summary and the exit code. The probing is
//! `dhp2p::probe` over `dhp2p::session::probe`.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use dhp2p::codec::identity;
use dhp2p::probe::{probe_all, ProbeOptions};
use dhp2p::session::probe::{ProbeCloud, ProbeReport, Verdict};
use dhp2p::tunnel::config::{resolve_clouds, validate_serial, CloudChoice};

pub const PROBE_AFTER_HELP: &str = "\
Examples:
  dhp2p probe ABC123456789XYZ DEF123456789XYZ
  dhp2p probe --file serials.txt --json > fleet.jsonl
  DHP2P_PASSWORD=secret dhp2p probe --file nvrs.txt --deep --username admin
  dhp2p probe --cloud easy4ip --cloud amcrest=127.0.0.1:8801 CAM1

For each serial: which cloud knows it (/online/p2psrv on each cloud in turn),
whether it is online (/probe/device), its firmware (/info/device DevVersion)
and service ports (the decrypted Info); with --deep a full handshake:
authentication required/accepted, the path (direct-lan, direct-public,
relay) and the time to ready, then the relay lease is released.

Exit codes:
  0  every serial is online
  1  some serial is offline, unknown to every cloud asked, or failed
  2  usage error (flags, an invalid serial, an unreadable --file)
See docs/PROBE.md for the JSON schema.";

/// Flags of `dhp2p probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Serial numbers to probe.
    pub serials: Vec<String>,
    /// Read serials from FILE, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Cloud to ask, repeatable, in order: easy4ip, easy4ip-retired, amcrest,
    /// dmss, all, HOST:PORT, or NAME=HOST:PORT (that profile at another
    /// address). Default: every built-in cloud.
    #[arg(long, value_name = "CLOUD")]
    pub cloud: Vec<String>,
    /// One JSON object per serial on stdout (schema in docs/PROBE.md).
    #[arg(long)]
    pub json: bool,
    /// Serials probed at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
    /// Requests per second to each cloud (and the P2P servers it names).
    #[arg(long, default_value_t = 4.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Seconds for the look-up of one serial, resends included.
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
    /// Sends of one request before it counts as unanswered.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub retries: u32,
    /// A full handshake with each online device (one device at a time per
    /// serial), then a clean end.
    #[arg(long)]
    pub deep: bool,
    /// Device user name for --deep.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Device password for --deep. Visible in `ps`: prefer --password-file
    /// or DHP2P_PASSWORD.
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Read the device password from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Local address of the UDP sockets.
    #[arg(long, default_value = "0.0.0.0")]
    pub udp_bind: IpAddr,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1000.0 => Ok(r),
        _ => Err(format!(
            "{s:?}: want requests per second, above 0 and at most 1000"
        )),
    }
}

const USAGE: u8 = 2;
const PASSWORD_ENV: &str = "DHP2P_PASSWORD";

pub async fn run(args: ProbeArgs, quiet: bool) -> u8 {
    let serials = match serials(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dhp2p: {e}");
            return USAGE;
        }
    };
    let credentials = match credentials(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dhp2p: {e}");
            return USAGE;
        }
    };
    let clouds = match clouds(&args.cloud).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dhp2p: {e:#}");
            return USAGE;
        }
    };
    let opts = ProbeOptions {
        clouds,
        jobs: args.jobs as usize,
        rate: args.rate,
        timeout: Duration::from_secs(args.timeout.max(1)),
        attempts: args.retries,
        udp_bind: args.udp_bind,
        deep: args.deep,
        credentials,
    };
    let progress = progress_bar(serials.len(), quiet);
    let bar = progress.clone();
    let reports = probe_all(serials, opts, move |report| {
        bar.set_message(format!("{} {}", report.serial, report.verdict));
        bar.inc(1);
    })
    .await;
    progress.finish_and_clear();
    let summary = Summary::of(&reports);
    if args.json {
        for report in &reports {
            println!("{}", serde_json::to_string(report).unwrap_or_default());
        }
        eprintln!("{summary}");
    } else {
        print!("{}", table(&reports, args.deep));
        println!("{summary}");
    }
    summary.exit_code()
}

/// The serials of the command line, then of `--file`, validated like the
/// tunnel's, each device once (any case).
fn serials(args: &ProbeArgs) -> Result<Vec<String>, String> {
    let mut all = args.serials.clone();
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines() {
            let serial = line.split('#').next().unwrap_or("").trim();
            if !serial.is_empty() {
                all.push(serial.to_owned());
            }
        }
    }
    if all.is_empty() {
        return Err("no serials: give SERIAL… or --file FILE".to_owned());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for serial in all {
        validate_serial(&serial).map_err(|e| e.to_string())?;
        if seen.insert(serial.to_ascii_uppercase()) {
            out.push(serial);
        }
    }
    Ok(out)
}

fn credentials(args: &ProbeArgs) -> Result<Option<(String, String)>, String> {
    let Some(user) = &args.username else {
        return Ok(None);
    };
    let password = if let Some(p) = &args.password {
        p.clone()
    } else if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        text.lines().next().unwrap_or("").to_owned()
    } else if let Ok(p) = std::env::var(PASSWORD_ENV) {
        p
    } else {
        return Err(format!(
            "--username {user} needs a password: --password-file, {PASSWORD_ENV} or --password"
        ));
    };
    Ok(Some((user.clone(), password)))
}

/// The clouds to ask, in order, resolved; `NAME=HOST:PORT` puts a named
/// profile at another address, the others take the environment overrides.
async fn clouds(specs: &[String]) -> anyhow::Result<Vec<ProbeCloud>> {
    let env = |k: &str| std::env::var(k).ok();
    let specs: Vec<String> = if specs.is_empty() {
        vec!["all".to_owned()]
    } else {
        specs.to_vec()
    };
    let mut out: Vec<ProbeCloud> = Vec::new();
    for spec in specs {
        if let Some((name, address)) = spec.split_once('=') {
            let profile = identity::by_name(name)
                .ok_or_else(|| anyhow::anyhow!("--cloud {spec}: unknown cloud {name:?}"))?;
            let addr = tokio::net::lookup_host(address)
                .await
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4))
                .ok_or_else(|| {
                    anyhow::anyhow!("--cloud {spec}: {address:?} is not an IPv4 HOST:PORT")
                })?;
            out.push(ProbeCloud { profile, addr });
            continue;
        }
        let choice: CloudChoice = spec
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--cloud {spec}: {e}"))?;
        for c in resolve_clouds(&choice, None, env).await? {
            out.push(ProbeCloud {
                profile: c.profile,
                addr: c.addr,
            });
        }
    }
    Ok(out)
}

fn progress_bar(len: usize, quiet: bool) -> Arc<indicatif::ProgressBar> {
    let bar = if quiet || len < 2 || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(len as u64)
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    Arc::new(bar)
}

/// The counts of each verdict.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    online: usize,
    offline: usize,
    unknown: usize,
    failed: usize,
}

impl Summary {
    fn of(reports: &[ProbeReport]) -> Summary {
        let mut s = Summary::default();
        for r in reports {
            match r.verdict {
                Verdict::Online => s.online += 1,
                Verdict::Offline => s.offline += 1,
                Verdict::Unknown => s.unknown += 1,
                Verdict::Failed => s.failed += 1,
            }
        }
        s
    }

    fn exit_code(&self) -> u8 {
        u8::from(self.offline + self.unknown + self.failed > 0)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.online + self.offline + self.unknown + self.failed;
        write!(
            f,
            "{total} serials: {} online, {} offline, {} unknown, {} failed",
            self.online, self.offline, self.unknown, self.failed
        )
    }
}

/// The aligned table, one row per serial.
fn table(reports: &[ProbeReport], deep: bool) -> String {
    let mut header = vec!["SERIAL", "VERDICT", "CLOUD", "FIRMWARE", "PORTS"];
    if deep {
        header.extend(["PATH", "AUTH", "READY"]);
    }
    header.push("NOTE");
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in reports {
        let dash = || "-".to_owned();
        let mut row = vec![
            r.serial.clone(),
            r.verdict.to_string(),
            r.cloud.clone().unwrap_or_else(dash),
            r.firmware.clone().unwrap_or_else(dash),
            r.ports.as_ref().map_or_else(dash, |p| p.summary()),
        ];
        if deep {
            let d = r.deep.as_ref();
            row.push(d.and_then(|d| d.path.clone()).unwrap_or_else(dash));
            row.push(d.map_or_else(dash, |d| {
                match (d.auth_required, d.auth_accepted) {
                    (false, _) => "not required",
                    (true, Some(true)) => "accepted",
                    (true, Some(false)) => "refused",
                    (true, None) => "required",
                }
                .to_owned()
            }));
            row.push(
                d.and_then(|d| d.time_to_ready)
                    .map_or_else(dash, |t| format!("{:.2}s", t.as_secs_f64())),
            );
        }
        let note = r
            .error
            .clone()
            .or_else(|| r.deep.as_ref().and_then(|d| d.error.clone()))
            .or_else(|| r.note.clone())
            .unwrap_or_default();
        row.push(note);
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_exit_codes() {
        let mut online = ProbeReport::new("A1");
        online.verdict = Verdict::Online;
        let reports = vec![online.clone(), ProbeReport::new("B2")];
        let s = Summary::of(&reports);
        assert_eq!(
            s.to_string(),
            "2 serials: 1 online, 0 offline, 0 unknown, 1 failed"
        );
        assert_eq!(s.exit_code(), 1);
        assert_eq!(Summary::of(&[online]).exit_code(), 0);
    }

    #[test]
    fn table_columns_line_up() {
        let mut a = ProbeReport::new("SHORT1");
        a.verdict = Verdict::Online;
        a.cloud = Some("easy4ip".into());
        let b = ProbeReport::new("A-MUCH-LONGER-SERIAL");
        let text = table(&[a, b], false);
        let lines: Vec<&str> = text.lines().collect();
        let col = |line: &str| {
            line.find("VERDICT")
                .or_else(|| line.find("online"))
                .or_else(|| line.find("failed"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
    }
}
