//! RTSP/1.0 framing on the server side: splits what a client sends into
//! requests and interleaved binary frames (`$`), and writes responses.
//!
//! Parsing is bounded (a request head and body together at most
//! [`MAX_REQUEST_BYTES`]) and never panics; garbage is reported as soon as
//! the first line shows it, so a client sending junk gets its 400 at once.

use std::fmt::Write as _;

/// Largest request (head and body) the server buffers before answering 400.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most header lines in one request.
pub const MAX_HEADERS: usize = 64;

/// Why the bytes from a client are not an RTSP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed request at offset {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
}

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
            let shown = if name.eq_ignore_ascii_case("Authorization")
                || name.eq_ignore_ascii_case("Proxy-Authorization")
            {
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
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = uri.get(authority_start..).unwrap_or("");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or("");
    match authority.rfind('@') {
        Some(at) => format!(
            "{}<redacted>{}",
            uri.get(..authority_start).unwrap_or(""),
            rest.get(at..).unwrap_or("")
        ),
        None => uri.to_string(),
    }
}

/// What a client sent next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Request(Request),
    /// An interleaved binary frame (RTCP receiver reports on channel 1),
    /// consumed and ignored.
    Interleaved {
        channel: u8,
        len: usize,
    },
}

/// Takes the next complete message from the front of `buf`: `Ok(None)` if
/// more bytes are needed, else the message and how many bytes it used.
pub fn next_inbound(buf: &[u8]) -> Result<Option<(Inbound, usize)>, RequestError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        let Some(header) = buf.get(..4) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let total = 4 + len;
        if buf.len() < total {
            return Ok(None);
        }
        return Ok(Some((
            Inbound::Interleaved {
                channel: header[1],
                len,
            },
            total,
        )));
    }
    match parse_request(buf)? {
        Some((request, used)) => Ok(Some((Inbound::Request(request), used))),
        None => Ok(None),
    }
}

/// Parses one request from the front of `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, RequestError> {
    let malformed = |offset, reason| RequestError::Malformed { offset, reason };
    // Reject junk on its first line rather than waiting for a blank line
    // that may never come.
    let first_line_end = buf.iter().position(|&b| b == b'\n');
    let checked = first_line_end.unwrap_or(buf.len());
    if let Some(bad) = buf
        .get(..checked)
        .unwrap_or(buf)
        .iter()
        .position(|&b| !(b.is_ascii_graphic() || b == b' ' || b == b'\r' || b == b'\t'))
    {
        return Err(malformed(bad, "non-text byte in request line"));
    }
    let method_len = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    if let Some(bad) = buf
        .iter()
        .take(method_len)
        .position(|&b| !(b.is_ascii_uppercase() || b == b'_' || b == b'-'))
    {
        return Err(malformed(bad, "method is not an RTSP method token"));
    }
    if method_len == 0 {
        return Err(malformed(0, "request line starts with a space"));
    }
    let Some(line_end) = first_line_end else {
        return if buf.len() > MAX_REQUEST_BYTES {
            Err(RequestError::TooLarge {
                limit: MAX_REQUEST_BYTES,
            })
        } else {
            Ok(None)
        };
    };
    let Some(head_end) = find_head_end(buf) else {
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge {
                limit: MAX_REQUEST_BYTES,
            });
        }
        // Check the request line now, so junk ending in a newline is
        // answered without waiting for more.
        let line = buf.get(..line_end).unwrap_or(&[]);
        parse_request_line(line)?;
        return Ok(None);
    };
    if head_end > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    let head = buf.get(..head_end).unwrap_or(&[]);
    let head = std::str::from_utf8(head).map_err(|e| malformed(e.valid_up_to(), "not UTF-8"))?;
    let mut lines = head.split('\n');
    let request_line = lines.next().unwrap_or("");
    let (method, uri) = parse_request_line(request_line.as_bytes())?;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut offset = request_line.len() + 1;
    for raw_line in lines {
        let line_offset = offset;
        offset += raw_line.len() + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: continue the previous header's value.
            let Some((_, value)) = headers.last_mut() else {
                return Err(malformed(
                    line_offset,
                    "continuation line before any header",
                ));
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed(line_offset, "header line without ':'"));
        };
        let name = name.trim();
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(malformed(line_offset, "bad header name"));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(malformed(line_offset, "too many header lines"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let body_len = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
    {
        None => 0,
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| malformed(0, "Content-Length is not a number"))?,
    };
    let total = head_end
        .checked_add(body_len)
        .filter(|&t| t <= MAX_REQUEST_BYTES)
        .ok_or(RequestError::TooLarge {
            limit: MAX_REQUEST_BYTES,
        })?;
    let Some(body) = buf.get(head_end..total) else {
        return Ok(None);
    };
    Ok(Some((
        Request {
            method,
            uri,
            headers,
            body: body.to_vec(),
        },
        total,
    )))
}

/// `METHOD URI RTSP/1.0` → method and URI.
fn parse_request_line(line: &[u8]) -> Result<(String, String), RequestError> {
    let malformed = |offset, reason| RequestError::Malformed { offset, reason };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|e| malformed(e.valid_up_to(), "not UTF-8"))?;
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(0, "request line is not `METHOD URI RTSP/1.0`"));
    };
    if !method
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(malformed(0, "method is not an RTSP method token"));
    }
    if version != "RTSP/1.0" {
        let at = line.rfind(version).unwrap_or(0);
        return Err(malformed(at, "protocol version is not RTSP/1.0"));
    }
    Ok((method.to_string(), uri.to_string()))
}

/// Offset just past the blank line ending the head (`\r\n\r\n` or `\n\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
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

/// An RTSP response under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body and its `Content-Type` and `Content-Length` headers.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("Content-Length".to_string(), body.len().to_string()));
        self.headers
            .push(("Content-Type".to_string(), content_type.to_string()));
        self.body = body;
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("RTSP/1.0 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reason phrase of the status codes this server sends (RFC 2326 §7.1.1).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "RTSP Version Not Supported",
        _ => "Unknown",
    }
}
