//! Which datagrams a reader wants: `--session` and `--realm` values as
//! `decode` and the inspector's filter bar accept them.

use std::net::SocketAddr;
use std::str::FromStr;

use super::record::{Record, SessionKey};

/// `--session`: one endpoint (either side) or a pair (either direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFilter {
    Endpoint(SocketAddr),
    Pair(SessionKey),
}

impl SessionFilter {
    pub fn matches(&self, record: &Record) -> bool {
        match self {
            SessionFilter::Endpoint(addr) => record.src == *addr || record.dst == *addr,
            SessionFilter::Pair(key) => record.session() == *key,
        }
    }
}

impl FromStr for SessionFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<SessionFilter, String> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let addr = |text: &str| {
            text.parse::<SocketAddr>().map_err(|_| {
                format!("{text:?} is not an address:port (e.g. 192.0.2.10:50000 or [2001:db8::1]:50000)")
            })
        };
        // `A<->B` as `--stats` prints sessions, or `A-B`.
        let pair = compact
            .split_once("<->")
            .or_else(|| compact.split_once('-'));
        match pair {
            Some((a, b)) => Ok(SessionFilter::Pair(SessionKey::of(addr(a)?, addr(b)?))),
            None => Ok(SessionFilter::Endpoint(addr(&compact)?)),
        }
    }
}

/// A realm id: `0x0a0b0c0d` or decimal.
pub fn parse_realm(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a realm id (0x1234abcd or a decimal number)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_parses_hex_and_decimal() {
        assert_eq!(parse_realm("0x0a0b0c0d"), Ok(0x0a0b_0c0d));
        assert_eq!(parse_realm("168496141"), Ok(0x0a0b_0c0d));
        assert!(parse_realm("0xzz").is_err());
    }

    #[test]
    fn session_filter_forms() {
        let a: SocketAddr = "192.0.2.10:50000".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        assert_eq!(
            "192.0.2.10:50000".parse::<SessionFilter>(),
            Ok(SessionFilter::Endpoint(a))
        );
        let pair = SessionFilter::Pair(SessionKey::of(a, b));
        assert_eq!("[2001:db8::1]:40000-192.0.2.10:50000".parse(), Ok(pair));
        assert_eq!("192.0.2.10:50000 <-> [2001:db8::1]:40000".parse(), Ok(pair));
    }
}
