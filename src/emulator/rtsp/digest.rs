//! HTTP Digest authentication (RFC 2617, MD5) as an RTSP server checks it.
//! Dahua challenges without `qop`; clients answering with `qop=auth` are
//! accepted too.

use md5::{Digest as _, Md5};

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

/// The parameters of an `Authorization: Digest …` header.
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
    /// Parses the header value; `None` if it is not Digest or lacks a
    /// required parameter. Quoted strings may contain commas and `\"`.
    pub fn parse(value: &str) -> Option<DigestAuthorization> {
        let value = value.trim_start();
        let scheme_end = value.find(|c: char| c.is_ascii_whitespace())?;
        let (scheme, mut rest) = value.split_at(scheme_end);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut auth = DigestAuthorization::default();
        let (mut username, mut realm, mut nonce, mut uri, mut response) =
            (None, None, None, None, None);
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
            if rest.is_empty() {
                break;
            }
            let eq = rest.find('=')?;
            let (key, after) = rest.split_at(eq);
            let key = key.trim();
            let after = after.get(1..)?.trim_start();
            let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                parse_quoted(quoted)?
            } else {
                let end = after.find(',').unwrap_or(after.len());
                let (v, r) = after.split_at(end);
                (v.trim().to_string(), r)
            };
            rest = remaining;
            match key.to_ascii_lowercase().as_str() {
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

/// Reads a quoted string (after its opening quote) up to the closing quote,
/// undoing `\` escapes; returns it and the text after the quote.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, s.get(i + 1..)?));
        } else {
            out.push(c);
        }
    }
    None
}

/// Compares without an early exit, so timing does not reveal how many
/// leading characters of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
