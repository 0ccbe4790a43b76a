//! Stable stand-ins for what identifies a person: serials and other text
//! secrets become keyed pseudonyms of the same length and alphabet, binary
//! secrets keyed bytes of the same length, IP addresses addresses in the
//! documentation ranges (RFC 5737, RFC 3849).
//!
//! Everything derives from one 32-byte key (HMAC-SHA256), so the same value
//! gets the same stand-in within a run, and across runs that share `--key`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::RedactError;
use crate::codec::find_bytes;

type HmacSha256 = Hmac<Sha256>;

/// Shortest literal worth sweeping for in every payload: shorter ones would
/// hit unrelated bytes.
const MIN_SWEEP_LEN: usize = 6;

/// The documentation /24s, as (prefix, first free host, last host).
const V4_POOLS: [[u8; 3]; 3] = [[192, 0, 2], [203, 0, 113], [198, 51, 100]];

/// Key, address map and the literals every payload is swept for.
pub struct Names {
    key: [u8; 32],
    /// Original → stand-in, decided by [`Names::allocate`].
    ips: HashMap<IpAddr, IpAddr>,
    /// Addresses in the order they were first seen (before allocation).
    seen: Vec<IpAddr>,
    allocated: bool,
    next_v6: u64,
    /// Original → pseudonym of serials, usernames and tokens: swept for in
    /// every payload and checked for before a payload is written.
    literals: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Whether an address stays as it is: loopback, unspecified, broadcast and
/// the documentation ranges say nothing about anyone.
pub fn keeps(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_unspecified() || v4.is_broadcast() || is_documentation_v4(v4)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

fn is_documentation_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    V4_POOLS.iter().any(|p| o[..3] == p[..])
}

impl Names {
    pub fn new(key: [u8; 32]) -> Names {
        Names {
            key,
            ips: HashMap::new(),
            seen: Vec::new(),
            allocated: false,
            next_v6: 1,
            literals: Vec::new(),
        }
    }

    fn mac(&self, kind: &str, value: &[u8], round: u32) -> [u8; 32] {
        // HMAC accepts keys of any length; new_from_slice cannot fail here.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return [0; 32],
        };
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(&round.to_be_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// `len` keyed bytes for `value`.
    fn stream(&self, kind: &str, value: &[u8], len: usize, round: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut block = 0u32;
        while out.len() < len {
            let mut input = value.to_vec();
            input.extend_from_slice(&block.to_be_bytes());
            out.extend_from_slice(&self.mac(kind, &input, round));
            block += 1;
        }
        out.truncate(len);
        out
    }

    /// A pseudonym for `value` of the same length and alphabet: each digit
    /// stays a digit, each upper/lower-case letter an upper/lower-case
    /// letter; anything else (`+/=`, `-`, `.`) stays as it is. Never equal
    /// to `value` when it has a letter or digit.
    pub fn text(&self, kind: &str, value: &str) -> String {
        for round in 0..8 {
            let random = self.stream(kind, value.as_bytes(), value.len(), round);
            let out: String = value
                .bytes()
                .zip(random)
                .map(|(c, r)| match c {
                    b'0'..=b'9' => char::from(b'0' + r % 10),
                    b'a'..=b'z' => char::from(b'a' + r % 26),
                    b'A'..=b'Z' => char::from(b'A' + r % 26),
                    other => char::from(other),
                })
                .collect();
            if out != value || !value.bytes().any(|c| c.is_ascii_alphanumeric()) {
                return out;
            }
        }
        "x".repeat(value.len())
    }

    /// Like [`Names::text`], and the pair is remembered so every later
    /// payload is swept for the original (serials, usernames, tokens).
    pub fn text_swept(&mut self, kind: &str, value: &str) -> String {
        let pseudonym = self.text(kind, value);
        if value.len() >= MIN_SWEEP_LEN && !self.literals.iter().any(|(o, _)| o == value.as_bytes())
        {
            self.literals
                .push((value.as_bytes().to_vec(), pseudonym.as_bytes().to_vec()));
            // Longest first, so a serial inside a longer literal is not
            // replaced piecemeal.
            self.literals
                .sort_by_key(|(o, _)| std::cmp::Reverse(o.len()));
        }
        pseudonym
    }

    /// Keyed bytes of the same length as `value` (the agent's sign).
    pub fn bytes(&self, kind: &str, value: &[u8]) -> Vec<u8> {
        self.stream(kind, value, value.len(), 0)
    }

    /// Replaces every remembered literal in `payload`; returns how many.
    pub fn sweep(&self, payload: &mut [u8]) -> u64 {
        let mut replaced = 0;
        for (original, pseudonym) in &self.literals {
            let mut at = 0;
            while let Some(found) = find_bytes(&payload[at..], original) {
                let start = at + found;
                payload[start..start + original.len()].copy_from_slice(pseudonym);
                at = start + original.len();
                replaced += 1;
            }
        }
        replaced
    }

    /// The first remembered literal still in `payload`, if any.
    pub fn leak_in(&self, payload: &[u8]) -> Option<&[u8]> {
        self.literals
            .iter()
            .find(|(o, _)| find_bytes(payload, o).is_some())
            .map(|(o, _)| o.as_slice())
    }

    /// The stand-in for `ip`. Before [`Names::allocate`] it only records
    /// the address and returns it unchanged.
    pub fn ip(&mut self, ip: IpAddr) -> Result<IpAddr, RedactError> {
        if keeps(ip) {
            return Ok(ip);
        }
        if let Some(mapped) = self.ips.get(&ip) {
            return Ok(*mapped);
        }
        if !self.allocated {
            if !self.seen.contains(&ip) {
                self.seen.push(ip);
            }
            return Ok(ip);
        }
        // Not seen while observing (should not happen): allocate now.
        let mapped = self.pick(ip)?;
        self.ips.insert(ip, mapped);
        Ok(mapped)
    }

    /// Whether `ip` was seen (in a header or a payload) or is loopback.
    pub fn knows(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.ips.contains_key(&ip) || self.seen.contains(&ip)
    }

    /// Whether `ip` is replaced (not loopback, unspecified or documentation).
    pub fn replaces(&self, ip: IpAddr) -> bool {
        !keeps(ip)
    }

    /// Decides every stand-in, in first-seen order: an IPv4 address gets a
    /// documentation address whose dotted text has the same length when one
    /// is free (9 to 14 characters), else the nearest length.
    pub fn allocate(&mut self) -> Result<(), RedactError> {
        self.allocated = true;
        for ip in std::mem::take(&mut self.seen) {
            let mapped = self.pick(ip)?;
            self.ips.insert(ip, mapped);
        }
        Ok(())
    }

    fn pick(&mut self, ip: IpAddr) -> Result<IpAddr, RedactError> {
        match ip {
            IpAddr::V6(_) => {
                let n = self.next_v6;
                self.next_v6 += 1;
                let [a, b, c, d] = [
                    (n >> 48) as u16,
                    (n >> 32) as u16,
                    (n >> 16) as u16,
                    n as u16,
                ];
                Ok(IpAddr::V6(Ipv6Addr::new(0x2001, 0x0db8, 0, 0, a, b, c, d)))
            }
            IpAddr::V4(v4) => {
                let want = v4.to_string().len();
                let used: Vec<IpAddr> = self.ips.values().copied().collect();
                let mut lengths: Vec<usize> = (9..=14).collect();
                lengths.sort_by_key(|l| (l.abs_diff(want), *l));
                for len in lengths {
                    for prefix in V4_POOLS {
                        for host in 1..=254u8 {
                            let candidate = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], host);
                            if candidate.to_string().len() == len
                                && !used.contains(&IpAddr::V4(candidate))
                            {
                                return Ok(IpAddr::V4(candidate));
                            }
                        }
                    }
                }
                Err(RedactError::TooManyAddresses)
            }
        }
    }
}

/// Dotted IPv4 addresses in `text`: (start, end, address). A run of digits
/// and dots counts only when it is exactly four numbers 0-255 and no letter,
/// digit or dot touches it.
pub fn ipv4_spans(text: &[u8]) -> Vec<(usize, usize, Ipv4Addr)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit()
            || (i > 0 && (text[i - 1].is_ascii_alphanumeric() || text[i - 1] == b'.'))
        {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && (text[i].is_ascii_digit() || text[i] == b'.') {
            i += 1;
        }
        let touching = i < text.len() && text[i].is_ascii_alphabetic();
        if touching {
            continue;
        }
        // A sentence may end right after an address.
        let mut end = i;
        while end > start && text[end - 1] == b'.' {
            end -= 1;
        }
        let run = &text[start..end];
        if let Some(ip) = std::str::from_utf8(run)
            .ok()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            spans.push((start, end, ip));
        }
    }
    spans
}

impl Names {
    /// `text` with every replaced dotted IPv4 address swapped for its
    /// stand-in (the length may change); and how many were swapped.
    pub fn text_ips(&mut self, text: &[u8]) -> Result<(Vec<u8>, u64), RedactError> {
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        let mut count = 0;
        for (start, end, ip) in ipv4_spans(text) {
            out.extend_from_slice(&text[at..start]);
            let mapped = self.ip(IpAddr::V4(ip))?;
            if mapped != IpAddr::V4(ip) {
                count += 1;
            }
            out.extend_from_slice(mapped.to_string().as_bytes());
            at = end;
        }
        out.extend_from_slice(&text[at..]);
        Ok((out, count))
    }

    /// Like [`Names::text_ips`] but in place, keeping every length: an
    /// address whose stand-in has another length is written as `x`s and
    /// dots instead (inside a PTCP stream a length cannot change).
    pub fn text_ips_in_place(&mut self, text: &mut [u8]) -> Result<u64, RedactError> {
        let mut count = 0;
        for (start, end, ip) in ipv4_spans(text) {
            let mapped = self.ip(IpAddr::V4(ip))?;
            if mapped == IpAddr::V4(ip) {
                continue;
            }
            count += 1;
            let mapped = mapped.to_string();
            let span = &mut text[start..end];
            if mapped.len() == span.len() {
                span.copy_from_slice(mapped.as_bytes());
            } else {
                for byte in span.iter_mut().filter(|b| **b != b'.') {
                    *byte = b'x';
                }
            }
        }
        Ok(count)
    }
}
