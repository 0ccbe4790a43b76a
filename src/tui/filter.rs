//! The filter bar (`/`): the terms `dhp2p decode` filters on, typed as text.
//!
//! ```text
//! kind:ptcp            --kind ptcp         cloud | punch | ptcp | unknown (or udp)
//! realm:0x0a0b0c0d     --realm 168496141   a PTCP realm, hex or decimal
//!
//! Realm and session values are parsed by `decode`'s own parsers.
//! session:127.0.0.1:5000                   either endpoint is this address
//! session:127.0.0.1:5000<->127.0.0.1:6000  this pair, either direction
//! session:127.0.0.1                        either endpoint has this IP
//! malformed                                only datagrams that did not decode
//! anything else                            a case-insensitive word of the summary
//! ```
//!
//! Several values of one term (`kind:ptcp,cloud` or `kind:ptcp kind:cloud`)
//! match any of them; different terms must all match. An empty filter shows
//! everything.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::codec::classify::Kind;
use crate::decode::filter::{parse_realm as decode_realm, SessionFilter};
use crate::decode::record::SessionKey;

/// What a filter looks at in one packet (all of it is known at ingest time,
/// so filtering never decodes again).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: Kind,
    pub realm: Option<u32>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub malformed: bool,
    pub summary: &'a str,
}

/// What a `session:` term names: `decode --session`'s endpoint or pair, or
/// (the inspector's extra) a bare IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Session(SessionFilter),
    Ip(IpAddr),
}

impl Endpoint {
    fn matches(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        match *self {
            Endpoint::Session(SessionFilter::Endpoint(a)) => a == src || a == dst,
            Endpoint::Session(SessionFilter::Pair(key)) => SessionKey::of(src, dst) == key,
            Endpoint::Ip(ip) => ip == src.ip() || ip == dst.ip(),
        }
    }
}

/// A parsed filter. `Filter::default()` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub kinds: Vec<Kind>,
    pub realms: Vec<u32>,
    pub sessions: Vec<Endpoint>,
    pub malformed_only: bool,
    /// Lower-case words the summary must contain.
    pub words: Vec<String>,
}

/// A filter term that does not parse; the message names the term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

impl Filter {
    /// Parses the filter bar's text.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut filter = Filter::default();
        let mut tokens = text.split_whitespace();
        while let Some(token) = tokens.next() {
            if token == "malformed" || token == "--malformed" {
                filter.malformed_only = true;
                continue;
            }
            // `--kind ptcp`, `--kind=ptcp` and `kind:ptcp` are the same term.
            let (name, value) = if let Some(flag) = token.strip_prefix("--") {
                match flag.split_once('=') {
                    Some((name, value)) => (name, value.to_owned()),
                    None => {
                        let value = tokens
                            .next()
                            .ok_or_else(|| FilterError(format!("--{flag} needs a value")))?;
                        (flag, value.to_owned())
                    }
                }
            } else if let Some((name, value)) = token.split_once(':') {
                if matches!(name, "kind" | "realm" | "session") {
                    (name, value.to_owned())
                } else {
                    filter.words.push(token.to_lowercase());
                    continue;
                }
            } else {
                filter.words.push(token.to_lowercase());
                continue;
            };
            for value in value.split(',').filter(|v| !v.is_empty()) {
                filter.add(name, value)?;
            }
        }
        Ok(filter)
    }

    fn add(&mut self, name: &str, value: &str) -> Result<(), FilterError> {
        match name {
            "kind" => {
                let kind = if value.eq_ignore_ascii_case("udp") {
                    Kind::Unknown
                } else {
                    value.parse::<Kind>().map_err(FilterError)?
                };
                self.kinds.push(kind);
            }
            "realm" => self.realms.push(parse_realm(value)?),
            "session" => self.sessions.push(parse_endpoint(value)?),
            "malformed" => self.malformed_only = true,
            other => {
                return Err(FilterError(format!(
                    "unknown filter --{other}: expected kind, realm, session or malformed"
                )))
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    pub fn matches(&self, p: &Subject<'_>) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&p.kind))
            && (self.realms.is_empty() || p.realm.is_some_and(|r| self.realms.contains(&r)))
            && (self.sessions.is_empty() || self.sessions.iter().any(|e| e.matches(p.src, p.dst)))
            && (!self.malformed_only || p.malformed)
            && self.words.iter().all(|w| contains_lowercase(p.summary, w))
    }
}

/// Whether `haystack` contains `needle` (already lower case), ignoring ASCII
/// case without allocating.
fn contains_lowercase(haystack: &str, needle: &str) -> bool {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || hay.windows(needle.len()).any(|w| {
            w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

fn parse_realm(value: &str) -> Result<u32, FilterError> {
    decode_realm(value).map_err(|e| FilterError(format!("realm: {e}")))
}

fn parse_endpoint(value: &str) -> Result<Endpoint, FilterError> {
    match value.parse::<SessionFilter>() {
        Ok(session) => Ok(Endpoint::Session(session)),
        Err(e) => value
            .parse::<IpAddr>()
            .map(Endpoint::Ip)
            .map_err(|_| FilterError(format!("session: {e}"))),
    }
}
