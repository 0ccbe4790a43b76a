//! Every capture in captures/: its decode equals the checked-in golden
//! output; tshark with dh-p2p.lua agrees with `dhp2p decode --json` on each
//! datagram's kind, PTCP body type, realm and counters; `--follow` of the
//! lossy realm gives exactly the bytes the service sent.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn captures() -> Vec<PathBuf> {
    let dir = common::repo_root().join("captures");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap") | Some("pcapng")
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 11, "captures missing: {out:?}");
    out
}

fn decode(args: &[&str], file: &Path) -> std::process::Output {
    let out = common::dhp2p()
        .arg("decode")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "decode {file:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn golden(file: &Path, ext: &str) -> String {
    let stem = file.with_extension("");
    let path = PathBuf::from(format!("{}.{ext}", stem.display()));
    std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("missing golden {path:?}: run tools/make-captures --golden and review it")
    })
}

#[test]
fn decode_output_matches_the_golden_files() {
    for file in captures() {
        let text = decode(&["-q"], &file);
        assert_eq!(
            String::from_utf8_lossy(&text.stdout),
            golden(&file, "decode.txt"),
            "{file:?}: text output changed (tools/make-captures --golden, then review)"
        );
        let json = decode(&["-q", "--json"], &file);
        assert_eq!(
            String::from_utf8_lossy(&json.stdout),
            golden(&file, "decode.json"),
            "{file:?}: JSON output changed"
        );
    }
}

/// What tshark + dh-p2p.lua says about one frame.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct Seen {
    kind: String,
    body: String,
    realm: Option<u64>,
    counters: Option<[u64; 5]>,
}

fn tshark_view(file: &Path) -> BTreeMap<u64, Seen> {
    let tshark = common::require_program("tshark", "tshark");
    let lua = common::repo_root().join("dh-p2p.lua");
    let fields = [
        "frame.number",
        "_ws.col.Protocol",
        "ptcp.kind",
        "ptcp.realm",
        "ptcp.bytes_sent",
        "ptcp.bytes_recv",
        "ptcp.package_id",
        "ptcp.local_message_id",
        "ptcp.remote_message_id",
    ];
    let mut cmd = Command::new(tshark);
    cmd.arg("-X")
        .arg(format!("lua_script:{}", lua.display()))
        .args(["-o", "udp.try_heuristic_first:TRUE", "-r"])
        .arg(file)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() {
            None
        } else if let Some(h) = s.strip_prefix("0x") {
            u64::from_str_radix(h, 16).ok()
        } else {
            s.parse().ok()
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let kind = match f[1] {
                "PTCP" => "ptcp",
                "DHTTP" => "cloud",
                "ISTUN" => "punch",
                _ => "unknown",
            };
            let counters = (4..9)
                .map(|i| num(f[i]))
                .collect::<Option<Vec<u64>>>()
                .map(|v| [v[0], v[1], v[2], v[3], v[4]]);
            (
                num(f[0]).unwrap(),
                Seen {
                    kind: kind.to_string(),
                    body: f[2].to_string(),
                    realm: num(f[3]),
                    counters,
                },
            )
        })
        .collect()
}

fn dhp2p_view(file: &Path) -> BTreeMap<u64, Seen> {
    let out = decode(&["-q", "--json"], file);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let p = &v["ptcp"];
            let body = if v["kind"] == "ptcp" {
                if v.get("error").is_some() {
                    "MALFORMED".to_string()
                } else {
                    p["body"]["type"].as_str().unwrap_or("").to_string()
                }
            } else {
                String::new()
            };
            let counters = ["sent", "recv", "pid", "lmid", "rmid"]
                .iter()
                .map(|k| p[*k].as_u64())
                .collect::<Option<Vec<u64>>>()
                .map(|v| [v[0], v[1], v[2], v[3], v[4]]);
            // tshark's realm field exists for every sub-header body.
            let realm = p["body"]["realm"].as_u64();
            (
                v["number"].as_u64().expect("number"),
                Seen {
                    kind: v["kind"].as_str().unwrap().to_string(),
                    body,
                    realm,
                    counters,
                },
            )
        })
        .collect()
}

#[test]
fn tshark_and_dhp2p_agree_on_every_datagram() {
    for file in captures() {
        let theirs = tshark_view(&file);
        let ours = dhp2p_view(&file);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{file:?}: different frames"
        );
        for (n, o) in &ours {
            let t = &theirs[n];
            assert_eq!(o.kind, t.kind, "{file:?} frame {n}: kind");
            if o.kind == "ptcp" {
                assert_eq!(o.body, t.body, "{file:?} frame {n}: PTCP body type");
                assert_eq!(o.counters, t.counters, "{file:?} frame {n}: counters");
                if o.realm.is_some() {
                    assert_eq!(o.realm, t.realm, "{file:?} frame {n}: realm");
                }
            }
        }
    }
}

#[test]
fn follow_of_the_lossy_realm_is_exactly_what_the_service_sent() {
    let dir = common::repo_root().join("captures");
    let report = std::fs::read_to_string(dir.join("lossy.emulator.log")).unwrap();
    let realm: serde_json::Value = report
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("realm").is_some())
        .expect("realm report");
    let id = realm["realm"].as_str().unwrap();
    let out = decode(&["--follow", id], &dir.join("lossy.pcap"));
    assert_eq!(
        out.stdout.len() as u64,
        realm["bytes_out"].as_u64().unwrap()
    );
    assert_eq!(
        hex::encode(Sha256::digest(&out.stdout)),
        realm["sha256_out"].as_str().unwrap(),
        "--follow {id} differs from what the service sent"
    );
}
