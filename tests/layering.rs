//! The layering rule, enforced: reads every file under src/, collects its
//! `use crate::…`, `crate::…::` and `super::…` paths and checks each against
//! the table of allowed layer → layer imports (also in docs/ARCHITECTURE.md,
//! "Layering rule"). A violation fails naming file:line and the rule.
//!
//! Also checked: clap only in the command layer (src/cmd/, src/main.rs),
//! no tokio in codec or session, and no import circle between sibling
//! modules (a module and its own parent or children do not count: `mod.rs`
//! re-exports its children and children use `super::`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Layer → the layers it may import (besides itself). `cmd` (src/cmd/ and
/// src/main.rs, compiled into the binary only) may import anything and
/// nothing may import it.
const ALLOWED: &[(&str, &[&str])] = &[
    // Wire formats: bytes ⇄ typed values.
    ("codec", &[]),
    // pcap file writing (used by the recorder and the inspector's save).
    ("capture", &[]),
    // Sans-IO state machines.
    ("session", &["codec"]),
    // Shared I/O under both drivers: faults, recording, signals, logging.
    ("net", &["codec", "session", "capture"]),
    // The tunnel's tokio driver and its configuration.
    ("tunnel", &["net", "session", "codec"]),
    // `dhp2p serve`: many tunnels from one file, their states, HTTP and metrics.
    ("serve", &["tunnel", "net", "session", "codec"]),
    // The emulated cloud and device, and their tokio driver.
    ("emulator", &["net", "session", "codec"]),
    // Presentation of captured datagrams.
    ("decode", &["codec", "session", "capture"]),
    // The terminal inspector.
    ("tui", &["decode", "codec", "capture"]),
    // Rewriting captures so they can be shared (sans-IO: bytes in, bytes out).
    ("redact", &["decode", "codec", "capture"]),
    // `dhp2p probe`'s tokio driver over the probe and handshake machines.
    ("probe", &["net", "session", "codec"]),
];

/// Layers whose code must not name tokio (no I/O, no runtime).
const NO_TOKIO: &[&str] = &["codec", "session"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.rule)
    }
}

/// The module path of a file under src/ (`src/codec/cloud/xml.rs` →
/// `["codec", "cloud", "xml"]`); the binary's files are under `cmd`.
fn module_path(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap_or(file);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    if parts == ["main"] {
        return vec!["cmd".into()];
    }
    parts
}

fn layer_of(file: &str) -> String {
    module_path(file)
        .first()
        .cloned()
        .unwrap_or_else(|| "root".into())
}

/// One path a file names, with the line it is on.
struct Import {
    line: usize,
    path: Vec<String>,
}

/// Expands a `use` tree (`crate::{a::b, c::{d, e}}`) into full paths.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand_use_tree(&format!("{prefix}{p}")))
        .collect()
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::…`/`super::…` path in `src`, comments skipped.
fn imports(src: &str) -> Vec<Import> {
    let mut out = Vec::new();
    let lines: Vec<&str> = src.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let code = lines[i].split("//").next().unwrap_or("");
        let trimmed = code.trim_start();
        let line_no = i + 1;
        let use_body = trimmed
            .strip_prefix("pub use ")
            .or_else(|| trimmed.strip_prefix("pub(crate) use "))
            .or_else(|| trimmed.strip_prefix("pub(super) use "))
            .or_else(|| trimmed.strip_prefix("use "));
        if let Some(body) = use_body {
            // A use statement may span lines: gather it up to `;`.
            let mut text = body.to_owned();
            while !text.contains(';') && i + 1 < lines.len() {
                i += 1;
                text.push_str(lines[i].split("//").next().unwrap_or(""));
            }
            let text = text.split(';').next().unwrap_or("");
            for path in expand_use_tree(text) {
                let segs: Vec<String> = path
                    .split(" as ")
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .map(str::to_owned)
                    .collect();
                if matches!(segs.first().map(String::as_str), Some("crate" | "super")) {
                    out.push(Import {
                        line: line_no,
                        path: segs,
                    });
                }
            }
        } else {
            for start in ["crate::", "super::"] {
                let mut from = 0;
                while let Some(pos) = code[from..].find(start) {
                    let at = from + pos;
                    from = at + start.len();
                    if code[..at].chars().next_back().is_some_and(is_ident_char) {
                        continue;
                    }
                    if start == "super::" && code[..at].ends_with("super::") {
                        continue;
                    }
                    let tail: String = code[at..]
                        .chars()
                        .take_while(|c| is_ident_char(*c) || *c == ':')
                        .collect();
                    let segs: Vec<String> = tail
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    out.push(Import {
                        line: line_no,
                        path: segs,
                    });
                }
            }
        }
        i += 1;
    }
    out
}

/// The absolute module path an import names (`super` resolved against
/// `here`, `crate` dropped).
fn resolve(here: &[String], path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    base
}

fn allowed(from: &str, to: &str) -> Option<&'static [&'static str]> {
    ALLOWED
        .iter()
        .find(|(layer, _)| *layer == from)
        .map(|(_, list)| *list)
        .filter(|list| !list.contains(&to))
}

/// The layer rules for one file (everything but circles).
fn check_source(file: &str, src: &str) -> Vec<Violation> {
    let layer = layer_of(file);
    let here = module_path(file);
    let mut out = Vec::new();
    let violation = |line: usize, rule: String| Violation {
        file: file.to_owned(),
        line,
        rule,
    };
    let known = layer == "cmd" || layer == "root" || ALLOWED.iter().any(|(l, _)| *l == layer);
    if !known {
        out.push(violation(
            1,
            format!("{layer} is not in the layer table: add a row saying what it may import"),
        ));
    }
    if layer != "cmd" {
        for import in imports(src) {
            let target = resolve(&here, &import.path);
            let Some(to) = target.first() else { continue };
            if *to == layer || !ALLOWED.iter().any(|(l, _)| l == to) && to != "cmd" {
                continue;
            }
            if to == "cmd" {
                out.push(violation(
                    import.line,
                    format!("{layer} imports the command layer (crate::cmd): nothing may"),
                ));
            } else if let Some(list) = allowed(&layer, to) {
                out.push(violation(
                    import.line,
                    format!(
                        "{layer} may import only {:?}, not {to} ({})",
                        list,
                        target.join("::")
                    ),
                ));
            }
        }
    }
    for (i, line) in src.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let names = |krate: &str| {
            code.contains(&format!("{krate}::")) || code.contains(&format!("use {krate}"))
        };
        if layer != "cmd" && names("clap") {
            out.push(violation(
                i + 1,
                format!("clap in {layer}: only the command layer (src/cmd/, main.rs) parses flags"),
            ));
        }
        if NO_TOKIO.contains(&layer.as_str()) && names("tokio") {
            out.push(violation(
                i + 1,
                format!("tokio in {layer}: no runtime below the drivers"),
            ));
        }
    }
    out
}

/// Import edges between modules, for the circle check: the deepest known
/// module each import names, ignoring a module's own ancestors and
/// descendants.
fn edges(files: &BTreeMap<String, String>) -> BTreeMap<Vec<String>, BTreeMap<Vec<String>, usize>> {
    let modules: BTreeSet<Vec<String>> = files.keys().map(|f| module_path(f)).collect();
    let mut out: BTreeMap<Vec<String>, BTreeMap<Vec<String>, usize>> = BTreeMap::new();
    for (file, src) in files {
        let here = module_path(file);
        for import in imports(src) {
            let target = resolve(&here, &import.path);
            let known = (1..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|m| modules.contains(m));
            let Some(to) = known else { continue };
            if to.starts_with(&here) || here.starts_with(&to) {
                continue;
            }
            out.entry(here.clone())
                .or_default()
                .entry(to)
                .or_insert(import.line);
        }
    }
    out
}

/// Circles in the module graph, each as `a → b → … → a`.
fn circles(graph: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, usize>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flat_map(|m| m.keys()) {
                if next == start {
                    let mut names: Vec<String> = path.iter().map(|m| m.join("::")).collect();
                    // One report per circle, whichever member it starts at.
                    let min = names.iter().min().cloned().unwrap_or_default();
                    let at = names.iter().position(|n| *n == min).unwrap_or(0);
                    names.rotate_left(at);
                    names.push(min);
                    found.insert(names.join(" → "));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found.into_iter().collect()
}

fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            panic!("cannot read {}", dir.display())
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = fs::read_to_string(&path).unwrap_or_default();
                out.insert(rel, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

#[test]
fn every_import_follows_the_layer_table() {
    let files = sources();
    assert!(files.len() > 40, "src/ not found: {} files", files.len());
    let violations: Vec<String> = files
        .iter()
        .flat_map(|(file, src)| check_source(file, src))
        .map(|v| v.to_string())
        .collect();
    assert!(
        violations.is_empty(),
        "imports against the layer table (tests/layering.rs, docs/ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_import_circles_between_modules() {
    let graph = edges(&sources());
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_layer_table_itself_has_no_circle() {
    let graph: BTreeMap<Vec<String>, BTreeMap<Vec<String>, usize>> = ALLOWED
        .iter()
        .map(|(from, to)| {
            let targets = to.iter().map(|t| (vec![t.to_string()], 0)).collect();
            (vec![from.to_string()], targets)
        })
        .collect();
    assert_eq!(circles(&graph), Vec::<String>::new());
}

#[test]
fn the_checker_flags_a_planted_upward_import() {
    let planted = "//! A codec module.\n\nuse super::ptcp::Packet;\nuse crate::net::{faults::FaultConfig, record};\n";
    let found = check_source("src/codec/punch.rs", planted);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].line, 4);
    assert!(
        found[0].rule.contains("codec may import only []"),
        "{}",
        found[0]
    );
    assert!(found[0].to_string().starts_with("src/codec/punch.rs:4: "));

    // Sideways between the drivers, inline paths, and the command layer.
    let sideways = "fn f() { let _ = crate::tunnel::config::loopback_options; }\nuse crate::cmd::tunnel::TunnelArgs;\n";
    let found = check_source("src/emulator/driver.rs", sideways);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].rule.contains("not tunnel"));
    assert!(found[1].rule.contains("command layer"));

    // clap outside the command layer, tokio in the session layer; comments
    // do not count.
    let found = check_source("src/decode/run.rs", "use clap::Args;\n// clap::Parser\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].rule.contains("clap in decode"));
    let found = check_source(
        "src/session/ptcp.rs",
        "    let t = tokio::time::sleep(d);\n",
    );
    assert!(found[0].rule.contains("tokio in session"));

    // A new top-level module must be given a row first.
    let found = check_source("src/fleet/probe.rs", "use crate::codec::ptcp;\n");
    assert!(
        found[0].rule.contains("not in the layer table"),
        "{found:?}"
    );

    // The command layer may use anything.
    assert!(check_source("src/cmd/tunnel.rs", "use clap::Args;\nuse dhp2p::net;\n").is_empty());
}

#[test]
fn the_circle_check_finds_a_planted_circle() {
    let mut files = BTreeMap::new();
    files.insert(
        "src/emulator/core.rs".into(),
        "use super::device::Peer;\n".into(),
    );
    files.insert(
        "src/emulator/device.rs".into(),
        "use super::core::Emulator;\n".into(),
    );
    files.insert(
        "src/emulator/mod.rs".into(),
        "pub use core::Emulator;\nmod device;\n".into(),
    );
    let found = circles(&edges(&files));
    assert_eq!(
        found,
        vec!["emulator::core → emulator::device → emulator::core"]
    );
}
