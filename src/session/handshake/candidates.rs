//! Making sense of the device's `LocalAddr` answer (docs/PROTOCOL.md §3.5).
//!
//! It may be one `ip:port`, a comma list whose final port applies to all, and
//! with `IpEncrpt=true` the octets may be written as `255 − octet`. Nobody has
//! recorded which form a device uses in its answer (FIELD-NOTES C11, §8), so
//! both readings are tried and the plausible one kept.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::codec::cloud::parse_addr_list;
use crate::codec::crypto::{addr_list_decode, ip_encrpt_decode};

/// An address a device could plausibly have on its LAN.
fn is_lan(ip: Ipv4Addr) -> bool {
    ip.is_private() || ip.is_link_local() || ip.is_loopback()
}

fn usable(addrs: Vec<SocketAddrV4>) -> Vec<SocketAddrV4> {
    let mut out: Vec<SocketAddrV4> = Vec::new();
    for a in addrs {
        if !a.ip().is_unspecified() && !a.ip().is_broadcast() && a.port() != 0 && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// The addresses of a plain (already decrypted) `LocalAddr` text.
///
/// `complemented`: the answer said `IpEncrpt=true`, so the octets are
/// `255 − octet` when they parse that way. Otherwise the plain reading wins
/// unless it holds no LAN address while the complemented one does (a device
/// that complemented without saying so). Anything that does not parse yields
/// no address rather than an error: the public candidate still works.
pub fn local_candidates(text: &str, complemented: bool) -> Vec<SocketAddrV4> {
    let text = text.trim();
    let plain = addr_list_decode(text)
        .ok()
        .or_else(|| parse_addr_list(text).ok())
        .map(usable)
        .unwrap_or_default();
    let inverted = ip_encrpt_decode(text).ok().map(usable).unwrap_or_default();
    let any_lan = |list: &[SocketAddrV4]| list.iter().any(|a| is_lan(*a.ip()));
    if complemented && !inverted.is_empty() {
        return inverted;
    }
    if !any_lan(&plain) && any_lan(&inverted) {
        return inverted;
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn one_plain_address() {
        assert_eq!(
            local_candidates("192.168.1.200:22508", false),
            [a("192.168.1.200:22508")]
        );
    }

    #[test]
    fn comma_list_takes_the_final_port() {
        // docs/PROTOCOL.md §3.5, MC's device answer.
        assert_eq!(
            local_candidates("192.168.57.20,192.168.0.108:51980", false),
            [a("192.168.57.20:51980"), a("192.168.0.108:51980")]
        );
    }

    #[test]
    fn complemented_list_when_flagged() {
        // FIELD-NOTES C11: 63.87.143.254,63.87.254.173:50000.
        assert_eq!(
            local_candidates("63.87.143.254,63.87.254.173:50000", true),
            [a("192.168.112.1:50000"), a("192.168.1.82:50000")]
        );
    }

    #[test]
    fn complemented_list_recognised_without_the_flag() {
        assert_eq!(
            local_candidates("63.87.143.254,63.87.254.173:50000", false),
            [a("192.168.112.1:50000"), a("192.168.1.82:50000")]
        );
    }

    #[test]
    fn flag_with_a_plain_lan_address_that_also_complements() {
        // 10.0.0.5 complemented is 245.255.255.250: not LAN, but the flag
        // says complemented; the flag wins when the text parses both ways.
        assert_eq!(
            local_candidates("245.255.255.250:4000", true),
            [a("10.0.0.5:4000")]
        );
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(local_candidates("not an address", false).is_empty());
        assert!(local_candidates("", true).is_empty());
        assert!(local_candidates("0.0.0.0:0", false).is_empty());
    }

    #[test]
    fn duplicates_are_dropped() {
        assert_eq!(
            local_candidates("10.1.1.1,10.1.1.1:80", false),
            [a("10.1.1.1:80")]
        );
    }
}
