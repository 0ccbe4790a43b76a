//! What `emulate-device` prints: the ready line, start-error hints and the
//! exit report (kept out of the flag parsing).

use super::driver;

/// A hint for a start error, when one helps: a busy main cloud port.
pub fn start_hint(e: &std::io::Error) -> &'static str {
    let busy_cloud = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<driver::BindError>())
        .is_some_and(|b| {
            b.what == "main cloud" && b.source.kind() == std::io::ErrorKind::AddrInUse
        });
    if busy_cloud {
        " (another emulator running? try --cloud-port 0)"
    } else {
        ""
    }
}

/// The one line on stdout once every role listens.
pub fn ready_line(emu: &driver::RunningEmulator, tap: Option<std::net::SocketAddr>) -> String {
    let a = emu.addrs;
    let serials: Vec<&str> = emu
        .devices
        .iter()
        .flat_map(|d| d.serials.iter().map(String::as_str))
        .collect();
    let mut ready = format!(
        "ready cloud={} serial={} p2psrv={} relay={} agent={} device={}",
        a.cloud,
        serials.join(","),
        a.p2psrv,
        a.relay,
        a.agent,
        a.device
    );
    if emu.devices.len() > 1 {
        for device in &emu.devices {
            for serial in &device.serials {
                ready.push_str(&format!(" device.{serial}={}", device.addr));
            }
        }
    }
    for (name, addr) in &emu.clouds {
        ready.push_str(&format!(" cloud.{name}={addr}"));
    }
    for (port, addr) in &emu.exposed {
        ready.push_str(&format!(" svc{port}={addr}"));
    }
    if let Some(tap) = tap {
        ready.push_str(&format!(" tap={tap}"));
    }
    ready
}

/// The per-realm JSON lines and the totals line printed on exit.
pub fn exit_lines(finished: &driver::Finished, recorded: u64) -> serde_json::Result<Vec<String>> {
    let mut lines = Vec::new();
    for realm in &finished.realms {
        lines.push(serde_json::to_string(realm)?);
    }
    lines.push(
        serde_json::json!({
            "datagrams_in": finished.stats.datagrams_in,
            "datagrams_out": finished.stats.datagrams_out,
            "recorded": recorded,
            "injected": {
                "dropped": finished.faults_out.dropped + finished.faults_in.dropped,
                "duplicated": finished.faults_out.duplicated + finished.faults_in.duplicated,
                "reordered": finished.faults_out.reordered + finished.faults_in.reordered,
            },
            "stats": finished.stats,
            "requests": finished.requests,
        })
        .to_string(),
    );
    Ok(lines)
}
