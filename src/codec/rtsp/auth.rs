//! The `Authorization` header of RTSP (and of HTTP, which shares it):
//! Basic and Digest credentials read with the byte range of every
//! parameter, and the Digest computation (RFC 2617, MD5) that checks them.
//! Dahua challenges without `qop`; answers with `qop=auth` verify too.
//!
//! The parser is lenient (it never fails; a parameter it cannot read is
//! noted and skipped) so redaction finds the secret even in a damaged
//! header; [`DigestAuthorization::parse`] is the strict reading a server
//! accepts.

use std::ops::Range;

use md5::{Digest as _, Md5};

pub use super::framing::is_credentials_header;
use super::framing::{header_field, line_ranges};

/// One `name=value` parameter of a Digest header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    pub name: Range<usize>,
    /// The value without its quotes (escapes not undone).
    pub value: Range<usize>,
    pub quoted: bool,
    /// False for a quoted value whose closing quote is missing.
    pub closed: bool,
}

/// What an `Authorization` value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Basic <token>`; `token` is empty when there is none.
    Basic { token: Range<usize> },
    /// `Digest k=v, …`; `well_formed` is false when some part was not a
    /// parameter and was skipped.
    Digest {
        params: Vec<AuthParam>,
        well_formed: bool,
    },
    /// Another scheme, or no scheme at all.
    Other,
}

impl Credentials {
    /// The byte ranges that must never be shown: a Basic token, a Digest
    /// `response`.
    pub fn secret_ranges(&self, value: &[u8]) -> Vec<Range<usize>> {
        match self {
            Credentials::Basic { token } if !token.is_empty() => vec![token.clone()],
            Credentials::Digest { params, .. } => params
                .iter()
                .filter(|p| {
                    !p.value.is_empty()
                        && value
                            .get(p.name.clone())
                            .is_some_and(|n| n.eq_ignore_ascii_case(b"response"))
                })
                .map(|p| p.value.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Reads an `Authorization` header value.
pub fn parse_authorization(value: &[u8]) -> Credentials {
    let start = skip(value, 0, |b| b.is_ascii_whitespace());
    let scheme_end = skip(value, start, |b| !b.is_ascii_whitespace());
    let scheme = value.get(start..scheme_end).unwrap_or_default();
    let after_scheme = skip(value, scheme_end, |b| b.is_ascii_whitespace());
    if scheme_end == value.len() || after_scheme == scheme_end {
        // A scheme with nothing after it carries no credentials.
        return Credentials::Other;
    }
    if scheme.eq_ignore_ascii_case(b"Basic") {
        let end = value
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(after_scheme, |p| p + 1)
            .max(after_scheme);
        return Credentials::Basic {
            token: after_scheme..end,
        };
    }
    if !scheme.eq_ignore_ascii_case(b"Digest") {
        return Credentials::Other;
    }
    let (params, well_formed) = digest_params(value, after_scheme);
    Credentials::Digest {
        params,
        well_formed,
    }
}

/// The parameters from `at` on: `name = value` or `name = "quoted"`,
/// separated by commas and whitespace.
fn digest_params(value: &[u8], mut at: usize) -> (Vec<AuthParam>, bool) {
    let mut params = Vec::new();
    let mut well_formed = true;
    loop {
        at = skip(value, at, |b| b.is_ascii_whitespace() || b == b',');
        if at >= value.len() {
            return (params, well_formed);
        }
        let name_end = skip(value, at, |b| {
            !(b.is_ascii_whitespace() || b == b',' || b == b'=' || b == b'"')
        });
        let eq = skip(value, name_end, |b| b.is_ascii_whitespace());
        if name_end == at || value.get(eq) != Some(&b'=') {
            // Not a parameter: skip to the next comma.
            well_formed = false;
            at = skip(value, name_end.max(at + 1), |b| b != b',');
            continue;
        }
        let name = at..name_end;
        let value_at = skip(value, eq + 1, |b| b.is_ascii_whitespace());
        if value.get(value_at) == Some(&b'"') {
            let (end, closed) = quoted_end(value, value_at + 1);
            at = if closed { end + 1 } else { end };
            params.push(AuthParam {
                name,
                value: value_at + 1..end,
                quoted: true,
                closed,
            });
        } else {
            let end = skip(value, value_at, |b| b != b',');
            let trimmed = value
                .get(value_at..end)
                .and_then(|v| v.iter().rposition(|b| !b.is_ascii_whitespace()))
                .map_or(value_at, |p| value_at + p + 1);
            at = end;
            params.push(AuthParam {
                name,
                value: value_at..trimmed,
                quoted: false,
                closed: true,
            });
        }
    }
}

/// End of a quoted string starting at `from` (just past its opening
/// quote): the closing quote's offset and true, or the end and false.
fn quoted_end(value: &[u8], from: usize) -> (usize, bool) {
    let mut escaped = false;
    for (i, &b) in value.iter().enumerate().skip(from) {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return (i, true);
        }
    }
    (value.len(), false)
}

/// First offset from `at` whose byte does not satisfy `pred`.
fn skip(value: &[u8], at: usize, pred: impl Fn(u8) -> bool) -> usize {
    value
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| !pred(b)))
        .map_or(value.len().max(at), |p| at + p)
}

/// Ranges (relative to `text`) of the credentials in every
/// `Authorization` and `Proxy-Authorization` line of `text`. Works on any
/// bytes (an RTSP head in a PTCP payload, a piece of a stream); other
/// lines are left alone.
pub fn credential_ranges(text: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for line in line_ranges(text) {
        let Some(field) = header_field(text, line) else {
            continue;
        };
        if !is_credentials_header(text.get(field.name.clone()).unwrap_or_default()) {
            continue;
        }
        let value = text.get(field.value.clone()).unwrap_or_default();
        let shift = field.value.start;
        out.extend(
            parse_authorization(value)
                .secret_ranges(value)
                .into_iter()
                .map(|r| r.start + shift..r.end + shift),
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Digest, as a server checks it

/// The parameters of an `Authorization: Digest …` header, quoted values
/// unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestAuthorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
}

impl DigestAuthorization {
    /// Parses the header value; `None` if it is not Digest, is damaged, or
    /// lacks a required parameter. Quoted strings may contain commas and `\"`.
    pub fn parse(value: &str) -> Option<DigestAuthorization> {
        let bytes = value.as_bytes();
        let Credentials::Digest {
            params,
            well_formed: true,
        } = parse_authorization(bytes)
        else {
            return None;
        };
        let mut auth = DigestAuthorization::default();
        let (mut username, mut realm, mut nonce, mut uri, mut response) =
            (None, None, None, None, None);
        for param in &params {
            if !param.closed {
                return None;
            }
            let raw = value.get(param.value.clone())?;
            let val = if param.quoted {
                unescape(raw)
            } else {
                raw.to_string()
            };
            match value.get(param.name.clone())?.to_ascii_lowercase().as_str() {
                "username" => username = Some(val),
                "realm" => realm = Some(val),
                "nonce" => nonce = Some(val),
                "uri" => uri = Some(val),
                "response" => response = Some(val),
                "qop" => auth.qop = Some(val),
                "nc" => auth.nc = Some(val),
                "cnonce" => auth.cnonce = Some(val),
                "algorithm" => auth.algorithm = Some(val),
                _ => {}
            }
        }
        auth.username = username?;
        auth.realm = realm?;
        auth.nonce = nonce?;
        auth.uri = uri?;
        auth.response = response?;
        Some(auth)
    }

    /// Whether this answer proves knowledge of `password` for `method`
    /// against our `realm` and `nonce`. Only MD5 and qop absent/`auth` pass.
    pub fn verify(
        &self,
        method: &str,
        realm: &str,
        nonce: &str,
        username: &str,
        password: &str,
    ) -> bool {
        if let Some(algorithm) = &self.algorithm {
            if !algorithm.eq_ignore_ascii_case("MD5") {
                return false;
            }
        }
        if self.username != username || self.realm != realm || self.nonce != nonce {
            return false;
        }
        let qop = match (&self.qop, &self.nc, &self.cnonce) {
            (None, _, _) => None,
            (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => {
                Some(QopAuth { nc, cnonce, qop })
            }
            _ => return false,
        };
        let expected = digest_response(&DigestInput {
            username,
            realm,
            password,
            method,
            uri: &self.uri,
            nonce,
            qop,
        });
        constant_time_eq(
            expected.as_bytes(),
            self.response.to_ascii_lowercase().as_bytes(),
        )
    }
}

/// A quoted string's content with `\` escapes undone.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// Lower-case hex MD5 of `input`.
fn md5_hex(input: &str) -> String {
    hex::encode(Md5::digest(input.as_bytes()))
}

/// The `qop=auth` fields of a response: nonce count, client nonce, qop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopAuth<'a> {
    pub nc: &'a str,
    pub cnonce: &'a str,
    pub qop: &'a str,
}

/// The credentials and request a digest response covers.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// `None` for the RFC 2069 form Dahua uses.
    pub qop: Option<QopAuth<'a>>,
}

/// `H(A1) = MD5(username:realm:password)`.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{username}:{realm}:{password}"))
}

/// `H(A2) = MD5(method:uri)` (qop absent or `auth`).
pub fn ha2(method: &str, uri: &str) -> String {
    md5_hex(&format!("{method}:{uri}"))
}

/// The expected `response` value (RFC 2617 §3.2.2.1).
pub fn digest_response(input: &DigestInput<'_>) -> String {
    let ha1 = ha1(input.username, input.realm, input.password);
    let ha2 = ha2(input.method, input.uri);
    match input.qop {
        None => md5_hex(&format!("{ha1}:{}:{ha2}", input.nonce)),
        Some(q) => md5_hex(&format!(
            "{ha1}:{}:{}:{}:{}:{ha2}",
            input.nonce, q.nc, q.cnonce, q.qop
        )),
    }
}

/// Compares without an early exit, so timing does not reveal how many
/// leading characters of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
