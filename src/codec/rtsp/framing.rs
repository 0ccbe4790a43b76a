//! RTSP framing: message heads, headers, `Content-Length` bodies and
//! interleaved `$` frames (RFC 2326 §10.12), read from the front of a
//! buffer that may still be growing.
//!
//! Two readers share these primitives: [`next_client_frame`], the strict
//! one a server answers from (junk is an error as soon as the first line
//! shows it), and the lenient scanners ([`looks_like_message`],
//! [`head_len`], [`line_ranges`], [`content_length`]) that `decode
//! --follow --rtsp` walks a captured stream with.

use std::fmt::Write as _;
use std::ops::Range;

use crate::codec::find_bytes;

/// Largest message (head and body) a reader buffers.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most header lines in one message.
pub const MAX_HEADERS: usize = 64;
/// `$`, channel, 16-bit big-endian length.
pub const INTERLEAVED_HEADER_LEN: usize = 4;

/// Methods that start a request (RFC 2326 §10 and the Dahua `Public:`
/// list, FIELD-NOTES §6).
pub const METHODS: [&str; 11] = [
    "OPTIONS",
    "DESCRIBE",
    "ANNOUNCE",
    "SETUP",
    "PLAY",
    "PAUSE",
    "TEARDOWN",
    "GET_PARAMETER",
    "SET_PARAMETER",
    "RECORD",
    "REDIRECT",
];

/// Why bytes are not an RTSP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    #[error("request larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed request at offset {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
}

fn malformed(offset: usize, reason: &'static str) -> RtspError {
    RtspError::Malformed { offset, reason }
}

const TOO_LARGE: RtspError = RtspError::TooLarge {
    limit: MAX_MESSAGE_BYTES,
};

// ---------------------------------------------------------------------------
// Interleaved frames

/// The header of an interleaved binary frame: `$`, channel, payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interleaved {
    pub channel: u8,
    /// Payload bytes after the 4-byte header.
    pub len: usize,
}

impl Interleaved {
    /// Header and payload.
    pub fn total_len(self) -> usize {
        INTERLEAVED_HEADER_LEN + self.len
    }
}

/// The `$` frame header at the front of `buf`; `None` if `buf` does not
/// start with `$` or holds fewer than four bytes.
pub fn interleaved_header(buf: &[u8]) -> Option<Interleaved> {
    match buf {
        [b'$', channel, hi, lo, ..] => Some(Interleaved {
            channel: *channel,
            len: usize::from(u16::from_be_bytes([*hi, *lo])),
        }),
        _ => None,
    }
}

/// Whether `bytes` start a `$` frame whose payload looks like RTP/RTCP
/// version 2: the test used to find the next frame in arbitrary bytes.
pub fn looks_like_interleaved(bytes: &[u8]) -> bool {
    matches!(bytes, [b'$', channel, _, _, first, ..] if *channel < 32 && first & 0xC0 == 0x80)
}

// ---------------------------------------------------------------------------
// Heads and header lines

/// Whether `bytes` start an RTSP response (`RTSP/`) or a request with one
/// of [`METHODS`] followed by a space.
pub fn looks_like_message(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"RTSP/") {
        return true;
    }
    METHODS
        .iter()
        .any(|m| bytes.starts_with(m.as_bytes()) && bytes.get(m.len()) == Some(&b' '))
}

/// Length of the head at the front of `buf`: the offset just past the
/// blank line ending it (`\r\n\r\n` or `\n\n`); `None` if not yet there.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = buf.get(line_start..i).unwrap_or(&[]);
        if (line.is_empty() || line == b"\r") && line_start > 0 {
            return Some(i + 1);
        }
        line_start = i + 1;
    }
    None
}

/// The lines of `text` (split at `\n`, a trailing `\r` left out) as byte
/// ranges; the last one may be unterminated.
pub fn line_ranges(text: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let rest = text.get(start..)?;
        let (end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(p) => (start + p, start + p + 1),
            None => (text.len(), text.len()),
        };
        let end = if end > start && text.get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        let line = start..end;
        start = next;
        Some(line)
    })
}

/// A `Name: value` line: the byte ranges of the name and of the value,
/// both without surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// Splits the header line at `line` (a range of `text`) at its first `:`;
/// `None` if it has none.
pub fn header_field(text: &[u8], line: Range<usize>) -> Option<HeaderField> {
    let bytes = text.get(line.clone())?;
    let colon = bytes.iter().position(|&b| b == b':')?;
    let name = trim_range(bytes, 0..colon);
    let value = trim_range(bytes, colon + 1..bytes.len());
    let shift = |r: Range<usize>| line.start + r.start..line.start + r.end;
    Some(HeaderField {
        name: shift(name),
        value: shift(value),
    })
}

/// `range` of `bytes` without leading and trailing ASCII whitespace.
fn trim_range(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let slice = bytes.get(range.clone()).unwrap_or_default();
    let start = slice
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(slice.len());
    let end = slice
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    range.start + start..range.start + end
}

/// The `Content-Length` of a head (0 when absent); an error when the
/// value is not a number.
pub fn content_length(head: &[u8]) -> Result<usize, RtspError> {
    for line in line_ranges(head).skip(1) {
        let Some(field) = header_field(head, line.clone()) else {
            continue;
        };
        let name = head.get(field.name.clone()).unwrap_or_default();
        if name.eq_ignore_ascii_case(b"Content-Length") {
            let value = head.get(field.value.clone()).unwrap_or_default();
            return parse_length(value, line.start);
        }
    }
    Ok(0)
}

fn parse_length(value: &[u8], offset: usize) -> Result<usize, RtspError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or(malformed(offset, "Content-Length is not a number"))
}

// ---------------------------------------------------------------------------
// Requests, as a server reads them

/// One RTSP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header named `name` (case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cseq(&self) -> Option<&str> {
        self.header("CSeq")
    }

    /// A one-line description safe to log: the URI without user info and
    /// every header, `Authorization` shown as `<redacted>`.
    pub fn redacted(&self) -> String {
        let mut out = format!("{} {}", self.method, redact_userinfo(&self.uri));
        for (name, value) in &self.headers {
            let shown = if is_credentials_header(name.as_bytes()) {
                "<redacted>"
            } else {
                value.as_str()
            };
            let _ = write!(out, " | {name}: {shown}");
        }
        out
    }
}

/// `rtsp://user:pass@host/…` → `rtsp://<redacted>@host/…`, so logs never
/// carry a password typed into a URL.
pub fn redact_userinfo(uri: &str) -> String {
    match userinfo_ranges(uri.as_bytes()).first() {
        Some(userinfo) => format!(
            "{}<redacted>{}",
            uri.get(..userinfo.start).unwrap_or(""),
            uri.get(userinfo.end..).unwrap_or("")
        ),
        None => uri.to_string(),
    }
}

/// The `user:password` part (before the last `@` of the authority) of
/// every `scheme://user:password@host/…` URL in `text`: in a request
/// line, a header, an SDP body.
pub fn userinfo_ranges(text: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = text.get(at..).and_then(|rest| find_bytes(rest, b"://")) {
        let authority_start = at + found + 3;
        let rest = text.get(authority_start..).unwrap_or_default();
        let authority_len = rest
            .iter()
            .position(|b| matches!(b, b'/' | b' ' | b'\r' | b'\n' | b'"' | b'>' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let authority = rest.get(..authority_len).unwrap_or_default();
        if let Some(at_sign) = authority.iter().rposition(|b| *b == b'@') {
            out.push(authority_start..authority_start + at_sign);
        }
        at = authority_start + authority_len;
    }
    out
}

/// What a client sends: a request or an interleaved binary frame (RTCP
/// receiver reports on channel 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Request(Request),
    Interleaved(Interleaved),
}

/// Takes the next complete request or `$` frame from the front of `buf`:
/// `Ok(None)` if more bytes are needed, else it and how many bytes it used.
pub fn next_client_frame(buf: &[u8]) -> Result<Option<(ClientFrame, usize)>, RtspError> {
    if buf.first() == Some(&b'$') {
        let Some(frame) = interleaved_header(buf) else {
            return Ok(None);
        };
        let total = frame.total_len();
        return Ok((buf.len() >= total).then_some((ClientFrame::Interleaved(frame), total)));
    }
    Ok(parse_request(buf)?.map(|(request, used)| (ClientFrame::Request(request), used)))
}

/// Parses one request from the front of `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, RtspError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Reject junk on its first line rather than waiting for a blank line
    // that may never come.
    let first_line_end = buf.iter().position(|&b| b == b'\n');
    let checked = buf
        .get(..first_line_end.unwrap_or(buf.len()))
        .unwrap_or(buf);
    if let Some(bad) = checked
        .iter()
        .position(|&b| !(b.is_ascii_graphic() || b == b' ' || b == b'\r' || b == b'\t'))
    {
        return Err(malformed(bad, "non-text byte in request line"));
    }
    let method_len = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    if let Some(bad) = buf
        .iter()
        .take(method_len)
        .position(|&b| !is_method_byte(b))
    {
        return Err(malformed(bad, "method is not an RTSP method token"));
    }
    if method_len == 0 {
        return Err(malformed(0, "request line starts with a space"));
    }
    let Some(line_end) = first_line_end else {
        return if buf.len() > MAX_MESSAGE_BYTES {
            Err(TOO_LARGE)
        } else {
            Ok(None)
        };
    };
    let Some(head_end) = head_len(buf) else {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(TOO_LARGE);
        }
        // Check the request line now, so junk ending in a newline is
        // answered without waiting for more.
        parse_request_line(buf.get(..line_end).unwrap_or(&[]))?;
        return Ok(None);
    };
    if head_end > MAX_MESSAGE_BYTES {
        return Err(TOO_LARGE);
    }
    let head = buf.get(..head_end).unwrap_or(&[]);
    if let Err(e) = std::str::from_utf8(head) {
        return Err(malformed(e.valid_up_to(), "not UTF-8"));
    }
    let mut lines = line_ranges(head);
    let request_line = lines.next().unwrap_or(0..0);
    let (method, uri) = parse_request_line(head.get(request_line).unwrap_or_default())?;
    let headers = parse_headers(head, lines)?;
    let body_len = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
    {
        None => 0,
        Some((_, v)) => parse_length(v.as_bytes(), 0)?,
    };
    let total = head_end
        .checked_add(body_len)
        .filter(|&t| t <= MAX_MESSAGE_BYTES)
        .ok_or(TOO_LARGE)?;
    let Some(body) = buf.get(head_end..total) else {
        return Ok(None);
    };
    let request = Request {
        method,
        uri,
        headers,
        body: body.to_vec(),
    };
    Ok(Some((request, total)))
}

fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'_' || b == b'-'
}

/// The header lines of a head (UTF-8 checked by the caller), obsolete
/// line folding joined to the previous value.
fn parse_headers(
    head: &[u8],
    lines: impl Iterator<Item = Range<usize>>,
) -> Result<Vec<(String, String)>, RtspError> {
    let text = |r: Range<usize>| String::from_utf8_lossy(head.get(r).unwrap_or_default());
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let bytes = head.get(line.clone()).unwrap_or_default();
        if bytes.is_empty() {
            continue;
        }
        if bytes.starts_with(b" ") || bytes.starts_with(b"\t") {
            let Some((_, value)) = headers.last_mut() else {
                return Err(malformed(line.start, "continuation line before any header"));
            };
            value.push(' ');
            value.push_str(text(line).trim());
            continue;
        }
        let Some(field) = header_field(head, line.clone()) else {
            return Err(malformed(line.start, "header line without ':'"));
        };
        let name = text(field.name);
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(malformed(line.start, "bad header name"));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(malformed(line.start, "too many header lines"));
        }
        headers.push((name.into_owned(), text(field.value).into_owned()));
    }
    Ok(headers)
}

/// `METHOD URI RTSP/1.0` → method and URI.
fn parse_request_line(line: &[u8]) -> Result<(String, String), RtspError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|e| malformed(e.valid_up_to(), "not UTF-8"))?;
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(0, "request line is not `METHOD URI RTSP/1.0`"));
    };
    if !method.bytes().all(is_method_byte) {
        return Err(malformed(0, "method is not an RTSP method token"));
    }
    if version != "RTSP/1.0" {
        let at = line.rfind(version).unwrap_or(0);
        return Err(malformed(at, "protocol version is not RTSP/1.0"));
    }
    Ok((method.to_string(), uri.to_string()))
}

/// Whether a header named `name` carries credentials (`Authorization`,
/// `Proxy-Authorization`, any case).
pub fn is_credentials_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"Authorization") || name.eq_ignore_ascii_case(b"Proxy-Authorization")
}

/// Whether a header named `name` carries a challenge (`WWW-Authenticate`,
/// `Proxy-Authenticate`, any case): its nonce is as much a secret as the
/// answer to it.
pub fn is_challenge_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"WWW-Authenticate")
        || name.eq_ignore_ascii_case(b"Proxy-Authenticate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_of_every_url_and_the_redacted_uri() {
        let text = b"rtsp://u:p@h/a http://x@y?q rtsp://h:554/ \"rtsp://a:b@c\"";
        let found: Vec<&[u8]> = userinfo_ranges(text)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(found, [&b"u:p"[..], b"x", b"a:b"]);
        assert_eq!(redact_userinfo("rtsp://u:p@h/a"), "rtsp://<redacted>@h/a");
        assert_eq!(redact_userinfo("rtsp://h/a@b"), "rtsp://h/a@b");
    }
}
